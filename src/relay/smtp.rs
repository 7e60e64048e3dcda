//! The SMTP relay: a submission server on loopback for one account. A client is
//! greeted at once; its EHLO is answered with the real server's extensions (minus
//! STARTTLS and AUTH, plus `AUTH PLAIN LOGIN` when local logins are on); its local
//! login is checked here and never forwarded. At its first MAIL the relay has signed in
//! to the real server (the same dialogue as `verify`: TLS, EHLO, AUTH with the token),
//! forwards that command and everything after it, and passes the bytes both ways
//! unchanged: PIPELINING, CHUNKING, SMTPUTF8 and large messages keep working, and every
//! reply is the real server's.

use super::config::Access;
use super::upstream::{self, FAILED_LOGIN_DELAY, LineError, Relay, login_ok, read_line, say};
use crate::server::Proto;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// How long a client may stay silent before the hand-over.
const IDLE: Duration = Duration::from_secs(300);

/// One client, from greeting to the end of its session.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send>(relay: Arc<Relay>, stream: S) {
    let mut client = BufReader::new(stream);
    let name = &relay.account.name;
    // The real server first: its extensions are what the client is told, and a client
    // should hear at once when the relay cannot get through.
    let upstream = match upstream::sign_in(&relay, Proto::Smtp).await {
        Ok(u) => u,
        Err(r) => {
            eprintln!("mailtoken: SMTP relay of {name}: {}", r.text);
            // As a greeting: 554 is "no service here" (RFC 5321 §3.1), 421 "not now".
            let code = if r.permanent {
                "554 5.7.0"
            } else {
                "421 4.4.0"
            };
            let _ = say(&mut client, &format!("{code} {}", r.text)).await;
            return;
        }
    };
    let local = "localhost";
    let _ = say(
        &mut client,
        &format!("220 {local} ESMTP mailtoken relay for {name}"),
    )
    .await;
    let mut authed = relay.access.no_login();
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
            "AUTH" if relay.access.no_login() => "503 5.5.1 no login needed here".into(),
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
                upstream::splice(client, upstream, format!("{line}\r\n").as_bytes()).await;
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
            upstream::decode_plain(&response).unwrap_or_else(upstream::no_login)
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
    Some(login_ok(relay, &user, &pass))
}
