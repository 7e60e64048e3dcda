//! Helpers for integration tests that talk to the test authorization server
//! (`tests/authserver/server.mjs`, panva's oidc-provider).
//!
//! The server is started outside the tests (`scripts/test`, or by hand with
//! `eval "$(bash tests/authserver/start.sh)"`), and its issuer URL is passed
//! in `MAILTOKEN_TEST_ISSUER`.
//!
//! Clients registered on the server (all native, redirect URIs
//! `http://127.0.0.1/`, `http://[::1]/`, `http://localhost/` on any port):
//! see the constants below.

// Each test binary uses a different subset of these helpers.
use std::time::Duration;

use reqwest::header::LOCATION;
use reqwest::redirect::Policy;
use reqwest::{Client, Response};
use serde_json::Value;
use url::Url;

/// Public client (`token_endpoint_auth_method: none`, PKCE S256); refresh
/// tokens rotate on every use (Microsoft-like). A refresh token is issued
/// only for scope `offline_access` together with `prompt=consent`.
pub const NATIVE_CLIENT: &str = "native-cli";
/// Like [`NATIVE_CLIENT`] with short-lived access tokens
/// (`AUTHSERVER_SHORT_TTL`, default 6 s).
pub const NATIVE_SHORT_CLIENT: &str = "native-short";
/// Same as [`NATIVE_CLIENT`], with device codes that expire 8 s after they are issued.
pub const NATIVE_DEVICE_SHORT_CLIENT: &str = "native-device-short";
/// Like [`NATIVE_CLIENT`], registered with the one redirect URI `https://localhost`,
/// which the server matches with any port, as Microsoft does.
pub const NATIVE_HTTPS_CLIENT: &str = "native-https";
/// Google-style "Desktop app" client (`client_secret_post` with
/// [`GOOGLE_CLIENT_SECRET`]); `access_type=offline` yields a refresh token,
/// which does not rotate.
pub const GOOGLE_CLIENT: &str = "google-desktop";
/// Like [`GOOGLE_CLIENT`] with short-lived access tokens.
pub const GOOGLE_SHORT_CLIENT: &str = "google-short";
/// The (non-)secret of the Google-style clients.
pub const GOOGLE_CLIENT_SECRET: &str = "not-so-secret";
/// Resource server that may introspect tokens of every client
/// (`client_secret_basic`).
pub const RESOURCE_SERVER_CLIENT: &str = "mail-rs";
/// Secret of [`RESOURCE_SERVER_CLIENT`].
pub const RESOURCE_SERVER_SECRET: &str = "mail-rs-secret";

/// Upper bound on requests in one simulated browser session.
const MAX_STEPS: usize = 30;

/// The issuer URL of the running test authorization server (no trailing
/// slash), from `MAILTOKEN_TEST_ISSUER`.
///
/// # Panics
/// When the variable is unset or empty.
pub fn issuer() -> String {
    match std::env::var("MAILTOKEN_TEST_ISSUER") {
        Ok(value) if !value.trim().is_empty() => value.trim().trim_end_matches('/').to_owned(),
        _ => panic!(
            "MAILTOKEN_TEST_ISSUER is not set: run scripts/test, which starts the authorization \
             server (by hand: eval \"$(bash tests/authserver/start.sh)\" && \
             MAILTOKEN_TEST_ISSUER=$ISSUER cargo test)"
        ),
    }
}

/// `issuer() + path`, e.g. `endpoint("/token")`.
pub fn endpoint(path: &str) -> String {
    format!("{}{}", issuer(), path)
}

/// A plain HTTP client for the test server (no cookies, no redirects).
fn http() -> Client {
    Client::builder()
        .redirect(Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("building a reqwest client")
}

async fn json_response(what: &str, response: Result<Response, reqwest::Error>) -> (u16, Value) {
    let response = response.unwrap_or_else(|e| panic!("{what}: request failed: {e}"));
    let status = response.status().as_u16();
    let body = response
        .text()
        .await
        .unwrap_or_else(|e| panic!("{what}: reading the response failed: {e}"));
    let value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{what}: HTTP {status}, not JSON ({e}): {body}"))
    };
    (status, value)
}

/// POSTs `form` to the token endpoint and returns the HTTP status and the
/// JSON body (client authentication, if any, must be in `form`).
pub async fn token_request(form: &[(&str, &str)]) -> (u16, Value) {
    json_response(
        "token request",
        http().post(endpoint("/token")).form(form).send().await,
    )
    .await
}

/// An app-only client a test registered for itself (RFC 7591 at the test server).
pub struct App {
    pub client_id: String,
    pub client_secret: String,
    /// The one mailbox its tokens are for.
    pub mailbox: String,
}

/// Registers a confidential client allowed the client credentials grant for the scope
/// `mail`, whose tokens are for `mailbox` only and live `lifetime` seconds (`None`: the
/// server's default).
pub async fn register_app(mailbox: &str, lifetime: Option<u32>) -> App {
    register_app_with(mailbox, lifetime, None).await
}

/// Like [`register_app`]; with `jwks`, the client authenticates with `private_key_jwt`
/// (RFC 7523 §2.2) signed by a key of that set instead of a secret.
pub async fn register_app_with(mailbox: &str, lifetime: Option<u32>, jwks: Option<Value>) -> App {
    let mut meta = serde_json::json!({
        "grant_types": ["client_credentials"],
        "response_types": [],
        "redirect_uris": [],
        "token_endpoint_auth_method": "client_secret_post",
        "scope": "mail",
        "mailbox": mailbox,
    });
    if let Some(l) = lifetime {
        meta["lifetime"] = l.into();
    }
    if let Some(keys) = jwks {
        meta["token_endpoint_auth_method"] = "private_key_jwt".into();
        meta["token_endpoint_auth_signing_alg"] = "RS256".into();
        meta["jwks"] = keys;
    }
    let (status, v) = json_response(
        "client registration",
        http().post(endpoint("/reg")).json(&meta).send().await,
    )
    .await;
    assert_eq!(status, 201, "registration answered HTTP {status}: {v}");
    App {
        client_id: v["client_id"].as_str().unwrap().to_owned(),
        client_secret: v["client_secret"].as_str().unwrap_or_default().to_owned(),
        mailbox: mailbox.to_owned(),
    }
}

/// RFC 7662 introspection as the resource server `mail-rs` (HTTP basic
/// auth). Access tokens come back with `active`, `sub`, `email`, `scope`,
/// `client_id`, `exp`, ...; unknown, expired or revoked tokens with
/// `{"active": false}`.
///
/// # Panics
/// On transport errors or a non-200 answer.
pub async fn introspect(token: &str) -> Value {
    let (status, value) = json_response(
        "introspection",
        http()
            .post(endpoint("/token/introspection"))
            .basic_auth(RESOURCE_SERVER_CLIENT, Some(RESOURCE_SERVER_SECRET))
            .form(&[("token", token)])
            .send()
            .await,
    )
    .await;
    assert_eq!(status, 200, "introspection answered HTTP {status}: {value}");
    value
}

/// RFC 7009 revocation of `token` (`hint`: `refresh_token`, `access_token`,
/// or "" for none), authenticated as the client the token was issued to:
/// `client_secret: None` for public clients (client_id in the body),
/// `Some(secret)` for `client_secret_post` clients.
///
/// Revoking a refresh token revokes its whole grant (all tokens issued from
/// the same authorization).
///
/// # Panics
/// On transport errors or a non-200 answer.
pub async fn revoke(token: &str, hint: &str, client_id: &str, client_secret: Option<&str>) {
    let mut form = vec![("token", token), ("client_id", client_id)];
    if !hint.is_empty() {
        form.push(("token_type_hint", hint));
    }
    if let Some(secret) = client_secret {
        form.push(("client_secret", secret));
    }
    let response = http()
        .post(endpoint("/token/revocation"))
        .form(&form)
        .send()
        .await
        .unwrap_or_else(|e| panic!("revocation: request failed: {e}"));
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "revocation answered HTTP {status}: {body}"
    );
}

/// Test-only counters of successful token-endpoint grants for `account`:
/// `{"account": ID, "refresh_grants": N, "code_grants": N, "device_grants": N}`.
pub async fn stats(account: &str) -> Value {
    let mut url = Url::parse(&endpoint("/_test/stats")).expect("issuer is a URL");
    url.query_pairs_mut().append_pair("account", account);
    let (status, value) = json_response("stats", http().get(url).send().await).await;
    assert_eq!(status, 200, "stats answered HTTP {status}: {value}");
    value
}

/// What the simulated person does on the consent page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allow: grants exactly the requested scopes.
    Approve,
    /// Deny: the app gets `error=access_denied`.
    Deny,
}

/// A scripted web browser for the authorization server's login and consent
/// pages: cookie jar on, redirects followed by hand, no JavaScript.
pub struct Browser {
    client: Client,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

/// How a browsing session ended.
enum Outcome {
    /// A redirect (or form) pointed outside the issuer's origin.
    Left(Url),
    /// A page on the issuer's origin with nothing left to do.
    Page { url: Url, body: String },
}

enum Step {
    Get(Url),
    Post(Url, Vec<(String, String)>),
}

impl Browser {
    /// A fresh browser with an empty cookie jar.
    pub fn new() -> Self {
        let client = Client::builder()
            .cookie_store(true)
            .redirect(Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("building a reqwest client");
        Self { client }
    }

    /// Plays a person's browser for an authorization-code request: opens
    /// `auth_url`, follows redirects on its origin (the issuer's), logs in
    /// as `login` if asked, approves or denies consent if asked, and returns
    /// the first redirect target outside the issuer's origin (the app's
    /// loopback redirect, e.g.
    /// `http://127.0.0.1:43123/?code=...&state=...&iss=...`) WITHOUT
    /// fetching it.
    pub async fn authorize(
        &self,
        auth_url: &str,
        login: &str,
        decision: Decision,
    ) -> Result<Url, String> {
        let start =
            Url::parse(auth_url).map_err(|e| format!("bad authorization URL {auth_url}: {e}"))?;
        match self.drive(start, login, decision).await? {
            Outcome::Left(url) => Ok(url),
            Outcome::Page { url, body } => Err(format!(
                "the authorization server did not redirect back to the app; stopped at {url}: {}",
                excerpt(&body)
            )),
        }
    }

    /// Plays a person's browser for the device flow (RFC 8628): opens
    /// `verification_uri_complete` (`.../device?user_code=...`), confirms the
    /// code, logs in as `login`, and approves or denies consent. Returns
    /// `Ok(())` once the server shows its success page (Approve) or the
    /// "interrupted" page (Deny); the device then learns the outcome by
    /// polling the token endpoint.
    pub async fn device_authorize(
        &self,
        verification_uri_complete: &str,
        login: &str,
        decision: Decision,
    ) -> Result<(), String> {
        let start = Url::parse(verification_uri_complete)
            .map_err(|e| format!("bad verification URI {verification_uri_complete}: {e}"))?;
        match self.drive(start, login, decision).await? {
            Outcome::Left(url) => Err(format!("unexpected redirect off the issuer to {url}")),
            Outcome::Page { url, body } => {
                let finished = match decision {
                    Decision::Approve => body.contains("id=\"device-success\""),
                    Decision::Deny => body.contains("interrupted"),
                };
                if finished {
                    Ok(())
                } else {
                    Err(format!("device flow stopped at {url}: {}", excerpt(&body)))
                }
            }
        }
    }

    async fn drive(&self, start: Url, login: &str, decision: Decision) -> Result<Outcome, String> {
        let origin = start.origin();
        let mut step = Step::Get(start);
        let mut logged_in = false;
        let mut decided = false;
        let mut device_confirmed = false;
        let mut auto_posts = 0;

        for _ in 0..MAX_STEPS {
            let (request_url, sent) = match &step {
                Step::Get(url) => (url.clone(), self.client.get(url.clone()).send().await),
                Step::Post(url, form) => (
                    url.clone(),
                    self.client.post(url.clone()).form(form).send().await,
                ),
            };
            let response = sent.map_err(|e| format!("request to {request_url} failed: {e}"))?;
            let url = response.url().clone();
            let status = response.status();

            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(LOCATION)
                    .ok_or_else(|| format!("HTTP {status} from {url} without Location"))?
                    .to_str()
                    .map_err(|e| format!("bad Location from {url}: {e}"))?;
                let next = url
                    .join(location)
                    .map_err(|e| format!("bad Location {location:?} from {url}: {e}"))?;
                if next.origin() != origin {
                    return Ok(Outcome::Left(next));
                }
                step = Step::Get(next);
                continue;
            }

            let body = response
                .text()
                .await
                .map_err(|e| format!("reading {url} failed: {e}"))?;
            if !status.is_success() {
                return Err(format!("HTTP {status} from {url}: {}", excerpt(&body)));
            }
            let forms = parse_forms(&body);
            let by_id = |id: &str| forms.iter().find(|f| f.id.as_deref() == Some(id));
            let target = |form: &Form| {
                url.join(&form.action)
                    .map_err(|e| format!("bad form action {:?} on {url}: {e}", form.action))
            };

            if let Some(form) = by_id("login") {
                if logged_in {
                    return Err(format!(
                        "login form shown again at {url}: {}",
                        excerpt(&body)
                    ));
                }
                logged_in = true;
                let mut fields: Vec<(String, String)> = form
                    .fields
                    .iter()
                    .filter(|(name, _)| name != "login")
                    .cloned()
                    .collect();
                fields.push(("login".to_owned(), login.to_owned()));
                step = Step::Post(target(form)?, fields);
                continue;
            }

            if let (Some(approve), Some(deny)) = (by_id("approve"), by_id("deny")) {
                if decided {
                    return Err(format!("consent page shown again at {url}"));
                }
                decided = true;
                let form = match decision {
                    Decision::Approve => approve,
                    Decision::Deny => deny,
                };
                step = Step::Post(target(form)?, form.fields.clone());
                continue;
            }

            if let Some(form) = by_id("device-confirm") {
                if device_confirmed {
                    return Err(format!("device confirmation shown again at {url}"));
                }
                device_confirmed = true;
                step = Step::Post(target(form)?, form.fields.clone());
                continue;
            }

            // oidc-provider's self-submitting form (form_post), e.g. the
            // device verification page opened with ?user_code=.
            if let [form] = forms.as_slice()
                && form.id.is_none()
                && form.method.eq_ignore_ascii_case("post")
                && body.contains("document.forms[0].submit()")
            {
                let action = target(form)?;
                if action.origin() != origin {
                    return Err(format!(
                        "the server answered with a self-submitting form to {action} \
                         (response_mode=form_post is not supported by Browser)"
                    ));
                }
                auto_posts += 1;
                if auto_posts > 3 {
                    return Err(format!("too many self-submitting forms at {url}"));
                }
                step = Step::Post(action, form.fields.clone());
                continue;
            }

            return Ok(Outcome::Page { url, body });
        }
        Err(format!("gave up after {MAX_STEPS} requests"))
    }
}

fn excerpt(body: &str) -> String {
    let text = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut end = text.len().min(600);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// One `<form>` of a page: `id`, `action`, `method` and its `<input>`
/// name/value pairs.
#[derive(Debug)]
struct Form {
    id: Option<String>,
    action: String,
    method: String,
    fields: Vec<(String, String)>,
}

/// A deliberately small HTML form scanner for the server's own pages
/// (double-quoted attributes).
fn parse_forms(html: &str) -> Vec<Form> {
    let mut forms = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<form") {
        let after = &rest[start..];
        let Some(tag_end) = after.find('>') else {
            break;
        };
        let tag = &after[..tag_end];
        let inner_end = after.find("</form>").unwrap_or(after.len());
        let inner = &after[tag_end.min(inner_end)..inner_end];

        let mut fields = Vec::new();
        let mut inputs = inner;
        while let Some(i) = inputs.find("<input") {
            let input = &inputs[i..];
            let end = input.find('>').unwrap_or(input.len());
            let input_tag = &input[..end];
            if let Some(name) = attribute(input_tag, "name") {
                fields.push((name, attribute(input_tag, "value").unwrap_or_default()));
            }
            inputs = &input[end..];
        }

        forms.push(Form {
            id: attribute(tag, "id"),
            action: attribute(tag, "action").unwrap_or_default(),
            method: attribute(tag, "method").unwrap_or_else(|| "get".to_owned()),
            fields,
        });
        rest = &after[inner_end..];
    }
    forms
}

/// The value of `name="..."` in a tag, HTML-unescaped.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let needle = format!("{name}=\"");
    let mut search = tag;
    loop {
        let at = search.find(&needle)?;
        // Must be a whole attribute name (preceded by whitespace).
        let boundary = at == 0 || search[..at].ends_with(|c: char| c.is_ascii_whitespace());
        let value_start = at + needle.len();
        if boundary {
            let value = &search[value_start..];
            let end = value.find('"')?;
            return Some(unescape(&value[..end]));
        }
        search = &search[value_start..];
    }
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}
