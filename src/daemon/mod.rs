//! The broker daemon (`mailtoken serve`) and its lean client.

pub mod client;
pub mod notify;
pub mod protocol;
pub mod schedule;
pub mod server;
pub mod socket;
pub mod timer;
