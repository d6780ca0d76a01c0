//! One client connection, from accept to close: plain HTTP refused on the
//! TLS port, the TLS handshake under a deadline, HTTP/1.1 or HTTP/2, and
//! the timeouts that keep silent or idle clients from holding it open.
//!
//! hyper bounds how long a request's headers may take once they start;
//! this module adds what it leaves open: a connection that never sends a
//! request is closed after `header_read_timeout`, one idle between
//! requests after `idle_timeout`, and on shutdown every connection is
//! asked to finish (HTTP/2 GOAWAY) and dropped if it has not within a few
//! seconds of its last request ending.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio_rustls::TlsAcceptor;

use crate::gate::Gate;
use crate::metrics::Metrics;
use crate::settings::Limits;

/// The first byte of every TLS connection (a handshake record).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// How often a connection checks whether it has gone idle.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// How long a connection asked to close, with no request in flight, may
/// take before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What every connection shares.
pub struct Shared {
    pub gate: Gate,
    pub http: auto::Builder<TokioExecutor>,
    pub acceptor: Option<TlsAcceptor>,
    /// Becomes `true` when the server stops.
    pub shutdown: watch::Receiver<bool>,
}

impl Shared {
    fn metrics(&self) -> &Metrics {
        &self.gate.state.metrics
    }

    fn limits(&self) -> &Limits {
        &self.gate.limits
    }
}

/// The HTTP/1.1 + HTTP/2 connection builder for these limits.
pub fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout())
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(limits.max_header_bytes as u32);
    builder
}

/// Serves one accepted connection. `slot` is its place under
/// `limits.max_connections` and under its address's limit, both given back
/// when this returns.
pub async fn serve(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    slot: (OwnedSemaphorePermit, crate::server::AddressSlot),
) {
    let _slot = slot;
    let _open = OpenGuard::new(&shared.gate.state.metrics);
    let _ = tcp.set_nodelay(true);
    let Some(acceptor) = shared.acceptor.clone() else {
        drive(&shared, tcp, peer).await;
        return;
    };

    // A client speaking plain HTTP to the TLS port gets a short answer and
    // a closed connection instead of a hang.
    let deadline = shared.limits().handshake_timeout();
    let mut first = [0u8; 1];
    match tokio::time::timeout(deadline, tcp.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE_RECORD => {}
        Ok(Ok(1)) => {
            Metrics::bump(&shared.metrics().plain_http_refused);
            return refuse_plain_http(tcp, peer).await;
        }
        _ => return,
    }
    match tokio::time::timeout(deadline, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => drive(&shared, stream, peer).await,
        Ok(Err(e)) => {
            Metrics::bump(&shared.metrics().tls_handshake_failures);
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
        }
        Err(_) => {
            Metrics::bump(&shared.metrics().tls_handshake_failures);
            tracing::debug!(%peer, "TLS handshake timed out");
        }
    }
}

/// Runs HTTP on an established stream until the client leaves, the
/// connection goes idle, or the server stops.
async fn drive<IO>(shared: &Arc<Shared>, io: IO, peer: SocketAddr)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let service = {
        let shared = Arc::clone(shared);
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let shared = Arc::clone(&shared);
            let activity = Arc::clone(&activity);
            async move {
                activity.begin();
                let response = shared.gate.handle(request, peer).await;
                activity.end();
                Ok::<_, Infallible>(response)
            }
        })
    };
    let mut connection = pin!(shared.http.serve_connection(TokioIo::new(io), service));
    let mut shutdown = shared.shutdown.clone();
    let mut closing: Option<Instant> = None;
    if *shutdown.borrow_and_update() {
        connection.as_mut().graceful_shutdown();
        closing = Some(Instant::now());
    }
    let mut ticks = tokio::time::interval(IDLE_CHECK);
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = shutdown.changed(), if closing.is_none() => {
                connection.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
            _ = ticks.tick() => match closing {
                // Asked to close: requests in flight may finish (the server
                // bounds the whole shutdown); an idle connection that has
                // not closed by now is dropped.
                Some(since) => {
                    if activity.in_flight() == 0 && since.elapsed() > CLOSE_GRACE {
                        tracing::debug!(%peer, "dropping a connection that did not close");
                        return;
                    }
                }
                None => {
                    if activity.is_idle(shared.limits()) {
                        tracing::debug!(%peer, "closing an idle connection");
                        connection.as_mut().graceful_shutdown();
                        closing = Some(Instant::now());
                    }
                }
            },
        }
    }
}

/// When a connection last did something, and what it is doing.
struct Activity {
    origin: Instant,
    /// Milliseconds after `origin` of the last request's start or end.
    last_ms: AtomicU64,
    in_flight: AtomicU32,
    served: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            served: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.origin.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
    }

    fn end(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.served.fetch_add(1, Ordering::Relaxed);
        self.touch();
    }

    fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// No request in flight, and quiet for longer than allowed: before the
    /// first request, `header_read_timeout`; between requests,
    /// `idle_timeout`.
    fn is_idle(&self, limits: &Limits) -> bool {
        if self.in_flight() > 0 {
            return false;
        }
        let quiet = self
            .origin
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)));
        let allowed = if self.served.load(Ordering::Relaxed) == 0 {
            limits.header_read_timeout()
        } else {
            limits.idle_timeout()
        };
        quiet > allowed
    }
}

/// Counts the connection in `krill_connections_open` while it lives.
struct OpenGuard<'a>(&'a Metrics);

impl<'a> OpenGuard<'a> {
    fn new(metrics: &'a Metrics) -> OpenGuard<'a> {
        metrics.open_connections.fetch_add(1, Ordering::Relaxed);
        OpenGuard(metrics)
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
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
