//! The SMTP submission dialogue: greeting, EHLO, STARTTLS (RFC 3207), AUTH (RFC 4954),
//! NOOP as the harmless follow-up, QUIT.

use super::sasl::{SaslStep, initial_response, shown_response};
use super::session::{Credential, Outcome, Session, Step, TestMessage};
use super::wire::{self, Mechanism, smtp_line};
use crate::server::Tls;

impl Session<'_> {
    /// The whole dialogue. `Ok` says how the sign-in went; `Err` is what cut it short.
    pub(super) async fn smtp(
        &mut self,
        cred: &Credential<'_>,
        forced: Option<Mechanism>,
    ) -> Step<Outcome> {
        self.conn.open().await?;
        let first = self.conn.greeting().await?;
        let (code, _) = self.smtp_reply_from(first).await?;
        if code != 220 {
            return Err(Outcome::Protocol {
                why: format!("the server greeted with code {code}"),
            });
        }
        let mut e = self.ehlo().await?;
        if self.target.tls == Tls::Starttls {
            if !e.starttls {
                return Err(Outcome::NoStarttls);
            }
            let (code, text) = self.smtp_command("STARTTLS").await?;
            if code != 220 {
                return Err(Outcome::Protocol {
                    why: format!("STARTTLS refused: {code} {text}"),
                });
            }
            self.conn.upgrade().await?;
            e = self.ehlo().await?;
        }
        let mech = self.choose(e.auth, cred, forced)?;
        // RFC 4954 §4: no initial response when it would make the line longer than
        // 512 octets; then the response follows the server's empty 334.
        let ir = initial_response(mech, cred, self.target);
        let with_ir = format!("AUTH {} {}", mech.name(), &*ir);
        let (first, ir_sent) = if mech != Mechanism::Login && with_ir.len() + 2 <= 512 {
            (
                (
                    with_ir,
                    format!("AUTH {} {}", mech.name(), shown_response(mech, cred.user())),
                ),
                true,
            )
        } else {
            let l = format!("AUTH {}", mech.name());
            ((l.clone(), l), false)
        };
        let end = self
            .sasl(mech, cred, first, ir_sent, |s| {
                Box::pin(async move {
                    let (code, text) = s.smtp_reply().await?;
                    Ok(match code {
                        334 => SaslStep::Challenge(text),
                        200..=299 => SaslStep::Done { ok: true, text },
                        _ => SaslStep::Done {
                            ok: false,
                            text: format!("{code} {text}"),
                        },
                    })
                })
            })
            .await?;
        if !end.ok {
            let _ = self.smtp_command("QUIT").await;
            return Ok(Outcome::Rejected {
                reply: end.text,
                challenge: end.challenge,
            });
        }
        if self.keep_open {
            return Ok(Outcome::Accepted { reply: end.text });
        }
        let follow_up = match self.message {
            Some(m) => self.submit(m).await?,
            None => match self.smtp_command("NOOP").await? {
                (250, _) => Ok(()),
                (code, text) => Err(format!("{code} {text}")),
            },
        };
        let _ = self.smtp_command("QUIT").await;
        Ok(match follow_up {
            Ok(()) => Outcome::Accepted { reply: end.text },
            Err(reply) => Outcome::FollowUpFailed { reply },
        })
    }

    /// Submits the test message (RFC 5321 §3.3); `Err` holds the refusal. Exchange
    /// Online checks the From address only once it has the message, so a mailbox that
    /// may not send as it hears so (`554 5.2.252 SendAsDenied`) after DATA, not before.
    async fn submit(&mut self, m: &TestMessage) -> Step<Result<(), String>> {
        let steps = [
            (format!("MAIL FROM:<{}>", m.from), 250),
            (format!("RCPT TO:<{}>", m.to), 250),
            ("DATA".to_owned(), 354),
        ];
        for (cmd, want) in steps {
            let (code, text) = self.smtp_command(&cmd).await?;
            if code != want {
                return Ok(Err(format!("{code} {text}")));
            }
        }
        // The submission server adds Date and Message-ID (RFC 6409 §8).
        let message = format!(
            "From: <{from}>\r\nTo: <{to}>\r\nSubject: mailtoken verify: test message\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
             This message was sent by `mailtoken verify --send-to` to check that the server\r\n\
             takes mail from {from} signed in with its token. Nothing to do.\r\n.",
            from = m.from,
            to = m.to
        );
        let (code, text) = self.smtp_command(&message).await?;
        Ok(if code == 250 {
            Ok(())
        } else {
            Err(format!("{code} {text}"))
        })
    }

    async fn ehlo(&mut self) -> Step<wire::Ehlo> {
        // An address literal is the one name every server takes from a client that
        // has no public host name.
        let local = self
            .conn
            .local_addr()
            .map(|a| match a {
                std::net::SocketAddr::V4(v4) => format!("[{}]", v4.ip()),
                std::net::SocketAddr::V6(v6) => format!("[IPv6:{}]", v6.ip()),
            })
            .unwrap_or_else(|| "[127.0.0.1]".into());
        self.conn.say(&format!("EHLO {local}")).await?;
        let mut lines = Vec::new();
        loop {
            let l = self.conn.line("waiting for the answer to EHLO").await?;
            let Some(r) = smtp_line(&l) else {
                return Err(self.not_this_protocol(&l));
            };
            if r.code != 250 {
                return Err(Outcome::Protocol {
                    why: format!("EHLO refused: {l}"),
                });
            }
            lines.push(r.text.to_owned());
            if !r.more {
                self.extensions = lines.iter().skip(1).cloned().collect();
                return Ok(wire::ehlo(&lines));
            }
        }
    }

    async fn smtp_command(&mut self, cmd: &str) -> Step<(u16, String)> {
        self.conn.say(cmd).await?;
        self.smtp_reply().await
    }

    async fn smtp_reply(&mut self) -> Step<(u16, String)> {
        let l = self.conn.line("waiting for the server's reply").await?;
        self.smtp_reply_from(l).await
    }

    /// A whole (possibly multi-line) reply starting with `first`: its code and its text
    /// lines joined by spaces.
    async fn smtp_reply_from(&mut self, first: String) -> Step<(u16, String)> {
        let mut line = first;
        let mut text = Vec::new();
        loop {
            let Some(r) = smtp_line(&line) else {
                return Err(self.not_this_protocol(&line));
            };
            text.push(r.text.to_owned());
            if !r.more {
                return Ok((r.code, text.join(" ")));
            }
            line = self.conn.line("reading a reply").await?;
        }
    }
}
