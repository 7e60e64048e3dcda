//! Self-test of the test authorization server (tests/authserver) and of the
//! helpers in tests/integration/common/authserver.rs. Needs a running server:
//! `eval "$(bash tests/authserver/start.sh)" && MAILTOKEN_TEST_ISSUER=$ISSUER cargo test --test integration authserver_selftest`

use crate::common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

use common::authserver::{
    Browser, Decision, GOOGLE_CLIENT, GOOGLE_CLIENT_SECRET, NATIVE_CLIENT, NATIVE_SHORT_CLIENT,
    endpoint, introspect, issuer, revoke, stats, token_request,
};

const VERIFIER: &str = "selftest-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";
const REDIRECT: &str = "http://127.0.0.1:43123/";

fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A login name nobody else uses, so that the per-account stats start at 0
/// even when the server is shared between test runs.
fn unique_login(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{}-{nanos}@example.test", std::process::id())
}

fn auth_url(client_id: &str, scope: &str, state: &str, extra: &[(&str, &str)]) -> String {
    let challenge = challenge(VERIFIER);
    let mut params = vec![
        ("client_id", client_id),
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("scope", scope),
        ("state", state),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    params.extend_from_slice(extra);
    Url::parse_with_params(&endpoint("/auth"), &params)
        .unwrap()
        .to_string()
}

fn query(url: &Url, key: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

fn str_field<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key:?} in {value}"))
}

/// Runs the browser and checks the redirect back to the app; returns the code.
async fn authorize_code(
    client_id: &str,
    scope: &str,
    login: &str,
    extra: &[(&str, &str)],
) -> String {
    let url = auth_url(client_id, scope, "st-123", extra);
    let back = Browser::new()
        .authorize(&url, login, Decision::Approve)
        .await
        .unwrap();
    assert_eq!(back.host_str(), Some("127.0.0.1"), "{back}");
    assert_eq!(back.port(), Some(43123), "{back}");
    assert_eq!(back.path(), "/", "{back}");
    assert_eq!(query(&back, "state").as_deref(), Some("st-123"), "{back}");
    assert_eq!(query(&back, "iss"), Some(issuer()), "{back}");
    assert_eq!(query(&back, "error"), None, "{back}");
    query(&back, "code").unwrap_or_else(|| panic!("no code in {back}"))
}

async fn exchange_code(code: &str, client_id: &str, secret: Option<&str>) -> Value {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
        ("client_id", client_id),
    ];
    if let Some(secret) = secret {
        form.push(("client_secret", secret));
    }
    let (status, body) = token_request(&form).await;
    assert_eq!(status, 200, "code exchange: {body}");
    assert_eq!(body["token_type"], "Bearer", "{body}");
    body
}

async fn refresh(refresh_token: &str, client_id: &str, secret: Option<&str>) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", client_id),
    ];
    if let Some(secret) = secret {
        form.push(("client_secret", secret));
    }
    token_request(&form).await
}

fn assert_invalid_grant(status: u16, body: &Value) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");
}

#[tokio::test]
async fn health_and_discovery() {
    let client = reqwest::Client::new();
    let health = client.get(endpoint("/_test/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let discovery: Value = client
        .get(endpoint("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let iss = issuer();
    assert_eq!(discovery["issuer"], iss.as_str());
    assert_eq!(discovery["authorization_endpoint"], format!("{iss}/auth"));
    assert_eq!(discovery["token_endpoint"], format!("{iss}/token"));
    assert_eq!(
        discovery["revocation_endpoint"],
        format!("{iss}/token/revocation")
    );
    assert_eq!(
        discovery["introspection_endpoint"],
        format!("{iss}/token/introspection")
    );
    assert_eq!(
        discovery["device_authorization_endpoint"],
        format!("{iss}/device/auth")
    );
    assert_eq!(
        discovery["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        discovery["authorization_response_iss_parameter_supported"],
        true
    );
    for scope in ["openid", "offline_access", "email", "mail"] {
        assert!(
            discovery["scopes_supported"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s == scope),
            "{scope} missing: {discovery}"
        );
    }
}

#[tokio::test]
async fn native_code_flow_introspection_and_refresh_rotation() {
    let login = unique_login("alice");
    let code = authorize_code(
        NATIVE_CLIENT,
        "openid email mail offline_access",
        &login,
        &[("prompt", "consent")],
    )
    .await;
    let tokens = exchange_code(&code, NATIVE_CLIENT, None).await;
    assert_eq!(tokens["expires_in"], 3600, "{tokens}");
    assert_eq!(
        tokens["scope"], "openid email mail offline_access",
        "{tokens}"
    );
    let access0 = str_field(&tokens, "access_token").to_owned();
    let rt0 = str_field(&tokens, "refresh_token").to_owned();

    let info = introspect(&access0).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["email"], login.as_str(), "{info}");
    assert_eq!(info["sub"], login.as_str(), "{info}");
    assert_eq!(info["client_id"], NATIVE_CLIENT, "{info}");
    assert!(
        str_field(&info, "scope").split(' ').any(|s| s == "mail"),
        "{info}"
    );

    let s = stats(&login).await;
    assert_eq!(s["account"], login.as_str(), "{s}");
    assert_eq!(s["code_grants"], 1, "{s}");
    assert_eq!(s["refresh_grants"], 0, "{s}");

    // Two refreshes; the refresh token rotates every time.
    let (status, r1) = refresh(&rt0, NATIVE_CLIENT, None).await;
    assert_eq!(status, 200, "{r1}");
    let rt1 = str_field(&r1, "refresh_token").to_owned();
    assert_ne!(rt1, rt0);
    let access1 = str_field(&r1, "access_token").to_owned();
    assert_ne!(access1, access0);
    let (status, r2) = refresh(&rt1, NATIVE_CLIENT, None).await;
    assert_eq!(status, 200, "{r2}");
    let rt2 = str_field(&r2, "refresh_token").to_owned();
    assert_ne!(rt2, rt1);
    assert_eq!(
        introspect(str_field(&r2, "access_token")).await["email"],
        login.as_str()
    );

    let s = stats(&login).await;
    assert_eq!(s["refresh_grants"], 2, "{s}");
    assert_eq!(s["code_grants"], 1, "{s}");

    // Re-using a rotated refresh token fails, and revokes the whole grant.
    let (status, body) = refresh(&rt0, NATIVE_CLIENT, None).await;
    assert_invalid_grant(status, &body);
    let (status, body) = refresh(&rt2, NATIVE_CLIENT, None).await;
    assert_invalid_grant(status, &body);
    assert_eq!(introspect(&access1).await["active"], false);
    assert_eq!(stats(&login).await["refresh_grants"], 2);
}

#[tokio::test]
async fn code_replay_fails_and_revokes_the_grant() {
    let code = authorize_code(
        NATIVE_CLIENT,
        "openid email mail",
        &unique_login("mallory"),
        &[],
    )
    .await;
    let tokens = exchange_code(&code, NATIVE_CLIENT, None).await;
    let access = str_field(&tokens, "access_token");
    assert_eq!(introspect(access).await["active"], true);
    let (status, body) = token_request(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
        ("client_id", NATIVE_CLIENT),
    ])
    .await;
    assert_invalid_grant(status, &body);
    // RFC 6749 §4.1.2: tokens issued from a replayed code are revoked.
    assert_eq!(introspect(access).await["active"], false);
}

#[tokio::test]
async fn deny_gives_access_denied() {
    let url = auth_url(NATIVE_CLIENT, "openid email mail", "st-deny", &[]);
    let back = Browser::new()
        .authorize(&url, &unique_login("denier"), Decision::Deny)
        .await
        .unwrap();
    assert_eq!(back.host_str(), Some("127.0.0.1"), "{back}");
    assert_eq!(back.port(), Some(43123), "{back}");
    assert_eq!(
        query(&back, "error").as_deref(),
        Some("access_denied"),
        "{back}"
    );
    assert_eq!(query(&back, "state").as_deref(), Some("st-deny"), "{back}");
    assert_eq!(query(&back, "code"), None, "{back}");
}

#[tokio::test]
async fn pkce_is_required() {
    let url = Url::parse_with_params(
        &endpoint("/auth"),
        &[
            ("client_id", GOOGLE_CLIENT),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid mail"),
            ("state", "st-pkce"),
        ],
    )
    .unwrap();
    let back = Browser::new()
        .authorize(url.as_str(), &unique_login("nopkce"), Decision::Approve)
        .await
        .unwrap();
    assert_eq!(
        query(&back, "error").as_deref(),
        Some("invalid_request"),
        "{back}"
    );
}

#[tokio::test]
async fn native_refresh_token_needs_offline_access_and_prompt_consent() {
    // Without offline_access: no refresh token.
    let code = authorize_code(
        NATIVE_CLIENT,
        "openid email mail",
        &unique_login("bob"),
        &[],
    )
    .await;
    let tokens = exchange_code(&code, NATIVE_CLIENT, None).await;
    assert!(tokens.get("refresh_token").is_none(), "{tokens}");

    // offline_access without prompt=consent is dropped by oidc-provider.
    let code = authorize_code(
        NATIVE_CLIENT,
        "openid email mail offline_access",
        &unique_login("bob"),
        &[],
    )
    .await;
    let tokens = exchange_code(&code, NATIVE_CLIENT, None).await;
    assert!(tokens.get("refresh_token").is_none(), "{tokens}");
    assert_eq!(tokens["scope"], "openid email mail", "{tokens}");
}

#[tokio::test]
async fn google_desktop_access_type_offline_without_rotation() {
    let login = unique_login("carol");
    let code = authorize_code(
        GOOGLE_CLIENT,
        "openid email mail",
        &login,
        &[("access_type", "offline")],
    )
    .await;
    let tokens = exchange_code(&code, GOOGLE_CLIENT, Some(GOOGLE_CLIENT_SECRET)).await;
    assert_eq!(tokens["scope"], "openid email mail", "{tokens}");
    let rt = str_field(&tokens, "refresh_token").to_owned();
    let info = introspect(str_field(&tokens, "access_token")).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["email"], login.as_str(), "{info}");
    assert_eq!(info["client_id"], GOOGLE_CLIENT, "{info}");

    // The secret is checked (client_secret_post).
    let (status, body) = refresh(&rt, GOOGLE_CLIENT, Some("wrong")).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client", "{body}");

    // No rotation: the same refresh token keeps working.
    for _ in 0..2 {
        let (status, r) = refresh(&rt, GOOGLE_CLIENT, Some(GOOGLE_CLIENT_SECRET)).await;
        assert_eq!(status, 200, "{r}");
        if let Some(returned) = r.get("refresh_token") {
            assert_eq!(returned, rt.as_str(), "{r}");
        }
        assert_eq!(
            introspect(str_field(&r, "access_token")).await["active"],
            true
        );
    }
    let s = stats(&login).await;
    assert_eq!(s["code_grants"], 1, "{s}");
    assert_eq!(s["refresh_grants"], 2, "{s}");

    // RFC 7009 revocation of the refresh token ends it.
    revoke(
        &rt,
        "refresh_token",
        GOOGLE_CLIENT,
        Some(GOOGLE_CLIENT_SECRET),
    )
    .await;
    let (status, body) = refresh(&rt, GOOGLE_CLIENT, Some(GOOGLE_CLIENT_SECRET)).await;
    assert_invalid_grant(status, &body);

    // Without access_type=offline: no refresh token.
    let code = authorize_code(GOOGLE_CLIENT, "openid email mail", &login, &[]).await;
    let tokens = exchange_code(&code, GOOGLE_CLIENT, Some(GOOGLE_CLIENT_SECRET)).await;
    assert!(tokens.get("refresh_token").is_none(), "{tokens}");
}

#[tokio::test]
async fn revoke_access_token_of_public_client() {
    let code = authorize_code(NATIVE_CLIENT, "openid mail", &unique_login("dave"), &[]).await;
    let tokens = exchange_code(&code, NATIVE_CLIENT, None).await;
    let access = str_field(&tokens, "access_token");
    assert_eq!(introspect(access).await["active"], true);
    revoke(access, "access_token", NATIVE_CLIENT, None).await;
    assert_eq!(introspect(access).await["active"], false);
}

#[tokio::test]
async fn short_lived_access_token_expires() {
    let code = authorize_code(
        NATIVE_SHORT_CLIENT,
        "openid email mail",
        &unique_login("erin"),
        &[],
    )
    .await;
    let tokens = exchange_code(&code, NATIVE_SHORT_CLIENT, None).await;
    let ttl = tokens["expires_in"].as_u64().unwrap();
    assert!(ttl < 3600, "{tokens}");
    let access = str_field(&tokens, "access_token");
    assert_eq!(introspect(access).await["active"], true);
    if ttl <= 15 {
        tokio::time::sleep(Duration::from_secs(ttl + 1)).await;
        assert_eq!(introspect(access).await["active"], false);
    }
}

#[tokio::test]
async fn device_flow() {
    let login = unique_login("frank");
    let (status, device) = json_post(
        &endpoint("/device/auth"),
        &[
            ("client_id", NATIVE_CLIENT),
            ("scope", "openid email mail offline_access"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{device}");
    let device_code = str_field(&device, "device_code").to_owned();

    // Before the person acts: authorization_pending.
    let poll = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("device_code", device_code.as_str()),
        ("client_id", NATIVE_CLIENT),
    ];
    let (status, body) = token_request(&poll).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "authorization_pending", "{body}");

    Browser::new()
        .device_authorize(
            str_field(&device, "verification_uri_complete"),
            &login,
            Decision::Approve,
        )
        .await
        .unwrap();
    let (status, tokens) = token_request(&poll).await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens.get("refresh_token").is_some(), "{tokens}");
    assert_eq!(
        introspect(str_field(&tokens, "access_token")).await["email"],
        login.as_str()
    );
    assert_eq!(stats(&login).await["device_grants"], 1);

    // Deny.
    let (_, device) = json_post(
        &endpoint("/device/auth"),
        &[("client_id", NATIVE_CLIENT), ("scope", "openid mail")],
    )
    .await;
    Browser::new()
        .device_authorize(
            str_field(&device, "verification_uri_complete"),
            &login,
            Decision::Deny,
        )
        .await
        .unwrap();
    let (status, body) = token_request(&[
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("device_code", str_field(&device, "device_code")),
        ("client_id", NATIVE_CLIENT),
    ])
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "access_denied", "{body}");
}

async fn json_post(url: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}
