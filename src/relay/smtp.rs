//! The SMTP relay: a submission server on loopback for one account. A client is
//! greeted at once; its EHLO is answered with the real server's extensions (minus
//! STARTTLS and AUTH, plus `AUTH PLAIN LOGIN` when local logins are on); its local
//! login is checked here and never forwarded. At its first MAIL the relay has signed in
//! to the real server (the same dialogue as `verify`: TLS, EHLO, AUTH with the token),
//! forwards that command and everything after it, and passes the bytes both ways
//! unchanged: PIPELINING, CHUNKING, SMTPUTF8 and large messages keep working, and every
//! reply is the real server's.

use super::config::Access;
use crate::config::Account;
use crate::credential::Credential;
use crate::error::Result;
use crate::verify::{self, SignedIn, Target};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// Where the relay gets the account's credential from (the daemon's memory).
pub type CredentialFn =
    Arc<dyn Fn(Account) -> Pin<Box<dyn Future<Output = Result<Credential>> + Send>> + Send + Sync>;

/// Tells the daemon a server refused this token: refresh it (once, as `verify` does).
pub type RenewFn = Arc<
    dyn Fn(Account, zeroize::Zeroizing<String>) -> Pin<Box<dyn Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

/// A line longer than this before the session is handed over is refused (RFC 5321
/// §4.5.3.1.4 allows 512 octets for a command line; AUTH PLAIN's line is longer).
const MAX_LINE: usize = 4096;
/// How long a client may stay silent before the hand-over.
const IDLE: Duration = Duration::from_secs(300);
/// Wrong local logins are answered after this delay, and the third one ends the session.
const FAILED_LOGIN_DELAY: Duration = Duration::from_secs(1);
/// For the upstream server: connecting, TLS, each reply.
const UPSTREAM_LIMIT: Duration = Duration::from_secs(30);

pub struct Relay {
    pub account: Account,
    pub access: Access,
    pub credential: CredentialFn,
    pub renew: RenewFn,
}

/// One client, from greeting to the end of its session.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send>(relay: Arc<Relay>, stream: S) {
    let mut client = BufReader::new(stream);
    let name = &relay.account.name;
    // The real server first: its extensions are what the client is told, and a client
    // should hear at once when the relay cannot get through.
    let upstream = match sign_in(&relay).await {
        Ok(u) => u,
        Err(reply) => {
            eprintln!("mailtoken: relay {name}: {}", reply.trim_end());
            let _ = client.get_mut().write_all(reply.as_bytes()).await;
            return;
        }
    };
    let local = "localhost";
    let _ = say(
        &mut client,
        &format!("220 {local} ESMTP mailtoken relay for {name}"),
    )
    .await;
    let mut authed = relay.access == Access::Anyone;
    let mut failures = 0;
    loop {
        let line = match tokio::time::timeout(IDLE, read_line(&mut client)).await {
            Err(_) => {
                let _ = say(&mut client, "421 4.4.2 idle for too long, closing").await;
                return;
            }
            Ok(Err(LineError::TooLong)) => {
                let _ = say(&mut client, "500 5.5.6 line too long").await;
                return;
            }
            Ok(Err(LineError::Closed)) => return,
            Ok(Ok(l)) => l,
        };
        let upper = line.to_ascii_uppercase();
        let verb = upper.split(' ').next().unwrap_or_default();
        let reply = match verb {
            "EHLO" => {
                let mut lines = vec![format!("250-{local} greets {}", line.get(5..).unwrap_or("you").trim())];
                lines.extend(
                    upstream
                        .extensions
                        .iter()
                        .filter(|e| {
                            let e = e.to_ascii_uppercase();
                            !(e.starts_with("STARTTLS") || e.starts_with("AUTH"))
                        })
                        .map(|e| format!("250-{e}")),
                );
                if relay.access == Access::Password {
                    lines.push("250-AUTH PLAIN LOGIN".into());
                }
                let last = lines.pop().unwrap_or_default().replacen("250-", "250 ", 1);
                lines.push(last);
                lines.join("\r\n")
            }
            "HELO" => format!("250 {local}"),
            "NOOP" => "250 2.0.0 OK".into(),
            "RSET" => "250 2.0.0 OK".into(),
            "QUIT" => {
                let _ = say(&mut client, "221 2.0.0 Bye").await;
                let mut up = upstream.io;
                let _ = up.get_mut().write_all(b"QUIT\r\n").await;
                return;
            }
            "STARTTLS" => "502 5.5.1 no STARTTLS on the local relay (it listens on loopback only)".into(),
            "AUTH" if relay.access == Access::Anyone => "503 5.5.1 no login needed here".into(),
            "AUTH" if authed => "503 5.5.1 already authenticated".into(),
            "AUTH" => match local_login(&relay, &mut client, &line).await {
                Some(true) => {
                    authed = true;
                    "235 2.7.0 Authentication successful".into()
                }
                Some(false) => {
                    failures += 1;
                    tokio::time::sleep(FAILED_LOGIN_DELAY).await;
                    if failures >= 3 {
                        let _ = say(&mut client, "421 4.7.0 too many failed logins, closing").await;
                        return;
                    }
                    "535 5.7.8 Authentication credentials invalid".into()
                }
                None => return,
            },
            "MAIL" | "BDAT" | "DATA" | "RCPT" | "VRFY" | "EXPN" if !authed => {
                "530 5.7.0 Authentication required (the relay password: `mailtoken relay-password ACCOUNT`)".into()
            }
            "MAIL" | "VRFY" | "EXPN" => {
                // The hand-over: this command and all after it go to the real server.
                splice(client, upstream, &line).await;
                return;
            }
            "RCPT" | "DATA" | "BDAT" => "503 5.5.1 MAIL first".into(),
            _ => "500 5.5.2 command not recognized".into(),
        };
        if say(&mut client, &reply).await.is_err() {
            return;
        }
    }
}

/// The real server, signed in with the account's credential; a token it calls bad
/// is refreshed once and tried again before the client hears anything. `Err` is the
/// reply the client gets instead.
async fn sign_in(relay: &Relay) -> std::result::Result<SignedIn, String> {
    match sign_in_once(relay).await {
        Err(Failure::TokenRejected(token, _)) => {
            (relay.renew)(relay.account.clone(), token).await;
            sign_in_once(relay).await.map_err(Failure::reply)
        }
        other => other.map_err(Failure::reply),
    }
}

enum Failure {
    /// The server refused this token as bad: worth one refresh.
    TokenRejected(zeroize::Zeroizing<String>, String),
    Other(String),
}

impl Failure {
    fn reply(self) -> String {
        match self {
            Failure::TokenRejected(_, r) | Failure::Other(r) => r,
        }
    }
}

async fn sign_in_once(relay: &Relay) -> std::result::Result<SignedIn, Failure> {
    let a = &relay.account;
    let Some(server) = a.smtp.as_ref() else {
        return Err(Failure::Other(
            "554 5.3.5 the account has no smtp server in the config\r\n".into(),
        ));
    };
    let cred = (relay.credential)(a.clone()).await.map_err(|e| {
        // As a greeting: 554 is "no service here" (RFC 5321 §3.1), 421 "not now".
        let code = if e.code == crate::error::ExitCode::NoPerm {
            "554 5.7.0"
        } else {
            "421 4.7.0"
        };
        let remedy = e
            .remedy
            .as_deref()
            .map(|r| format!(" {r}"))
            .unwrap_or_default();
        Failure::Other(format!(
            "{} {}: {}{remedy}\r\n",
            &code[..3],
            &code[4..],
            one_line(&e.message)
        ))
    })?;
    let target = Target {
        proto: crate::server::Proto::Smtp,
        host: server.host.to_string(),
        port: server.port,
        tls: server.tls,
        message: None,
    };
    let tls = crate::tls::client_config(a.ca_file.as_deref()).map_err(|e| {
        Failure::Other(format!("454 4.7.0 TLS setup: {}\r\n", one_line(&e.message)))
    })?;
    let c = if a.uses_app_password() {
        verify::Credential::Password {
            user: &a.user,
            password: cred.secret.as_str(),
        }
    } else {
        verify::Credential::OAuth {
            user: &a.user,
            token: cred.secret.as_str(),
        }
    };
    verify::smtp_sign_in(&target, &tls, &c, UPSTREAM_LIMIT)
        .await
        .map_err(|attempt| {
            use verify::session::Outcome as O;
            let what = match &attempt.outcome {
                O::Rejected { reply, .. } => {
                    format!("the server refused the account's credential: {reply}")
                }
                O::Unreachable { why }
                | O::Certificate { why }
                | O::Protocol { why }
                | O::NoMechanism { why } => why.clone(),
                O::Timeout { during } => format!("no answer while {during}"),
                O::NoStarttls => "the server does not offer STARTTLS".into(),
                O::WrongTls { .. } => {
                    "the port speaks the other TLS mode than the account says".into()
                }
                O::FollowUpFailed { reply } | O::Accepted { reply } => reply.clone(),
            };
            let reply = format!(
                "421 4.4.0 the relay cannot sign in to {}:{}: {}\r\n",
                target.host,
                target.port,
                one_line(&what)
            );
            match &attempt.outcome {
                O::Rejected {
                    challenge: Some(c), ..
                } if c.token_rejected() && !a.uses_app_password() => {
                    Failure::TokenRejected(cred.secret.clone(), reply)
                }
                _ => Failure::Other(reply),
            }
        })
}

/// AUTH PLAIN (with or without an initial response) or AUTH LOGIN against the relay
/// password; `None` when the client went away.
async fn local_login<S: AsyncRead + AsyncWrite + Unpin>(
    relay: &Relay,
    client: &mut BufReader<S>,
    line: &str,
) -> Option<bool> {
    let mut words = line.split_whitespace().skip(1);
    let mech = words.next().unwrap_or_default().to_ascii_uppercase();
    let initial = words.next().map(str::to_owned);
    let (user, pass) = match mech.as_str() {
        "PLAIN" => {
            let response = match initial {
                Some(r) => r,
                None => {
                    say(client, "334 ").await.ok()?;
                    read_line(client).await.ok()?
                }
            };
            let decoded = zeroize::Zeroizing::new(B64.decode(response.trim()).unwrap_or_default());
            // authzid NUL authcid NUL password (RFC 4616).
            let mut parts = decoded.split(|b| *b == 0);
            let _authz = parts.next();
            let user = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            let pass = zeroize::Zeroizing::new(
                String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned(),
            );
            (user, pass)
        }
        "LOGIN" => {
            let user = match initial {
                Some(u) => u,
                None => {
                    say(client, "334 VXNlcm5hbWU6").await.ok()?;
                    read_line(client).await.ok()?
                }
            };
            say(client, "334 UGFzc3dvcmQ6").await.ok()?;
            let pass = read_line(client).await.ok()?;
            let user =
                String::from_utf8_lossy(&B64.decode(user.trim()).unwrap_or_default()).into_owned();
            let pass = zeroize::Zeroizing::new(
                String::from_utf8_lossy(&B64.decode(pass.trim()).unwrap_or_default()).into_owned(),
            );
            (user, pass)
        }
        _ => return Some(false),
    };
    let a = &relay.account;
    let who = user == a.user || user == a.name;
    let right = super::password::matches(&a.name, &pass).unwrap_or(false);
    Some(who && right)
}

/// Forwards `first` and then every byte both ways until either side closes.
async fn splice<S: AsyncRead + AsyncWrite + Unpin>(
    client: BufReader<S>,
    upstream: SignedIn,
    first: &str,
) {
    let mut up = upstream.io;
    // What the client sent after `first` (pipelined commands) is in its buffer.
    let pending = client.buffer().to_vec();
    let mut client = client.into_inner();
    let head = format!("{first}\r\n");
    if up.get_mut().write_all(head.as_bytes()).await.is_err()
        || up.get_mut().write_all(&pending).await.is_err()
    {
        return;
    }
    let early = up.buffer().to_vec();
    let mut up = up.into_inner();
    if !early.is_empty() && client.write_all(&early).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
}

async fn say<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut BufReader<S>,
    reply: &str,
) -> std::io::Result<()> {
    let w = client.get_mut();
    w.write_all(reply.as_bytes()).await?;
    w.write_all(b"\r\n").await?;
    w.flush().await
}

enum LineError {
    Closed,
    TooLong,
}

/// One line from the client (without CR LF), bounded by `MAX_LINE`.
async fn read_line<S: AsyncRead + Unpin>(
    r: &mut BufReader<S>,
) -> std::result::Result<String, LineError> {
    let mut buf = Vec::new();
    loop {
        let avail = r.fill_buf().await.map_err(|_| LineError::Closed)?;
        if avail.is_empty() {
            return Err(LineError::Closed);
        }
        if let Some(i) = avail.iter().position(|&b| b == b'\n') {
            buf.extend_from_slice(&avail[..i]);
            r.consume(i + 1);
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(String::from_utf8_lossy(&buf).into_owned());
        }
        let n = avail.len();
        buf.extend_from_slice(avail);
        r.consume(n);
        if buf.len() > MAX_LINE {
            return Err(LineError::TooLong);
        }
    }
}

fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_owned()
}
