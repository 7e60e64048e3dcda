//! One verification connection as a mail program makes it: connect, TLS, capabilities,
//! one SASL exchange, one harmless follow-up, a clean goodbye, all recorded with the
//! credential hidden. The steps live in `transport`, `sasl`, `imap`, `pop` and `smtp`.

pub(super) use super::outcome::Step;
pub use super::outcome::{Outcome, Target, TestMessage};
use super::transport::Connection;
use super::wire::{Mechanism, smtp_line};
use crate::server::Proto;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

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
    let mut s = Session::new(target, tls, limit, false);
    let outcome = s.run(cred, forced).await;
    s.into_attempt(outcome)
}

/// What one dialogue works with; its methods are in `sasl` and the protocol files.
pub(super) struct Session<'a> {
    pub(super) target: &'a Target,
    pub(super) conn: Connection<'a>,
    pub(super) offered: Vec<String>,
    pub(super) mechanism: Option<Mechanism>,
    /// SMTP only: submit this after signing in, instead of the NOOP.
    pub(super) message: Option<&'a TestMessage>,
    /// SMTP only: stop once signed in and leave the connection open (a relay's).
    pub(super) keep_open: bool,
    /// What the server said it offers, for a relay: SMTP's EHLO lines after the
    /// first, IMAP's capabilities, POP3's CAPA list.
    pub(super) extensions: Vec<String>,
}

/// A signed-in session, handed over to a relay: the connection with whatever the
/// server sent that was not read yet, and for SMTP its EHLO extensions
/// (`SIZE 35882577`, ...), for IMAP its capabilities before the login, for POP3 its
/// last CAPA list.
pub struct SignedIn {
    pub io: tokio::io::BufReader<super::transport::Stream>,
    pub extensions: Vec<String>,
}

/// Signs in to the SMTP or IMAP server `target` as a mail program would, with the
/// same dialogue `verify` runs, and keeps the session: `Ok` with it, or `Err` with what
/// a check would have reported.
pub async fn sign_in(
    target: &Target,
    tls: &Arc<rustls::ClientConfig>,
    cred: &Credential<'_>,
    limit: Duration,
) -> Result<SignedIn, Attempt> {
    let mut s = Session::new(target, tls, limit, true);
    let outcome = s.run(cred, None).await;
    match (&outcome, s.conn.take_io()) {
        (Outcome::Accepted { .. }, Some(io)) => Ok(SignedIn {
            io,
            extensions: s.extensions,
        }),
        _ => Err(s.into_attempt(outcome)),
    }
}

impl<'a> Session<'a> {
    fn new(
        target: &'a Target,
        tls: &'a Arc<rustls::ClientConfig>,
        limit: Duration,
        keep_open: bool,
    ) -> Session<'a> {
        Session {
            target,
            conn: Connection::new(target, tls, limit),
            offered: Vec::new(),
            mechanism: None,
            message: target.message.as_ref(),
            keep_open,
            extensions: Vec::new(),
        }
    }

    /// The protocol's dialogue, to its outcome.
    async fn run(&mut self, cred: &Credential<'_>, forced: Option<Mechanism>) -> Outcome {
        let result = match self.target.proto {
            Proto::Imap => self.imap(cred, forced).await,
            Proto::Pop => self.pop(cred, forced).await,
            Proto::Smtp => self.smtp(cred, forced).await,
        };
        match result {
            Ok(o) | Err(o) => o,
        }
    }

    fn into_attempt(self, outcome: Outcome) -> Attempt {
        Attempt {
            tls_version: self.conn.tls_version,
            offered: self.offered,
            mechanism: self.mechanism,
            outcome,
            transcript: self.conn.transcript,
        }
    }
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
