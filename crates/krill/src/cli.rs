//! The `krill` command line (SPEC §2): argument definitions and dispatch.
//! Each command's work lives in its own module; this file only wires flags,
//! environment and `krill.toml` together and reports errors.

use std::error::Error;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::server::{ServeOptions, Server};
use crate::settings::{self, EtcLayout, SettingsFile};
use crate::{cert, init};

type CmdResult = Result<(), Box<dyn Error>>;

/// Krill: a self-hosted automation server with an HTTPS API guarded by a
/// per-install API key.
#[derive(Debug, Parser)]
#[command(name = "krill", version)]
pub struct Cli {
    /// Configuration directory (key, certificates, krill.toml).
    #[arg(long, global = true, env = "KRILL_ETC_DIR", value_name = "DIR",
          default_value = settings::DEFAULT_ETC_DIR)]
    etc_dir: PathBuf,

    /// Data directory (the node store). Default: `data_dir` in krill.toml,
    /// else /var/lib/krill.
    #[arg(long, global = true, env = "KRILL_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create directories, API key and TLS certificate where missing
    /// (running it again changes nothing).
    Init(InitArgs),
    /// Serve the HTTPS API.
    Serve(ServeArgs),
    /// Manage the API key (ETC_DIR/credentials/api_key).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Manage the TLS certificate.
    #[command(subcommand)]
    Cert(CertCommand),
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Write a new random key, replacing the old one (its bytes overwritten);
    /// prints the new key.
    Generate,
    /// Print the key (needs read access to the key file).
    Show,
    /// Generate a new key and tell the running server to reload it; prints
    /// the new key.
    Rotate,
    /// Install a custom key, read from standard input (`-`, the default) or
    /// given as an argument (visible to other users). Weak keys are refused
    /// unless --force.
    Set(SetArgs),
    /// Diagnose the key file, its modes, owner and format; exit 0 only when
    /// healthy.
    Check,
    /// Restore directory mode 0700, file mode 0400 and owner krill:krill
    /// (where that user exists).
    FixPermissions,
    /// Overwrite the key file with random bytes, then remove it.
    Shred,
}

#[derive(Debug, Args)]
struct SetArgs {
    /// Accept a key that is short or lacks letters, digits or other
    /// characters (still warns).
    #[arg(long)]
    force: bool,

    /// The key, or `-` to read it from standard input (the default).
    #[arg(value_name = "KEY|-", default_value = "-")]
    key: String,
}

#[derive(Debug, Subcommand)]
enum CertCommand {
    /// Make a new self-signed certificate, key and krill.pfx bundle.
    Generate(CertGenerateArgs),
    /// Print the certificate's path, SHA-256 fingerprint, names and validity.
    Show,
}

#[derive(Debug, Args)]
struct CertGenerateArgs {
    /// Extra DNS name or IP address to cover (repeatable).
    #[arg(long = "hostname", value_name = "NAME")]
    hostnames: Vec<String>,

    /// Replace an existing certificate (clients must trust the new one).
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct InitArgs {
    /// Extra DNS name or IP address for a new certificate (repeatable).
    #[arg(long = "hostname", value_name = "NAME")]
    hostnames: Vec<String>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address and port to listen on. Default: `listen` in krill.toml,
    /// else [::]:8442.
    #[arg(long, env = "KRILL_LISTEN", value_name = "ADDR:PORT", value_parser = parse_listen)]
    listen: Option<SocketAddr>,

    /// Do what `krill init` does first, then print the key file's path and a
    /// ready curl command.
    #[arg(long)]
    init: bool,

    /// With --init: extra name for a new certificate (repeatable).
    #[arg(long = "hostname", value_name = "NAME")]
    hostnames: Vec<String>,
}

/// `--listen` / `KRILL_LISTEN`: an IP address and a port.
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!(
            "`{text}` (from --listen or KRILL_LISTEN) is not an IP address and port; write \
             for example 127.0.0.1:8442, [::1]:8442 or [::]:8442 (host names such as \
             localhost are not accepted here)"
        )
    })
}

/// Parses the command line, runs the command, and turns an error into one
/// sentence on stderr and a non-zero exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("krill: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("KRILL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn run(cli: Cli) -> CmdResult {
    let layout = EtcLayout::new(&cli.etc_dir);
    let file = SettingsFile::load(&layout)?;
    let data_dir = settings::resolve_data_dir(cli.data_dir.as_deref(), &file);
    match cli.command {
        Command::Init(args) => {
            let report = init::run(&layout, &data_dir, &args.hostnames)?;
            print!("{report}");
            if report.created_key() {
                println!(
                    "The API key is in {}; view it with: sudo cat {}",
                    layout.key_file().display(),
                    shell_quote(&layout.key_file())
                );
            }
            Ok(())
        }
        Command::Serve(args) => serve(layout, data_dir, &file, args),
        Command::Key(command) => key_command(&layout, &data_dir, command),
        Command::Cert(CertCommand::Generate(args)) => {
            let made = cert::generate_files(&layout, &args.hostnames, args.force)?;
            println!("wrote {}", made.cert_path.display());
            print!("{}", made.info);
            println!(
                "A running server presents it after `sudo systemctl reload krill` (SIGHUP); \
                 clients that pinned the old one run `krillc trust https://HOST:8442` again."
            );
            Ok(())
        }
        Command::Cert(CertCommand::Show) => {
            let info = cert::show(&layout)?;
            println!("certificate:           {}", layout.cert_file().display());
            print!("{info}");
            if layout.pfx_file().exists() {
                println!(
                    "PKCS#12 bundle:        {} (password in {})",
                    layout.pfx_file().display(),
                    layout.pfx_password_file().display()
                );
            }
            Ok(())
        }
    }
}

fn key_command(layout: &EtcLayout, data_dir: &Path, command: KeyCommand) -> CmdResult {
    use crate::key::commands::{self, KeySource};
    match command {
        KeyCommand::Generate => commands::generate(layout)?,
        KeyCommand::Show => commands::show(layout)?,
        KeyCommand::Rotate => commands::rotate(layout, data_dir)?,
        KeyCommand::Set(args) => {
            let source = if args.key == "-" {
                KeySource::Stdin
            } else {
                KeySource::Argument(zeroize::Zeroizing::new(args.key))
            };
            commands::set(layout, source, args.force)?;
        }
        KeyCommand::Check => commands::check(layout)?,
        KeyCommand::FixPermissions => commands::fix_permissions(layout)?,
        KeyCommand::Shred => commands::shred(layout)?,
    }
    Ok(())
}

fn serve(layout: EtcLayout, data_dir: PathBuf, file: &SettingsFile, args: ServeArgs) -> CmdResult {
    if args.init {
        let report = init::run(&layout, &data_dir, &args.hostnames)?;
        print!("{report}");
    }
    let listen_is_default = args.listen.is_none() && file.listen.is_none();
    let default_listen = settings::DEFAULT_LISTEN.parse::<SocketAddr>()?;
    let options = ServeOptions {
        listen: args.listen.or(file.listen).unwrap_or(default_listen),
        listen_is_default,
        tls: file.tls.unwrap_or(true),
        limits: file.limits.clone(),
        layout,
        data_dir,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let show_hint = args.init;
        let layout = options.layout.clone();
        let tls = options.tls;
        let server = Server::bind(options).await?;
        if show_hint {
            print_quick_start(&layout, server.local_addr()?, tls);
        }
        server.run().await?;
        Ok(())
    })
}

/// The quick-start lines: where the key is and a curl command that works
/// as printed (it reads the key from the file, so the key itself is never
/// printed or kept in shell history).
fn print_quick_start(layout: &EtcLayout, addr: SocketAddr, tls: bool) {
    let key = absolute(&layout.key_file());
    let cert = absolute(&layout.cert_file());
    let host = if addr.ip().is_unspecified() || addr.ip().is_loopback() {
        "localhost".to_owned()
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    println!("API key file: {}", key.display());
    if tls {
        println!(
            "Try: curl --cacert {} -H \"X-API-Key: $(cat {})\" https://{host}:{}/api/nodes",
            shell_quote(&cert),
            shell_quote(&key),
            addr.port()
        );
    } else {
        println!(
            "Try: curl -H \"X-API-Key: $(cat {})\" http://{host}:{}/api/nodes",
            shell_quote(&key),
            addr.port()
        );
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

/// Quotes a path for a POSIX shell when it holds anything but safe
/// characters.
pub fn shell_quote(path: &Path) -> String {
    let text = path.display().to_string();
    let safe = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%".contains(&b));
    if safe && !text.is_empty() {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote(Path::new("/etc/krill/x")), "/etc/krill/x");
        assert_eq!(shell_quote(Path::new("/a b/it's")), r"'/a b/it'\''s'");
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
