//! The connection a dialogue runs on: TCP, then TLS from the first byte or after STARTTLS
//! on the same socket, and lines both ways, each step under the timeout and each line read
//! bounded in length. It writes the transcript; it knows nothing of SASL or the protocols.

use super::outcome::{Outcome, Step, Target};
use crate::server::Tls;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf,
};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use zeroize::Zeroizing;

/// The longest line we accept from a server (RFC 5321 allows 512 octets for SMTP replies
/// and IMAP has no limit; capability lists and challenges stay far below this).
const MAX_LINE: usize = 16 * 1024;

/// One connection to `target`, from before it is opened until it is dropped.
pub(super) struct Connection<'a> {
    target: &'a Target,
    tls_config: &'a Arc<rustls::ClientConfig>,
    /// For connecting, the handshake and every read and write.
    limit: Duration,
    /// `None` until `open`, and for a moment during `upgrade`.
    io: Option<BufReader<Stream>>,
    pub(super) tls_version: Option<String>,
    /// What was said both ways, credentials replaced, with notes on the TLS steps.
    pub(super) transcript: Vec<String>,
}

impl<'a> Connection<'a> {
    pub(super) fn new(
        target: &'a Target,
        tls_config: &'a Arc<rustls::ClientConfig>,
        limit: Duration,
    ) -> Connection<'a> {
        Connection {
            target,
            tls_config,
            limit,
            io: None,
            tls_version: None,
            transcript: Vec::new(),
        }
    }

    /// Connects; with implicit TLS, also does the handshake.
    pub(super) async fn open(&mut self) -> Step<()> {
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
            Ok(Ok(s)) => {
                // Commands and replies are small and each is awaited: no Nagle delay.
                let _ = s.set_nodelay(true);
                Ok(s)
            }
        }
    }

    async fn handshake(&mut self, tcp: TcpStream) -> Step<TlsStream<TcpStream>> {
        let stream = tls_handshake(tcp, self.tls_config, &self.target.host, self.limit).await?;
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
    pub(super) async fn upgrade(&mut self) -> Step<()> {
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

    /// The open connection, with whatever the server sent that was not read yet: for a
    /// relay that signed in and now passes bytes through.
    pub(super) fn take_io(&mut self) -> Option<BufReader<Stream>> {
        self.io.take()
    }

    /// Sends `line`; the transcript gets `shown`, which hides what `line` must not show.
    pub(super) async fn send(&mut self, line: &str, shown: &str) -> Step<()> {
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
    pub(super) async fn say(&mut self, line: &str) -> Step<()> {
        self.send(line, line).await
    }

    /// The server's next line; `during` says what we were waiting for, for the errors.
    pub(super) async fn line(&mut self, during: &str) -> Step<String> {
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
    pub(super) async fn greeting(&mut self) -> Step<String> {
        if self.target.tls == Tls::Implicit {
            return self.line("waiting for the greeting").await;
        }
        let (target, tls, limit) = (self.target, self.tls_config, self.limit);
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

    /// Our end of the socket (SMTP names it in EHLO).
    pub(super) fn local_addr(&self) -> Option<SocketAddr> {
        self.io.as_ref().and_then(|io| io.get_ref().local_addr())
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
    if e.kind() == io::ErrorKind::UnexpectedEof {
        return Outcome::Protocol {
            why: format!("the server closed the connection in the middle of a line while {during}"),
        };
    }
    Outcome::Protocol {
        why: format!("the connection broke while {during}: {e}"),
    }
}

/// Reads one line (without CR LF); `None` at end of stream. Bounded by `MAX_LINE`.
/// A line the server did not finish (no LF before the end of the stream) is an error,
/// not a line: cut short, `+OK Dovecot ready.` would read as `+`, a POP3 or IMAP
/// continuation, and `250-AUTH PLAIN XOAUTH2` as a list without its last mechanism.
async fn read_line<R: AsyncBufRead + Unpin>(io: &mut R) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    loop {
        let avail = io.fill_buf().await?;
        if avail.is_empty() {
            if buf.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the stream ended in the middle of a line",
            ));
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

/// A TCP connection, plain or TLS.
/// The byte stream under a connection: plain TCP, or TLS on it.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    fn local_addr(&self) -> Option<SocketAddr> {
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

    fn read_all(bytes: &[u8]) -> Vec<io::Result<Option<String>>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut io = bytes;
            let mut out = Vec::new();
            loop {
                let r = read_line(&mut io).await;
                let end = !matches!(r, Ok(Some(_)));
                out.push(r);
                if end {
                    return out;
                }
            }
        })
    }

    #[test]
    fn whole_lines_are_read_without_their_line_ends() {
        let got = read_all(b"+OK Dovecot ready.\r\n+\r\n* bare LF\n");
        let got: Vec<_> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            got,
            [
                Some("+OK Dovecot ready.".to_owned()),
                Some("+".to_owned()),
                Some("* bare LF".to_owned()),
                None
            ]
        );
    }

    #[test]
    fn a_line_cut_by_the_end_of_the_stream_is_an_error_not_a_line() {
        for cut in [&b"+"[..], b"+OK Dov", b"250-AUTH PLAIN", b"a1 OK\r"] {
            let got = read_all(cut);
            let e = got.last().unwrap().as_ref().unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{cut:?}");
            assert_eq!(got.len(), 1, "{cut:?}");
            match read_error(
                io::Error::new(e.kind(), e.to_string()),
                "waiting for the greeting",
            ) {
                Outcome::Protocol { why } => assert_eq!(
                    why,
                    "the server closed the connection in the middle of a line while waiting for the greeting"
                ),
                other => panic!("{other:?}"),
            }
        }
    }
}
