//! The loopback redirect listener of a native-app login (RFC 8252 §7.3): a one-shot
//! HTTP server on 127.0.0.1 (and [::1] on the same port where it binds) that waits for
//! the browser to bring back the authorization code, checks `state`, and answers
//! nothing but that one redirect: another path is a 404, another method a 405, a
//! request for another host name a 421 (DNS rebinding), a request head over 8 KiB a
//! 431, and none of them reaches the login (favicon requests, pre-connects, forged
//! redirects). For an `https://localhost` registration it speaks TLS with a certificate
//! of its own (`tls`).

mod tls;

use crate::config::Redirect;
use crate::error::{Error, Result};
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

/// The most a request line and its headers may take together; a browser's redirect,
/// cookies of other localhost pages included, takes a few KiB at most. Larger heads get
/// 431 (RFC 6585 §5) from hyper, which stops reading there.
const MAX_HEAD: usize = 8 * 1024;

/// A connection that has not sent its request head by then is closed: pre-connects
/// that never send anything, or a client trickling bytes, hold nothing for long.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// What the provider sent back through the browser, once `state` matched.
#[derive(Debug, PartialEq, Eq)]
pub enum Callback {
    Code(String),
    /// RFC 6749 §4.1.2.1: `error` (e.g. `access_denied`) and its description.
    Denied {
        error: String,
        description: Option<String>,
    },
}

/// Why a redirect was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    MissingState,
    WrongState,
    NoCode,
    /// RFC 6749 §3.1: "Request and response parameters MUST NOT be included more than
    /// once"; with two `state`s, which one was checked would decide.
    Repeated(&'static str),
}

impl Refusal {
    pub fn explain(&self) -> &'static str {
        match self {
            Refusal::MissingState => {
                "the redirect carries no `state`, so it cannot be from the login mailtoken started"
            }
            Refusal::WrongState => {
                "the redirect's `state` does not match the login mailtoken started (an old tab, or a forged request)"
            }
            Refusal::NoCode => "the redirect carries neither a `code` nor an `error`",
            Refusal::Repeated(_) => {
                "the redirect repeats a parameter (`state`, `code` or `error`), which no authorization server does"
            }
        }
    }
}

/// Checks a redirect's query parameters against the `state` we sent. Shared by the
/// listener and `login --paste`, so both validate the same way.
pub fn validate(query: &str, expected_state: &str) -> std::result::Result<Callback, Refusal> {
    let mut code = None;
    let mut state = None;
    let mut error = None;
    let mut description = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        let (slot, name) = match &*k {
            "code" => (&mut code, "code"),
            "state" => (&mut state, "state"),
            "error" => (&mut error, "error"),
            "error_description" => (&mut description, "error_description"),
            _ => continue,
        };
        if slot.replace(v.into_owned()).is_some() {
            return Err(Refusal::Repeated(name));
        }
    }
    // The state is checked before anything else, errors included: otherwise anyone who
    // can reach the port could end the login with a forged `error=`.
    match state {
        None => return Err(Refusal::MissingState),
        Some(s) if !constant_time_eq(s.as_bytes(), expected_state.as_bytes()) => {
            return Err(Refusal::WrongState);
        }
        Some(_) => {}
    }
    match (code, error) {
        (_, Some(error)) => Ok(Callback::Denied { error, description }),
        (Some(code), None) if !code.is_empty() => Ok(Callback::Code(code)),
        _ => Err(Refusal::NoCode),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub struct LoopbackListener {
    listeners: Vec<TcpListener>,
    redirect_uri: String,
    path: String,
    port: u16,
    tls: Option<tls::LoginCert>,
}

impl LoopbackListener {
    /// Binds `port` (0 = any free one) on 127.0.0.1, and on [::1] with the same port
    /// when the machine has IPv6 loopback: a browser may resolve `localhost` either way.
    /// An https redirect gets a certificate valid for `lifetime`.
    pub async fn bind(redirect: &Redirect, port: u16, lifetime: Duration) -> Result<Self> {
        let (first, second) = if redirect.host == "[::1]" {
            ("[::1]", "127.0.0.1")
        } else {
            ("127.0.0.1", "[::1]")
        };
        let v4 = TcpListener::bind(format!("{first}:{port}"))
            .await
            .map_err(|e| {
                Error::unavailable(format!(
                    "cannot listen on {first}:{port} for the login redirect: {e}"
                ))
                .with_remedy(if port == 0 {
                    "Check that loopback networking works."
                } else {
                    "Choose another --port, or stop what is using it."
                })
            })?;
        let port = v4
            .local_addr()
            .map_err(|e| Error::software(e.to_string()))?
            .port();
        let mut listeners = vec![v4];
        if let Ok(l) = TcpListener::bind(format!("{second}:{port}")).await {
            listeners.push(l);
        }
        let tls = match redirect.https {
            true => Some(tls::login_cert(lifetime)?),
            false => None,
        };
        Ok(LoopbackListener {
            listeners,
            redirect_uri: redirect.uri(Some(port))?,
            path: redirect.route().to_owned(),
            port,
            tls,
        })
    }

    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// The SHA-256 fingerprint of an https listener's certificate, as browsers show it.
    pub fn fingerprint(&self) -> Option<&str> {
        self.tls.as_ref().map(|c| c.fingerprint.as_str())
    }

    /// Serves until a redirect with the right state arrives (answered with a page that
    /// says what happened), or until `timeout`. Wrong or missing state: 400, keep waiting;
    /// anything but the redirect itself (see [`Handler::respond`]): refused, keep waiting.
    pub async fn wait(self, expected_state: String, timeout: Duration) -> Result<Callback> {
        let (tx, rx) = oneshot::channel::<Callback>();
        let handler = Arc::new(Handler {
            expected_state,
            path: self.path,
            port: self.port,
            https: self.tls.is_some(),
            tx: Mutex::new(Some(tx)),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut servers = Vec::new();
        let tls = self.tls.map(|c| c.config);
        for l in self.listeners {
            let (h, stop) = (handler.clone(), stop_rx.clone());
            servers.push(match &tls {
                None => tokio::spawn(serve(l, h, stop)),
                Some(config) => {
                    let l = tls::TlsListener::new(l, config.clone())
                        .map_err(|e| Error::software(format!("login listener: {e}")))?;
                    tokio::spawn(serve(l, h, stop))
                }
            });
        }
        let result = tokio::time::timeout(timeout, rx).await;
        let _ = stop_tx.send(true);
        for s in servers {
            // Graceful shutdown lets the browser receive the final page first; a
            // connection that holds on must not hold the command open, hence the bound.
            let abort = s.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), s)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        match result {
            Ok(Ok(cb)) => Ok(cb),
            Ok(Err(_)) => Err(Error::software("the login listener stopped unexpectedly")),
            Err(_) => Err(Error::temp(format!(
                "no login arrived within {}",
                humantime::format_duration(timeout)
            ))
            .with_remedy(
                "Run the login again and finish it in the browser; --timeout gives more time.",
            )),
        }
    }
}

/// Accepts connections until `stop`, each served in a task of its own as HTTP/1.1 with
/// the listener's limits and one request per connection (`Connection: close`); at
/// `stop`, idle connections are closed and a response being written is finished.
async fn serve<L: Listener>(
    mut listener: L,
    handler: Arc<Handler>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (io, _) = tokio::select! {
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => accepted,
        };
        let (h, mut stop) = (handler.clone(), stop.clone());
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let h = h.clone();
                async move { Ok::<_, Infallible>(h.respond(&req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .max_header_size(MAX_HEAD)
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(TokioIo::new(io), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
}

/// Until the login ends (or the sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

struct Handler {
    expected_state: String,
    /// The redirect URI's path, the only one answered.
    path: String,
    port: u16,
    https: bool,
    tx: Mutex<Option<oneshot::Sender<Callback>>>,
}

impl Handler {
    /// The one answer to each request. In this order, so that a page of another site
    /// learns nothing of what listens here, and only the redirect reaches `validate`:
    /// the host it names (a 421 for any but ours), the method (GET only), the path.
    fn respond(&self, req: &Request<Incoming>) -> Response<String> {
        let hosts = req.headers().get_all(header::HOST);
        let mut hosts = hosts.iter();
        let host = match (hosts.next(), hosts.next()) {
            (Some(h), None) => h.to_str().unwrap_or(""),
            // RFC 9112 §3.2: a request without a Host header (an HTTP/1.0 one: no
            // browser sends that) or with two is a 400.
            _ => return plain(StatusCode::BAD_REQUEST, "400 Bad Request"),
        };
        // DNS rebinding: a page of evil.example whose name the attacker's DNS server
        // points at 127.0.0.1 reaches this port in the user's browser, as its own origin,
        // and could read our answers; its requests name its own host. So only requests
        // naming the loopback address this listener is for are answered (RFC 9110 §7.2:
        // Host is the target URI's authority; §15.5.20: 421 for a request this server is
        // not willing to answer for that authority). A target in absolute form carries
        // the authority that counts (RFC 9112 §3.2.2), which must be ours as well.
        let target = req.uri().authority().map(|a| a.as_str());
        if !host_allowed(host, self.port, self.https)
            || target.is_some_and(|a| !host_allowed(a, self.port, self.https))
        {
            return plain(StatusCode::MISDIRECTED_REQUEST, "421 Misdirected Request");
        }
        // A redirect is a GET (RFC 6749 §4.1.2: the parameters are in "the query
        // component of the redirection URI"). Nothing else ends a login, not even a
        // HEAD, whose answer would carry no page.
        if req.method() != Method::GET {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed");
            // RFC 9110 §15.5.6: a 405 lists the methods the resource supports.
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET"));
            return r;
        }
        if req.uri().path() != self.path {
            return plain(StatusCode::NOT_FOUND, "404 Not Found");
        }
        let (status, html) = self.on_redirect(req.uri().query().unwrap_or(""));
        let mut r = Response::new(html);
        *r.status_mut() = status;
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        // The page answers a URL that carries the code: no cache keeps it (RFC 9111
        // §5.2.2.5); and it loads nothing, runs nothing.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
        );
        r
    }

    fn on_redirect(&self, query: &str) -> (StatusCode, String) {
        match validate(query, &self.expected_state) {
            Ok(cb) => {
                let page = match &cb {
                    Callback::Code(_) => page(
                        "Logged in",
                        "mailtoken received the authorization. You can close this tab.",
                    ),
                    Callback::Denied { error, description } => page(
                        "Login not completed",
                        &format!(
                            "The provider answered <code>{}</code>{}. See the terminal for what to do.",
                            escape(error),
                            description
                                .as_deref()
                                .map(|d| format!(": {}", escape(d)))
                                .unwrap_or_default()
                        ),
                    ),
                };
                let sender = self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
                match sender {
                    Some(tx) => {
                        let _ = tx.send(cb);
                        (StatusCode::OK, page)
                    }
                    // One-shot: a second valid redirect (a reload) changes nothing.
                    None => (
                        StatusCode::OK,
                        self::page(
                            "Already done",
                            "This login was already completed. You can close this tab.",
                        ),
                    ),
                }
            }
            Err(r) => (
                StatusCode::BAD_REQUEST,
                page("Request refused", &format!("Refused: {}.", r.explain())),
            ),
        }
    }
}

/// Whether `authority` (a Host header's value) names this listener: `localhost`,
/// `127.0.0.1` or `[::1]` (the loopback names of RFC 8252 §7.3 and §8.3) with its port,
/// which may be left out only when it is the scheme's default (RFC 9110 §4.2.1, §4.2.2).
fn host_allowed(authority: &str, port: u16, https: bool) -> bool {
    let (host, given) = match authority.rsplit_once(':') {
        // `[::1]` has colons of its own: a port follows the closing bracket.
        Some((h, p)) if !p.contains(']') => (h, Some(p)),
        _ => (authority, None),
    };
    let port_ok = match given {
        Some(p) => !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse() == Ok(port),
        None => port == if https { 443 } else { 80 },
    };
    port_ok && (host.eq_ignore_ascii_case("localhost") || host == "127.0.0.1" || host == "[::1]")
}

/// A refusal: a status line's words, as text, and nothing of the request.
fn plain(status: StatusCode, text: &'static str) -> Response<String> {
    let mut r = Response::new(format!("{text}\n"));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>mailtoken: {title}</title></head>\
         <body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\"><h1>{title}</h1><p>{body}</p></body></html>"
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(https: bool, path: &str) -> Redirect {
        Redirect {
            https,
            host: "localhost".into(),
            port: None,
            path: path.into(),
        }
    }

    #[test]
    fn a_matching_state_with_a_code_is_accepted() {
        assert_eq!(
            validate("code=abc&state=S1&iss=x", "S1"),
            Ok(Callback::Code("abc".into()))
        );
    }

    #[test]
    fn wrong_or_missing_state_is_refused_even_for_errors() {
        assert_eq!(
            validate("code=abc&state=S2", "S1"),
            Err(Refusal::WrongState)
        );
        assert_eq!(validate("code=abc", "S1"), Err(Refusal::MissingState));
        assert_eq!(
            validate("error=access_denied&state=nope", "S1"),
            Err(Refusal::WrongState)
        );
        assert_eq!(validate("", "S1"), Err(Refusal::MissingState));
    }

    #[test]
    fn an_error_with_the_right_state_ends_the_login() {
        assert_eq!(
            validate(
                "error=access_denied&error_description=End-User+aborted&state=S1",
                "S1"
            ),
            Ok(Callback::Denied {
                error: "access_denied".into(),
                description: Some("End-User aborted".into())
            })
        );
    }

    #[test]
    fn state_without_code_or_error_is_refused() {
        assert_eq!(validate("state=S1", "S1"), Err(Refusal::NoCode));
        assert_eq!(validate("state=S1&code=", "S1"), Err(Refusal::NoCode));
        // RFC 6749 §3.1; found by fuzz/fuzz_targets/redirect.rs: the last `state` won.
        assert_eq!(
            validate("state=WRONG&code=abc&state=S1", "S1"),
            Err(Refusal::Repeated("state"))
        );
        assert_eq!(
            validate("state=S1&code=a&code=b", "S1"),
            Err(Refusal::Repeated("code"))
        );
    }

    #[test]
    fn percent_encoding_is_decoded() {
        assert_eq!(
            validate("code=a%2Fb&state=S%3D1", "S=1"),
            Ok(Callback::Code("a/b".into()))
        );
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(escape("<b>\"x\"&"), "&lt;b&gt;&quot;x&quot;&amp;");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn listener_refuses_bad_state_then_accepts_the_real_redirect() {
        let l = LoopbackListener::bind(&redirect(false, "/cb"), 0, Duration::from_secs(60))
            .await
            .unwrap();
        let uri = l.redirect_uri().to_owned();
        let wait = tokio::spawn(l.wait("good".into(), Duration::from_secs(10)));
        let http = reqwest::Client::new();
        let other = url::Url::parse(&uri).unwrap().join("/favicon.ico").unwrap();
        assert_eq!(http.get(other).send().await.unwrap().status(), 404);
        refused_then_accepted(&http, &uri, "the-code").await;
        assert_eq!(
            wait.await.unwrap().unwrap(),
            Callback::Code("the-code".into())
        );
    }

    /// A forged redirect gets 400, the real one (state `good`) the "Logged in" page.
    async fn refused_then_accepted(http: &reqwest::Client, uri: &str, code: &str) {
        let r = http
            .get(format!("{uri}?code=x&state=bad"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let r = http
            .get(format!("{uri}?code={code}&state=good"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("Logged in"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_https_listener_serves_the_same_pages_over_tls_only() {
        let l = LoopbackListener::bind(&redirect(true, ""), 0, Duration::from_secs(60))
            .await
            .unwrap();
        let uri = l.redirect_uri().to_owned();
        assert!(uri.starts_with("https://localhost:"), "{uri}");
        assert!(l.fingerprint().is_some());
        let port = url::Url::parse(&uri).unwrap().port().unwrap();
        let wait = tokio::spawn(l.wait("good".into(), Duration::from_secs(10)));
        // Plain HTTP to a TLS port gets nowhere.
        assert!(
            reqwest::get(format!("http://127.0.0.1:{port}/?code=x&state=good"))
                .await
                .is_err()
        );
        // A client that clicked through the warning.
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        refused_then_accepted(&http, &uri, "c").await;
        assert_eq!(wait.await.unwrap().unwrap(), Callback::Code("c".into()));
    }

    #[test]
    fn only_the_loopback_names_with_our_port_are_our_host() {
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LocalHost:8080",
            "[::1]:8080",
        ] {
            assert!(host_allowed(ok, 8080, false), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "localhost.evil.example:8080",
            "127.0.0.1.nip.io:8080",
            "localhost:8081",
            "localhost",
            "localhost:",
            "localhost:+8080",
            "localhost.:8080",
            "127.1:8080",
            "[::1]",
            "[0:0:0:0:0:0:0:1]:8080",
            "user@localhost:8080",
            "",
        ] {
            assert!(!host_allowed(bad, 8080, false), "{bad}");
        }
        // Without a port only when ours is the scheme's default.
        assert!(host_allowed("localhost", 80, false));
        assert!(host_allowed("[::1]", 443, true));
        assert!(!host_allowed("localhost", 443, false));
        assert!(!host_allowed("localhost", 80, true));
    }

    /// One request on a connection of its own, as bytes: the status, the head and the
    /// body of the answer (the listener closes each connection after its response).
    async fn raw(port: u16, request: &[u8]) -> (u16, String, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        s.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"));
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head.to_owned(), body.to_owned())
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_listener_answers_nothing_but_the_redirect_for_its_own_host() {
        let l = LoopbackListener::bind(&redirect(false, "/cb"), 0, Duration::from_secs(60))
            .await
            .unwrap();
        let port = url::Url::parse(l.redirect_uri()).unwrap().port().unwrap();
        let mut wait = tokio::spawn(l.wait("good".into(), Duration::from_secs(20)));
        let host = format!("Host: 127.0.0.1:{port}\r\n");
        let ask = |head: String| async move { raw(port, head.as_bytes()).await };
        // The real redirect's query, sent in every way but the real one; each refusal
        // is a fixed text, nothing of the request in it.
        let q = "code=the-code&state=good";
        let (status, _, body) = ask(format!(
            "GET /cb?{q} HTTP/1.1\r\nHost: evil.example:{port}\r\n\r\n"
        ))
        .await;
        assert_eq!((status, &*body), (421, "421 Misdirected Request\n"));
        let (status, _, _) = ask(format!(
            "GET http://evil.example:{port}/cb?{q} HTTP/1.1\r\n{host}\r\n"
        ))
        .await;
        assert_eq!(status, 421, "a target in absolute form names the host");
        let (status, _, body) = ask(format!("GET /cb?{q} HTTP/1.0\r\n\r\n")).await;
        assert_eq!((status, &*body), (400, "400 Bad Request\n"), "no Host");
        let (status, _, _) = ask(format!(
            "GET /cb?{q} HTTP/1.1\r\n{host}Host: evil.example\r\n\r\n"
        ))
        .await;
        assert_eq!(status, 400, "two Hosts");
        for method in ["POST", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"] {
            let (status, head, body) = ask(format!(
                "{method} /cb?{q} HTTP/1.1\r\n{host}X-Echo: echo-me\r\nContent-Length: 0\r\n\r\n"
            ))
            .await;
            assert_eq!(status, 405, "{method}: {head}");
            assert!(head.contains("\r\nallow: GET"), "{head}");
            let expected = if method == "HEAD" {
                ""
            } else {
                "405 Method Not Allowed\n"
            };
            assert_eq!(body, expected, "{method}");
        }
        for path in [
            "/",
            "/cb/",
            "/CB",
            "/favicon.ico",
            "/cb/../cb",
            "/%63b",
            "/etc/passwd",
        ] {
            let (status, _, body) = ask(format!("GET {path}?{q} HTTP/1.1\r\n{host}\r\n")).await;
            assert_eq!((status, &*body), (404, "404 Not Found\n"), "{path}");
        }
        // A head of more than 8 KiB, in the target or in the headers.
        let pad = "x".repeat(MAX_HEAD);
        let (status, _, body) = ask(format!("GET /cb?{q}&pad={pad} HTTP/1.1\r\n{host}\r\n")).await;
        assert_eq!((status, &*body), (431, ""));
        let (status, _, _) = ask(format!(
            "GET /cb?{q} HTTP/1.1\r\n{host}Cookie: {pad}\r\n\r\n"
        ))
        .await;
        assert_eq!(status, 431);
        // None of it ended the login; the real redirect, just under the limit, does.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), &mut wait)
                .await
                .is_err()
        );
        let fill = "y".repeat(MAX_HEAD - 200);
        let (status, head, body) = ask(format!(
            "GET /cb?{q} HTTP/1.1\r\nHost: LOCALHOST:{port}\r\nCookie: {fill}\r\n\r\n"
        ))
        .await;
        assert_eq!(status, 200, "{head}");
        assert!(head.contains("cache-control: no-store"), "{head}");
        assert!(body.contains("Logged in"), "{body}");
        assert_eq!(
            wait.await.unwrap().unwrap(),
            Callback::Code("the-code".into())
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn listener_times_out() {
        let l = LoopbackListener::bind(&redirect(false, "/"), 0, Duration::from_secs(60))
            .await
            .unwrap();
        let e = l
            .wait("s".into(), Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(e.message.contains("no login arrived"), "{e}");
    }
}
