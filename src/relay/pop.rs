//! The POP3 relay: a client logs in locally with USER and PASS or AUTH PLAIN (checked
//! here, never forwarded), and from then on talks to the real server, signed in with
//! the account's token; its CAPA before the login is the real server's, minus STLS and
//! SASL, plus the local ways in.

use super::upstream::{self, FAILED_LOGIN_DELAY, LineError, Relay, login_ok, read_line, say};
use crate::server::Proto;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, BufReader};

const IDLE: Duration = Duration::from_secs(300);

pub async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send>(relay: Arc<Relay>, stream: S) {
    let mut client = BufReader::new(stream);
    let name = &relay.account.name;
    let upstream = match upstream::sign_in(&relay, Proto::Pop).await {
        Ok(u) => u,
        Err(r) => {
            eprintln!("mailtoken: POP3 relay of {name}: {}", r.text);
            // RFC 3206: SYS/TEMP is "try again later", AUTH a problem with the login.
            let code = if r.permanent { "[AUTH]" } else { "[SYS/TEMP]" };
            let _ = say(&mut client, &format!("-ERR {code} {}", r.text)).await;
            return;
        }
    };
    // POP3 has no PREAUTH (RFC 1939): a relay without a login still takes the
    // client's USER and PASS, whatever they are.
    let anyone = relay.access.no_login();
    let mut capa: Vec<String> = upstream
        .extensions
        .iter()
        .filter(|c| {
            let c = c.to_ascii_uppercase();
            !(c == "STLS" || c.starts_with("SASL") || c == "USER")
        })
        .cloned()
        .collect();
    capa.extend(["USER".to_owned(), "SASL PLAIN".to_owned()]);
    if say(
        &mut client,
        &format!("+OK mailtoken relay for {name} ready"),
    )
    .await
    .is_err()
    {
        return;
    }
    let mut user: Option<String> = None;
    let mut failures = 0;
    loop {
        let line = match tokio::time::timeout(IDLE, read_line(&mut client)).await {
            Err(_) | Ok(Err(LineError::Closed)) => return,
            Ok(Err(LineError::TooLong)) => {
                let _ = say(&mut client, "-ERR line too long").await;
                return;
            }
            Ok(Ok(l)) => l,
        };
        let (command, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let command = command.to_ascii_uppercase();
        let login = match command.as_str() {
            "CAPA" => {
                let mut lines = vec!["+OK capability list follows".to_owned()];
                lines.extend(capa.iter().cloned());
                lines.push(".".into());
                if say(&mut client, &lines.join("\r\n")).await.is_err() {
                    return;
                }
                continue;
            }
            "USER" => {
                user = Some(arg.trim().to_owned());
                if say(&mut client, "+OK send PASS").await.is_err() {
                    return;
                }
                continue;
            }
            "PASS" => match user.take() {
                Some(u) => Some((u, zeroize::Zeroizing::new(arg.to_owned()))),
                None => {
                    let _ = say(&mut client, "-ERR USER first").await;
                    continue;
                }
            },
            "AUTH" => {
                let mut words = arg.split_whitespace();
                if !words
                    .next()
                    .unwrap_or_default()
                    .eq_ignore_ascii_case("PLAIN")
                {
                    let _ = say(&mut client, "-ERR only AUTH PLAIN here").await;
                    continue;
                }
                let response = match words.next() {
                    Some(r) => r.to_owned(),
                    None => {
                        if say(&mut client, "+ ").await.is_err() {
                            return;
                        }
                        match read_line(&mut client).await {
                            Ok(l) => l,
                            Err(_) => return,
                        }
                    }
                };
                Some(upstream::decode_plain(&response).unwrap_or_else(upstream::no_login))
            }
            "QUIT" => {
                let _ = say(&mut client, "+OK bye").await;
                return;
            }
            "STLS" => {
                let _ = say(
                    &mut client,
                    "-ERR no STLS on the local relay (it listens on loopback only)",
                )
                .await;
                continue;
            }
            _ => {
                let _ = say(
                    &mut client,
                    "-ERR log in first (USER and PASS, or AUTH PLAIN)",
                )
                .await;
                continue;
            }
        };
        let Some((u, p)) = login else { continue };
        if anyone || login_ok(&relay, &u, &p) {
            if say(&mut client, "+OK logged in").await.is_ok() {
                upstream::splice(client, upstream, b"").await;
            }
            return;
        }
        failures += 1;
        tokio::time::sleep(FAILED_LOGIN_DELAY).await;
        if failures >= 3 {
            let _ = say(&mut client, "-ERR [AUTH] too many failed logins").await;
            return;
        }
        if say(&mut client, "-ERR [AUTH] authentication failed (the relay password: `mailtoken relay-password ACCOUNT`)").await.is_err() {
            return;
        }
    }
}
