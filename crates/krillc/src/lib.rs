//! `krillc`: the command-line client for Krill servers (SPEC §9).
//!
//! Where to find things:
//! - [`cli`]: flags and dispatch; [`commands`]: what each subcommand does.
//! - [`config`]: configuration directory, profiles, server and key
//!   selection; [`pin`]: pinned certificates on disk.
//! - [`tls`]: the pin-only certificate verifier; [`http`]: one request over
//!   a fresh connection; [`api`]: answers turned into messages.
//! - [`failure`]: failures and the exit statuses scripts rely on.

pub mod api;
pub mod cli;
pub mod commands;
pub mod config;
pub mod failure;
pub mod http;
pub mod output;
pub mod pin;
pub mod tls;
