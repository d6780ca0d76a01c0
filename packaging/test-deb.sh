#!/bin/bash
# Tests the krill Debian package with the real dpkg on this machine
# (SPEC §10): every row of the dpkg-event table, the files' modes and
# owners, purge leaving nothing behind and overwriting the key's blocks,
# and the installed server answering the reference document's curl.
#
# Needs root and a machine where changing /etc/krill, /var/lib/krill and
# the krill user is acceptable (CI, a throwaway VM). It refuses to start if
# krill is installed or its directories exist, and on exit purges the
# package and deletes the krill user if it created it.
#
#   sudo packaging/test-deb.sh              build both packages, then test
#   KRILL_DEB_SKIP_BUILD=1 sudo packaging/test-deb.sh
#                                           reuse target/debian/*.deb
#
# Missing tools (shellcheck, lintian, systemd-analyze, curl, cargo-deb)
# are installed with apt-get / cargo install. The key is never printed:
# keys are compared by their SHA-256 and searched for in dpkg's output
# with `grep -f`.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PKG_DIR=$REPO/packaging/debian
DEB_DIR=$REPO/target/debian
ETC=/etc/krill
KEY=$ETC/credentials/api_key
CERT=$ETC/certs/krill.crt
CERT_KEY=$ETC/certs/krill.key
PFX=$ETC/certs/krill.pfx
PFX_PASSWORD=$ETC/certs/.pfx_password
DATA=/var/lib/krill
WORK=$(mktemp -d /tmp/krill-deb-test.XXXXXX)
DPKG_LOG=$WORK/dpkg.log
USER_EXISTED=no
SERVER_PID=
FAILURES=0
CHECKS=0

say() { printf '== %s\n' "$*"; }

pass() { CHECKS=$((CHECKS + 1)); printf '  ok   %s\n' "$*"; }

fail() {
    CHECKS=$((CHECKS + 1))
    FAILURES=$((FAILURES + 1))
    printf '  FAIL %s\n' "$*"
}

# check DESCRIPTION COMMAND...: runs COMMAND, records pass or fail.
check() {
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}

die() {
    printf 'test-deb: %s\n' "$*" >&2
    exit 2
}

cleanup() {
    local status=$?
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if dpkg-query -W -f='${db:Status-Status}' krill 2>/dev/null | grep -qv '^not-installed$'; then
        dpkg --purge krill >>"$DPKG_LOG" 2>&1 || true
    fi
    if [ "$USER_EXISTED" = no ] && getent passwd krill >/dev/null; then
        userdel krill || true
    fi
    if getent group krill >/dev/null && [ "$USER_EXISTED" = no ]; then
        groupdel krill 2>/dev/null || true
    fi
    rm -rf "$WORK"
    exit "$status"
}

# --- tools -------------------------------------------------------------

ensure_tools() {
    local missing=()
    command -v shellcheck >/dev/null || missing+=(shellcheck)
    command -v lintian >/dev/null || missing+=(lintian)
    command -v systemd-analyze >/dev/null || missing+=(systemd)
    command -v curl >/dev/null || missing+=(curl)
    command -v strace >/dev/null || missing+=(strace)
    command -v dpkg-shlibdeps >/dev/null || missing+=(dpkg-dev)
    if [ "${#missing[@]}" -gt 0 ]; then
        say "installing ${missing[*]}"
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
    if ! cargo deb --version >/dev/null 2>&1; then
        say "installing cargo-deb"
        cargo install cargo-deb --locked
    fi
}

# --- packages ----------------------------------------------------------

V1=
V2=
DEB1=
DEB2=

build_packages() {
    local base
    base=$(cargo metadata --no-deps --format-version 1 --manifest-path "$REPO/Cargo.toml" |
        grep -o '"name":"krill","version":"[^"]*"' | sed 's/.*"version":"\([^"]*\)"/\1/')
    [ -n "$base" ] || die "cannot read the krill crate's version from Cargo.toml"
    V1="$base-1"
    # A later version with the same binary: what dpkg sees as an upgrade.
    V2="$base+debtest-1"
    DEB1=$DEB_DIR/krill_${V1}_test.deb
    DEB2=$DEB_DIR/krill_${V2}_test.deb
    if [ "${KRILL_DEB_SKIP_BUILD:-0}" = 1 ]; then
        say "packaging the already built binary as $V1 and $V2"
        (cd "$REPO" && cargo deb -p krill --no-build --deb-version "$V1" -o "$DEB1" >/dev/null)
    else
        say "building krill $V1 (cargo deb)"
        (cd "$REPO" && cargo deb -p krill --deb-version "$V1" -o "$DEB1" >/dev/null)
    fi
    (cd "$REPO" && cargo deb -p krill --no-build --deb-version "$V2" -o "$DEB2" >/dev/null)
}

# dpkg with its output kept for the "key never printed" check. Waits for
# the dpkg lock instead of failing when another dpkg is running.
dpkg_do() {
    local out=$WORK/dpkg-last.log tries=0
    while true; do
        if dpkg "$@" >"$out" 2>&1; then
            cat "$out" >>"$DPKG_LOG"
            return 0
        fi
        cat "$out" >>"$DPKG_LOG"
        if grep -q 'lock' "$out" && [ "$tries" -lt 60 ]; then
            tries=$((tries + 1))
            sleep 2
            continue
        fi
        sed 's/^/  dpkg: /' "$out"
        return 1
    done
}

krillc_quiet() { /usr/bin/krillc "$@" >>"$WORK/krillc.log" 2>&1; }

user_exists() { getent passwd krill >/dev/null; }
group_exists() { getent group krill >/dev/null; }

reconfigure() { dpkg-reconfigure -f noninteractive krill >>"$DPKG_LOG" 2>&1; }

# --- facts about files -------------------------------------------------

mode_owner() { stat -c '%a %U:%G' "$1"; }

has() {
    local path=$1 want=$2 got
    got=$(mode_owner "$path" 2>/dev/null || echo missing)
    if [ "$got" = "$want" ]; then
        pass "$path is $want"
    else
        fail "$path is $got, want $want"
    fi
}

digest() { sha256sum <"$1" | cut -d' ' -f1; }

key_is_well_formed() {
    [ "$(stat -c %s "$KEY")" = 37 ] &&
        grep -Eqx '[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}' "$KEY"
}

key_layout_is_exact() {
    has "$ETC" "755 root:root"
    has "$ETC/credentials" "700 krill:krill"
    has "$KEY" "400 krill:krill"
    check "the key is a v4 UUID, 37 bytes with its newline" key_is_well_formed
    has "$ETC/certs" "755 root:root"
    has "$CERT" "644 root:root"
    has "$CERT_KEY" "600 krill:krill"
    has "$PFX" "644 root:root"
    has "$PFX_PASSWORD" "600 krill:krill"
    has "$DATA" "750 krill:krill"
}

# True when the current key appears nowhere in what dpkg printed.
key_never_printed() { ! grep -qF -f "$KEY" "$DPKG_LOG"; }

# --- static checks -----------------------------------------------------

static_checks() {
    say "shellcheck"
    check "maintainer scripts pass shellcheck" \
        shellcheck -s sh "$PKG_DIR/preinst" "$PKG_DIR/postinst" "$PKG_DIR/prerm" "$PKG_DIR/postrm"
    check "this script passes shellcheck" shellcheck "$0"
    local script
    for script in preinst postinst prerm postrm; do
        check "$script is POSIX sh with set -e" \
            grep -q '^set -e$' "$PKG_DIR/$script"
        check "$script starts with #!/bin/sh" \
            test "$(head -n 1 "$PKG_DIR/$script")" = "#!/bin/sh"
    done

    say "lintian $DEB1"
    lintian --fail-on error "$DEB1" >"$WORK/lintian.log" 2>&1 || true
    grep -v 'running with root privileges' "$WORK/lintian.log" | sed 's/^/  lintian: /' || true
    check "lintian reports no error" bash -c "! grep -q '^E:' '$WORK/lintian.log'"
    check "lintian reports no warning that is not overridden" \
        bash -c "! grep -q '^W:' '$WORK/lintian.log'"

    say "package contents"
    dpkg-deb -c "$DEB1" >"$WORK/contents"
    local path
    for path in ./usr/bin/krill ./usr/bin/krillc ./usr/lib/systemd/system/krill.service \
        ./etc/krill/krill.toml ./usr/share/man/man1/krill.1.gz ./usr/share/man/man1/krillc.1.gz \
        ./usr/share/doc/krill/copyright ./usr/share/doc/krill/debian.md; do
        check "package holds $path" grep -q " $path\$" "$WORK/contents"
    done
    check "krill.toml is a conffile" \
        bash -c "dpkg-deb --ctrl-tarfile '$DEB1' | tar -xO ./conffiles | grep -qx /etc/krill/krill.toml"
    check "every setting krill.toml shows, uncommented, is accepted by krill serve" \
        default_settings_are_valid
    local program
    for program in krill krillc; do
        check "$program.1 describes exactly the subcommands of $program --help" \
            man_page_is_complete "$program"
    done
}

# The default krill.toml shows each setting as a commented line. With all
# of them uncommented the server must still start: no unknown name, no
# value out of range, so the file documents exactly what the server reads.
default_settings_are_valid() {
    local dir=$WORK/settings port='' pid _
    mkdir -p "$dir/etc"
    sed -n 's/^#\([a-z0-9_]* = .*\)$/\1/p; s/^#\(\[[a-z]*\]\)$/\1/p' "$PKG_DIR/krill.toml" \
        >"$dir/etc/krill.toml"
    grep -q '^\[limits\]$' "$dir/etc/krill.toml" || return 1
    "$REPO/target/release/krill" --etc-dir "$dir/etc" --data-dir "$dir/data" init >/dev/null || return 1
    "$REPO/target/release/krill" --etc-dir "$dir/etc" --data-dir "$dir/data" \
        serve --listen 127.0.0.1:0 >/dev/null 2>"$dir/log" &
    pid=$!
    for _ in $(seq 1 50); do
        port=$(sed -n 's/.*listening address=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$dir/log")
        [ -n "$port" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    [ -n "$port" ] || { sed 's/^/  serve: /' "$dir/log"; return 1; }
}

# A man page's COMMANDS section and the program's --help list the same
# subcommands, so the page neither misses nor invents one.
man_page_is_complete() {
    local name=$1 bin=$REPO/target/release/$1 from_help from_page
    [ -x "$bin" ] || return 1
    from_help=$("$bin" --help | sed -n '/^Commands:/,/^$/p' |
        awk 'NR > 1 && NF && $1 != "help" { print $1 }' | sort)
    from_page=$(awk '/^\.SH COMMANDS/ { on = 1; next } /^\.SH/ { on = 0 }
        on && tp && /^\.B / { print $2 } { tp = ($0 == ".TP") }' \
        "$PKG_DIR/man/$name.1" | sort)
    if [ "$from_help" != "$from_page" ]; then
        echo "  $name --help lists: $(echo "$from_help" | tr '\n' ' ')"
        echo "  $name.1 describes:  $(echo "$from_page" | tr '\n' ' ')"
        return 1
    fi
}

# --- the unit ----------------------------------------------------------

unit_checks() {
    local unit=/usr/lib/systemd/system/krill.service
    say "systemd-analyze on the installed $unit"
    check "systemd-analyze verify passes" \
        systemd-analyze verify --man=no "$unit"
    systemd-analyze security --offline=true "$unit" >"$WORK/security.log" 2>&1 || true
    local score
    score=$(sed -n 's/.*Overall exposure level for krill.service: \([0-9.]*\).*/\1/p' "$WORK/security.log")
    echo "  systemd-analyze security: exposure ${score:-unknown}"
    check "exposure score is at most 2.0 (got ${score:-none})" \
        awk -v s="${score:-99}" 'BEGIN { exit !(s <= 2.0) }'
    local option
    # shellcheck disable=SC2016 # $MAINPID is systemd's, not ours to expand
    for option in "User=krill" "Group=krill" "Type=notify" "ExecStart=/usr/bin/krill serve" \
        "Restart=on-failure" 'ExecReload=/bin/kill -HUP $MAINPID' "NoNewPrivileges=yes" \
        "ProtectSystem=strict" "ReadWritePaths=/var/lib/krill" "CapabilityBoundingSet="; do
        check "unit has $option" grep -qxF "$option" "$unit"
    done
}

# --- the running server ------------------------------------------------

serve_and_curl() {
    say "the installed krill serve, run as krill, answers the reference curl"
    local log=$WORK/serve.log port=''
    # setpriv execs the server itself, so $! is the server's pid (runuser
    # would stay in between as a root parent).
    setpriv --reuid=krill --regid=krill --init-groups --inh-caps=-all \
        /usr/bin/krill serve --listen 127.0.0.1:0 >"$WORK/serve.out" 2>"$log" &
    SERVER_PID=$!
    local _
    for _ in $(seq 1 100); do
        port=$(sed -n 's/.*listening address=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -n 1)
        [ -n "$port" ] && break
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$port" ]; then
        fail "server started (log follows)"
        sed 's/^/  serve: /' "$log"
        return
    fi
    pass "server listens on 127.0.0.1:$port as krill"
    check "server runs as the krill user" \
        test "$(stat -c %U "/proc/$SERVER_PID")" = krill

    local status
    # The reference document's command, minus sudo (we are root).
    status=$(curl -sS -o "$WORK/body" -w '%{http_code}' --cacert "$CERT" \
        -H "X-API-Key: $(cat "$KEY")" "https://localhost:$port/api/nodes")
    check "curl with the key gets 200 (got $status)" test "$status" = 200
    status=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$CERT" \
        "https://localhost:$port/api/nodes")
    check "curl without the key gets 401 (got $status)" test "$status" = 401

    # The packaged client: trust once, then list nodes with the key file.
    local client_dir=$WORK/krillc
    check "krillc trust pins the server's certificate" \
        krillc_quiet --config-dir "$client_dir" trust --yes "https://localhost:$port"
    check "krillc nodes list with the key file succeeds" \
        krillc_quiet --config-dir "$client_dir" --server "https://localhost:$port" \
        --api-key-file "$KEY" nodes list

    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=
    check "the server log never shows the key" bash -c "! grep -qF -f '$KEY' '$log' '$WORK/serve.out'"
}

# --- the system call filter ------------------------------------------

# The system calls the unit's SystemCallFilter= lines allow: every name in
# the allowed sets minus every name in the "~" (denied) sets, expanded
# with systemd's own group table.
allowed_syscalls() {
    local unit=$1 allow deny
    allow=$(sed -n 's/^SystemCallFilter=\([^~].*\)/\1/p' "$unit" | tr '\n' ' ')
    deny=$(sed -n 's/^SystemCallFilter=~\(.*\)/\1/p' "$unit" | tr '\n' ' ')
    systemd-analyze syscall-filter --no-pager 2>/dev/null | awk -v allow="$allow" -v deny="$deny" '
        function expand(name, into,   i) {
            if (name !~ /^@/) { into[name] = 1; return }
            for (i = 1; i <= count[name]; i++) expand(member[name, i], into)
        }
        /^@/ { group = $1; next }
        group != "" && NF && $1 !~ /^#/ { member[group, ++count[group]] = $1 }
        END {
            n = split(allow, a, " "); for (i = 1; i <= n; i++) expand(a[i], ok)
            n = split(deny, d, " "); for (i = 1; i <= n; i++) expand(d[i], no)
            for (s in ok) if (!(s in no)) print s
        }' | sort -u
}

# Runs the installed server as krill under strace through a session (the
# reference curl, a write, SIGHUP, a key change picked up by the watcher,
# SIGTERM) and checks that each system call it made is one the unit
# allows. systemd is not running here, so this is how the filter is tested.
syscalls_within_filter() {
    local unit=/usr/lib/systemd/system/krill.service
    say "every system call of a server session is allowed by krill.service"
    local log=$WORK/strace-serve.log trace=$WORK/strace.txt port='' pid=''
    strace -f -qq -u krill -o "$trace" \
        /usr/bin/krill serve --listen 127.0.0.1:0 >/dev/null 2>"$log" &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        port=$(sed -n 's/.*listening address=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -n 1)
        [ -n "$port" ] && break
        sleep 0.1
    done
    pid=$(cat "$DATA/krill.pid" 2>/dev/null || true)
    if [ -z "$port" ] || [ -z "$pid" ]; then
        fail "server started under strace"
        sed 's/^/  serve: /' "$log"
        return
    fi
    local url=https://localhost:$port/api/nodes
    curl -sS -o /dev/null --cacert "$CERT" -H "X-API-Key: $(cat "$KEY")" "$url"
    curl -sS -o /dev/null --cacert "$CERT" -H "X-API-Key: $(cat "$KEY")" \
        -H 'Content-Type: application/json' -d '{"type":"KrillApp.DataPoint","name":"t"}' "$url"
    kill -HUP "$pid"
    sleep 0.3
    /usr/bin/krill key generate >/dev/null 2>&1
    sleep 1
    local status
    status=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$CERT" -H "X-API-Key: $(cat "$KEY")" "$url")
    check "the server picked up the new key (got $status)" test "$status" = 200
    kill -TERM "$pid"
    wait "$SERVER_PID" || true
    SERVER_PID=

    allowed_syscalls "$unit" >"$WORK/allowed"
    awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^[a-z0-9_]+\(/) { sub(/\(.*/, "", $i); print $i; break } }' \
        "$trace" | sort -u >"$WORK/used"
    local denied
    denied=$(comm -23 "$WORK/used" "$WORK/allowed" | tr '\n' ' ' || true)
    echo "  $(wc -l <"$WORK/used") distinct system calls, $(wc -l <"$WORK/allowed") allowed"
    check "the unit's filter allows all of them${denied:+ (denied: $denied)}" test -z "$denied"
}

# --- the file-system sandbox -----------------------------------------

# Runs the installed server the way krill.service confines it, as far as
# that works without systemd: in a private mount namespace where / is
# read-only except /var/lib/krill (ProtectSystem=strict, ReadWritePaths=),
# with an empty /tmp (PrivateTmp=) and empty read-only /root and /home
# (ProtectHome=), as krill with no_new_privs. A server that wrote anywhere
# else (a pid file in /run, a temporary in /etc) would fail here.
serve_in_read_only_system() {
    say "the server works with / read-only except $DATA (as ProtectSystem=strict)"
    local log=$WORK/sandbox.log port='' pid=''
    # shellcheck disable=SC2016 # the inner script expands its own variables
    unshare --mount --propagation private sh -c '
        set -e
        mount -o remount,bind,ro /
        if touch /usr/.krill-ro-probe 2>/dev/null; then
            rm -f /usr/.krill-ro-probe
            echo "sandbox: / is still writable" >&2
            exit 3
        fi
        mount --bind "$1" "$1"
        mount -o remount,bind,rw "$1"
        mount -t tmpfs -o mode=1777 tmpfs /tmp
        mount -t tmpfs -o ro,mode=755 tmpfs /root
        mount -t tmpfs -o ro,mode=755 tmpfs /home
        exec setpriv --reuid=krill --regid=krill --init-groups --inh-caps=-all \
            --no-new-privs /usr/bin/krill serve --listen 127.0.0.1:0
    ' sandbox "$DATA" >/dev/null 2>"$log" &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        port=$(sed -n 's/.*listening address=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -n 1)
        [ -n "$port" ] && break
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$port" ]; then
        fail "server started in the read-only sandbox (log follows)"
        sed 's/^/  serve: /' "$log"
        return
    fi
    pass "server listens on 127.0.0.1:$port in the read-only sandbox"
    local url=https://localhost:$port/api/nodes status
    status=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$CERT" -H "X-API-Key: $(cat "$KEY")" \
        -H 'Content-Type: application/json' -d '{"type":"KrillApp.DataPoint","name":"s"}' "$url")
    check "a write to the store succeeds (got $status)" test "$status" = 201
    /usr/bin/krill key rotate >/dev/null 2>&1
    sleep 0.5
    status=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$CERT" -H "X-API-Key: $(cat "$KEY")" "$url")
    check "krill key rotate reaches the sandboxed server (got $status)" test "$status" = 200
    pid=$(cat "$DATA/krill.pid" 2>/dev/null || echo "$SERVER_PID")
    kill -TERM "$pid"
    wait "$SERVER_PID" || true
    SERVER_PID=
    check "it stopped cleanly, without errors in its log" bash -c "! grep -q ' ERROR ' '$log'"
}

# --- the dpkg events ---------------------------------------------------

first_install() {
    say "first install of $V1"
    check "dpkg -i succeeds without a running systemd" dpkg_do -i "$DEB1"
    check "the krill user exists" user_exists
    check "the krill user has no login shell" \
        test "$(getent passwd krill | cut -d: -f7)" = /usr/sbin/nologin
    check "the krill user is a system user" \
        test "$(id -u krill)" -lt 1000
    check "the krill group exists" group_exists
    key_layout_is_exact
    check "no home files for krill (only krill.db* in $DATA)" \
        bash -c "! find '$DATA' -mindepth 1 -name '.*' | grep -q ."
    check "postinst says where the key is and how to view it" \
        grep -qF "sudo cat $KEY" "$WORK/dpkg-last.log"
    check "dpkg output never shows the key" key_never_printed
    check "unit enabled (wants symlink) even without a running systemd" \
        test -L /etc/systemd/system/multi-user.target.wants/krill.service
}

reinstall_same_version() {
    say "reinstall of the same version $V1"
    local key_before cert_before
    key_before=$(digest "$KEY")
    cert_before=$(digest "$CERT")
    # Hold the old key's inode open to see what happened to its bytes.
    exec 3<"$KEY"
    check "dpkg -i of the same version succeeds" dpkg_do -i "$DEB1"
    check "the key changed" test "$(digest "$KEY")" != "$key_before"
    check "the old key's inode still holds at least 37 bytes" \
        test "$(stat -L -c %s /proc/self/fd/3)" -ge 37
    check "the old key's bytes were overwritten" \
        test "$(head -c 37 <&3 | sha256sum | cut -d' ' -f1)" != "$key_before"
    exec 3<&-
    check "the certificate was kept" test "$(digest "$CERT")" = "$cert_before"
    key_layout_is_exact
    check "no leftovers beside the key" \
        test "$(find "$ETC/credentials" -mindepth 1 | wc -l)" = 1
    check "dpkg output never shows the new key" key_never_printed
    check "the reinstall mark is gone" test ! -e "$ETC/.reinstall-pending"
}

expect_key_kept() {
    local what=$1
    shift
    local key_before cert_before
    key_before=$(digest "$KEY")
    cert_before=$(digest "$CERT")
    check "$what: dpkg succeeds" "$@"
    check "$what: the key was kept" test "$(digest "$KEY")" = "$key_before"
    check "$what: the certificate was kept" test "$(digest "$CERT")" = "$cert_before"
}

upgrade_and_downgrade() {
    say "upgrade $V1 -> $V2"
    expect_key_kept "upgrade" dpkg_do -i "$DEB2"
    check "version $V2 is installed" \
        test "$(dpkg-query -W -f='${Version}' krill)" = "$V2"
    key_layout_is_exact

    say "downgrade $V2 -> $V1"
    expect_key_kept "downgrade" dpkg_do -i "$DEB1"
    check "version $V1 is installed" \
        test "$(dpkg-query -W -f='${Version}' krill)" = "$V1"

    if command -v dpkg-reconfigure >/dev/null; then
        say "dpkg-reconfigure (postinst configure again)"
        expect_key_kept "dpkg-reconfigure" reconfigure
    fi

    say "key deleted, then upgrade $V1 -> $V2"
    local cert_before
    cert_before=$(digest "$CERT")
    rm -f "$KEY"
    check "upgrade succeeds" dpkg_do -i "$DEB2"
    key_layout_is_exact
    check "the certificate was kept" test "$(digest "$CERT")" = "$cert_before"
    check "dpkg output never shows the regenerated key" key_never_printed
}

remove_then_purge() {
    say "remove"
    local key_before cert_before
    key_before=$(digest "$KEY")
    cert_before=$(digest "$CERT")
    check "dpkg -r succeeds" dpkg_do -r krill
    check "the binary is gone" test ! -e /usr/bin/krill
    check "the key was kept" test "$(digest "$KEY")" = "$key_before"
    check "the certificate was kept" test "$(digest "$CERT")" = "$cert_before"
    check "the data directory was kept" test -d "$DATA"
    key_layout_is_exact

    say "install $V2 again after remove: a new installation, the key is kept"
    expect_key_kept "install after remove" dpkg_do -i "$DEB2"

    say "purge"
    key_before=$(digest "$KEY")
    local cert_key_before
    cert_key_before=$(digest "$CERT_KEY")
    local password_before
    password_before=$(digest "$PFX_PASSWORD")
    exec 3<"$KEY" 4<"$CERT_KEY" 5<"$PFX_PASSWORD"
    check "dpkg -P succeeds" dpkg_do -P krill
    check "the key file was unlinked" test ! -e "$KEY"
    check "the key's inode still holds at least 37 bytes" \
        test "$(stat -L -c %s /proc/self/fd/3)" -ge 37
    check "the key's bytes were overwritten before unlink" \
        test "$(head -c 37 <&3 | sha256sum | cut -d' ' -f1)" != "$key_before"
    check "the certificate key's bytes were overwritten before unlink" \
        bash -c "test \"\$(sha256sum <&4 | cut -d' ' -f1)\" != '$cert_key_before' && ! grep -aq 'PRIVATE KEY' /proc/self/fd/4"
    check "the krill.pfx password's bytes were overwritten before unlink" \
        test "$(sha256sum <&5 | cut -d' ' -f1)" != "$password_before" -a "$(stat -L -c %s /proc/self/fd/5)" -gt 0
    exec 3<&- 4<&- 5<&-
    check "$ETC is gone" test ! -e "$ETC"
    check "$DATA is gone" test ! -e "$DATA"
    check "the package is not installed, no config files left" \
        bash -c "! dpkg-query -W -f='\${db:Status-Status}' krill 2>/dev/null | grep -qv '^not-installed\$'"
    local left
    for left in /usr/bin/krill /usr/bin/krillc /usr/lib/systemd/system/krill.service \
        /etc/systemd/system/multi-user.target.wants/krill.service \
        /etc/systemd/system/krill.service \
        /var/lib/systemd/deb-systemd-helper-enabled/krill.service.dsh-also \
        /var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/krill.service \
        /var/lib/systemd/deb-systemd-helper-masked/krill.service \
        /usr/share/doc/krill /usr/share/man/man1/krill.1.gz /usr/share/man/man1/krillc.1.gz; do
        check "nothing left at $left" test ! -e "$left" -a ! -L "$left"
    done
}

# The usual path, `apt remove` then later `apt purge`: purge runs from the
# config-files state, with the binary long gone.
purge_after_remove() {
    say "install, remove, then purge from the config-files state"
    check "dpkg -i succeeds" dpkg_do -i "$DEB2"
    key_layout_is_exact
    check "dpkg -r succeeds" dpkg_do -r krill
    local key_before
    key_before=$(digest "$KEY")
    exec 3<"$KEY"
    check "dpkg -P succeeds" dpkg_do -P krill
    check "the key's bytes were overwritten before unlink" \
        test "$(head -c 37 <&3 | sha256sum | cut -d' ' -f1)" != "$key_before"
    exec 3<&-
    check "$ETC is gone" test ! -e "$ETC"
    check "$DATA is gone" test ! -e "$DATA"
    check "the krill user stays (see docs/debian.md)" user_exists
}

# --- main --------------------------------------------------------------

main() {
    [ "$(id -u)" = 0 ] || die "run as root (it installs the package with dpkg): sudo $0"
    if dpkg-query -W -f='${db:Status-Status}' krill 2>/dev/null | grep -qv '^not-installed$'; then
        die "krill is installed here; purge it first (sudo dpkg -P krill) or test elsewhere"
    fi
    [ ! -e "$ETC" ] || die "$ETC exists; this test needs a machine without krill"
    [ ! -e "$DATA" ] || die "$DATA exists; this test needs a machine without krill"
    getent passwd krill >/dev/null && USER_EXISTED=yes
    trap cleanup EXIT
    : >"$DPKG_LOG"

    ensure_tools
    build_packages
    static_checks
    first_install
    unit_checks
    serve_and_curl
    syscalls_within_filter
    serve_in_read_only_system
    reinstall_same_version
    upgrade_and_downgrade
    serve_and_curl
    remove_then_purge
    purge_after_remove

    echo
    # The plain closing line CI reads: "N passed, N failed".
    echo "test-deb: $((CHECKS - FAILURES)) passed, $FAILURES failed"
    [ "$FAILURES" -eq 0 ] || exit 1
}

main "$@"
