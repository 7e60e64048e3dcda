//! Helpers for integration tests that talk to the test mail server: a private
//! Dovecot 2.3 (IMAP, POP3, submission) and the SMTP sink its submission service
//! relays to (`tests/mailserver/start.sh`, `tests/mailserver/sink.py`).
//!
//! The servers are started outside the tests (`scripts/test`, or by hand with
//! `eval "$(bash tests/mailserver/start.sh)"` once the authorization server runs and
//! `MAILTOKEN_TEST_ISSUER` is set), and described by the `MAIL_*` variables read by
//! [`MailServer::from_env`].
//!
//! What the server accepts:
//! - XOAUTH2 and OAUTHBEARER: any access token of the test authorization server that
//!   is active and carries scope `mail`, checked by introspection on every login. The
//!   user is the token's `email` claim, which is the login name given on the
//!   authorization server's login page (see [`access_token`]); Dovecot lower-cases it.
//!   A bad token gets the JSON challenge (`+ eyJ...` / `334 eyJ...`); after the
//!   client's empty line (XOAUTH2) or `AQ==` (OAUTHBEARER) the failure comes
//!   `NO [AUTHENTICATIONFAILED] Authentication failed.`, `-ERR [AUTH] Authentication
//!   failed.` or `535 5.7.8 Authentication failed.`, about 0.5 s later (Dovecot 2.3
//!   flushes failures on a 0.5 s timer even with `auth_failure_delay = 0`; there is no
//!   growing penalty).
//! - PLAIN and LOGIN: only the app passwords below ([`APP_USER`], ...). Tokens are
//!   never accepted as passwords, nor passwords as tokens.
//! - Any user name has a mailbox (Maildir under the run directory, see
//!   [`MailServer::maildir`]); [`MailServer::deliver_to_inbox`] puts a message there.
//! - Mail submitted (after AUTH) is relayed to the sink; [`MailServer::wait_for_message`]
//!   finds it.
//! - On 127.0.0.1 Dovecot counts the connection as secure: the plain ports offer AUTH
//!   (and STARTTLS/STLS) before TLS.

// Each test binary uses a different subset of these helpers.
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use sha2::{Digest, Sha256};

use super::authserver::{self, Browser, Decision, NATIVE_CLIENT};

/// An app-password user (PLAIN and LOGIN only; passwd-file passdb).
pub const APP_USER: &str = "app@example.test";
/// The password of [`APP_USER`].
pub const APP_PASSWORD: &str = "app-pass-word-1234";
/// A second app-password user.
pub const APP_USER_2: &str = "app2@example.test";
/// The password of [`APP_USER_2`].
pub const APP_PASSWORD_2: &str = "app-pass-word-5678";
/// The scope the server requires of a token (the oauth2 passdb's `scope`).
pub const REQUIRED_SCOPE: &str = "mail";

/// The running test mail server, as described by the `MAIL_*` variables.
#[derive(Clone, Debug)]
pub struct MailServer {
    /// Where every listener is bound: `MAIL_HOST` (127.0.0.1).
    pub host: String,
    /// IMAP over implicit TLS (`MAIL_IMAPS_PORT`).
    pub imaps_port: u16,
    /// POP3, plain start with STLS offered (`MAIL_POP3_PORT`).
    pub pop3_port: u16,
    /// POP3 over implicit TLS (`MAIL_POP3S_PORT`).
    pub pop3s_port: u16,
    /// Submission (587-style), plain start with STARTTLS (`MAIL_SUBMISSION_PORT`).
    pub submission_port: u16,
    /// Submissions (465-style), implicit TLS (`MAIL_SUBMISSIONS_PORT`).
    pub submissions_port: u16,
    /// The throw-away CA that signed the server certificate (`MAIL_CA`); the
    /// certificate is valid for `localhost`, `127.0.0.1` and `::1`.
    pub ca: PathBuf,
    /// The SMTP sink's directory: one `*.eml` file per relayed message
    /// (`MAIL_SINK_DIR`).
    pub sink_dir: PathBuf,
    /// The run directory (`MAILSERVER_DIR`): `conf/`, `tls/`, `mail/`, `sink/`,
    /// `dovecot.log`.
    pub dir: PathBuf,
    /// Dovecot's log (`MAILSERVER_LOG`; auth decisions are logged).
    pub log: PathBuf,
}

fn var(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value.trim().to_owned(),
        _ => panic!(
            "{name} is not set: run scripts/test, which starts the test mail server (by hand, \
             with the authorization server running and MAILTOKEN_TEST_ISSUER set: \
             eval \"$(bash tests/mailserver/start.sh)\" && export MAILSERVER_DIR MAILSERVER_LOG \
             MAIL_HOST MAIL_IMAP_PORT MAIL_IMAPS_PORT MAIL_POP3_PORT MAIL_POP3S_PORT \
             MAIL_SUBMISSION_PORT MAIL_SUBMISSIONS_PORT MAIL_CA MAIL_SINK_DIR)"
        ),
    }
}

fn port_var(name: &str) -> u16 {
    let value = var(name);
    value
        .parse()
        .unwrap_or_else(|e| panic!("{name}={value:?} is not a port: {e}"))
}

/// The running test mail server ([`MailServer::from_env`]).
pub fn mailserver() -> MailServer {
    MailServer::from_env()
}

impl MailServer {
    /// Reads the `MAIL_*` and `MAILSERVER_*` variables printed by
    /// `tests/mailserver/start.sh`.
    ///
    /// # Panics
    /// When one is missing (the message says to run scripts/test).
    pub fn from_env() -> MailServer {
        let dir = PathBuf::from(var("MAILSERVER_DIR"));
        let log = std::env::var("MAILSERVER_LOG")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.join("dovecot.log"));
        MailServer {
            host: std::env::var("MAIL_HOST")
                .ok()
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| "127.0.0.1".to_owned()),
            imaps_port: port_var("MAIL_IMAPS_PORT"),
            pop3_port: port_var("MAIL_POP3_PORT"),
            pop3s_port: port_var("MAIL_POP3S_PORT"),
            submission_port: port_var("MAIL_SUBMISSION_PORT"),
            submissions_port: port_var("MAIL_SUBMISSIONS_PORT"),
            ca: PathBuf::from(var("MAIL_CA")),
            sink_dir: PathBuf::from(var("MAIL_SINK_DIR")),
            dir,
            log,
        }
    }

    /// The Maildir of `user`: `MAILSERVER_DIR/mail/<user, lower-cased>/Maildir`
    /// (Dovecot lower-cases user names: `auth_username_format = %Lu`).
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.dir
            .join("mail")
            .join(user.to_lowercase())
            .join("Maildir")
    }

    /// Puts `message` (an RFC 5322 message, LF or CRLF line ends) into the INBOX of
    /// `user`, the way a delivery agent does: written under `Maildir/tmp/`, then
    /// renamed into `Maildir/new/`, so IMAP and POP3 see it at their next look.
    /// Creates the Maildir when the user has none yet. Files and directories get the
    /// owner of `MAILSERVER_DIR/mail` (Dovecot's mail user; the tests may run as
    /// root while Dovecot reads mail as another user).
    pub fn deliver_to_inbox(&self, user: &str, message: &str) {
        static N: AtomicU32 = AtomicU32::new(0);
        let mail_root = self.dir.join("mail");
        let owner = std::fs::metadata(&mail_root)
            .unwrap_or_else(|e| panic!("{}: {e}", mail_root.display()));
        let maildir = self.maildir(user);
        let home = maildir
            .parent()
            .expect("the Maildir has a parent")
            .to_owned();
        for dir in [
            home.clone(),
            maildir.clone(),
            maildir.join("tmp"),
            maildir.join("new"),
            maildir.join("cur"),
        ] {
            if !dir.exists() {
                std::fs::create_dir_all(&dir)
                    .unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
                give_to(&dir, &owner);
            }
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let name = format!(
            "{}.M{}P{}Q{}.mailtoken-test,S={}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            message.len()
        );
        let tmp = maildir.join("tmp").join(&name);
        std::fs::write(&tmp, message).unwrap_or_else(|e| panic!("writing {}: {e}", tmp.display()));
        give_to(&tmp, &owner);
        let new = maildir.join("new").join(&name);
        std::fs::rename(&tmp, &new)
            .unwrap_or_else(|e| panic!("renaming {} to {}: {e}", tmp.display(), new.display()));
    }

    /// Every message the sink holds so far, oldest first: (file, content). Each
    /// content starts with the envelope (`X-Sink-Mail-From: <...>`,
    /// `X-Sink-Rcpt-To: <...>, <...>`), then the message as relayed (with Dovecot's
    /// `Received:` header on top), CRLF line ends.
    pub fn sink_messages(&self) -> Vec<(PathBuf, String)> {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&self.sink_dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension().is_some_and(|x| x == "eml")
                        && !p
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect(),
            Err(e) => panic!("reading {}: {e}", self.sink_dir.display()),
        };
        // Names start with the arrival time (seconds.micros), so they sort by age.
        files.sort();
        files
            .into_iter()
            .filter_map(|p| {
                let bytes = std::fs::read(&p).ok()?;
                Some((p, String::from_utf8_lossy(&bytes).into_owned()))
            })
            .collect()
    }

    /// Waits up to `timeout` for a message in the sink that contains `needle`
    /// (anywhere: envelope, headers or body) and returns its content (see
    /// [`MailServer::sink_messages`]), or `None` when none came in time.
    pub fn wait_for_message(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((_, text)) = self
                .sink_messages()
                .into_iter()
                .find(|(_, text)| text.contains(needle))
            {
                return Some(text);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The last `lines` lines of Dovecot's log, for assertion messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits up to `timeout` for a line of Dovecot's log containing every one of
    /// `needles` (log lines arrive through Dovecot's log process, a moment after
    /// the client got its answer); returns the line.
    pub fn wait_for_log(&self, needles: &[&str], timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return Some(line.to_owned());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// A rustls server configuration with the test mail server's own certificate
    /// (valid for localhost, 127.0.0.1 and ::1, signed by the test CA): for the FAKE
    /// servers that clients must trust through `ca_file` as they trust Dovecot.
    pub fn server_tls_config(&self) -> Arc<rustls::ServerConfig> {
        let tls = self.dir.join("tls");
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(tls.join("server.pem"))
                .unwrap()
                .map(Result::unwrap)
                .collect();
        let key =
            rustls::pki_types::PrivateKeyDer::from_pem_file(tls.join("server-key.pem")).unwrap();
        Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
        )
    }

    /// A rustls client configuration trusting only the test CA ([`MailServer::ca`]).
    pub fn tls_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca)
            .unwrap_or_else(|e| panic!("{}: {e}", self.ca.display()))
        {
            roots
                .add(cert.unwrap_or_else(|e| panic!("{}: {e}", self.ca.display())))
                .expect("the test CA is a valid trust anchor");
        }
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("TLS 1.2 and 1.3")
                .with_root_certificates(roots)
                .with_no_client_auth();
        Arc::new(config)
    }

    /// Opens a plain connection to `port` (read the greeting with
    /// [`Session::read_line`]; upgrade with [`Session::starttls`]).
    pub fn connect_plain(&self, port: u16) -> Session {
        let tcp = TcpStream::connect((self.host.as_str(), port))
            .unwrap_or_else(|e| panic!("connecting to {}:{port}: {e}", self.host));
        tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        Session {
            stream: Some(Stream::Plain(tcp)),
            tls: self.tls_config(),
            server_name: "localhost".to_owned(),
        }
    }

    /// Opens a connection to `port` and does the TLS handshake at once (implicit
    /// TLS), checking the certificate for the name `localhost`.
    pub fn connect_tls(&self, port: u16) -> Session {
        let mut session = self.connect_plain(port);
        session.start_tls();
        session
    }
}

/// Gives `path` the owner and group of `like` when they differ (tests running as
/// root write for Dovecot's mail user).
fn give_to(path: &Path, like: &std::fs::Metadata) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if meta.uid() != like.uid() || meta.gid() != like.gid() {
        std::os::unix::fs::chown(path, Some(like.uid()), Some(like.gid()))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

/// A line-oriented client connection to the test mail server (IMAP, POP3 or SMTP),
/// plain or TLS, for tests that speak the protocol themselves. Reads one byte at a
/// time, so nothing is buffered past a STARTTLS answer.
pub struct Session {
    stream: Option<Stream>,
    tls: Arc<ClientConfig>,
    server_name: String,
}

impl Session {
    /// The TLS handshake on the open connection (after the server's STARTTLS/STLS
    /// go-ahead, or at once for implicit TLS).
    ///
    /// # Panics
    /// When the handshake fails (e.g. the certificate does not verify).
    pub fn start_tls(&mut self) {
        let Some(Stream::Plain(tcp)) = self.stream.take() else {
            panic!("start_tls on a connection that is not plain");
        };
        let name = ServerName::try_from(self.server_name.clone()).expect("a valid server name");
        let conn = ClientConnection::new(self.tls.clone(), name).expect("a TLS client session");
        let mut tls = StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .unwrap_or_else(|e| panic!("TLS handshake: {e}"));
        }
        self.stream = Some(Stream::Tls(Box::new(tls)));
    }

    /// Sends `line` and CRLF.
    pub fn send(&mut self, line: &str) {
        let data = format!("{line}\r\n");
        let result = match self.stream.as_mut().expect("connection open") {
            Stream::Plain(s) => s.write_all(data.as_bytes()).and_then(|()| s.flush()),
            Stream::Tls(s) => s.write_all(data.as_bytes()).and_then(|()| s.flush()),
        };
        result.unwrap_or_else(|e| panic!("sending {line:?}: {e}"));
    }

    /// One line from the server, without its CRLF; `None` when it closed the
    /// connection.
    pub fn try_read_line(&mut self) -> Option<String> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            let n = match self.stream.as_mut().expect("connection open") {
                Stream::Plain(s) => s.read(&mut byte),
                Stream::Tls(s) => s.read(&mut byte),
            };
            match n {
                Ok(0) => {
                    return (!line.is_empty()).then(|| String::from_utf8_lossy(&line).into_owned());
                }
                Ok(_) if byte[0] == b'\n' => {
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    return Some(String::from_utf8_lossy(&line).into_owned());
                }
                Ok(_) => line.push(byte[0]),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return (!line.is_empty()).then(|| String::from_utf8_lossy(&line).into_owned());
                }
                Err(e) => panic!("reading from the server: {e}"),
            }
        }
    }

    /// One line from the server, without its CRLF.
    ///
    /// # Panics
    /// When the server closed the connection or said nothing for 15 s.
    pub fn read_line(&mut self) -> String {
        self.try_read_line()
            .expect("the server closed the connection")
    }

    /// Lines until (and including) the first one for which `last` is true.
    pub fn read_until(&mut self, last: impl Fn(&str) -> bool) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line();
            let done = last(&line);
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    /// An IMAP command's response: lines until the tagged one (or a `+`
    /// continuation), which is the last element.
    pub fn imap_response(&mut self, tag: &str) -> Vec<String> {
        let prefix = format!("{tag} ");
        self.read_until(|l| l.starts_with(&prefix) || l.starts_with('+'))
    }

    /// A (possibly multi-line) SMTP reply: lines until `NNN ` or a bare `NNN`.
    pub fn smtp_reply(&mut self) -> Vec<String> {
        self.read_until(|l| l.len() < 4 || l.as_bytes()[3] == b' ')
    }
}

/// base64 of the XOAUTH2 initial response for `user` and `token`
/// (`user=U^Aauth=Bearer T^A^A`).
pub fn xoauth2(user: &str, token: &str) -> String {
    STANDARD.encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"))
}

/// base64 of the OAUTHBEARER (RFC 7628) initial response for `user`, `token`,
/// `host` and `port`.
pub fn oauthbearer(user: &str, token: &str, host: &str, port: u16) -> String {
    STANDARD.encode(format!(
        "n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01"
    ))
}

/// base64 of the PLAIN initial response for `user` and `password`.
pub fn plain(user: &str, password: &str) -> String {
    STANDARD.encode(format!("\0{user}\0{password}"))
}

/// A fresh access token from the test authorization server for login name `login`
/// (so for mail user `login`) with scopes `openid email mail`: an authorization-code
/// flow with PKCE as [`NATIVE_CLIENT`], the browser played by
/// [`authserver::Browser`]. Blocking; builds its own tokio runtime (do not call it
/// from inside one).
pub fn access_token(login: &str) -> String {
    access_token_with_scope(login, "openid email mail")
}

/// Like [`access_token`] with the given space-separated scopes (e.g. without
/// `mail`, which the mail server rejects).
pub fn access_token_with_scope(login: &str, scope: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let verifier = URL_SAFE_NO_PAD.encode(rand_bytes());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        // Loopback redirect (any port, RFC 8252): the browser stops before it.
        let redirect_uri = "http://127.0.0.1:9/";
        let mut url = url::Url::parse(&authserver::endpoint("/auth")).expect("issuer is a URL");
        url.query_pairs_mut()
            .append_pair("client_id", NATIVE_CLIENT)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", scope)
            .append_pair("state", "mailserver-test")
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let back = Browser::new()
            .authorize(url.as_str(), login, Decision::Approve)
            .await
            .unwrap_or_else(|e| panic!("authorizing {login}: {e}"));
        let code = back
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no code in the redirect {back}"));
        let (status, body) = authserver::token_request(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect_uri),
            ("client_id", NATIVE_CLIENT),
            ("code_verifier", &verifier),
        ])
        .await;
        assert_eq!(status, 200, "token request: {body}");
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token: {body}"))
            .to_owned()
    })
}

/// 32 bytes that differ between calls (a PKCE verifier for tests, not a secret).
fn rand_bytes() -> [u8; 32] {
    static N: AtomicU32 = AtomicU32::new(0);
    let seed = format!(
        "{:?}-{}-{}",
        SystemTime::now(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    Sha256::digest(seed.as_bytes()).into()
}
