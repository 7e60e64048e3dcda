//! Shared helpers for the integration tests. Include from a test file with
//! `mod common;` and use e.g. `common::authserver::Browser`.

pub mod authserver;
pub mod fake;
pub mod mailserver;
pub mod mailtoken;
