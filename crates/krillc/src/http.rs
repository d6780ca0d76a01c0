//! One HTTP/1.1 request over a fresh connection: TCP, TLS checked against
//! the pin, hyper's client connection. Each way this can fail becomes one
//! [`Failure`] sentence, never a chain of library errors.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::{ApiKey, Target};
use crate::failure::Failure;
use crate::tls::{fingerprint, PinVerifier};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer body read.
const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// What the server answered.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub location: Option<String>,
    /// The target of a `Link: <...>; rel="next"` header (the next page of
    /// a list), as the server wrote it.
    pub next: Option<String>,
    pub body: Bytes,
}

/// A request to send.
#[derive(Debug)]
pub struct Call<'a> {
    pub method: Method,
    /// Path and query, already percent-encoded.
    pub path: String,
    pub key: Option<&'a ApiKey>,
    /// A JSON body.
    pub body: Option<Vec<u8>>,
}

/// Sends `call` to `target`. With TLS, `verifier` decides whether the
/// server is trusted.
pub async fn send(
    target: &Target,
    verifier: Option<&Arc<PinVerifier>>,
    call: Call<'_>,
) -> Result<Answer, Failure> {
    let work = async {
        let tcp = connect_tcp(target).await?;
        match (target.tls, verifier) {
            (true, Some(verifier)) => {
                let tls = handshake(target, verifier, tcp).await?;
                exchange(target, tls, call).await
            }
            (true, None) => Err(Failure::Trust(format!(
                "internal: no certificate check for {}",
                target.url()
            ))),
            (false, _) => exchange(target, tcp, call).await,
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| {
            Err(Failure::Connect(format!(
                "{} did not answer within {} s; check that the Krill server there is \
                 healthy (`sudo systemctl status krill`)",
                target.url(),
                REQUEST_TIMEOUT.as_secs()
            )))
        })
}

async fn connect_tcp(target: &Target) -> Result<TcpStream, Failure> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| {
            Failure::Connect(format!(
                "cannot find the server {}: the name does not resolve ({e}); check the \
                 address",
                target.host
            ))
        })?
        .collect();
    let mut last: Option<io::Error> = None;
    for addr in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => {
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Ok(Err(e)) => last = Some(e),
            Err(_) => last = Some(io::Error::from(io::ErrorKind::TimedOut)),
        }
    }
    let why = match last.as_ref().map(io::Error::kind) {
        Some(io::ErrorKind::ConnectionRefused) => "nothing listens there (connection refused)",
        Some(io::ErrorKind::TimedOut) => "it did not answer (timed out)",
        _ => "the network did not reach it",
    };
    Err(Failure::Connect(format!(
        "cannot connect to the Krill server at {}: {why}; check that the server is \
         running (`sudo systemctl status krill`) and that the address and port are right",
        target.url()
    )))
}

async fn handshake(
    target: &Target,
    verifier: &Arc<PinVerifier>,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Failure> {
    let config = verifier
        .client_config()
        .map_err(|e| Failure::Trust(format!("cannot set up TLS: {e}")))?;
    let name = ServerName::try_from(target.host.clone()).map_err(|_| {
        Failure::Usage(format!(
            "`{}` is not a valid host name; write the address like https://krill.local:8442",
            target.host
        ))
    })?;
    match TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
    {
        Ok(tls) => Ok(tls),
        Err(_) if verifier.mismatched() => Err(mismatch(target, verifier)),
        Err(e) => Err(Failure::Trust(format!(
            "the TLS handshake with {} failed ({e}); check that the address points to a \
             Krill server speaking HTTPS (a server with `tls = false` needs an http:// \
             address)",
            target.url()
        ))),
    }
}

/// The message when the server presents a certificate other than the pin.
fn mismatch(target: &Target, verifier: &PinVerifier) -> Failure {
    let presented = verifier
        .presented()
        .map_or_else(|| "unknown".to_owned(), |c| fingerprint(&c));
    Failure::Trust(format!(
        "the server at {url} presented a certificate that is NOT the one you trusted \
         (presented SHA-256 {presented}). Either its certificate was regenerated (`krill \
         cert generate`, a reinstall), or another machine is impersonating it. Compare \
         with `krill cert show` on the server; only if the fingerprints match, trust the \
         new certificate with `krillc trust {url}`",
        url = target.url()
    ))
}

async fn exchange<IO>(target: &Target, io: IO, call: Call<'_>) -> Result<Answer, Failure>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let broken = |e: hyper::Error| {
        Failure::Server(format!(
            "the connection to {} broke during the request ({e}); check the server log \
             (`sudo journalctl -u krill`)",
            target.url()
        ))
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(broken)?;
    tokio::spawn(connection);
    let request = build(target, call)?;
    let response = sender.send_request(request).await.map_err(broken)?;
    let status = response.status();
    let location = response
        .headers()
        .get(hyper::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let next = response
        .headers()
        .get_all(hyper::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(next_link);
    let body = Limited::new(response.into_body(), BODY_LIMIT)
        .collect()
        .await
        .map_err(|e| {
            Failure::Server(format!(
                "cannot read the answer from {} ({e})",
                target.url()
            ))
        })?
        .to_bytes();
    Ok(Answer {
        status,
        location,
        next,
        body,
    })
}

/// The URL of the `rel="next"` entry in one `Link` header value
/// (RFC 8288: comma-separated `<URL>; param=value` entries).
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|entry| {
        let (url, params) = entry.trim().strip_prefix('<')?.split_once('>')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
        });
        is_next.then(|| url.to_owned())
    })
}

fn build(target: &Target, call: Call<'_>) -> Result<Request<Full<Bytes>>, Failure> {
    let host = HeaderValue::from_str(&target.authority())
        .map_err(|_| Failure::Usage(format!("`{}` is not a valid host", target.host)))?;
    let mut request = Request::builder()
        .method(call.method)
        .uri(&call.path)
        .header(HOST, host)
        .header(ACCEPT, "application/json")
        .header(USER_AGENT, concat!("krillc/", env!("CARGO_PKG_VERSION")));
    if let Some(key) = call.key {
        let mut value = HeaderValue::from_str(key.expose()).map_err(|_| {
            Failure::Local(format!(
                "the API key from {} cannot be sent in a header",
                key.source
            ))
        })?;
        value.set_sensitive(true);
        request = request.header("x-api-key", value);
    }
    let body = match call.body {
        Some(body) => {
            request = request.header(CONTENT_TYPE, "application/json");
            Full::new(Bytes::from(body))
        }
        None => Full::new(Bytes::new()),
    };
    request
        .body(body)
        .map_err(|_| Failure::Usage(format!("`{}` is not a valid request path", call.path)))
}

/// Percent-encodes a path segment or query value (RFC 3986 unreserved
/// characters stay as they are).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_keeps_unreserved_and_escapes_the_rest() {
        assert_eq!(encode("a-b_c.d~9"), "a-b_c.d~9");
        assert_eq!(encode("a/b c?&é"), "a%2Fb%20c%3F%26%C3%A9");
    }

    #[test]
    fn next_link_is_found_among_other_entries() {
        assert_eq!(
            next_link("</api/nodes?limit=50&after=n1>; rel=\"next\"").as_deref(),
            Some("/api/nodes?limit=50&after=n1")
        );
        assert_eq!(
            next_link("</a>; rel=\"prev\", </b>; title=\"x\"; rel=next").as_deref(),
            Some("/b")
        );
        assert_eq!(next_link("</a>; rel=\"prev\""), None);
        assert_eq!(next_link("garbage"), None);
    }
}
