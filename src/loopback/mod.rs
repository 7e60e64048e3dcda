//! The loopback redirect listener of a native-app login (RFC 8252 §7.3): a one-shot
//! HTTP server on 127.0.0.1 (and [::1] on the same port where it binds) that waits for
//! the browser to bring back the authorization code, checks `state`, and ignores
//! everything else (favicon requests, pre-connects, forged redirects). For an
//! `https://localhost` registration it speaks TLS with a certificate of its own (`tls`).

mod tls;

use crate::config::Redirect;
use crate::error::{Error, Result};
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Html;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

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
    /// says what happened), or until `timeout`. Wrong or missing state: 400, keep waiting.
    pub async fn wait(self, expected_state: String, timeout: Duration) -> Result<Callback> {
        let (tx, rx) = oneshot::channel::<Callback>();
        let shared = Arc::new(Handler {
            expected_state,
            tx: Mutex::new(Some(tx)),
        });
        let app = axum::Router::new()
            .route(&self.path, axum::routing::get(on_redirect))
            .with_state(shared);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut servers = Vec::new();
        let tls = self.tls.map(|c| c.config);
        for l in self.listeners {
            let app = app.clone();
            let mut stop = stop_rx.clone();
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            servers.push(match &tls {
                None => tokio::spawn(async move {
                    axum::serve(l, app).with_graceful_shutdown(stopped).await
                }),
                Some(config) => {
                    let l = tls::TlsListener::new(l, config.clone())
                        .map_err(|e| Error::software(format!("login listener: {e}")))?;
                    tokio::spawn(async move {
                        axum::serve(l, app).with_graceful_shutdown(stopped).await
                    })
                }
            });
        }
        let result = tokio::time::timeout(timeout, rx).await;
        let _ = stop_tx.send(true);
        for s in servers {
            // Graceful shutdown lets the browser receive the final page first; a
            // keep-alive connection must not hold the command open, hence the bound.
            let _ = tokio::time::timeout(Duration::from_secs(2), s).await;
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

struct Handler {
    expected_state: String,
    tx: Mutex<Option<oneshot::Sender<Callback>>>,
}

async fn on_redirect(
    State(h): State<Arc<Handler>>,
    RawQuery(q): RawQuery,
) -> (StatusCode, Html<String>) {
    match validate(q.as_deref().unwrap_or(""), &h.expected_state) {
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
            let sender = h.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
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

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>mailtoken: {title}</title></head>\
         <body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\"><h1>{title}</h1><p>{body}</p></body></html>"
    ))
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
