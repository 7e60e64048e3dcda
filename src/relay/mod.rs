//! Relays for programs that know no OAuth (Postfix, cron's mail, printers): a local
//! SMTP server on loopback that lets a client in with a local login (or none), signs in
//! to the account's real server with the account's token, and from then on passes the
//! bytes both ways unchanged. Run by `mailtoken serve`.

pub mod config;
pub mod imap;
pub mod password;
pub mod pop;
pub mod smtp;
pub mod upstream;

pub use config::{Access, Listen, Relay};
