//! The IMAP dialogue: greeting, capabilities, STARTTLS, AUTHENTICATE (the initial
//! response on the command line when the server offers SASL-IR, RFC 4959),
//! `LIST "" "INBOX"` as the harmless follow-up, LOGOUT.

use super::sasl::{SaslStep, initial_response, shown_response};
use super::session::{Credential, Outcome, Session, Step, truncate};
use super::wire::{self, ImapLine, Mechanism, imap_line};
use crate::server::Tls;

impl Session<'_> {
    /// The whole dialogue. `Ok` says how the sign-in went; `Err` is what cut it short.
    pub(super) async fn imap(
        &mut self,
        cred: &Credential<'_>,
        forced: Option<Mechanism>,
    ) -> Step<Outcome> {
        self.conn.open().await?;
        let g = self.conn.greeting().await?;
        let mut caps = match imap_line(&g) {
            Some(ImapLine::Untagged(rest))
                if rest.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("OK")) =>
            {
                wire::imap_capabilities(rest)
            }
            Some(ImapLine::Untagged(rest)) => {
                return Err(Outcome::Protocol {
                    why: format!("the server greeted with \"{}\"", truncate(rest, 200)),
                });
            }
            _ => return Err(self.not_this_protocol(&g)),
        };
        let mut n = 0;
        let mut tag = || {
            n += 1;
            format!("A{n}")
        };
        if self.target.tls == Tls::Starttls {
            let c = match caps.take() {
                Some(c) => c,
                None => self.imap_capability(&tag()).await?,
            };
            if !c.iter().any(|c| c == "STARTTLS") {
                return Err(Outcome::NoStarttls);
            }
            let t = tag();
            let (ok, text) = self.imap_command(&t, "STARTTLS").await?;
            if !ok {
                return Err(Outcome::Protocol {
                    why: format!("STARTTLS refused: {text}"),
                });
            }
            self.conn.upgrade().await?;
        }
        let caps = match caps {
            Some(c) if c.iter().any(|c| c.starts_with("AUTH=")) => c,
            _ => self.imap_capability(&tag()).await?,
        };
        let mech = self.choose(wire::imap_auth_mechanisms(&caps), cred, forced)?;
        let t = tag();
        let sasl_ir = caps.iter().any(|c| c == "SASL-IR") && mech != Mechanism::Login;
        let first = if sasl_ir {
            (
                format!(
                    "{t} AUTHENTICATE {} {}",
                    mech.name(),
                    &*initial_response(mech, cred, self.target)
                ),
                format!(
                    "{t} AUTHENTICATE {} {}",
                    mech.name(),
                    shown_response(mech, cred.user())
                ),
            )
        } else {
            let l = format!("{t} AUTHENTICATE {}", mech.name());
            (l.clone(), l)
        };
        let ours = t.clone();
        let end = self
            .sasl(mech, cred, first, sasl_ir, move |s| {
                let ours = ours.clone();
                Box::pin(async move {
                    let l = s.conn.line("authenticating").await?;
                    Ok(match imap_line(&l) {
                        Some(ImapLine::Continue(c)) => SaslStep::Challenge(c.to_owned()),
                        Some(ImapLine::Tagged { tag, status, text }) if tag == ours => {
                            SaslStep::Done {
                                ok: status.eq_ignore_ascii_case("OK"),
                                text: without_capability_code(text).to_owned(),
                            }
                        }
                        // The server hangs up instead of answering (Office 365:
                        // `* BYE Session invalidated - AccessTokenExpired`).
                        Some(ImapLine::Untagged(u)) if is_bye(u) => SaslStep::Done {
                            ok: false,
                            text: u.to_owned(),
                        },
                        _ => SaslStep::Skip,
                    })
                })
            })
            .await?;
        if !end.ok {
            let _ = self.imap_command(&tag(), "LOGOUT").await;
            return Ok(Outcome::Rejected {
                reply: end.text,
                challenge: end.challenge,
            });
        }
        if self.keep_open {
            self.extensions = caps;
            return Ok(Outcome::Accepted { reply: end.text });
        }
        let (ok, text) = self.imap_command(&tag(), "LIST \"\" \"INBOX\"").await?;
        let _ = self.imap_command(&tag(), "LOGOUT").await;
        Ok(if ok {
            Outcome::Accepted { reply: end.text }
        } else {
            Outcome::FollowUpFailed { reply: text }
        })
    }

    /// Sends a tagged command and reads up to its tagged answer: (OK?, text).
    async fn imap_command(&mut self, tag: &str, cmd: &str) -> Step<(bool, String)> {
        self.conn.say(&format!("{tag} {cmd}")).await?;
        loop {
            let l = self
                .conn
                .line(&format!("waiting for the answer to {}", first_word(cmd)))
                .await?;
            match imap_line(&l) {
                Some(ImapLine::Tagged {
                    tag: t,
                    status,
                    text,
                }) if t == tag => return Ok((status.eq_ignore_ascii_case("OK"), text.to_owned())),
                // RFC 9051 §7.1.5: BYE before LOGOUT's answer is the goodbye; before any
                // other command's, the server is closing the session on us.
                Some(ImapLine::Untagged(u)) if is_bye(u) && !cmd.starts_with("LOGOUT") => {
                    return Ok((false, u.to_owned()));
                }
                _ => {}
            }
        }
    }

    async fn imap_capability(&mut self, tag: &str) -> Step<Vec<String>> {
        self.conn.say(&format!("{tag} CAPABILITY")).await?;
        let mut caps = Vec::new();
        loop {
            let l = self.conn.line("waiting for the capabilities").await?;
            match imap_line(&l) {
                Some(ImapLine::Untagged(u)) => {
                    if let Some(c) = wire::imap_capabilities(u) {
                        caps = c;
                    }
                }
                Some(ImapLine::Tagged { tag: t, .. }) if t == tag => return Ok(caps),
                _ => {}
            }
        }
    }
}

/// `[CAPABILITY ...] Logged in` is shown as `Logged in`: the list is in the dialogue.
fn without_capability_code(text: &str) -> &str {
    match text.strip_prefix('[') {
        Some(rest)
            if rest
                .get(..11)
                .is_some_and(|c| c.eq_ignore_ascii_case("CAPABILITY ")) =>
        {
            rest.split_once(']')
                .map_or(text, |(_, after)| after.trim_start())
        }
        _ => text,
    }
}

fn is_bye(untagged: &str) -> bool {
    let word = untagged.split(' ').next().unwrap_or_default();
    word.eq_ignore_ascii_case("BYE")
}

fn first_word(s: &str) -> &str {
    s.split(' ').next().unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_codes_are_left_out_of_the_servers_words() {
        assert_eq!(
            without_capability_code("[CAPABILITY IMAP4rev1 SASL-IR] Logged in"),
            "Logged in"
        );
        assert_eq!(
            without_capability_code("[AUTHENTICATIONFAILED] Invalid credentials (Failure)"),
            "[AUTHENTICATIONFAILED] Invalid credentials (Failure)"
        );
        assert_eq!(without_capability_code("[CAPA"), "[CAPA");
    }
}
