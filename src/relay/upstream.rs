//! What every relay shares: the account and its credentials, signing in to the real
//! server (the dialogue `verify` runs, with one refresh after a refused token), the
//! local login check, reading the client's lines before the hand-over, and the splice
//! after it.

use super::config::Access;
use crate::config::Account;
use crate::credential::Credential;
use crate::error::Result;
use crate::server::Proto;
use crate::verify::{self, SignedIn, Target};
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

/// One account's relay, as its connections see it.
pub struct Relay {
    pub account: Account,
    pub access: Access,
    pub credential: CredentialFn,
    pub renew: RenewFn,
    /// The TLS client setup for the real server, made at the first connection: loading
    /// the trust store costs milliseconds that no session should pay again.
    pub tls: std::sync::OnceLock<Arc<rustls::ClientConfig>>,
}

/// For the upstream server: connecting, TLS, each reply.
const UPSTREAM_LIMIT: Duration = Duration::from_secs(30);
/// A line longer than this before the hand-over is refused (AUTH PLAIN's line with a
/// long password stays far below it).
const MAX_LINE: usize = 4096;
/// Wrong local logins are answered after this delay.
pub const FAILED_LOGIN_DELAY: Duration = Duration::from_secs(1);

/// Why the relay could not sign in, for the protocol to say in its own words.
pub struct Refusal {
    /// Only a person can fix it (a login, the config): a permanent refusal.
    pub permanent: bool,
    pub text: String,
}

/// The real `proto` server, signed in with the account's credential; a token it calls
/// bad is refreshed once and tried again before the client hears anything.
pub async fn sign_in(relay: &Relay, proto: Proto) -> std::result::Result<SignedIn, Refusal> {
    match sign_in_once(relay, proto).await {
        Err(Failure::TokenRejected(token, _)) => {
            (relay.renew)(relay.account.clone(), token).await;
            sign_in_once(relay, proto).await.map_err(Failure::refusal)
        }
        other => other.map_err(Failure::refusal),
    }
}

enum Failure {
    /// The server refused this token as bad: worth one refresh.
    TokenRejected(zeroize::Zeroizing<String>, Refusal),
    Other(Refusal),
}

impl Failure {
    fn refusal(self) -> Refusal {
        match self {
            Failure::TokenRejected(_, r) | Failure::Other(r) => r,
        }
    }
}

async fn sign_in_once(relay: &Relay, proto: Proto) -> std::result::Result<SignedIn, Failure> {
    let a = &relay.account;
    let refuse = |permanent, text: String| Failure::Other(Refusal { permanent, text });
    let Some(server) = a.server(proto) else {
        return Err(refuse(
            true,
            format!("the account has no {} server in the config", proto.title()),
        ));
    };
    let cred = (relay.credential)(a.clone()).await.map_err(|e| {
        let remedy = e
            .remedy
            .as_deref()
            .map(|r| format!(" {r}"))
            .unwrap_or_default();
        refuse(
            e.code == crate::error::ExitCode::NoPerm,
            format!("{}{remedy}", one_line(&e.message)),
        )
    })?;
    let target = Target {
        proto,
        host: server.host.to_string(),
        port: server.port,
        tls: server.tls,
        message: None,
    };
    let tls = match relay.tls.get() {
        Some(t) => t.clone(),
        None => {
            let t = crate::tls::client_config(a.ca_file.as_deref())
                .map_err(|e| refuse(true, format!("TLS setup: {}", one_line(&e.message))))?;
            relay.tls.get_or_init(|| t).clone()
        }
    };
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
    verify::sign_in(&target, &tls, &c, UPSTREAM_LIMIT)
        .await
        .map_err(|attempt| {
            use verify::session::Outcome as O;
            let what = match &attempt.outcome {
                // A 4xx (SMTP), [UNAVAILABLE] (IMAP), [SYS/TEMP] (POP3): not now.
                O::Rejected { reply, .. }
                    if reply.starts_with('4')
                        || reply.starts_with("[UNAVAILABLE]")
                        || reply.starts_with("[SYS/TEMP]") =>
                {
                    format!("the server turned the login away for now: {reply}")
                }
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
            let refusal = Refusal {
                permanent: false,
                text: format!(
                    "the relay cannot sign in to {}:{}: {}",
                    target.host,
                    target.port,
                    one_line(&what)
                ),
            };
            match &attempt.outcome {
                O::Rejected {
                    challenge: Some(c), ..
                } if c.token_rejected() && !a.uses_app_password() => {
                    Failure::TokenRejected(cred.secret.clone(), refusal)
                }
                _ => Failure::Other(refusal),
            }
        })
}

/// Whether `user` and `pass` are the relay's local login: the account's user (or its
/// name) and the relay password.
pub fn login_ok(relay: &Relay, user: &str, pass: &str) -> bool {
    let a = &relay.account;
    let who = user == a.user || user == a.name;
    let right = super::password::matches(&a.name, pass).unwrap_or(false);
    who && right
}

/// A SASL PLAIN response (RFC 4616: base64 of authzid NUL authcid NUL password) as
/// the user and password; `None` when it is not one.
pub fn decode_plain(response: &str) -> Option<(String, zeroize::Zeroizing<String>)> {
    use base64::Engine;
    let decoded = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(response.trim())
            .ok()?,
    );
    let mut parts = decoded.split(|b| *b == 0);
    let _authz = parts.next();
    let (user, pass) = (parts.next()?, parts.next()?);
    Some((
        String::from_utf8_lossy(user).into_owned(),
        zeroize::Zeroizing::new(String::from_utf8_lossy(pass).into_owned()),
    ))
}

/// No user and no password: a malformed login, which no relay password matches.
pub fn no_login() -> (String, zeroize::Zeroizing<String>) {
    (String::new(), zeroize::Zeroizing::new(String::new()))
}

/// Forwards `first` and then every byte both ways until either side closes.
pub async fn splice<S: AsyncRead + AsyncWrite + Unpin>(
    client: BufReader<S>,
    upstream: SignedIn,
    first: &[u8],
) {
    let mut up = upstream.io;
    // What the client sent after `first` (pipelined commands) is in its buffer.
    let pending = client.buffer().to_vec();
    let mut client = client.into_inner();
    if up.get_mut().write_all(first).await.is_err()
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

/// Writes `reply` and CR LF.
pub async fn say<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut BufReader<S>,
    reply: &str,
) -> std::io::Result<()> {
    // One write: a reply and its CR LF in two small segments would wait out the
    // client's delayed ACK (Nagle), 40 ms a reply.
    let mut line = Vec::with_capacity(reply.len() + 2);
    line.extend_from_slice(reply.as_bytes());
    line.extend_from_slice(b"\r\n");
    let w = client.get_mut();
    w.write_all(&line).await?;
    w.flush().await
}

pub enum LineError {
    Closed,
    TooLong,
}

/// One line from the client (without CR LF), bounded by `MAX_LINE`.
pub async fn read_line<S: AsyncRead + Unpin>(
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

pub fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_response_gives_its_user_and_password() {
        // base64("\0bob\0s3cret") and base64("admin\0bob\0s3cret").
        for r in ["AGJvYgBzM2NyZXQ=", "YWRtaW4AYm9iAHMzY3JldA=="] {
            let (u, p) = decode_plain(r).unwrap();
            assert_eq!((u.as_str(), p.as_str()), ("bob", "s3cret"), "{r}");
        }
        assert!(decode_plain("not base64!").is_none());
        assert!(decode_plain("Ym9i").is_none(), "no NULs");
    }
}
