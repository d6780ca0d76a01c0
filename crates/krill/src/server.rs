//! `krill serve`: loading what the server needs, the listener, signals,
//! and an orderly stop. One connection's life is in [`crate::connection`];
//! what each request passes through is in [`crate::gate`].

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::connection::{self, Shared};
use crate::gate::Gate;
use crate::key::file::{self as key_file, KeyFileError};
use crate::metrics::Metrics;
use crate::pidfile::{self, PidFile};
use crate::routes::{self, AppState};
use crate::settings::{EtcLayout, Limits};
use crate::slot::Slot;
use crate::store::config as store_config;
use crate::store::{Store, StoreError};
use crate::throttle::{Throttle, ThrottlePolicy, Transition};
use crate::tls::{self, CertSlot, Identity, TlsError};
use crate::{reload, watch as key_watch};

/// How long requests in flight get to finish on SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often ended throttle blocks are logged.
const THROTTLE_SWEEP: Duration = Duration::from_secs(1);
/// At most one "connection limit reached" warning per this long.
const LIMIT_WARNING_EVERY: Duration = Duration::from_secs(60);

/// What `krill serve` needs to know.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub layout: EtcLayout,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// True when `listen` is the built-in default (then an IPv6-less host
    /// falls back to IPv4).
    pub listen_is_default: bool,
    pub tls: bool,
    pub limits: Limits,
}

/// Why the server could not start.
#[derive(Debug)]
pub enum ServeError {
    Key(KeyFileError),
    Tls(TlsError),
    TlsConfig(rustls::Error),
    Store(StoreError),
    Bind(SocketAddr, io::Error),
    Signals(io::Error),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Key(e) => e.fmt(f),
            ServeError::Tls(e) => e.fmt(f),
            ServeError::TlsConfig(e) => write!(f, "cannot set up TLS: {e}"),
            ServeError::Store(e) => e.fmt(f),
            ServeError::Bind(addr, e) => {
                let why = match e.raw_os_error() {
                    Some(libc::EADDRINUSE) => "another program already listens on that port",
                    Some(libc::EACCES) => {
                        "ports below 1024 need root or CAP_NET_BIND_SERVICE; use a higher port"
                    }
                    Some(libc::EADDRNOTAVAIL) => {
                        "no network interface of this machine has that address"
                    }
                    _ => "the system refused it",
                };
                write!(
                    f,
                    "cannot listen on {addr}: {e} ({why}); choose the address with --listen \
                     (or KRILL_LISTEN, or `listen` in krill.toml)"
                )
            }
            ServeError::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
        }
    }
}

impl std::error::Error for ServeError {}

/// A server that has loaded its key, certificate and store and bound its
/// socket, ready to [`run`](Server::run).
pub struct Server {
    options: ServeOptions,
    state: AppState,
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
}

impl Server {
    /// Loads everything and binds. Refuses to start, with a message naming
    /// the file and the fix, when the key file or certificate is unusable.
    pub async fn bind(options: ServeOptions) -> Result<Server, ServeError> {
        let key_path = options.layout.key_file();
        let key = key_file::read(&key_path).map_err(ServeError::Key)?;
        let warnings = key_file::exposure_warnings(&key_path);
        for warning in warnings
            .iter()
            .chain(&key_file::weakness_warning(&key, &key_path))
        {
            tracing::warn!("{warning}");
        }

        let certs = if options.tls {
            let identity = Identity::load(&options.layout).map_err(ServeError::Tls)?;
            Some(Arc::new(CertSlot::new(identity)))
        } else {
            tracing::warn!(
                "TLS is off (tls = false in krill.toml): the API key and all data cross \
                 the network in clear text; remove that setting to serve HTTPS"
            );
            None
        };
        let acceptor = match &certs {
            Some(slot) => {
                let config = tls::server_config(Arc::clone(slot)).map_err(ServeError::TlsConfig)?;
                Some(TlsAcceptor::from(Arc::new(config)))
            }
            None => None,
        };

        let store = Store::open(&options.data_dir).map_err(ServeError::Store)?;
        let config = store
            .call_blocking(|c| store_config::load(c))
            .map_err(ServeError::Store)?;
        let listener = listen(options.listen, options.listen_is_default).await?;
        let policy =
            ThrottlePolicy::new(&config.auth_throttle, options.limits.max_tracked_addresses);
        let state = AppState {
            key: Arc::new(Slot::new(key)),
            certs,
            store,
            config: Arc::new(Slot::new(config)),
            metrics: Arc::new(Metrics::default()),
            throttle: Arc::new(Throttle::new(policy)),
            started: Instant::now(),
        };
        Ok(Server {
            options,
            state,
            listener,
            acceptor,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until SIGTERM or SIGINT, then lets requests in flight finish.
    pub async fn run(self) -> Result<(), ServeError> {
        let Server {
            options,
            state,
            listener,
            acceptor,
        } = self;
        let mut signals = Signals::install().map_err(ServeError::Signals)?;
        let local = listener
            .local_addr()
            .map_err(|e| ServeError::Bind(options.listen, e))?;
        // The pid file lets `krill key rotate` find this server; the watcher
        // picks up a changed key file without any signal.
        let pid_file = match PidFile::create(&options.data_dir) {
            Ok(file) => Some(file),
            Err(e) => {
                tracing::warn!(
                    file = %pidfile::path(&options.data_dir).display(),
                    error = %e,
                    "cannot write the pid file, so `krill key rotate` cannot signal this \
                     server (it still reloads a changed key file by itself)"
                );
                None
            }
        };
        let watcher = key_watch::spawn(state.clone(), options.layout.key_file());
        let sweeper = tokio::spawn(sweep_throttle(state.clone()));
        tracing::info!(address = %local, tls = acceptor.is_some(), "listening");
        notify_service_manager(sd_notify::NotifyState::Ready);

        let (stop, shutdown) = watch::channel(false);
        let limits = options.limits.clone();
        let shared = Arc::new(Shared {
            gate: Gate {
                router: routes::router(state.clone()),
                state: state.clone(),
                limits: limits.clone(),
            },
            http: connection::http_builder(&limits),
            acceptor,
            shutdown,
        });
        // One permit per open connection: the limit, and on shutdown the
        // way to wait until every connection has ended.
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let mut last_limit_warning: Option<Instant> = None;
        let per_address = PerAddress::default();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        // Dual-stack sockets report IPv4 peers as ::ffff:a.b.c.d.
                        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
                        let address_slot = per_address.take(peer.ip(), &limits);
                        let Some(address_slot) = address_slot else {
                            Metrics::bump(&state.metrics.connections_refused);
                            tracing::debug!(%peer, "per-address connection limit reached");
                            drop(tcp);
                            continue;
                        };
                        match Arc::clone(&slots).try_acquire_owned() {
                            Ok(permit) => {
                                let slot = (permit, address_slot);
                                tokio::spawn(connection::serve(Arc::clone(&shared), tcp, peer, slot));
                            }
                            Err(_) => {
                                Metrics::bump(&state.metrics.connections_refused);
                                if last_limit_warning.is_none_or(|t| t.elapsed() > LIMIT_WARNING_EVERY) {
                                    last_limit_warning = Some(Instant::now());
                                    tracing::warn!(
                                        limit = limits.max_connections,
                                        "connection limit reached: closing new connections at \
                                         once (raise limits.max_connections in krill.toml if \
                                         this is legitimate load)"
                                    );
                                }
                                drop(tcp);
                            }
                        }
                    }
                    Err(e) => {
                        // Out of descriptors and the like: survive, retry.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                event = signals.next() => match event {
                    SignalEvent::Reload => reload::reload_all(&state, &options.layout),
                    SignalEvent::Stop => break,
                },
            }
        }

        drop(listener);
        notify_service_manager(sd_notify::NotifyState::Stopping);
        watcher.abort();
        sweeper.abort();
        drop(pid_file);
        tracing::info!("stopping: no new connections, finishing requests in flight");
        let _ = stop.send(true);
        let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
        match tokio::time::timeout(SHUTDOWN_GRACE, slots.acquire_many(all)).await {
            Ok(_) => tracing::info!("stopped"),
            Err(_) => {
                let open = limits.max_connections - slots.available_permits();
                tracing::warn!(
                    "stopped with {open} connection(s) still open after {SHUTDOWN_GRACE:?}; \
                     they were dropped"
                );
            }
        }
        Ok(())
    }
}

/// Tells systemd (`Type=notify` in `krill.service`) about a state change.
/// Does nothing when `NOTIFY_SOCKET` is unset, i.e. outside systemd. A
/// failed notification is logged, not fatal: systemd then times the start
/// out, which says more than a server that refuses to run.
fn notify_service_manager(state: sd_notify::NotifyState<'_>) {
    if let Err(e) = sd_notify::notify(false, &[state]) {
        tracing::warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

/// Open connections per client address (IPv6 by /64), for
/// `limits.max_connections_per_address`.
#[derive(Clone, Default)]
struct PerAddress {
    open: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
}

/// One connection's place under its address's limit; given back on drop.
pub struct AddressSlot {
    open: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
    source: Option<std::net::IpAddr>,
}

impl PerAddress {
    /// A place for a connection from `ip`, or `None` at the limit. Trusted
    /// proxies carry many clients and are not limited.
    fn take(&self, ip: std::net::IpAddr, limits: &Limits) -> Option<AddressSlot> {
        if limits.trusted_proxies.contains(&ip) {
            return Some(AddressSlot {
                open: Arc::clone(&self.open),
                source: None,
            });
        }
        let source = crate::throttle::source_of(ip);
        let mut open = crate::slot::lock(&self.open);
        let count = open.entry(source).or_insert(0);
        if *count >= limits.max_connections_per_address {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            open: Arc::clone(&self.open),
            source: Some(source),
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let Some(source) = self.source else { return };
        let mut open = crate::slot::lock(&self.open);
        if let Some(count) = open.get_mut(&source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&source);
            }
        }
    }
}

/// Logs the end of throttle blocks (and forgets quiet addresses).
async fn sweep_throttle(state: AppState) {
    let mut ticks = tokio::time::interval(THROTTLE_SWEEP);
    loop {
        ticks.tick().await;
        for ended in state.throttle.sweep(Instant::now()) {
            if let Transition::Ended { source } = ended {
                tracing::info!(
                    target: crate::access_log::TARGET,
                    source = %source,
                    "throttle block ended: this address's keys are checked again"
                );
            }
        }
    }
}

async fn listen(addr: SocketAddr, is_default: bool) -> Result<TcpListener, ServeError> {
    match TcpListener::bind(addr).await {
        Ok(listener) => Ok(listener),
        // A host without IPv6 cannot bind [::]; the default then means
        // every IPv4 address instead.
        Err(e) if is_default && e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
            let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port()));
            tracing::warn!("IPv6 is not available here; listening on {v4} instead");
            TcpListener::bind(v4)
                .await
                .map_err(|e| ServeError::Bind(v4, e))
        }
        Err(e) => Err(ServeError::Bind(addr, e)),
    }
}

/// What a signal asks of the server.
enum SignalEvent {
    Reload,
    Stop,
}

struct Signals {
    hangup: Signal,
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    fn install() -> io::Result<Signals> {
        Ok(Signals {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) -> SignalEvent {
        tokio::select! {
            _ = self.hangup.recv() => SignalEvent::Reload,
            _ = self.terminate.recv() => SignalEvent::Stop,
            _ = self.interrupt.recv() => SignalEvent::Stop,
        }
    }
}
