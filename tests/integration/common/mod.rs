//! Shared helpers for the integration tests; each module of the one test binary takes
//! them as `crate::common` (e.g. `common::authserver::Browser`).

pub mod authserver;
pub mod chromium;
pub mod fake;
pub mod gate;
pub mod keyring;
pub mod mailserver;
pub mod mailtoken;
pub mod pinned;
pub mod postfix;
pub mod programs;
pub mod scripted;
pub mod tmux;
