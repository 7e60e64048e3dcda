//! One connection to one server, spoken the way a mail program speaks it: connect,
//! TLS (implicit, or STARTTLS/STLS on the same socket), capabilities, one SASL exchange,
//! one harmless follow-up command, and a clean goodbye. Everything said is recorded
//! for the report, with the credential replaced; every read and the handshake have a
//! timeout. The server's words are parsed by the pure functions in `wire`.

use super::wire::{
    self, Challenge, ImapLine, MAX_LINE, Mechanism, PopLine, choose_mechanism, imap_line, pop_line,
    smtp_line,
};
use crate::server::{Proto, Tls};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use zeroize::Zeroizing;

/// The server to check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub proto: Proto,
    pub host: String,
    pub port: u16,
    pub tls: Tls,
}

/// The credential to present.
pub enum Credential<'a> {
    OAuth { user: &'a str, token: &'a str },
    Password { user: &'a str, password: &'a str },
}

impl Credential<'_> {
    fn user(&self) -> &str {
        match self {
            Credential::OAuth { user, .. } | Credential::Password { user, .. } => user,
        }
    }

    /// The mechanisms this credential can use, best first.
    pub fn mechanisms(&self) -> &'static [Mechanism] {
        match self {
            Credential::OAuth { .. } => &[Mechanism::Xoauth2, Mechanism::Oauthbearer],
            Credential::Password { .. } => &[Mechanism::Plain, Mechanism::Login],
        }
    }
}

/// How one connection ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// Authenticated, and the follow-up command was answered.
    Accepted {
        reply: String,
    },
    /// The server refused the credential.
    Rejected {
        reply: String,
        challenge: Option<Challenge>,
    },
    /// Authenticated, then the follow-up command failed.
    FollowUpFailed {
        reply: String,
    },
    /// No mechanism both sides know.
    NoMechanism {
        why: String,
    },
    /// The account says STARTTLS, the server does not offer it.
    NoStarttls,
    /// The port speaks the other TLS mode than the one configured.
    WrongTls {
        port_speaks: Tls,
    },
    Unreachable {
        why: String,
    },
    Certificate {
        why: String,
    },
    Timeout {
        during: String,
    },
    /// The server said something the protocol does not allow here.
    Protocol {
        why: String,
    },
}

/// What one connection showed.
#[derive(Debug, Serialize)]
pub struct Attempt {
    pub tls_version: Option<String>,
    pub offered: Vec<String>,
    pub mechanism: Option<Mechanism>,
    pub outcome: Outcome,
    pub transcript: Vec<String>,
}

/// Connects to `target` and authenticates with `cred`.
pub async fn check(
    target: &Target,
    tls: &Arc<rustls::ClientConfig>,
    cred: &Credential<'_>,
    forced: Option<Mechanism>,
    limit: Duration,
) -> Attempt {
    let mut s = Session {
        target,
        tls,
        limit,
        io: None,
        tls_version: None,
        offered: Vec::new(),
        mechanism: None,
        transcript: Vec::new(),
    };
    let result = match target.proto {
        Proto::Imap => s.imap(cred, forced).await,
        Proto::Pop => s.pop(cred, forced).await,
        Proto::Smtp => s.smtp(cred, forced).await,
    };
    let outcome = match result {
        Ok(o) | Err(o) => o,
    };
    Attempt {
        tls_version: s.tls_version,
        offered: s.offered,
        mechanism: s.mechanism,
        outcome,
        transcript: s.transcript,
    }
}

type Step<T> = Result<T, Outcome>;

struct Session<'a> {
    target: &'a Target,
    tls: &'a Arc<rustls::ClientConfig>,
    limit: Duration,
    io: Option<BufReader<Stream>>,
    tls_version: Option<String>,
    offered: Vec<String>,
    mechanism: Option<Mechanism>,
    transcript: Vec<String>,
}

/// How the SASL exchange ended.
struct SaslEnd {
    ok: bool,
    text: String,
    challenge: Option<Challenge>,
}

/// One step of a SASL exchange, in any of the three protocols.
enum SaslStep {
    Challenge(String),
    Done {
        ok: bool,
        text: String,
    },
    /// Untagged IMAP data and the like: read on.
    Skip,
}

impl Session<'_> {
    // ---- transport ----

    /// Connects; with implicit TLS, also does the handshake.
    async fn open(&mut self) -> Step<()> {
        let tcp = self.connect().await?;
        let stream = match self.target.tls {
            Tls::Implicit => Stream::Tls(Box::new(self.handshake(tcp).await?)),
            Tls::Starttls => Stream::Plain(tcp),
        };
        self.io = Some(BufReader::new(stream));
        Ok(())
    }

    async fn connect(&self) -> Step<TcpStream> {
        let (host, port) = (self.target.host.as_str(), self.target.port);
        match timeout(self.limit, TcpStream::connect((host, port))).await {
            Err(_) => Err(Outcome::Timeout {
                during: format!("connecting to {host}:{port}"),
            }),
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                Err(Outcome::Unreachable {
                    why: format!("nothing listens on {host}:{port} (connection refused)"),
                })
            }
            Ok(Err(e)) => Err(Outcome::Unreachable {
                why: format!("cannot connect to {host}:{port}: {e}"),
            }),
            Ok(Ok(s)) => Ok(s),
        }
    }

    async fn handshake(&mut self, tcp: TcpStream) -> Step<TlsStream<TcpStream>> {
        let stream = tls_handshake(tcp, self.tls, &self.target.host, self.limit).await?;
        let version = stream.get_ref().1.protocol_version().map(|v| match v {
            rustls::ProtocolVersion::TLSv1_3 => "TLS 1.3".to_owned(),
            rustls::ProtocolVersion::TLSv1_2 => "TLS 1.2".to_owned(),
            other => format!("{other:?}"),
        });
        self.transcript.push(format!(
            "-- TLS established ({})",
            version.as_deref().unwrap_or("unknown version")
        ));
        self.tls_version = version;
        Ok(stream)
    }

    /// STARTTLS on the same socket, after the server said go ahead.
    async fn upgrade(&mut self) -> Step<()> {
        let io = self.io.take().expect("connected");
        // Anything the server sent after its go-ahead would be read as if it came over
        // TLS: the STARTTLS command-injection attack. Refuse it.
        if !io.buffer().is_empty() {
            return Err(Outcome::Protocol {
                why: "the server sent data after accepting STARTTLS, before the TLS handshake"
                    .into(),
            });
        }
        let Stream::Plain(tcp) = io.into_inner() else {
            return Err(Outcome::Protocol {
                why: "STARTTLS on a connection that is already TLS".into(),
            });
        };
        let tls = self.handshake(tcp).await?;
        self.io = Some(BufReader::new(Stream::Tls(Box::new(tls))));
        Ok(())
    }

    async fn send(&mut self, line: &str, shown: &str) -> Step<()> {
        self.transcript.push(format!("C: {shown}"));
        let io = self.io.as_mut().expect("connected");
        let mut bytes = Zeroizing::new(Vec::with_capacity(line.len() + 2));
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        let write = async {
            io.get_mut().write_all(&bytes).await?;
            io.get_mut().flush().await
        };
        match timeout(self.limit, write).await {
            Err(_) => Err(Outcome::Timeout {
                during: "sending a command".into(),
            }),
            Ok(Err(e)) => Err(Outcome::Protocol {
                why: format!("the connection broke while sending: {e}"),
            }),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Sends a command that holds no secret.
    async fn say(&mut self, line: &str) -> Step<()> {
        self.send(line, line).await
    }

    async fn line(&mut self, during: &str) -> Step<String> {
        let io = self.io.as_mut().expect("connected");
        let line = match timeout(self.limit, read_line(io)).await {
            Err(_) => {
                return Err(Outcome::Timeout {
                    during: during.to_owned(),
                });
            }
            Ok(Err(e)) => return Err(read_error(e, during)),
            Ok(Ok(None)) => {
                return Err(Outcome::Protocol {
                    why: format!("the server closed the connection while {during}"),
                });
            }
            Ok(Ok(Some(l))) => l,
        };
        self.transcript.push(format!("S: {line}"));
        Ok(line)
    }

    /// The greeting. On a plain start it also notices a port that waits for a TLS
    /// handshake instead of greeting: after a second of silence a second connection
    /// tries TLS, and if that works the port speaks implicit TLS.
    async fn greeting(&mut self) -> Step<String> {
        if self.target.tls == Tls::Implicit {
            return self.line("waiting for the greeting").await;
        }
        let (target, tls, limit) = (self.target, self.tls, self.limit);
        let probe = async move {
            tokio::time::sleep(Duration::from_secs(1).min(limit / 2)).await;
            let addr = (target.host.as_str(), target.port);
            if let Ok(Ok(tcp)) = timeout(limit, TcpStream::connect(addr)).await
                && tls_handshake(tcp, tls, &target.host, limit).await.is_ok()
            {
                return;
            }
            std::future::pending::<()>().await;
        };
        tokio::select! {
            line = self.line("waiting for the greeting") => line,
            () = probe => Err(Outcome::WrongTls { port_speaks: Tls::Implicit }),
        }
    }

    /// A first line that is not this protocol's: say what it looks like.
    fn not_this_protocol(&self, line: &str) -> Outcome {
        let looks = if smtp_line(line).is_some() {
            " (that is an SMTP server's greeting)"
        } else if line.starts_with("* ") {
            " (that is an IMAP server's greeting)"
        } else if line.starts_with("+OK") {
            " (that is a POP3 server's greeting)"
        } else {
            ""
        };
        Outcome::Protocol {
            why: format!(
                "this is not a {} server: it said \"{}\"{looks}",
                proto_name(self.target.proto),
                truncate(line, 120)
            ),
        }
    }

    // ---- SASL, common to the three protocols ----

    /// Runs one SASL exchange. `first` is the command (with the initial response when
    /// `ir_sent`); `step` reads the protocol's next step.
    async fn sasl<F>(
        &mut self,
        mech: Mechanism,
        cred: &Credential<'_>,
        first: (String, String),
        ir_sent: bool,
        mut step: F,
    ) -> Step<SaslEnd>
    where
        F: FnMut(&mut Self) -> Pin<Box<dyn Future<Output = Step<SaslStep>> + '_>>,
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
        self.send(&first.0, &first.1).await?;
        let mut challenge = None;
        for _ in 0..8 {
            match step(self).await? {
                SaslStep::Skip => {}
                SaslStep::Challenge(c) => {
                    if let Some((line, shown)) = queued.pop() {
                        self.send(&line, &shown).await?;
                        continue;
                    }
                    let decoded = wire::decode_challenge(&c);
                    if let Some(d) = &decoded {
                        self.transcript.push(format!("   (decoded: {})", d.decoded));
                    }
                    challenge = decoded;
                    // RFC 7628 §3.2.3: OAUTHBEARER answers a failure with %x01;
                    // XOAUTH2 with an empty response; others cancel with `*`.
                    let (answer, shown) = match mech {
                        Mechanism::Oauthbearer => ("AQ==", "AQ== (%x01: ends the failed exchange)"),
                        Mechanism::Xoauth2 => ("", "(empty line: ends the failed exchange)"),
                        _ => ("*", "* (cancels the exchange)"),
                    };
                    self.send(answer, shown).await?;
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

    fn choose(
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

    // ---- IMAP ----

    async fn imap(&mut self, cred: &Credential<'_>, forced: Option<Mechanism>) -> Step<Outcome> {
        self.open().await?;
        let g = self.greeting().await?;
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
            self.upgrade().await?;
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
                    let l = s.line("authenticating").await?;
                    Ok(match imap_line(&l) {
                        Some(ImapLine::Continue(c)) => SaslStep::Challenge(c.to_owned()),
                        Some(ImapLine::Tagged { tag, status, text }) if tag == ours => {
                            SaslStep::Done {
                                ok: status.eq_ignore_ascii_case("OK"),
                                text: without_capability_code(text).to_owned(),
                            }
                        }
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
        self.say(&format!("{tag} {cmd}")).await?;
        loop {
            let l = self
                .line(&format!("waiting for the answer to {}", first_word(cmd)))
                .await?;
            if let Some(ImapLine::Tagged {
                tag: t,
                status,
                text,
            }) = imap_line(&l)
                && t == tag
            {
                return Ok((status.eq_ignore_ascii_case("OK"), text.to_owned()));
            }
        }
    }

    async fn imap_capability(&mut self, tag: &str) -> Step<Vec<String>> {
        self.say(&format!("{tag} CAPABILITY")).await?;
        let mut caps = Vec::new();
        loop {
            let l = self.line("waiting for the capabilities").await?;
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

    // ---- POP3 ----

    async fn pop(&mut self, cred: &Credential<'_>, forced: Option<Mechanism>) -> Step<Outcome> {
        self.open().await?;
        let g = self.greeting().await?;
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
            self.upgrade().await?;
            capa = self.pop_capa().await?;
        }
        let mech = self.choose(capa.sasl, cred, forced)?;
        // Two steps always (`AUTH M`, then the response after `+`): every server takes
        // it, and Microsoft's documentation asks for it.
        let first = format!("AUTH {}", mech.name());
        let end = self
            .sasl(mech, cred, (first.clone(), first), false, |s| {
                Box::pin(async move {
                    let l = s.line("authenticating").await?;
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
        let (ok, text) = self.pop_command("STAT").await?;
        let _ = self.pop_command("QUIT").await;
        Ok(if ok {
            Outcome::Accepted { reply: end.text }
        } else {
            Outcome::FollowUpFailed { reply: text }
        })
    }

    async fn pop_command(&mut self, cmd: &str) -> Step<(bool, String)> {
        self.say(cmd).await?;
        let l = self
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
            let l = self.line("reading the capabilities").await?;
            if l == "." {
                return Ok(wire::pop_capa(&lines));
            }
            lines.push(l);
        }
        Err(Outcome::Protocol {
            why: "the capability list does not end".into(),
        })
    }

    // ---- SMTP ----

    async fn smtp(&mut self, cred: &Credential<'_>, forced: Option<Mechanism>) -> Step<Outcome> {
        self.open().await?;
        let first = self.greeting().await?;
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
            self.upgrade().await?;
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
        let (code, text) = self.smtp_command("NOOP").await?;
        let _ = self.smtp_command("QUIT").await;
        Ok(if code == 250 {
            Outcome::Accepted { reply: end.text }
        } else {
            Outcome::FollowUpFailed {
                reply: format!("{code} {text}"),
            }
        })
    }

    async fn ehlo(&mut self) -> Step<wire::Ehlo> {
        // An address literal is the one name every server takes from a client that
        // has no public host name.
        let local = self
            .io
            .as_ref()
            .and_then(|io| io.get_ref().local_addr())
            .map(|a| match a {
                std::net::SocketAddr::V4(v4) => format!("[{}]", v4.ip()),
                std::net::SocketAddr::V6(v6) => format!("[IPv6:{}]", v6.ip()),
            })
            .unwrap_or_else(|| "[127.0.0.1]".into());
        self.say(&format!("EHLO {local}")).await?;
        let mut lines = Vec::new();
        loop {
            let l = self.line("waiting for the answer to EHLO").await?;
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
                return Ok(wire::ehlo(&lines));
            }
        }
    }

    async fn smtp_command(&mut self, cmd: &str) -> Step<(u16, String)> {
        self.say(cmd).await?;
        self.smtp_reply().await
    }

    async fn smtp_reply(&mut self) -> Step<(u16, String)> {
        let l = self.line("waiting for the server's reply").await?;
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
            line = self.line("reading a reply").await?;
        }
    }
}

/// The base64 initial response for `mech`.
fn initial_response(mech: Mechanism, cred: &Credential<'_>, target: &Target) -> Zeroizing<String> {
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
fn shown_response(mech: Mechanism, user: &str) -> String {
    match mech {
        Mechanism::Plain | Mechanism::Login => {
            format!("<{} for {user}, password hidden>", mech.name())
        }
        _ => format!("<{} for {user}, token hidden>", mech.name()),
    }
}

async fn tls_handshake(
    tcp: TcpStream,
    config: &Arc<rustls::ClientConfig>,
    host: &str,
    limit: Duration,
) -> Step<TlsStream<TcpStream>> {
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| {
        Outcome::Protocol {
            why: format!("{host} is not a valid TLS server name: {e}"),
        }
    })?;
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    match timeout(limit, connector.connect(name, tcp)).await {
        Err(_) => Err(Outcome::Timeout {
            during: "the TLS handshake".into(),
        }),
        Ok(Err(e)) => Err(tls_error(&e, host)),
        Ok(Ok(s)) => Ok(s),
    }
}

/// Sorts a failed handshake: a certificate we do not trust, a server that answered in
/// plain text (a STARTTLS port), or something else.
fn tls_error(e: &io::Error, host: &str) -> Outcome {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(c)) => Outcome::Certificate {
            why: certificate_problem(c, host),
        },
        Some(rustls::Error::InvalidMessage(_)) => Outcome::WrongTls {
            port_speaks: Tls::Starttls,
        },
        Some(other) => Outcome::Protocol {
            why: format!("the TLS handshake failed: {other}"),
        },
        None if matches!(
            e.kind(),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
        ) =>
        {
            Outcome::Protocol {
                why: "the server closed the connection during the TLS handshake".into(),
            }
        }
        None => Outcome::Protocol {
            why: format!("the TLS handshake failed: {e}"),
        },
    }
}

fn certificate_problem(c: &rustls::CertificateError, host: &str) -> String {
    use rustls::CertificateError as C;
    match c {
        C::UnknownIssuer => format!(
            "the certificate of {host} is signed by a certificate authority this machine does not trust"
        ),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            format!("the certificate the server sent is not valid for the name {host}")
        }
        C::Expired | C::ExpiredContext { .. } => format!("the certificate of {host} has expired"),
        C::NotValidYet | C::NotValidYetContext { .. } => {
            format!("the certificate of {host} is not valid yet (check this machine's clock)")
        }
        C::Revoked => format!("the certificate of {host} has been revoked"),
        other => format!("the certificate of {host} was refused: {other:?}"),
    }
}

fn read_error(e: io::Error, during: &str) -> Outcome {
    if e.kind() == io::ErrorKind::InvalidData && e.to_string().contains("line too long") {
        return Outcome::Protocol {
            why: format!("the server sent a line longer than {MAX_LINE} bytes while {during}"),
        };
    }
    Outcome::Protocol {
        why: format!("the connection broke while {during}: {e}"),
    }
}

/// Reads one line (without CR LF); `None` at end of stream. Bounded by `MAX_LINE`.
async fn read_line(io: &mut BufReader<Stream>) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    loop {
        let avail = io.fill_buf().await?;
        if avail.is_empty() {
            return Ok(if buf.is_empty() {
                None
            } else {
                Some(String::from_utf8_lossy(&buf).into_owned())
            });
        }
        if let Some(i) = avail.iter().position(|&b| b == b'\n') {
            buf.extend_from_slice(&avail[..i]);
            io.consume(i + 1);
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(Some(String::from_utf8_lossy(&buf).into_owned()));
        }
        let n = avail.len();
        buf.extend_from_slice(avail);
        io.consume(n);
        if buf.len() > MAX_LINE {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
        }
    }
}

pub fn proto_name(p: Proto) -> &'static str {
    match p {
        Proto::Imap => "IMAP",
        Proto::Pop => "POP3",
        Proto::Smtp => "SMTP",
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

fn first_word(s: &str) -> &str {
    s.split(' ').next().unwrap_or(s)
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        s.chars().take(max).collect::<String>() + "…"
    }
}

/// A TCP connection, plain or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Stream::Plain(s) => s.local_addr().ok(),
            Stream::Tls(s) => s.get_ref().0.local_addr().ok(),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
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
