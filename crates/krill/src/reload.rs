//! Reloading the API key and the TLS identity in a running server.
//!
//! A reload that finds a missing, unreadable or invalid file keeps what the
//! server has and logs an ERROR naming the file: the server never falls
//! back to accepting anything, or nothing.

use std::path::Path;

use crate::key::file as key_file;
use crate::key::ApiKey;
use crate::metrics::Metrics;
use crate::routes::AppState;
use crate::settings::EtcLayout;
use crate::tls::Identity;

/// Rereads the key file; on failure the current key stays.
pub fn reload_key(state: &AppState, layout: &EtcLayout) -> bool {
    let path = layout.key_file();
    match key_file::read(&path) {
        Ok(key) => {
            install_key(state, &path, key, "SIGHUP");
            true
        }
        Err(e) => {
            Metrics::bump(&state.metrics.key_reload_failures);
            tracing::error!("keeping the current API key: {e}");
            false
        }
    }
}

/// Puts a freshly read key in service, counts it and logs it, with any
/// warning about its strength or who else can read its file. Both reload
/// triggers (SIGHUP and a changed file) come through here.
pub fn install_key(state: &AppState, path: &Path, key: ApiKey, trigger: &'static str) {
    if let Some(warning) = key_file::weakness_warning(&key, path) {
        tracing::warn!("{warning}");
    }
    state.key.replace(key);
    Metrics::bump(&state.metrics.key_reloads);
    tracing::info!(file = %path.display(), trigger, "API key reloaded");
    for warning in key_file::exposure_warnings(path) {
        tracing::warn!("{warning}");
    }
}

/// Rereads certificate and private key; on failure the current pair stays.
/// Established connections keep the certificate they were made with.
pub fn reload_certs(state: &AppState, layout: &EtcLayout) -> bool {
    let Some(slot) = &state.certs else {
        return true;
    };
    match Identity::load(layout) {
        Ok(identity) => {
            slot.replace(identity);
            Metrics::bump(&state.metrics.cert_reloads);
            tracing::info!(file = %layout.cert_file().display(), "TLS certificate reloaded");
            true
        }
        Err(e) => {
            Metrics::bump(&state.metrics.cert_reload_failures);
            tracing::error!("keeping the current TLS certificate: {e}");
            false
        }
    }
}

/// What SIGHUP does: reload both.
pub fn reload_all(state: &AppState, layout: &EtcLayout) {
    reload_key(state, layout);
    reload_certs(state, layout);
}
