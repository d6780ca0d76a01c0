//! Talking to a trusted server: loads the pin, sends the key, and turns
//! non-2xx answers into [`Failure`]s that say what to check.

use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::Value;

use crate::config::{ApiKey, Resolved, Target};
use crate::failure::Failure;
use crate::http::{self, Answer, Call};
use crate::pin;
use crate::tls::PinVerifier;

/// A server krillc trusts, and the key it sends.
#[derive(Debug)]
pub struct Client {
    pub target: Target,
    verifier: Option<Arc<PinVerifier>>,
    key: Option<ApiKey>,
}

/// The server address from the resolved settings, or a usage failure.
pub fn target(resolved: &Resolved) -> Result<Target, Failure> {
    let server = resolved.server.as_deref().ok_or_else(|| {
        Failure::Usage(
            "no server given: pass --server https://HOST:8442, set KRILL_SERVER, or \
             choose a profile with --profile"
                .into(),
        )
    })?;
    Target::parse(server)
}

impl Client {
    /// A client for the resolved server; with TLS, its pin must exist.
    pub fn new(resolved: Resolved) -> Result<Client, Failure> {
        let target = target(&resolved)?;
        let verifier = if target.tls {
            let pinned = pin::load(&resolved.config_dir, &target)?.ok_or_else(|| {
                Failure::Trust(format!(
                    "no certificate is pinned for {}; run `krillc trust {}` first and \
                     compare the fingerprint it shows with `krill cert show` on the server",
                    target.authority(),
                    target.url()
                ))
            })?;
            Some(PinVerifier::pinned(pinned))
        } else {
            None
        };
        Ok(Client {
            target,
            verifier,
            key: resolved.key,
        })
    }

    /// Sends a request without the key (public routes).
    pub async fn public(&self, path: &str) -> Result<Answer, Failure> {
        self.send(Method::GET, path, None, false).await
    }

    /// Sends a request with the key; a missing key is a failure before
    /// anything is sent.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, Failure> {
        self.send(method, path, body, true).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        with_key: bool,
    ) -> Result<Answer, Failure> {
        let key = if with_key {
            Some(self.key.as_ref().ok_or_else(|| {
                Failure::Unauthorized(
                    "no API key given: pass --api-key-file FILE, set KRILL_API_KEY, or set \
                     api_key_file in your profile (the key is in \
                     /etc/krill/credentials/api_key on the server)"
                        .into(),
                )
            })?)
        } else {
            None
        };
        if key.is_some() && !self.target.tls {
            eprintln!(
                "krillc: warning: {} is plain HTTP, so the API key crosses the network \
                 unencrypted",
                self.target.url()
            );
        }
        let body = body.map(|b| b.to_string().into_bytes());
        let call = Call {
            method,
            path: path.to_owned(),
            key,
            body,
        };
        let answer = http::send(&self.target, self.verifier.as_ref(), call).await?;
        check(&self.target, key, answer)
    }
}

/// Passes 2xx answers through; explains everything else.
fn check(target: &Target, key: Option<&ApiKey>, answer: Answer) -> Result<Answer, Failure> {
    if answer.status.is_success() {
        return Ok(answer);
    }
    let json: Option<Value> = serde_json::from_slice(&answer.body).ok();
    let field = |name: &str| {
        json.as_ref()
            .and_then(|j| j.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let status = answer.status;
    if status == StatusCode::UNAUTHORIZED {
        let reason =
            field("reason").map_or_else(|| "none given".into(), |r| crate::output::escape(&r));
        return Err(unauthorized(target, key, &reason));
    }
    let detail = field("message")
        .or_else(|| field("error"))
        .unwrap_or_else(|| String::from_utf8_lossy(&answer.body).trim().to_owned());
    let text = format!(
        "the server answered {status}: {}",
        crate::output::escape(&detail)
    );
    Err(match status.as_u16() {
        404 => Failure::NotFound(text),
        400..=499 => Failure::Rejected(text),
        _ => Failure::Server(format!(
            "{text}; the server log has the cause (`sudo journalctl -u krill`)"
        )),
    })
}

/// The 401 explanation, following the reference document's
/// troubleshooting steps.
fn unauthorized(target: &Target, key: Option<&ApiKey>, reason: &str) -> Failure {
    let source = key.map_or_else(|| "nowhere".to_owned(), |k| k.source.to_string());
    let what = match reason {
        "invalid_api_key" => {
            format!("the key krillc sent (from {source}) is not this server's key")
        }
        "missing_api_key" => format!(
            "no X-API-Key header arrived although krillc sent one (from {source}); a proxy \
             in between may strip it"
        ),
        "ambiguous_api_key" => "the request arrived with more than one X-API-Key header; \
                                a proxy in between may add one"
            .to_owned(),
        _ => format!("krillc sent the key from {source}"),
    };
    Failure::Unauthorized(format!(
        "the server at {url} refused the request (401 Unauthorized, reason: {reason}): \
         {what}.\nCheck:\n  \
         1. the key is right: on the server, `sudo cat /etc/krill/credentials/api_key`, \
         and compare it with {source} (a reinstall or `krill key rotate` makes a new key);\n  \
         2. the header is sent as X-API-Key, e.g. `curl -v -H \"X-API-Key: $(cat FILE)\" \
         {url}/api/nodes`;\n  \
         3. the service is running: `sudo systemctl status krill`;\n  \
         4. the server log shows the attempt and its reason: `sudo journalctl -u krill -f`",
        url = target.url()
    ))
}
