//! Krill: a self-hosted automation server whose HTTPS API is guarded by a
//! per-install API key.
//!
//! Where to find things:
//! - [`auth`]: the rule deciding which requests need the key, and the 401.
//! - [`key`]: the key's format and comparison; [`key::file`]: reading,
//!   atomically replacing and shredding the key file; [`key::commands`] and
//!   [`key::check`]: the `krill key` commands.
//! - [`tls`]: rustls configuration and certificate loading; [`cert`]:
//!   generating the self-signed certificate.
//! - [`routes`]: the HTTP handlers; [`store`]: the SQLite node store;
//!   [`config`]: the runtime settings behind `/api/config`.
//! - [`server`]: listener, connections, signals; [`reload`]: live reload;
//!   [`watch`]: noticing a changed key file; [`pidfile`]: finding the server.
//! - [`init`], [`settings`], [`cli`]: setting up a host and configuration.

pub mod access_log;
pub mod auth;
pub mod cert;
pub mod cli;
pub mod config;
pub mod connection;
pub mod fsutil;
pub mod gate;
pub mod init;
pub mod key;
pub mod metrics;
pub mod pidfile;
pub mod reload;
pub mod routes;
pub mod server;
pub mod settings;
pub mod slot;
pub mod store;
pub mod throttle;
pub mod tls;
pub mod watch;
