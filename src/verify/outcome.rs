//! What a check is about and how it ended: the server, the outcome of one connection,
//! and the step type the dialogues and the transport share.

use super::wire::Challenge;
use crate::server::{Proto, Tls};
use serde::Serialize;

/// The server to check, and for SMTP what to send through it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub proto: Proto,
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    /// SMTP only: submitted after signing in, instead of a NOOP.
    pub message: Option<TestMessage>,
}

/// A message for SMTP to submit after signing in (`verify --send-to`), which proves the
/// server takes mail from the mailbox, and that it may send as `from`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestMessage {
    pub from: String,
    pub to: String,
}

/// How one connection ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// Authenticated, and the follow-up command was answered.
    Accepted {
        reply: String,
    },
    /// The server refused the credential.
    Rejected {
        reply: String,
        challenge: Option<Challenge>,
    },
    /// Authenticated, then the follow-up command failed.
    FollowUpFailed {
        reply: String,
    },
    /// No mechanism both sides know.
    NoMechanism {
        why: String,
    },
    /// The account says STARTTLS, the server does not offer it.
    NoStarttls,
    /// The port speaks the other TLS mode than the one configured.
    WrongTls {
        port_speaks: Tls,
    },
    Unreachable {
        why: String,
    },
    Certificate {
        why: String,
    },
    Timeout {
        during: String,
    },
    /// The server said something the protocol does not allow here.
    Protocol {
        why: String,
    },
}

/// A step of a dialogue: on to the next, or the outcome that ends it early.
pub(super) type Step<T> = Result<T, Outcome>;
