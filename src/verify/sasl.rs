//! The SASL exchange the three dialogues share: choosing the mechanism, the initial
//! response, answering challenges (and ending a failed exchange as each mechanism wants),
//! and how responses show in the transcript. The strings themselves come from `crate::sasl`.

use super::session::{Credential, Outcome, Session, Step, Target};
use super::wire::{self, Challenge, Mechanism, choose_mechanism};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::pin::Pin;
use zeroize::Zeroizing;

/// How the SASL exchange ended.
pub(super) struct SaslEnd {
    pub(super) ok: bool,
    pub(super) text: String,
    pub(super) challenge: Option<Challenge>,
}

/// One step of a SASL exchange, in any of the three protocols.
pub(super) enum SaslStep {
    Challenge(String),
    Done {
        ok: bool,
        text: String,
    },
    /// Untagged IMAP data and the like: read on.
    Skip,
}

impl Session<'_> {
    /// Runs one SASL exchange. `first` is the command (with the initial response when
    /// `ir_sent`) and how the transcript shows it; `step` reads the protocol's next step.
    pub(super) async fn sasl<F>(
        &mut self,
        mech: Mechanism,
        cred: &Credential<'_>,
        first: (String, String),
        ir_sent: bool,
        mut step: F,
    ) -> Step<SaslEnd>
    where
        F: FnMut(&mut Self) -> Pin<Box<dyn Future<Output = Step<SaslStep>> + Send + '_>>,
    {
        // What to send for each server challenge, in order; after them, a challenge
        // means failure and gets the mechanism's "I give up" answer.
        let mut queued: Vec<(Zeroizing<String>, String)> = Vec::new();
        let user = cred.user();
        match (mech, cred) {
            (Mechanism::Login, Credential::Password { user, password }) => {
                queued.push((
                    Zeroizing::new(STANDARD.encode(user)),
                    format!("{} (the user name)", STANDARD.encode(user)),
                ));
                queued.push((
                    Zeroizing::new(STANDARD.encode(password)),
                    "<password hidden>".into(),
                ));
            }
            _ if !ir_sent => queued.push((
                initial_response(mech, cred, self.target),
                shown_response(mech, user),
            )),
            _ => {}
        }
        queued.reverse();
        self.conn.send(&first.0, &first.1).await?;
        let mut challenge = None;
        for _ in 0..8 {
            match step(self).await? {
                SaslStep::Skip => {}
                SaslStep::Challenge(c) => {
                    if let Some((line, shown)) = queued.pop() {
                        self.conn.send(&line, &shown).await?;
                        continue;
                    }
                    let decoded = wire::decode_challenge(&c);
                    if let Some(d) = &decoded {
                        self.conn
                            .transcript
                            .push(format!("   (decoded: {})", d.decoded));
                    }
                    challenge = decoded;
                    // RFC 7628 §3.2.3: OAUTHBEARER answers a failure with %x01;
                    // XOAUTH2 with an empty response; others cancel with `*`.
                    let (answer, shown) = match mech {
                        Mechanism::Oauthbearer => ("AQ==", "AQ== (%x01: ends the failed exchange)"),
                        Mechanism::Xoauth2 => ("", "(empty line: ends the failed exchange)"),
                        _ => ("*", "* (cancels the exchange)"),
                    };
                    self.conn.send(answer, shown).await?;
                }
                SaslStep::Done { ok, text } => {
                    return Ok(SaslEnd {
                        ok,
                        text,
                        challenge,
                    });
                }
            }
        }
        Err(Outcome::Protocol {
            why: "the server kept sending challenges".into(),
        })
    }

    /// Picks the mechanism from what the server offers, and remembers both for the report.
    pub(super) fn choose(
        &mut self,
        offered: Vec<String>,
        cred: &Credential<'_>,
        forced: Option<Mechanism>,
    ) -> Step<Mechanism> {
        self.offered = offered;
        let m = choose_mechanism(&self.offered, cred.mechanisms(), forced)
            .map_err(|why| Outcome::NoMechanism { why })?;
        self.mechanism = Some(m);
        Ok(m)
    }
}

/// The base64 initial response for `mech`.
pub(super) fn initial_response(
    mech: Mechanism,
    cred: &Credential<'_>,
    target: &Target,
) -> Zeroizing<String> {
    match (mech, cred) {
        (Mechanism::Xoauth2, Credential::OAuth { user, token }) => {
            crate::sasl::xoauth2(user, token)
        }
        (Mechanism::Oauthbearer, Credential::OAuth { user, token }) => {
            crate::sasl::oauthbearer(user, Some(&target.host), Some(target.port), token)
        }
        (Mechanism::Plain, Credential::Password { user, password }) => {
            let raw = Zeroizing::new(format!("\0{user}\0{password}"));
            Zeroizing::new(STANDARD.encode(raw.as_bytes()))
        }
        // A forced mechanism that does not fit the credential: send what it would get
        // from a confused client, an empty response, and let the server answer.
        _ => Zeroizing::new(String::new()),
    }
}

/// How an initial response appears in the transcript.
pub(super) fn shown_response(mech: Mechanism, user: &str) -> String {
    match mech {
        Mechanism::Plain | Mechanism::Login => {
            format!("<{} for {user}, password hidden>", mech.name())
        }
        _ => format!("<{} for {user}, token hidden>", mech.name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcripts_hide_the_secret() {
        assert_eq!(
            shown_response(Mechanism::Xoauth2, "a@b"),
            "<XOAUTH2 for a@b, token hidden>"
        );
        assert_eq!(
            shown_response(Mechanism::Plain, "a@b"),
            "<PLAIN for a@b, password hidden>"
        );
    }
}
