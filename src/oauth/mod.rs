//! Talking to the provider's OAuth 2.0 endpoints (RFC 6749, 7636, 7009): the
//! authorization URL, the code exchange, the refresh, the revocation; the device flow
//! (RFC 8628) is in `device.rs`. Every answer is
//! classified before it reaches a person: a 503, a hang, an HTML page from a captive
//! portal and a rejected refresh token each get their own words and exit code.

pub mod assertion;
pub mod device;
pub mod microsoft;

use crate::config::{Account, ClientAuth, Grant, KeyMaterial, KeySource, OAuth};
use crate::error::{Error, ExitCode, Result, chain};
use crate::proxy::Route;
use crate::record::{self, FailureKind};
use crate::secret::Secret;
use oauth2::basic::{BasicClient, BasicErrorResponse, BasicErrorResponseType, BasicTokenResponse};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use std::fmt;
use std::time::Duration;
use url::Url;

/// What a successful token response gave us.
#[derive(Debug)]
pub struct TokenGrant {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub expires_in: Option<Duration>,
    pub scopes: Option<Vec<String>>,
}

impl From<BasicTokenResponse> for TokenGrant {
    fn from(t: BasicTokenResponse) -> TokenGrant {
        TokenGrant {
            access_token: Secret::new(t.access_token().secret().clone()),
            refresh_token: t.refresh_token().map(|r| Secret::new(r.secret().clone())),
            expires_in: t.expires_in(),
            scopes: t
                .scopes()
                .map(|s| s.iter().map(|x| x.to_string()).collect()),
        }
    }
}

/// A token request that failed: the words for people, and what kind of failure it is,
/// decided here from the provider's answer (RFC 6749 §5.2) or the transport, so that
/// nothing later has to guess it from an exit code.
#[derive(Debug, Clone)]
pub struct TokenError {
    pub kind: FailureKind,
    pub error: Error,
}

impl From<TokenError> for Error {
    fn from(e: TokenError) -> Error {
        e.error
    }
}

/// The token endpoint of one account, with its HTTP client and client credentials.
pub struct OAuthClient<'a> {
    account: &'a Account,
    /// The account's OAuth settings (an app-password account never gets a client).
    oauth: &'a OAuth,
    http: reqwest::Client,
    secret: Option<Secret>,
    /// An app's certificate and key, for a signed client assertion.
    signer: Option<assertion::Signer>,
    /// The token endpoint's clock minus ours, from its last answer's `Date`.
    clock: std::sync::Mutex<Option<i64>>,
    /// Through which proxy, if any, the token endpoint is reached.
    route: Route,
    limits: Limits,
}

/// How long a token request may take: to connect (TCP, TLS, a proxy's tunnel), and in
/// all, once sent.
#[derive(Clone, Copy, Debug)]
struct Limits {
    connect: Duration,
    answer: Duration,
}

/// Why an HTTP exchange with the token endpoint did not give a usable OAuth answer.
/// Built inside our HTTP adapter so that oauth2 only ever sees well-formed responses
/// and the status code is not lost on the way (oauth2 drops it for non-JSON bodies).
#[derive(Debug)]
enum HttpFault {
    /// No answer in time; `connecting`: not even a connection (nothing was sent).
    Timeout {
        connecting: bool,
    },
    Connect(String),
    Status {
        status: u16,
        body: String,
    },
    Malformed {
        status: u16,
        detail: String,
    },
    Other(String),
}

impl fmt::Display for HttpFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpFault::Timeout { .. } => f.write_str("timed out"),
            HttpFault::Connect(e) | HttpFault::Other(e) => f.write_str(e),
            HttpFault::Status { status, body } => write!(f, "HTTP {status} ({body})"),
            HttpFault::Malformed { status, detail } => write!(f, "HTTP {status}: {detail}"),
        }
    }
}

impl std::error::Error for HttpFault {}

/// Describes a body for an error message without ever echoing it: a token response that
/// is malformed may still contain a token.
fn describe_body(content_type: &str, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim_start();
    if body.is_empty() {
        "an empty body".to_owned()
    } else if trimmed.starts_with('<') || content_type.contains("html") {
        // An HTML title is safe to show and usually says what answered (a proxy, a portal).
        let title = trimmed
            .split_once("<title>")
            .and_then(|(_, rest)| rest.split_once("</title>"))
            .map(|(t, _)| t.trim().chars().take(80).collect::<String>());
        match title {
            Some(t) if !t.is_empty() => format!("an HTML page titled \"{t}\" instead of JSON"),
            _ => "an HTML page instead of JSON".to_owned(),
        }
    } else if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(body) {
        // Only keys that look like field names are shown: a broken server may put
        // anything in a key, a token included (found by fuzz/fuzz_targets/token_response.rs).
        let named = |k: &str| {
            !k.is_empty()
                && k.len() <= 40
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        let mut keys: Vec<&str> = map
            .keys()
            .map(String::as_str)
            .filter(|k| named(k))
            .collect();
        let others = map.len() - keys.len();
        if others > 0 {
            keys.push(if others == 1 { "1 other" } else { "others" });
        }
        format!("a JSON object with keys [{}]", keys.join(", "))
    } else {
        format!(
            "{} bytes of {}",
            body.len(),
            if content_type.is_empty() {
                "unlabelled data"
            } else {
                content_type
            }
        )
    }
}

/// Sorts an HTTP response into "give it to oauth2" or a fault, by status and body shape.
fn screen(status: u16, content_type: &str, body: &[u8]) -> std::result::Result<(), HttpFault> {
    let json: Option<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(body).ok();
    match (status, json) {
        (200, Some(map)) if map.get("access_token").is_some_and(|v| v.is_string()) => Ok(()),
        (200, Some(_)) => Err(HttpFault::Malformed {
            status,
            detail: format!(
                "the answer had no access_token ({})",
                describe_body(content_type, body)
            ),
        }),
        (200, None) => Err(HttpFault::Malformed {
            status,
            detail: describe_body(content_type, body),
        }),
        // RFC 6749 §5.2 error responses: 400, or 401 for client authentication.
        (400 | 401, Some(map)) if map.get("error").is_some_and(|v| v.is_string()) => Ok(()),
        _ => Err(HttpFault::Status {
            status,
            body: describe_body(content_type, body),
        }),
    }
}

/// What mailtoken makes of a token endpoint's answer, without the network: the grant
/// from a 200, `Ok(None)` for an RFC 6749 §5.2 error that oauth2 then reads, or the
/// message for people (which never repeats the body). For the fuzz target and tests.
pub fn read_token_response(
    status: u16,
    content_type: &str,
    body: &[u8],
) -> std::result::Result<Option<TokenGrant>, String> {
    screen(status, content_type, body).map_err(|f| f.to_string())?;
    if status != 200 {
        return Ok(None);
    }
    serde_json::from_slice::<BasicTokenResponse>(body)
        .map(|t| Some(TokenGrant::from(t)))
        .map_err(|e| format!("not a token response: {}", crate::store::json_error(&e)))
}

/// One HTTP exchange: the status, the content type (lower case) and the body, or why
/// there was no answer.
async fn fetch(
    http: &reqwest::Client,
    req: reqwest::Request,
) -> std::result::Result<(u16, String, Vec<u8>), HttpFault> {
    fetch_dated(http, req, None).await
}

/// `fetch`, noting in `clock` how far the server's clock (its `Date` header, RFC 9110
/// §6.6.1) is from this machine's, in seconds (positive: the server is ahead).
async fn fetch_dated(
    http: &reqwest::Client,
    req: reqwest::Request,
    clock: Option<&std::sync::Mutex<Option<i64>>>,
) -> std::result::Result<(u16, String, Vec<u8>), HttpFault> {
    let resp = http.execute(req).await.map_err(|e| {
        if e.is_timeout() {
            HttpFault::Timeout {
                connecting: e.is_connect(),
            }
        } else if e.is_connect() {
            HttpFault::Connect(chain(&e))
        } else {
            HttpFault::Other(chain(&e))
        }
    })?;
    if let Some(clock) = clock
        && let Some(date) = resp
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
    {
        let skew = date.as_secs() as i64 - record::now() as i64;
        *clock.lock().unwrap_or_else(|e| e.into_inner()) = Some(skew);
    }
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let body = resp.bytes().await.map_err(|e| {
        if e.is_timeout() {
            HttpFault::Timeout { connecting: false }
        } else {
            HttpFault::Other(chain(&e))
        }
    })?;
    Ok((status, content_type, body.to_vec()))
}

/// oauth2's HTTP client: `fetch`, screened, so that oauth2 only ever parses answers
/// that look like OAuth.
async fn send(
    http: &reqwest::Client,
    req: oauth2::HttpRequest,
) -> std::result::Result<oauth2::HttpResponse, HttpFault> {
    send_dated(http, req, None).await
}

async fn send_dated(
    http: &reqwest::Client,
    req: oauth2::HttpRequest,
    clock: Option<&std::sync::Mutex<Option<i64>>>,
) -> std::result::Result<oauth2::HttpResponse, HttpFault> {
    let req = reqwest::Request::try_from(req).map_err(|e| HttpFault::Other(chain(&e)))?;
    let (status, content_type, body) = fetch_dated(http, req, clock).await?;
    screen(status, &content_type, &body)?;
    let mut b = oauth2::http::Response::builder().status(status);
    // oauth2 insists on a JSON content type; a JSON body mislabelled as text/plain (seen
    // at some providers) was already checked above, so label it honestly here.
    b = b.header(reqwest::header::CONTENT_TYPE, "application/json");
    b.body(body).map_err(|e| HttpFault::Other(e.to_string()))
}

/// How long a sent refresh waits for its answer, at least: far longer than `timeout`,
/// which bounds the callers. A provider that got the request carries it out whether
/// or not its answer arrives, and one that rotates refresh tokens (RFC 9700 §4.14.2)
/// has then spent the stored one: the answer is the only place the new one exists, so
/// it is waited for (by the daemon, or by the refresh's own process, `worker.rs`) while
/// the callers are answered within `timeout`. docs/reliability.md, "The window no
/// client can close", has the cost of giving up.
pub const ANSWER_PATIENCE: Duration = Duration::from_secs(120);

/// How long a sent refresh waits for its answer under `timeout`.
pub fn patience(timeout: Duration) -> Duration {
    timeout.max(ANSWER_PATIENCE)
}

/// Builds the HTTP client for an account's token endpoint, through the proxy `route`
/// says (mailtoken chooses it, not reqwest: `proxy.rs`): connecting (TCP, TLS, a
/// proxy's tunnel) within `timeout`, the whole exchange within `answer`.
pub fn http_client(
    account: &Account,
    timeout: Duration,
    answer: Duration,
    route: &Route,
) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        // The crate's SSRF warning: a token endpoint has no business redirecting us.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(answer.max(timeout))
        .connect_timeout(timeout)
        .user_agent(concat!("mailtoken/", env!("CARGO_PKG_VERSION")));
    let o = account.oauth()?;
    let needs_tls = [Some(&o.token_url), o.revoke_url.as_ref()]
        .into_iter()
        .flatten()
        .any(|u| u.scheme() == "https");
    // Loading the trust store costs a few milliseconds; plain-http loopback test
    // endpoints do not need it.
    if needs_tls {
        let tls = crate::tls::client_config(account.ca_file.as_deref())?;
        b = b.use_preconfigured_tls((*tls).clone());
    }
    if let Some(p) = &route.proxy {
        // Credentials in the URL become the Proxy-Authorization header (Basic).
        let proxy = reqwest::Proxy::all(p.as_str()).map_err(|e| {
            Error::config(format!("proxy {}: {}", crate::proxy::redact(p), chain(&e)))
        })?;
        b = b.proxy(proxy);
    }
    b.build()
        .map_err(|e| Error::software(format!("HTTP client: {}", chain(&e))))
}

/// The route to an account's token endpoint.
pub fn token_route(account: &Account) -> Result<Route> {
    let o = account.oauth()?;
    crate::proxy::route(account.proxy.as_ref(), &o.token_url)
}

/// The app's certificate and key, from their files or from `certificate_cmd`.
fn signer(account: &Account, m: &KeyMaterial) -> Result<assertion::Signer> {
    match m {
        KeyMaterial::Files {
            certificate,
            private_key,
        } => {
            // The certificate is public; the key is not.
            let cert = assertion::read_file(certificate, "certificate", false)?;
            let key = assertion::read_file(private_key, "private_key", true)?;
            assertion::Signer::from_pem(&certificate.display().to_string(), &cert, &key)
        }
        KeyMaterial::Command(cmd) => {
            let out = run_secret_command(account, "certificate_cmd", cmd)?;
            assertion::Signer::from_pem(&format!("certificate_cmd `{cmd}`"), &out, &out)
        }
    }
}

/// Runs `client_secret_cmd` (e.g. `pass show ...`) and returns its first line.
fn secret_from_command(account: &Account, cmd: &str) -> Result<Secret> {
    let out = run_secret_command(account, "client_secret_cmd", cmd)?;
    let text = zeroize::Zeroizing::new(String::from_utf8_lossy(&out).into_owned());
    Ok(Secret::new(text.lines().next().unwrap_or("").trim()))
}

/// Runs a command of the config (`key` names it) that prints secret material, and
/// returns its whole output (wiped when dropped); nothing printed is an error.
fn run_secret_command(
    account: &Account,
    key: &str,
    cmd: &str,
) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Error::config(format!("account {}: cannot run {key}: {e}", account.name)))?;
    let stdout = zeroize::Zeroizing::new(out.stdout);
    if !out.status.success() || stdout.iter().all(u8::is_ascii_whitespace) {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Error::config(format!(
            "account {}: {key} `{cmd}` {} {}",
            account.name,
            if out.status.success() {
                "printed nothing"
            } else {
                "failed"
            },
            err.lines().next().unwrap_or("").trim()
        ))
        .with_remedy("Run the command by hand to see what is wrong."));
    }
    Ok(stdout)
}

impl<'a> OAuthClient<'a> {
    /// A client whose every exchange ends within `timeout`.
    pub fn new(account: &'a Account, timeout: Duration) -> Result<Self> {
        Self::with_patience(account, timeout, timeout)
    }

    /// A client for refreshes: it connects within `timeout` and waits for a sent
    /// request's answer up to [`patience`], since that answer may hold the only copy of
    /// a rotated refresh token. Its callers bound their own wait.
    pub fn refreshing(account: &'a Account, timeout: Duration) -> Result<Self> {
        Self::with_patience(account, timeout, patience(timeout))
    }

    fn with_patience(account: &'a Account, timeout: Duration, answer: Duration) -> Result<Self> {
        let oauth = account.oauth()?;
        let secret = match (&oauth.client_secret, &oauth.client_secret_cmd) {
            (Some(s), _) => Some(s.clone()),
            (None, Some(cmd)) => Some(secret_from_command(account, cmd)?),
            (None, None) => None,
        };
        let signer = match &oauth.grant {
            Grant::ClientCredentials(ClientAuth::Certificate(m)) => Some(signer(account, m)?),
            _ => None,
        };
        let route = token_route(account)?;
        Ok(OAuthClient {
            account,
            oauth,
            http: http_client(account, timeout, answer, &route)?,
            route,
            secret,
            signer,
            clock: std::sync::Mutex::new(None),
            limits: Limits {
                connect: timeout,
                answer: answer.max(timeout),
            },
        })
    }

    /// The client for the token endpoint (the authorization endpoint is set only where
    /// a person is sent to it: `authorize_url`).
    fn client(
        &self,
    ) -> BasicClient<
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointSet,
    > {
        let o = self.oauth;
        let mut c = BasicClient::new(ClientId::new(o.client_id.clone()))
            .set_token_uri(TokenUrl::from_url(o.token_url.clone()))
            // Credentials in the form body: what Google's and Microsoft's public and
            // desktop clients expect, and what every provider accepts for public clients.
            .set_auth_type(AuthType::RequestBody);
        if let Some(s) = &self.secret {
            c = c.set_client_secret(ClientSecret::new(s.expose().to_owned()));
        }
        c
    }

    /// The authorization URL for the browser, with PKCE S256 and a fresh random state.
    pub fn authorize_url(
        &self,
        redirect_uri: &str,
        challenge: PkceCodeChallenge,
    ) -> Result<(Url, CsrfToken)> {
        let o = self.oauth;
        let auth_url = self
            .account
            .login_oauth()?
            .auth_url
            .clone()
            .ok_or_else(|| {
                Error::config(format!("account {} has no auth_url", self.account.name))
            })?;
        let client = self
            .client()
            .set_auth_uri(AuthUrl::from_url(auth_url))
            .set_redirect_uri(redirect_url(redirect_uri));
        let mut req = client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(o.scopes.iter().cloned().map(Scope::new))
            .set_pkce_challenge(challenge);
        // login_hint preselects the right account in the provider's account chooser.
        if !o.auth_params.iter().any(|(k, _)| k == "login_hint") {
            req = req.add_extra_param("login_hint", self.account.user.clone());
        }
        for (k, v) in &o.auth_params {
            req = req.add_extra_param(k.clone(), v.clone());
        }
        Ok(req.url())
    }

    pub async fn exchange_code(
        &self,
        code: String,
        verifier: PkceCodeVerifier,
        redirect_uri: &str,
    ) -> Result<TokenGrant, TokenError> {
        let client = self.client().set_redirect_uri(redirect_url(redirect_uri));
        let http = |r| send(&self.http, r);
        let resp = client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(verifier)
            .request_async(&http)
            .await;
        self.grant(resp, Step::Login)
    }

    pub async fn refresh(&self, refresh_token: &Secret) -> Result<TokenGrant, TokenError> {
        let http = |r| send(&self.http, r);
        let rt = RefreshToken::new(refresh_token.expose().to_owned());
        // The scopes of the login, on every refresh (RFC 6749 §6 lets a client ask for
        // the same or fewer): Microsoft's v2.0 endpoint issues the new access token for
        // the scopes a refresh names, https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow#refresh-the-access-token
        let resp = self
            .client()
            .exchange_refresh_token(&rt)
            .add_scopes(self.oauth.scopes.iter().cloned().map(Scope::new))
            .request_async(&http)
            .await;
        self.grant(resp, Step::Refresh)
    }

    /// A token for an app-only account, from the app's own credentials: the client
    /// credentials grant (RFC 6749 §4.4), with the account's scopes (Microsoft: the
    /// `.default` scope of Exchange Online).
    pub async fn app_token(&self) -> Result<TokenGrant, TokenError> {
        if let Grant::ServiceAccount { key, own_token_url } = &self.oauth.grant {
            return self.service_account_token(key, *own_token_url).await;
        }
        let http = |r| send_dated(&self.http, r, Some(&self.clock));
        let client = self.client();
        let mut req = client
            .exchange_client_credentials()
            .add_scopes(self.oauth.scopes.iter().cloned().map(Scope::new));
        // RFC 7523 §2.2 with RFC 7521 §4.2's parameters; the client_id stays in the body.
        if let Some(signer) = &self.signer {
            let jwt = signer
                .client_assertion(
                    &self.oauth.client_id,
                    self.oauth.token_url.as_str(),
                    record::now(),
                )
                .map_err(|error| TokenError {
                    kind: FailureKind::Config,
                    error,
                })?;
            req = req
                .add_extra_param(
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                )
                .add_extra_param("client_assertion", jwt.expose().to_owned());
        }
        let resp = req.request_async(&http).await;
        self.grant(resp, Step::App)
    }

    /// A service account's token: the JWT bearer grant (RFC 7523 §2.1) at the key's
    /// `token_uri` (or the account's own token_url), for the mailbox `user`.
    async fn service_account_token(
        &self,
        source: &KeySource,
        own_token_url: bool,
    ) -> Result<TokenGrant, TokenError> {
        let config = |error| TokenError {
            kind: FailureKind::Config,
            error,
        };
        let (what, json) = match source {
            KeySource::File(p) => (
                format!("key_file {}", p.display()),
                assertion::read_file(p, "key_file", true).map_err(config)?,
            ),
            KeySource::Command(cmd) => (
                format!("key_cmd `{cmd}`"),
                run_secret_command(self.account, "key_cmd", cmd).map_err(config)?,
            ),
        };
        let sa = assertion::ServiceAccount::from_json(&what, &json).map_err(config)?;
        let aud = match (&sa.token_uri, own_token_url) {
            (Some(uri), false) => crate::config::endpoint_url(uri)
                .map_err(|e| config(Error::config(format!("{what}: token_uri {e}"))))?,
            _ => self.oauth.token_url.clone(),
        };
        let jwt = sa
            .assertion(
                &self.account.user,
                &self.oauth.scopes.join(" "),
                aud.as_str(),
                record::now(),
            )
            .map_err(config)?;
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", jwt.expose()),
        ];
        let req = self
            .http
            .post(aud.clone())
            .form(&form)
            .build()
            .map_err(|e| config(Error::software(format!("token request: {}", chain(&e)))))?;
        let answer = fetch_dated(&self.http, req, Some(&self.clock))
            .await
            .and_then(|(status, ct, body)| {
                screen(status, &ct, &body)?;
                Ok((status, body))
            });
        let failed = |e| Err(self.refused(Step::App, e));
        match answer {
            Err(fault) => failed(RequestTokenError::Request(fault)),
            Ok((200..=299, body)) => match serde_json::from_slice::<BasicTokenResponse>(&body) {
                Ok(t) => Ok(TokenGrant::from(t)),
                Err(e) => Err(TokenError {
                    kind: FailureKind::Temporary,
                    error: Error::temp(format!(
                        "asking for a service account token for {}: {aud} answered with a token response that does not follow RFC 6749 ({e})",
                        self.account.name
                    )),
                }),
            },
            Ok((status, body)) => match serde_json::from_slice::<BasicErrorResponse>(&body) {
                Ok(e) => failed(RequestTokenError::ServerResponse(e)),
                Err(_) => failed(RequestTokenError::Request(HttpFault::Status {
                    status,
                    body: describe_body("application/json", &body),
                })),
            },
        }
    }

    /// RFC 7009 revocation of a token at the provider's revocation endpoint.
    pub async fn revoke(&self, token: &Secret, hint: &str) -> Result<()> {
        let Some(url) = &self.oauth.revoke_url else {
            return Ok(());
        };
        let mut form = vec![
            ("token", token.expose()),
            ("token_type_hint", hint),
            ("client_id", &self.oauth.client_id),
        ];
        if let Some(s) = &self.secret {
            form.push(("client_secret", s.expose()));
        }
        let resp = self
            .http
            .post(url.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                Error::temp(format!(
                    "revoking at {url}: {}",
                    if e.is_timeout() {
                        "timed out".to_owned()
                    } else {
                        chain(&e)
                    }
                ))
            })?;
        match resp.status().as_u16() {
            // 200, and 400 invalid_token for a token that is already dead (Google).
            200 | 204 => Ok(()),
            s => {
                let ct = resp
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let body = resp.bytes().await.unwrap_or_default();
                Err(Error::temp(format!(
                    "revoking at {url}: HTTP {s} ({})",
                    describe_body(&ct, &body)
                )))
            }
        }
    }

    fn grant(
        &self,
        resp: std::result::Result<
            BasicTokenResponse,
            RequestTokenError<HttpFault, BasicErrorResponse>,
        >,
        step: Step,
    ) -> Result<TokenGrant, TokenError> {
        resp.map(TokenGrant::from)
            .map_err(|e| self.refused(step, e))
    }

    /// A failed token-endpoint request in plain words (`classify`, with this client's
    /// account, route and limits); an app-only one also says how far off the clock is.
    fn refused(
        &self,
        step: Step,
        e: RequestTokenError<HttpFault, BasicErrorResponse>,
    ) -> TokenError {
        let e = classify(self.account, self.oauth, self.limits, &self.route, step, e);
        if step == Step::App {
            self.with_clock(e)
        } else {
            e
        }
    }

    /// A refused app-only request, with how far this machine's clock is from the
    /// server's when that is far enough to explain it: assertions carry times, and a
    /// server judges them by its own clock.
    fn with_clock(&self, mut e: TokenError) -> TokenError {
        let skew = *self.clock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = skew.filter(|s| s.abs() >= 60)
            && e.error.code != ExitCode::TempFail
        {
            let how = humantime::format_duration(Duration::from_secs(s.unsigned_abs()));
            let side = if s < 0 { "ahead of" } else { "behind" };
            e.error.message.push_str(&format!(
                " This machine's clock is {how} {side} the token endpoint's (its Date header), and an assertion is judged by the server's clock."
            ));
            e.error.remedy = Some(
                "Set this machine's clock right (timedatectl set-ntp true, or check the NTP service), then try again.".into(),
            );
        }
        e
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Login,
    Refresh,
    /// Polling for a device login (RFC 8628).
    Device,
    /// An app-only token from the client's own credentials.
    App,
}

/// The redirect URI exactly as spelled (`RedirectUrl::new` keeps the text; `from_url`
/// would add a `/` to `https://localhost`). `Redirect::uri` made it, and parsed it.
fn redirect_url(uri: &str) -> RedirectUrl {
    RedirectUrl::new(uri.to_owned()).expect("Redirect::uri returns only URLs that parse")
}

/// `text` with the proxy's password, if any, masked: a transport error may quote the
/// proxy's URL.
fn hide(route: &Route, text: &str) -> String {
    match route.password() {
        Some(p) if !p.is_empty() => text.replace(p, "***"),
        _ => text.to_owned(),
    }
}

/// What to do about a refused assertion, from the provider's words (Google's
/// invalid_grant descriptions for service accounts).
fn assertion_remedy(account: &Account, desc: &str) -> String {
    let d = desc.to_ascii_lowercase();
    if d.contains("audience") {
        "The assertion was made for another token endpoint than the one it was sent to: leave token_url out of the account, so that the key's token_uri is used.".into()
    } else if d.contains("signature") {
        "The key does not match the service account (it was deleted or replaced): make a new JSON key in the Cloud console and point key_file at it.".into()
    } else if d.contains("iat") || d.contains("exp") || d.contains("timeframe") {
        "The assertion's times were refused: check this machine's clock (timedatectl).".into()
    } else if d.contains("email") || d.contains("user id") {
        format!(
            "user = \"{}\" is not a mailbox of the service account's Workspace domain: set user to one.",
            account.user
        )
    } else {
        "Check the service account's key and that user is a mailbox of its Workspace domain.".into()
    }
}

/// Plain words for why a provider rejects a refresh token (provider-facts.md).
pub fn invalid_grant_causes(account: &Account) -> &'static str {
    match account.provider.map(|p| p.name) {
        Some("google") => {
            "Google rejects a refresh token after you revoke access or change your password, after 6 months unused, \
             and 7 days after login while the OAuth app is in \"Testing\" status (publish the app to stop that)"
        }
        Some("microsoft") => {
            "Microsoft rejects a refresh token after a password change, after 90 days unused, \
             when an administrator revokes sessions, or when a rotated one is used twice"
        }
        _ => "the provider revoked it, it expired, or it was replaced by a newer one",
    }
}

/// The words for a failed token request, its exit code, and the kind of failure: each
/// case says for itself whether only a login helps, the config is wrong, or it may pass.
fn classify(
    account: &Account,
    oauth: &OAuth,
    limits: Limits,
    route: &Route,
    step: Step,
    e: RequestTokenError<HttpFault, BasicErrorResponse>,
) -> TokenError {
    use FailureKind::{Config, Rejected, Temporary};
    let name = &account.name;
    let url = &oauth.token_url;
    let what = match step {
        Step::Login => "exchanging the authorization code",
        Step::Refresh => "refreshing the access token",
        Step::Device => "waiting for the device login",
        Step::App => "asking for an app-only token",
    };
    let keep = match step {
        Step::Refresh | Step::App => " The stored tokens are kept.",
        Step::Login | Step::Device => "",
    };
    let (kind, error) = match e {
        RequestTokenError::ServerResponse(r) => {
            let code = r.error().as_ref().to_owned();
            // Only the sentence: Microsoft appends trace, correlation and time lines.
            let desc = r
                .error_description()
                .map(|d| format!(": {}", microsoft::first_line(d)))
                .unwrap_or_default();
            // Microsoft's AADSTS code says what the OAuth `error` does not.
            if let Some(x) = r.error_description().and_then(|d| microsoft::explain(d)) {
                let exit = match x.kind {
                    Config => ExitCode::Config,
                    Temporary => ExitCode::TempFail,
                    _ => ExitCode::NoPerm,
                };
                let error = Error::new(exit, format!("{what} for {name}: {} ({code}{desc})", x.meaning))
                    .with_remedy(x.remedy.replace("{name}", name));
                return TokenError { kind: x.kind, error };
            }
            match (r.error(), step) {
                // RFC 6749 §5.2: the grant (refresh token or code) is invalid, expired
                // or revoked. Only a login gets a new one.
                (BasicErrorResponseType::InvalidGrant, Step::Refresh) => (
                    Rejected,
                    Error::noperm(format!(
                        "the refresh token for {name} was rejected (invalid_grant{desc}); {}",
                        invalid_grant_causes(account)
                    ))
                    .with_remedy(format!("Run `mailtoken login {name}` to log in again.")),
                ),
                (BasicErrorResponseType::InvalidGrant, Step::Login | Step::Device) => (
                    Rejected,
                    Error::noperm(format!(
                        "the provider rejected the authorization code for {name} (invalid_grant{desc})"
                    ))
                    .with_remedy(format!("Run `mailtoken login {name}` again; the code is single-use and short-lived.")),
                ),
                // Google's answer to a service account without domain-wide delegation
                // for this client and scope.
                (BasicErrorResponseType::UnauthorizedClient, Step::App)
                    if matches!(oauth.grant, Grant::ServiceAccount { .. }) =>
                (
                    Config,
                    Error::config(format!(
                        "{what} for {name}: the service account may not act as {} (unauthorized_client{desc})",
                        account.user
                    ))
                    .with_remedy(format!(
                        "Domain-wide delegation is missing for this service account and scope. A Workspace super administrator adds it at admin.google.com > Security > Access and data control > API controls > Manage Domain Wide Delegation > Add new: the key file's client_id as Client ID, and the scope {}. It can take some minutes to apply.",
                        oauth.scopes.join(",")
                    )),
                ),
                (BasicErrorResponseType::InvalidScope, Step::App)
                    if matches!(oauth.grant, Grant::ServiceAccount { .. }) =>
                (
                    Config,
                    Error::config(format!(
                        "{what} for {name}: the provider refused the scopes {} (invalid_scope{desc})",
                        oauth.scopes.join(" ")
                    ))
                    .with_remedy(
                        "Gmail's scope for a service account is https://mail.google.com/ (leave scopes out of the account), and it must be among the scopes delegated to the service account's client ID.",
                    ),
                ),
                (BasicErrorResponseType::InvalidGrant, Step::App) => (
                    Config,
                    Error::config(format!("{what} for {name}: the provider refused the assertion (invalid_grant{desc})"))
                        .with_remedy(assertion_remedy(account, &desc)),
                ),
                (
                    BasicErrorResponseType::InvalidClient
                    | BasicErrorResponseType::UnauthorizedClient
                    | BasicErrorResponseType::InvalidRequest
                    | BasicErrorResponseType::InvalidScope
                    | BasicErrorResponseType::UnsupportedGrantType,
                    _,
                ) => (
                    Config,
                    Error::config(format!("{what} for {name}: the provider answered {code}{desc}")).with_remedy(
                        "Check client_id, client_secret and scopes in the config against the OAuth client registered at the provider.",
                    ),
                ),
                _ => (
                    Temporary,
                    Error::temp(format!("{what} for {name}: the provider answered {code}{desc}.{keep}"))
                        .with_remedy("Try again later."),
                ),
            }
        }
        RequestTokenError::Request(f) => match f {
            HttpFault::Timeout { connecting: true } => (
                Temporary,
                Error::temp(format!(
                    "{what} for {name}: {url} could not be reached within {} (nothing was sent).{keep}",
                    humantime::format_duration(limits.connect),
                ))
                .with_remedy("Check the network and try again; `timeout` in the config sets the limit."),
            ),
            HttpFault::Timeout { connecting: false } => (
                Temporary,
                Error::temp(format!(
                    "{what} for {name}: {url} did not answer within {}.{keep}{spent}",
                    humantime::format_duration(limits.answer),
                    // A provider that got the request carries it out whether or not its
                    // answer arrives: one that rotates refresh tokens (RFC 9700 §4.14.2)
                    // has then spent the stored one. Measured: docs/reliability.md, "The
                    // window no client can close".
                    spent = match step {
                        Step::Refresh => {
                            " If the request reached it, a provider that replaces refresh \
                             tokens on use may have replaced the stored one; should the next \
                             refresh be refused, log in again."
                        }
                        _ => "",
                    }
                ))
                .with_remedy("Check the network and try again; `timeout` in the config sets the limit."),
            ),
            // hyper-util's words when the proxy answers CONNECT with anything but 2xx.
            HttpFault::Connect(e) if route.proxy.is_some() && e.contains("tunnel error") => (
                Temporary,
                Error::temp(format!(
                    "{what} for {name}: {} refused to open a tunnel (CONNECT) to {}. The provider was not reached.{keep}",
                    route.shown(),
                    url.host_str().map_or(String::new(), |h| format!("{h}:{}", url.port_or_known_default().unwrap_or(443)))
                ))
                .with_remedy(
                    "Ask the proxy's administrator to allow CONNECT to the token endpoint's host and port, or name another proxy (HTTPS_PROXY, or proxy in the config).",
                ),
            ),
            HttpFault::Connect(e) if route.proxy.is_some() => (
                Temporary,
                Error::temp(format!(
                    "{what} for {name}: {} did not get the request to {url} through: {}. The provider was not reached.{keep}",
                    route.shown(),
                    hide(route, &e)
                ))
                .with_remedy(
                    "Check that the proxy runs and lets this machine through (HTTPS_PROXY / HTTP_PROXY, or proxy in the config), or list the endpoint's host in NO_PROXY.",
                ),
            ),
            HttpFault::Connect(e) => (
                Temporary,
                Error::temp(format!("{what} for {name}: cannot connect to {url}: {e}.{keep}"))
                    .with_remedy("Check the network connection and try again."),
            ),
            HttpFault::Status { status: s @ (404 | 405), body } => (
                Config,
                Error::config(format!("{what} for {name}: {url} answered HTTP {s} with {body}"))
                    .with_remedy("Check token_url in the config: it is not the provider's token endpoint."),
            ),
            HttpFault::Status { status, body } => (
                Temporary,
                Error::temp(format!(
                    "{what} for {name}: the token endpoint {url} answered HTTP {status} with {body}.{keep}"
                ))
                .with_remedy(if status >= 500 || status == 429 {
                    "The provider is having trouble; try again later."
                } else {
                    "Try again later; if it persists, check token_url in the config."
                }),
            ),
            HttpFault::Malformed { status, detail } => (
                Temporary,
                Error::temp(format!(
                    "{what} for {name}: the token endpoint {url} answered HTTP {status} with {detail}.{keep}"
                ))
                .with_remedy(
                    "Something between you and the provider (a captive portal, a proxy) may have answered; try again later.",
                ),
            ),
            HttpFault::Other(e) => (Temporary, Error::temp(format!("{what} for {name}: {e}.{keep}"))),
        },
        // Our adapter screens bodies first, so these mean a response that looked like
        // OAuth but was not (e.g. a missing token_type).
        RequestTokenError::Parse(e, _) => (
            Temporary,
            Error::temp(format!(
                "{what} for {name}: the token endpoint's answer does not follow RFC 6749 ({}).{keep}",
                e.inner()
            )),
        ),
        RequestTokenError::Other(e) => (
            Temporary,
            Error::new(ExitCode::TempFail, format!("{what} for {name}: {e}.{keep}")),
        ),
    };
    TokenError { kind, error }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_token_response_gives_the_grant_an_oauth_error_or_a_message_without_the_body() {
        let ok = br#"{"access_token":"at-123","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-456"}"#;
        let g = read_token_response(200, "application/json", ok)
            .unwrap()
            .unwrap();
        assert_eq!(g.access_token.expose(), "at-123");
        assert_eq!(g.refresh_token.unwrap().expose(), "rt-456");
        assert!(
            read_token_response(400, "application/json", br#"{"error":"invalid_grant"}"#)
                .unwrap()
                .is_none()
        );
        let bad = br#"{"access_token":"at-secret-789","token_type":42}"#;
        let e = read_token_response(200, "application/json", bad).unwrap_err();
        assert!(!e.contains("at-secret-789"), "{e}");
        let e =
            read_token_response(502, "text/html", b"<html><title>Bad gateway</title>").unwrap_err();
        assert!(e.contains("Bad gateway"), "{e}");
    }

    #[test]
    fn screen_accepts_tokens_and_oauth_errors() {
        assert!(
            screen(
                200,
                "application/json",
                br#"{"access_token":"a","token_type":"Bearer"}"#
            )
            .is_ok()
        );
        assert!(screen(400, "application/json", br#"{"error":"invalid_grant"}"#).is_ok());
        assert!(screen(401, "application/json", br#"{"error":"invalid_client"}"#).is_ok());
    }

    #[test]
    fn screen_rejects_html_empty_and_tokenless_bodies_without_echoing_them() {
        let e = screen(
            200,
            "text/html",
            b"<html><head><title>Hotel WiFi</title></head></html>",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "HTTP 200: an HTML page titled \"Hotel WiFi\" instead of JSON"
        );
        let e = screen(
            200,
            "application/json",
            br#"{"refresh_token":"SECRET","token_type":"Bearer"}"#,
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("no access_token") && s.contains("[refresh_token, token_type]"),
            "{s}"
        );
        assert!(!s.contains("SECRET"));
        let e = screen(503, "text/plain", b"").unwrap_err();
        assert_eq!(e.to_string(), "HTTP 503 (an empty body)");
        let e = screen(502, "text/html", b"<h1>Bad gateway</h1>").unwrap_err();
        assert_eq!(e.to_string(), "HTTP 502 (an HTML page instead of JSON)");
    }

    #[test]
    fn screen_treats_a_5xx_json_error_as_a_status_fault() {
        assert!(matches!(
            screen(
                503,
                "application/json",
                br#"{"error":"temporarily_unavailable"}"#
            ),
            Err(HttpFault::Status { status: 503, .. })
        ));
    }

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        let v = PkceCodeVerifier::new("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into());
        let c = PkceCodeChallenge::from_code_verifier_sha256(&v);
        assert_eq!(c.as_str(), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        assert_eq!(c.method().as_str(), "S256");
    }

    #[test]
    fn random_pkce_verifiers_and_states_are_long_and_distinct() {
        let (_, v1) = PkceCodeChallenge::new_random_sha256();
        let (_, v2) = PkceCodeChallenge::new_random_sha256();
        assert_ne!(v1.secret(), v2.secret());
        // RFC 7636 §4.1: 43 to 128 characters of the unreserved set.
        assert!((43..=128).contains(&v1.secret().len()));
        assert!(
            v1.secret()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
        );
        let (s1, s2) = (CsrfToken::new_random(), CsrfToken::new_random());
        assert_ne!(s1.secret(), s2.secret());
        assert!(s1.secret().len() >= 22, "state carries at least 128 bits");
    }
}
