//! `GET /trust`: public download of the certificate the TLS handshake
//! presents, byte for byte, so a client can pin it on first use.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;

pub async fn get(State(state): State<AppState>) -> Response {
    let Some(certs) = &state.certs else {
        return super::error(
            StatusCode::NOT_FOUND,
            "tls_disabled",
            "this server speaks plain HTTP (tls = false), so it has no certificate to trust",
        );
    };
    let pem = certs.current().pem.to_vec();
    ([(header::CONTENT_TYPE, "application/x-pem-file")], pem).into_response()
}
