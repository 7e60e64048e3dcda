//! The POP3 dialogue: greeting, CAPA, STLS (RFC 2595), AUTH (RFC 5034), STAT as the
//! harmless follow-up, QUIT.

use super::sasl::SaslStep;
use super::session::{Credential, Outcome, Session, Step, truncate};
use super::wire::{self, Mechanism, PopLine, pop_line};
use crate::server::Tls;

impl Session<'_> {
    /// The whole dialogue. `Ok` says how the sign-in went; `Err` is what cut it short.
    pub(super) async fn pop(
        &mut self,
        cred: &Credential<'_>,
        forced: Option<Mechanism>,
    ) -> Step<Outcome> {
        self.conn.open().await?;
        let g = self.conn.greeting().await?;
        match pop_line(&g) {
            Some(PopLine::Ok(_)) => {}
            Some(PopLine::Err(t)) => {
                return Err(Outcome::Protocol {
                    why: format!("the server refused the connection: {t}"),
                });
            }
            _ => return Err(self.not_this_protocol(&g)),
        }
        let mut capa = self.pop_capa().await?;
        if self.target.tls == Tls::Starttls {
            if !capa.stls {
                return Err(Outcome::NoStarttls);
            }
            let (ok, text) = self.pop_command("STLS").await?;
            if !ok {
                return Err(Outcome::Protocol {
                    why: format!("STLS refused: {text}"),
                });
            }
            self.conn.upgrade().await?;
            capa = self.pop_capa().await?;
        }
        let mech = self.choose(capa.sasl, cred, forced)?;
        // Two steps always (`AUTH M`, then the response after `+`): every server takes
        // it, and Microsoft's documentation asks for it.
        let first = format!("AUTH {}", mech.name());
        let end = self
            .sasl(mech, cred, (first.clone(), first), false, |s| {
                Box::pin(async move {
                    let l = s.conn.line("authenticating").await?;
                    Ok(match pop_line(&l) {
                        Some(PopLine::Continue(c)) => SaslStep::Challenge(c.to_owned()),
                        Some(PopLine::Ok(t)) => SaslStep::Done {
                            ok: true,
                            text: t.to_owned(),
                        },
                        Some(PopLine::Err(t)) => SaslStep::Done {
                            ok: false,
                            text: t.to_owned(),
                        },
                        None => {
                            return Err(Outcome::Protocol {
                                why: format!("unexpected answer to AUTH: {}", truncate(&l, 200)),
                            });
                        }
                    })
                })
            })
            .await?;
        if !end.ok {
            let _ = self.pop_command("QUIT").await;
            return Ok(Outcome::Rejected {
                reply: end.text,
                challenge: end.challenge,
            });
        }
        if self.keep_open {
            return Ok(Outcome::Accepted { reply: end.text });
        }
        let (ok, text) = self.pop_command("STAT").await?;
        let _ = self.pop_command("QUIT").await;
        Ok(if ok {
            Outcome::Accepted { reply: end.text }
        } else {
            Outcome::FollowUpFailed { reply: text }
        })
    }

    async fn pop_command(&mut self, cmd: &str) -> Step<(bool, String)> {
        self.conn.say(cmd).await?;
        let l = self
            .conn
            .line(&format!("waiting for the answer to {cmd}"))
            .await?;
        match pop_line(&l) {
            Some(PopLine::Ok(t)) => Ok((true, t.to_owned())),
            Some(PopLine::Err(t)) => Ok((false, t.to_owned())),
            _ => Err(Outcome::Protocol {
                why: format!("unexpected answer to {cmd}: {}", truncate(&l, 200)),
            }),
        }
    }

    async fn pop_capa(&mut self) -> Step<wire::PopCapa> {
        let (ok, _) = self.pop_command("CAPA").await?;
        if !ok {
            return Ok(wire::PopCapa::default());
        }
        let mut lines = Vec::new();
        for _ in 0..200 {
            let l = self.conn.line("reading the capabilities").await?;
            if l == "." {
                self.extensions = lines.clone();
                return Ok(wire::pop_capa(&lines));
            }
            lines.push(l);
        }
        Err(Outcome::Protocol {
            why: "the capability list does not end".into(),
        })
    }
}
