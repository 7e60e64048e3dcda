//! `mailtoken verify`: authenticate for real against an account's IMAP, POP3 and SMTP
//! servers, the way a mail program would, and explain what went wrong.
//!
//! One connection per protocol at a time (Gmail limits simultaneous IMAP sessions).
//! When a server rejects the token with a status that says the token is bad, the token
//! is refreshed once and the check runs again on a new connection, as sasl-xoauth2
//! does; both dialogues are in the report. An app-password account signs in with
//! PLAIN or LOGIN and the password from the keyring, and is not retried.

mod diagnosis;
mod imap;
mod outcome;
mod pop;
mod sasl;
pub mod session;
mod smtp;
mod transport;
pub mod wire;

use crate::config::{Account, Config};
use crate::credential::{self, Request};
use crate::error::{Error, ExitCode, Result};
use crate::secret::Secret;
use crate::server::{Proto, Tls, default_port};
use crate::state::RefreshError;
use diagnosis::diagnose;
use serde::Serialize;
use session::{Attempt, Outcome, TestMessage};
pub use session::{Credential, Target};
pub use session::{SignedIn, sign_in};
use std::fmt::Write as _;
use std::time::Duration;
pub use transport::Stream;
pub use wire::Mechanism;

/// What to check, from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// The protocols asked for; empty means every server the account has.
    pub protos: Vec<Proto>,
    /// A one-off server instead of the account's (needs exactly one protocol).
    pub host: Option<String>,
    pub port: Option<u16>,
    pub tls: Option<Tls>,
    pub mechanism: Option<Mechanism>,
    /// For connecting, the handshake and every read.
    pub timeout: Duration,
    /// SMTP submits a test message to this address after signing in (`--send-to`)...
    pub send_to: Option<String>,
    /// ...from this one (`--from`; default: the account's user).
    pub from: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub account: String,
    pub user: String,
    /// OAuth: the token endpoint a refreshed token comes from, and the way there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    pub checks: Vec<Check>,
    /// 0 when every check passed, else the sysexits code `verify` ends with.
    pub exit_code: i32,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub protocol: &'static str,
    pub host: String,
    pub port: u16,
    pub tls: &'static str,
    pub tls_version: Option<String>,
    pub offered: Vec<String>,
    pub mechanism: Option<Mechanism>,
    pub outcome: Outcome,
    /// True when the first attempt's token was rejected and a refreshed one was tried.
    pub refreshed: bool,
    /// Why getting a fresh token for the second attempt failed.
    pub refresh_error: Option<String>,
    pub diagnosis: String,
    pub remedy: Option<String>,
    /// The dialogue, credentials hidden; with a retry, the first attempt's comes first.
    pub transcript: Vec<String>,
    #[serde(skip)]
    code: Option<ExitCode>,
}

/// Runs the checks. Errors are for what stops all of them (no token, bad options);
/// a server's refusal is in the report.
pub fn run(config: &Config, account: &Account, opts: &Options) -> Result<Report> {
    let mut targets = targets(account, opts)?;
    let app_password = account.uses_app_password();
    if app_password && let Some(m) = opts.mechanism.filter(|m| m.is_oauth()) {
        return Err(Error::usage(format!(
            "account {} signs in with an app password; --mechanism {} needs an OAuth token",
            account.name,
            m.name().to_ascii_lowercase()
        ))
        .with_remedy("Use --mechanism plain or --mechanism login, or leave --mechanism out."));
    }
    let message = opts.send_to.as_ref().map(|to| TestMessage {
        from: opts.from.clone().unwrap_or_else(|| account.user.clone()),
        to: to.clone(),
    });
    if message.is_some() && !targets.iter().any(|t| t.proto == Proto::Smtp) {
        return Err(
            Error::usage("--send-to needs an SMTP server to send through")
                .with_remedy("Add --smtp, or give the account an smtp server."),
        );
    }
    for address in message.iter().flat_map(|m| [&m.from, &m.to]) {
        if address.is_empty() || address.contains(['<', '>', '\r', '\n', ' ']) {
            return Err(Error::usage(format!("`{address}` is not a mail address")));
        }
    }
    for t in targets.iter_mut().filter(|t| t.proto == Proto::Smtp) {
        t.message = message.clone();
    }
    // The credential a mail program gets: the daemon's when it runs.
    let got = credential::get(&Request::new(account.name.clone()))?;
    let mut secret = Secret::new(got.secret.as_str());
    let tls = crate::tls::client_config(account.ca_file.as_deref())?;
    let rt = crate::broker::runtime()?;
    let attempt = |target: &Target, secret: &Secret| -> Attempt {
        let cred = if app_password {
            Credential::Password {
                user: &account.user,
                password: secret.expose(),
            }
        } else {
            Credential::OAuth {
                user: &account.user,
                token: secret.expose(),
            }
        };
        rt.block_on(session::check(
            target,
            &tls,
            &cred,
            opts.mechanism,
            opts.timeout,
        ))
    };
    let mut checks = Vec::new();
    for target in targets {
        let first = attempt(&target, &secret);
        // A token the server calls bad is refreshed once and tried again; a password
        // does not get better by asking again.
        let token_rejected = !app_password
            && matches!(
                &first.outcome,
                Outcome::Rejected { challenge: Some(c), .. } if c.token_rejected()
            );
        if !token_rejected {
            checks.push(Check::new(&target, first, None, account));
            continue;
        }
        match credential::renew_rejected(config, account, &secret) {
            Ok(fresh) => {
                secret = fresh;
                let second = attempt(&target, &secret);
                checks.push(Check::new(
                    &target,
                    second,
                    Some(Retry::Refreshed(first)),
                    account,
                ));
            }
            Err(e) => checks.push(Check::new(
                &target,
                first,
                Some(Retry::RefreshFailed(e)),
                account,
            )),
        }
    }
    Ok(Report::new(account, checks))
}

impl Report {
    fn new(account: &Account, checks: Vec<Check>) -> Report {
        let oauth = account.oauth().ok();
        Report {
            account: account.name.clone(),
            user: account.user.clone(),
            token_endpoint: oauth.map(|o| o.token_url.to_string()),
            proxy: oauth.map(|_| match crate::oauth::token_route(account) {
                Ok(r) => r.shown(),
                Err(e) => e.message,
            }),
            exit_code: exit_code(&checks),
            checks,
        }
    }
}

/// What happened after a server rejected the first attempt's token.
enum Retry {
    /// A fresh token was obtained; this was the first attempt, and the check's own
    /// attempt is the second.
    Refreshed(Attempt),
    /// Getting a fresh token failed; the check's attempt is the only one.
    RefreshFailed(RefreshError),
}

/// 77 when a server refused the credential, 78 when the account's settings are wrong
/// (the port speaks the other TLS mode), 69 when a server could not be reached or
/// trusted, 75 on a timeout or a temporary refusal; the most pressing wins.
fn exit_code(checks: &[Check]) -> i32 {
    let codes: Vec<ExitCode> = checks.iter().filter_map(|c| c.code).collect();
    [
        ExitCode::NoPerm,
        ExitCode::Config,
        ExitCode::Unavailable,
        ExitCode::TempFail,
    ]
    .into_iter()
    .find(|c| codes.contains(c))
    .map_or(0, |c| c as i32)
}

/// The servers to check.
fn targets(account: &Account, opts: &Options) -> Result<Vec<Target>> {
    if let Some(host) = &opts.host {
        let [proto] = opts.protos[..] else {
            return Err(Error::usage(
                "--host needs exactly one of --imap, --pop or --smtp",
            ));
        };
        let tls = opts
            .tls
            .or_else(|| opts.port.map(Tls::for_port))
            .unwrap_or(Tls::Implicit);
        let port = opts.port.unwrap_or_else(|| default_port(proto, tls));
        return Ok(vec![Target {
            proto,
            host: host.clone(),
            port,
            tls,
            message: None,
        }]);
    }
    let protos = if opts.protos.is_empty() {
        vec![Proto::Imap, Proto::Pop, Proto::Smtp]
    } else {
        opts.protos.clone()
    };
    let mut out = Vec::new();
    for proto in protos {
        match account.server(proto) {
            Some(s) => out.push(Target {
                proto,
                host: s.host.to_string(),
                port: opts.port.unwrap_or(s.port),
                tls: opts.tls.unwrap_or(s.tls),
                message: None,
            }),
            None if !opts.protos.is_empty() => {
                return Err(Error::config(format!(
                    "account {} has no {} server",
                    account.name,
                    proto.title()
                ))
                .with_remedy(format!(
                    "Add one to [accounts.{}], e.g. {} = {{ host = \"mail.example.org\" }}, or check a one-off server with --host.",
                    account.name,
                    proto.name()
                )));
            }
            None => {}
        }
    }
    if out.is_empty() {
        return Err(Error::config(format!(
            "account {} has no IMAP, POP3 or SMTP server to check",
            account.name
        ))
        .with_remedy(format!(
            "Add imap = {{ host = \"...\" }} (and pop, smtp) to [accounts.{}], or use a provider preset, or give --host.",
            account.name
        )));
    }
    Ok(out)
}

impl Check {
    /// `last` is the attempt whose outcome the check reports; `retry` says whether a
    /// rejected token was refreshed before it.
    fn new(target: &Target, last: Attempt, retry: Option<Retry>, account: &Account) -> Check {
        let mut transcript = Vec::new();
        let (mut refreshed, mut refresh_error) = (false, None);
        match retry {
            Some(Retry::Refreshed(first)) => {
                refreshed = true;
                transcript.push("-- first attempt".to_owned());
                transcript.extend(first.transcript);
                transcript
                    .push("-- the token was rejected: refreshed it, second attempt".to_owned());
            }
            Some(Retry::RefreshFailed(e)) => refresh_error = Some(e),
            None => {}
        }
        transcript.extend(last.transcript.iter().cloned());
        if let Some(e) = &refresh_error {
            transcript.push(format!(
                "-- the token was rejected; getting a fresh one failed: {}",
                e.error().message
            ));
        }
        let (diagnosis, remedy, code) = diagnose(
            target,
            &last.outcome,
            refreshed,
            refresh_error.as_ref(),
            account,
        );
        Check {
            protocol: target.proto.title(),
            host: target.host.clone(),
            port: target.port,
            tls: target.tls.name(),
            tls_version: last.tls_version,
            offered: last.offered,
            mechanism: last.mechanism,
            outcome: last.outcome,
            refreshed,
            refresh_error: refresh_error.map(|e| e.into_error().message),
            diagnosis,
            remedy,
            transcript,
            code,
        }
    }
}

/// The report for people.
pub fn render(report: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Account {} ({})", report.account, report.user);
    if let (Some(u), Some(p)) = (&report.token_endpoint, &report.proxy) {
        let _ = writeln!(s, "Token requests: {u}, {p}");
    }
    for c in &report.checks {
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{} {}:{} ({})",
            c.protocol,
            c.host,
            c.port,
            match c.tls {
                "implicit" => "implicit TLS",
                _ => "STARTTLS",
            }
        );
        let row = |s: &mut String, k: &str, v: &str| {
            let _ = writeln!(s, "  {k:<11} {v}");
        };
        row(&mut s, "TLS", c.tls_version.as_deref().unwrap_or("-"));
        row(
            &mut s,
            "offered",
            &if c.offered.is_empty() {
                "-".to_owned()
            } else {
                c.offered.join(" ")
            },
        );
        row(&mut s, "mechanism", c.mechanism.map_or("-", |m| m.name()));
        row(&mut s, "result", result_word(&c.outcome));
        if let Some(words) = server_words(&c.outcome) {
            row(&mut s, "server said", words);
        }
        if let Outcome::Rejected {
            challenge: Some(ch),
            ..
        } = &c.outcome
        {
            row(&mut s, "challenge", &ch.decoded);
        }
        if !c.transcript.is_empty() {
            let _ = writeln!(s, "  dialogue:");
            for l in &c.transcript {
                let _ = writeln!(s, "    {l}");
            }
        }
    }
    let _ = writeln!(s);
    let failed = report.checks.iter().filter(|c| c.code.is_some()).count();
    if failed == 0 {
        let _ = writeln!(
            s,
            "All {} check(s) passed: mail programs can use this account.",
            report.checks.len()
        );
    } else {
        let _ = writeln!(s, "Diagnosis:");
        for c in report.checks.iter().filter(|c| c.code.is_some()) {
            let _ = writeln!(s, "- {}", c.diagnosis);
            if let Some(r) = &c.remedy {
                let _ = writeln!(s, "  What to do: {r}");
            }
        }
    }
    s
}

fn result_word(o: &Outcome) -> &'static str {
    match o {
        Outcome::Accepted { .. } => "OK",
        Outcome::Rejected { .. } => "REJECTED",
        Outcome::FollowUpFailed { .. } => "FAILED after login",
        Outcome::NoMechanism { .. } => "no common mechanism",
        Outcome::NoStarttls => "no STARTTLS",
        Outcome::WrongTls { .. } => "wrong TLS mode for this port",
        Outcome::Unreachable { .. } => "unreachable",
        Outcome::Certificate { .. } => "certificate not trusted",
        Outcome::Timeout { .. } => "timed out",
        Outcome::Protocol { .. } => "protocol error",
    }
}

fn server_words(o: &Outcome) -> Option<&str> {
    match o {
        Outcome::Accepted { reply }
        | Outcome::Rejected { reply, .. }
        | Outcome::FollowUpFailed { reply } => Some(reply),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_with(code: Option<ExitCode>) -> Check {
        Check {
            protocol: "IMAP",
            host: "h".into(),
            port: 993,
            tls: "implicit",
            tls_version: None,
            offered: vec![],
            mechanism: None,
            outcome: Outcome::NoStarttls,
            refreshed: false,
            refresh_error: None,
            diagnosis: String::new(),
            remedy: None,
            transcript: vec![],
            code,
        }
    }

    #[test]
    fn exit_code_takes_the_most_pressing() {
        assert_eq!(exit_code(&[check_with(None), check_with(None)]), 0);
        assert_eq!(
            exit_code(&[
                check_with(Some(ExitCode::TempFail)),
                check_with(Some(ExitCode::Unavailable))
            ]),
            69
        );
        assert_eq!(
            exit_code(&[
                check_with(Some(ExitCode::TempFail)),
                check_with(Some(ExitCode::NoPerm))
            ]),
            77
        );
        assert_eq!(exit_code(&[check_with(Some(ExitCode::TempFail))]), 75);
    }
}
