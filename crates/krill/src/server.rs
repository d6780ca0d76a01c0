//! `krill serve`: the listener, TLS, HTTP/1.1 and HTTP/2, the auth gate in
//! front of the router, signals and graceful shutdown.

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::auth::{self, Verdict};
use crate::key::file::{self as key_file, KeyFileError};
use crate::pidfile::{self, PidFile};
use crate::routes::{self, AppState};
use crate::settings::EtcLayout;
use crate::slot::Slot;
use crate::store::config as store_config;
use crate::store::{Store, StoreError};
use crate::tls::{self, CertSlot, Identity, TlsError};
use crate::{access_log, reload, watch};

/// How long a client may take to send its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (request line and headers) accepted.
const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Concurrent HTTP/2 streams per connection.
const MAX_H2_STREAMS: u32 = 128;
/// How long requests in flight get to finish on SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The first byte of every TLS connection (a handshake record).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

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
            ServeError::Bind(addr, e) => write!(
                f,
                "cannot listen on {addr}: {e}; another program may hold that port, so \
                 choose another with --listen (or KRILL_LISTEN, or `listen` in krill.toml)"
            ),
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
        for warning in key_file::exposure_warnings(&key_path) {
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
        let state = AppState {
            key: Arc::new(Slot::new(key)),
            certs,
            store,
            config: Arc::new(Slot::new(config)),
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
        let watcher = watch::spawn(state.clone(), options.layout.key_file());
        tracing::info!(address = %local, tls = acceptor.is_some(), "listening");
        notify_service_manager(sd_notify::NotifyState::Ready);

        let shared = Arc::new(Shared {
            router: routes::router(state.clone()),
            state: state.clone(),
            http: http_builder(),
            acceptor,
        });
        let graceful = GracefulShutdown::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        // Dual-stack sockets report IPv4 peers as ::ffff:a.b.c.d.
                        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
                        let shared = Arc::clone(&shared);
                        let watcher = graceful.watcher();
                        tokio::spawn(serve_connection(shared, tcp, peer, watcher));
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
        drop(pid_file);
        tracing::info!("stopping: no new connections, finishing requests in flight");
        tokio::select! {
            () = graceful.shutdown() => tracing::info!("stopped"),
            () = tokio::time::sleep(SHUTDOWN_GRACE) => {
                tracing::warn!("stopped with requests still in flight after {SHUTDOWN_GRACE:?}");
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

/// What every connection task shares.
struct Shared {
    router: Router,
    state: AppState,
    http: auto::Builder<TokioExecutor>,
    acceptor: Option<TlsAcceptor>,
}

fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_H2_STREAMS)
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    builder
}

async fn serve_connection(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr, watcher: Watcher) {
    let _ = tcp.set_nodelay(true);
    let Some(acceptor) = shared.acceptor.clone() else {
        serve_http(shared, tcp, peer, watcher).await;
        return;
    };

    // A client speaking plain HTTP to the TLS port gets a short answer and
    // a closed connection instead of a hang.
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE_RECORD => {}
        Ok(Ok(1)) => return refuse_plain_http(tcp, peer).await,
        _ => return,
    }
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => serve_http(shared, stream, peer, watcher).await,
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

async fn serve_http<IO>(shared: Arc<Shared>, io: IO, peer: SocketAddr, watcher: Watcher)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service_state = Arc::clone(&shared);
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let shared = Arc::clone(&service_state);
        async move { Ok::<_, Infallible>(gate(&shared, request, peer).await) }
    });
    let connection = shared
        .http
        .serve_connection(TokioIo::new(io), service)
        .into_owned();
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// The auth check, in front of routing: a request without the key never
/// reaches the router.
async fn gate(shared: &Shared, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let verdict = auth::check_request(&request, &shared.state.key.current());
    let response = match verdict {
        Verdict::Denied(denial) => auth::unauthorized(denial),
        Verdict::Public | Verdict::Granted => {
            let request = request.map(Body::new);
            match shared.router.clone().oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
    };
    access_log::record(
        &method,
        &path,
        response.status(),
        started.elapsed(),
        peer,
        verdict,
    );
    response
}

async fn refuse_plain_http(mut tcp: TcpStream, peer: SocketAddr) {
    const BODY: &str = "This port speaks HTTPS. Use https:// in the URL.\n";
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    tracing::debug!(%peer, "plain HTTP on the TLS port refused");
    let write = async {
        tcp.write_all(answer.as_bytes()).await?;
        tcp.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), write).await;
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
