//! mailtoken: an OAuth 2.0 credential helper and token broker for mail programs.
//!
//! The binaries (`src/main.rs`, the whole program, and `src/front.rs`, the small front
//! executable for the hot path) only parse the command line, dispatch and map errors
//! to exit codes; everything else lives here so that tests can use it directly.
//! ARCHITECTURE.md at the repository root is the map.

pub mod add;
pub mod broker;
pub mod cli;
pub mod commands;
pub mod config;
pub mod credential;
pub mod daemon;
pub mod discover;
pub mod error;
pub mod format;
pub mod gitcred;
pub mod ipc;
pub mod lock;
pub mod login;
pub mod loopback;
mod names;
pub mod notify;
pub mod oauth;
pub mod password;
pub mod paths;
pub mod providers;
pub mod proxy;
pub mod qr;
pub mod record;
pub mod relay;
pub mod sasl;
pub mod schedule;
pub mod secret;
pub mod server;
pub mod setup;
pub mod startup;
pub mod state;
pub mod status;
pub mod store;
pub mod tls;
pub mod verify;
pub mod worker;

/// `mailtoken --version`: the crate's version and the commit it was built from (build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("MAILTOKEN_COMMIT"),
    ")"
);
