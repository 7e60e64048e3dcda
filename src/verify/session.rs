//! One verification connection as a mail program makes it: connect, TLS, capabilities,
//! one SASL exchange, one harmless follow-up, a clean goodbye, all recorded with the
//! credential hidden. The steps live in `transport`, `sasl`, `imap`, `pop` and `smtp`.

use super::transport::Connection;
use super::wire::{Challenge, Mechanism, smtp_line};
use crate::server::{Proto, Tls};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// The server to check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub proto: Proto,
    pub host: String,
    pub port: u16,
    pub tls: Tls,
}

/// The credential to present.
pub enum Credential<'a> {
    OAuth { user: &'a str, token: &'a str },
    Password { user: &'a str, password: &'a str },
}

impl Credential<'_> {
    pub(super) fn user(&self) -> &str {
        match self {
            Credential::OAuth { user, .. } | Credential::Password { user, .. } => user,
        }
    }

    /// The mechanisms this credential can use, best first.
    pub fn mechanisms(&self) -> &'static [Mechanism] {
        match self {
            Credential::OAuth { .. } => &[Mechanism::Xoauth2, Mechanism::Oauthbearer],
            Credential::Password { .. } => &[Mechanism::Plain, Mechanism::Login],
        }
    }
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

/// What one connection showed.
#[derive(Debug, Serialize)]
pub struct Attempt {
    pub tls_version: Option<String>,
    pub offered: Vec<String>,
    pub mechanism: Option<Mechanism>,
    pub outcome: Outcome,
    pub transcript: Vec<String>,
}

/// Connects to `target` and authenticates with `cred`.
pub async fn check(
    target: &Target,
    tls: &Arc<rustls::ClientConfig>,
    cred: &Credential<'_>,
    forced: Option<Mechanism>,
    limit: Duration,
) -> Attempt {
    let mut s = Session {
        target,
        conn: Connection::new(target, tls, limit),
        offered: Vec::new(),
        mechanism: None,
    };
    let result = match target.proto {
        Proto::Imap => s.imap(cred, forced).await,
        Proto::Pop => s.pop(cred, forced).await,
        Proto::Smtp => s.smtp(cred, forced).await,
    };
    let outcome = match result {
        Ok(o) | Err(o) => o,
    };
    Attempt {
        tls_version: s.conn.tls_version,
        offered: s.offered,
        mechanism: s.mechanism,
        outcome,
        transcript: s.conn.transcript,
    }
}

/// A step of a dialogue: on to the next, or the outcome that ends it early.
pub(super) type Step<T> = Result<T, Outcome>;

/// What one dialogue works with; its methods are in `sasl` and the protocol files.
pub(super) struct Session<'a> {
    pub(super) target: &'a Target,
    pub(super) conn: Connection<'a>,
    pub(super) offered: Vec<String>,
    pub(super) mechanism: Option<Mechanism>,
}

impl Session<'_> {
    /// A first line that is not this protocol's: say what it looks like.
    pub(super) fn not_this_protocol(&self, line: &str) -> Outcome {
        let looks = if smtp_line(line).is_some() {
            " (that is an SMTP server's greeting)"
        } else if line.starts_with("* ") {
            " (that is an IMAP server's greeting)"
        } else if line.starts_with("+OK") {
            " (that is a POP3 server's greeting)"
        } else {
            ""
        };
        Outcome::Protocol {
            why: format!(
                "this is not a {} server: it said \"{}\"{looks}",
                self.target.proto.title(),
                truncate(line, 120)
            ),
        }
    }
}

/// At most `max` characters of `s`, with an ellipsis when something was cut.
pub(super) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        s.chars().take(max).collect::<String>() + "…"
    }
}
