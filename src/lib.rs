//! mailtoken: an OAuth 2.0 credential helper and token broker for mail programs.
//!
//! The binary (`src/main.rs`) only parses the command line, dispatches and maps errors to
//! exit codes; everything else lives here so that tests can use it directly.

pub mod broker;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod error;
pub mod gitcred;
pub mod lock;
pub mod login;
pub mod loopback;
pub mod oauth;
pub mod password;
pub mod paths;
pub mod providers;
pub mod record;
pub mod sasl;
pub mod secret;
pub mod server;
pub mod setup;
pub mod store;
pub mod tls;
pub mod verify;
