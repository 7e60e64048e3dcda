//! The IMAP relay: a client is greeted with the real server's capabilities (minus
//! STARTTLS and its AUTH= mechanisms, plus AUTH=PLAIN when local logins are on), logs in
//! locally with LOGIN or AUTHENTICATE PLAIN (checked here, never forwarded), and from
//! then on talks to the real server, signed in with the account's token: every command
//! it knows keeps working (IDLE, MOVE, CONDSTORE, ...), and every answer is the server's.

use super::upstream::{self, FAILED_LOGIN_DELAY, LineError, Relay, login_ok, read_line, say};
use crate::server::Proto;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, BufReader};

/// How long a client may stay silent before it has logged in.
const IDLE: Duration = Duration::from_secs(300);

pub async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send>(relay: Arc<Relay>, stream: S) {
    let mut client = BufReader::new(stream);
    let name = &relay.account.name;
    let upstream = match upstream::sign_in(&relay, Proto::Imap).await {
        Ok(u) => u,
        Err(r) => {
            eprintln!("mailtoken: IMAP relay of {name}: {}", r.text);
            // RFC 5530: UNAVAILABLE is "try again later".
            let code = if r.permanent { "" } else { "[UNAVAILABLE] " };
            let _ = say(&mut client, &format!("* BYE {code}{}", r.text)).await;
            return;
        }
    };
    let mut caps: Vec<String> = upstream
        .extensions
        .iter()
        .filter(|c| {
            let c = c.to_ascii_uppercase();
            !(c == "STARTTLS" || c == "LOGINDISABLED" || c.starts_with("AUTH="))
        })
        .cloned()
        .collect();
    if relay.access.no_login() {
        let _ = say(
            &mut client,
            &format!(
                "* PREAUTH [CAPABILITY {}] mailtoken relay for {name}: logged in",
                caps.join(" ")
            ),
        )
        .await;
        upstream::splice(client, upstream, b"").await;
        return;
    }
    caps.push("AUTH=PLAIN".into());
    let caps = caps.join(" ");
    if say(
        &mut client,
        &format!("* OK [CAPABILITY {caps}] mailtoken relay for {name} ready"),
    )
    .await
    .is_err()
    {
        return;
    }
    let mut failures = 0;
    loop {
        let line = match tokio::time::timeout(IDLE, read_line(&mut client)).await {
            Err(_) => {
                let _ = say(&mut client, "* BYE idle for too long").await;
                return;
            }
            Ok(Err(LineError::TooLong)) => {
                let _ = say(&mut client, "* BYE line too long").await;
                return;
            }
            Ok(Err(LineError::Closed)) => return,
            Ok(Ok(l)) => l,
        };
        let mut words = line.splitn(3, ' ');
        let tag = words.next().unwrap_or("*").to_owned();
        let command = words.next().unwrap_or_default().to_ascii_uppercase();
        let args = words.next().unwrap_or_default();
        let ok = match command.as_str() {
            "CAPABILITY" => {
                let _ = say(&mut client, &format!("* CAPABILITY {caps}")).await;
                format!("{tag} OK CAPABILITY completed")
            }
            "NOOP" => format!("{tag} OK NOOP completed"),
            "LOGOUT" => {
                let _ = say(&mut client, "* BYE mailtoken relay closing").await;
                let _ = say(&mut client, &format!("{tag} OK LOGOUT completed")).await;
                return;
            }
            "STARTTLS" => {
                format!("{tag} NO no STARTTLS on the local relay (it listens on loopback only)")
            }
            "LOGIN" | "AUTHENTICATE" => {
                let login = if command == "LOGIN" {
                    parse_login(args)
                } else {
                    match authenticate_plain(&mut client, args).await {
                        Ok(l) => l,
                        Err(()) => return,
                    }
                };
                match login {
                    Some((user, pass)) if login_ok(&relay, &user, &pass) => {
                        if say(&mut client, &format!("{tag} OK {command} completed"))
                            .await
                            .is_ok()
                        {
                            upstream::splice(client, upstream, b"").await;
                        }
                        return;
                    }
                    Some(_) => {
                        failures += 1;
                        tokio::time::sleep(FAILED_LOGIN_DELAY).await;
                        if failures >= 3 {
                            let _ = say(&mut client, "* BYE too many failed logins").await;
                            return;
                        }
                        format!(
                            "{tag} NO [AUTHENTICATIONFAILED] Authentication failed (the relay password: `mailtoken relay-password ACCOUNT`)"
                        )
                    }
                    None => format!("{tag} BAD LOGIN user password, or AUTHENTICATE PLAIN"),
                }
            }
            _ => format!("{tag} BAD log in first (LOGIN, or AUTHENTICATE PLAIN)"),
        };
        if say(&mut client, &ok).await.is_err() {
            return;
        }
    }
}

/// `AUTHENTICATE PLAIN [initial-response]` (RFC 9051 §6.2.2, RFC 4959): the user and
/// password, `Ok(None)` for another mechanism or a malformed response, `Err` when the
/// client went away.
async fn authenticate_plain<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut BufReader<S>,
    args: &str,
) -> Result<Option<(String, zeroize::Zeroizing<String>)>, ()> {
    let mut words = args.split_whitespace();
    if !words
        .next()
        .unwrap_or_default()
        .eq_ignore_ascii_case("PLAIN")
    {
        return Ok(None);
    }
    let response = match words.next() {
        Some(r) => r.to_owned(),
        None => {
            say(client, "+ ").await.map_err(|_| ())?;
            read_line(client).await.map_err(|_| ())?
        }
    };
    Ok(upstream::decode_plain(&response))
}

/// `LOGIN user password`, each an atom or a quoted string (RFC 9051 §4.3; literals are
/// not taken before the login).
pub fn parse_login(args: &str) -> Option<(String, zeroize::Zeroizing<String>)> {
    let (user, rest) = astring(args.trim_start())?;
    let (pass, rest) = astring(rest.trim_start())?;
    rest.trim()
        .is_empty()
        .then(|| (user, zeroize::Zeroizing::new(pass)))
}

fn astring(s: &str) -> Option<(String, &str)> {
    if let Some(body) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => out.push(chars.next()?.1),
                '"' => return Some((out, &body[i + 1..])),
                c => out.push(c),
            }
        }
        None
    } else {
        let end = s.find(' ').unwrap_or(s.len());
        let atom = &s[..end];
        (!atom.is_empty() && !atom.starts_with('{')).then(|| (atom.to_owned(), &s[end..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_takes_atoms_and_quoted_strings_with_escapes() {
        let (u, p) = parse_login("bob@example.org \"pa ss\\\"w\\\\d\"").unwrap();
        assert_eq!((u.as_str(), p.as_str()), ("bob@example.org", "pa ss\"w\\d"));
        let (u, p) = parse_login("\"bob\" secret").unwrap();
        assert_eq!((u.as_str(), p.as_str()), ("bob", "secret"));
        assert!(parse_login("bob {6}").is_none());
        assert!(parse_login("bob").is_none());
        assert!(parse_login("bob \"unterminated").is_none());
    }
}
