//! Token-endpoint faults a real authorization server will not produce on demand: a 503,
//! a hang, an HTML page, a 200 without an access token, a token without `expires_in`.
//! The endpoint here is a FAKE (a few lines of axum), used only to inject these faults;
//! the stored refresh token must survive every one of them.

use crate::common;

use common::fake;
use common::mailtoken::*;
use std::time::Duration;

use fake::{RT, seeded};

#[track_caller]
fn assert_refresh_token_kept(env: &Env) {
    assert_eq!(env.stored("f")["refresh_token"], RT);
}

#[test]
fn a_503_is_a_temporary_failure_and_keeps_the_refresh_token() {
    let endpoint = fake::token_endpoint(
        503,
        "text/html",
        "<html><title>Service Unavailable</title></html>",
        Duration::ZERO,
    );
    let env = seeded(&endpoint.url, "5s");
    let o = env.run(&["token", "f"]);
    assert_exit(&o, 75);
    let e = stderr(&o);
    assert!(
        e.contains("HTTP 503") && e.contains("try again later"),
        "{e}"
    );
    assert!(e.contains("stored tokens are kept"), "{e}");
    assert!(stdout(&o).is_empty());
    assert_refresh_token_kept(&env);
    let j: serde_json::Value =
        serde_json::from_str(&stdout(&env.run(&["status", "--json"]))).unwrap();
    assert!(
        j[0]["last_error"].as_str().unwrap().contains("HTTP 503"),
        "{j}"
    );
}

#[test]
fn a_hang_past_the_timeout_is_a_temporary_failure() {
    let endpoint = fake::token_endpoint(200, "application/json", "{}", Duration::from_secs(30));
    let env = seeded(&endpoint.url, "1s");
    let start = std::time::Instant::now();
    let o = env.run(&["token", "f"]);
    assert!(start.elapsed() < Duration::from_secs(10), "gave up in time");
    assert_exit(&o, 75);
    // The caller is answered after the timeout; the refresh waits on for the answer
    // in a process of its own (src/worker.rs), here for 30 s.
    assert!(
        stderr(&o).contains("has not answered within 1s")
            && stderr(&o).contains("The refresh goes on in process"),
        "{}",
        stderr(&o)
    );
    assert_refresh_token_kept(&env);
}

#[test]
fn html_instead_of_json_is_named_as_such() {
    let endpoint = fake::token_endpoint(
        200,
        "text/html",
        "<html><head><title>Hotel Wi-Fi Login</title></head></html>",
        Duration::ZERO,
    );
    let env = seeded(&endpoint.url, "5s");
    let o = env.run(&["token", "f"]);
    assert_exit(&o, 75);
    let e = stderr(&o);
    assert!(
        e.contains("an HTML page titled \"Hotel Wi-Fi Login\" instead of JSON"),
        "{e}"
    );
    assert!(e.contains("captive portal"), "{e}");
    assert_refresh_token_kept(&env);
}

#[test]
fn a_200_without_access_token_is_refused_without_echoing_the_body() {
    let endpoint = fake::token_endpoint(
        200,
        "application/json",
        r#"{"token_type":"Bearer","refresh_token":"leaked-secret"}"#,
        Duration::ZERO,
    );
    let env = seeded(&endpoint.url, "5s");
    let o = env.run(&["token", "f"]);
    assert_exit(&o, 75);
    let e = stderr(&o);
    assert!(
        e.contains("no access_token") && e.contains("[refresh_token, token_type]"),
        "{e}"
    );
    assert!(!e.contains("leaked-secret"), "{e}");
    assert_refresh_token_kept(&env);
}

#[test]
fn garbage_json_is_refused() {
    let endpoint = fake::token_endpoint(
        200,
        "application/json",
        "{\"access_token\": ",
        Duration::ZERO,
    );
    let env = seeded(&endpoint.url, "5s");
    let o = env.run(&["token", "f"]);
    assert_exit(&o, 75);
    assert_refresh_token_kept(&env);
}

#[test]
fn a_connection_refused_is_a_temporary_failure() {
    // Port 9 (discard) on loopback: nothing listens there in the test environment.
    let env = seeded("http://127.0.0.1:9/token", "5s");
    let o = env.run(&["token", "f"]);
    assert_exit(&o, 75);
    assert!(stderr(&o).contains("cannot connect"), "{}", stderr(&o));
    assert_refresh_token_kept(&env);
}

#[test]
fn invalid_client_is_a_configuration_error() {
    let endpoint = fake::token_endpoint(
        401,
        "application/json",
        r#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
        Duration::ZERO,
    );
    let env = seeded(&endpoint.url, "5s");
    let o = env.run(&["token", "f"]);
    assert_exit(&o, 78);
    assert!(
        stderr(&o).contains("invalid_client: client authentication failed"),
        "{}",
        stderr(&o)
    );
    assert_refresh_token_kept(&env);
}

#[test]
fn a_response_without_expires_in_is_accepted_with_an_assumed_lifetime() {
    let endpoint = fake::token_endpoint(
        200,
        "application/json",
        r#"{"access_token":"fresh-token","token_type":"Bearer"}"#,
        Duration::ZERO,
    );
    let env = seeded(&endpoint.url, "5s");
    let o = env.run(&["token", "f"]);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "fresh-token\n");
    assert_refresh_token_kept(&env);
    let j: serde_json::Value =
        serde_json::from_str(&stdout(&env.run(&["status", "--json"]))).unwrap();
    assert_eq!(j[0]["expiry_assumed"], true, "{j}");
    let left = j[0]["expires_in"].as_i64().unwrap();
    assert!(
        (590..=600).contains(&left),
        "assumed 10 minutes, got {left}"
    );
    let s = stdout(&env.run(&["status"]));
    assert!(
        s.contains("expiry assumed: the provider sent no expires_in"),
        "{s}"
    );
    // Served from the cache next time.
    assert_eq!(stdout(&env.run(&["token", "f"])), "fresh-token\n");
}

/// Microsoft's token errors (the FAKE endpoint answers with Microsoft's shape and its
/// own texts: an `AADSTS` code, a sentence, trace lines, `error_codes`): each row of
/// provider-facts.md's table ends with its cause, its remedy and its exit code.
#[test]
fn microsoft_token_errors_are_explained_by_their_aadsts_code() {
    let rows: &[(&str, u32, &str, i32, &str, &str)] = &[
        (
            "invalid_request",
            50011,
            "The redirect URI 'http://localhost:4321/' specified in the request does not match the redirect URIs configured for the application 'a1b2c3d4-0000-0000-0000-000000000000'.",
            78,
            "redirect URI does not match",
            "redirect_uri",
        ),
        (
            "invalid_grant",
            50020,
            "User account 'bob@contoso.com' from identity provider 'live.com' does not exist in tenant 'Fabrikam' and cannot access the application 'a1b2c3d4-0000-0000-0000-000000000000'(mail) in that tenant.",
            78,
            "not in this tenant",
            "Set tenant",
        ),
        (
            "invalid_grant",
            90072,
            "User account 'bob@contoso.com' from identity provider 'https://sts.windows.net/00000000-0000-0000-0000-000000000000/' does not exist in tenant 'Fabrikam' and cannot access the application 'a1b2c3d4-0000-0000-0000-000000000000'(mail) in that tenant.",
            78,
            "not in this tenant",
            "Set tenant",
        ),
        (
            "invalid_grant",
            50076,
            "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '00000002-0000-0ff1-ce00-000000000000'.",
            77,
            "multi-factor",
            "second factor",
        ),
        (
            "invalid_grant",
            50079,
            "Due to a configuration change made by your administrator, or because you moved to a new location, you must enroll in multi-factor authentication to access '00000002-0000-0ff1-ce00-000000000000'.",
            77,
            "multi-factor",
            "second factor",
        ),
        (
            "invalid_grant",
            50173,
            "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password.",
            77,
            "has expired, was revoked",
            "mailtoken login f",
        ),
        (
            "invalid_grant",
            70008,
            "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
            77,
            "unused for too long",
            "mailtoken login f",
        ),
        (
            "invalid_grant",
            700082,
            "The refresh token has expired due to inactivity. The token was issued on 2026-08-01T10:00:00.0000000Z and was inactive for 90.00:00:00.",
            77,
            "unused for too long",
            "mailtoken login f",
        ),
        (
            "invalid_grant",
            70043,
            "The refresh token has expired or is invalid due to sign-in frequency checks by conditional access. The token was issued on 2026-11-30T10:00:00.0000000Z and the maximum allowed lifetime for this request is 43200.",
            77,
            "sign-in frequency",
            "mailtoken login f",
        ),
        (
            "invalid_grant",
            53003,
            "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
            77,
            "Conditional Access",
            "browser",
        ),
        (
            "invalid_grant",
            65001,
            "The user or administrator has not consented to use the application with ID 'a1b2c3d4-0000-0000-0000-000000000000' named 'mail'. Send an interactive authorization request for this user and resource.",
            77,
            "consent",
            "administrator to grant consent",
        ),
        (
            "unauthorized_client",
            700016,
            "Application with identifier 'a1b2c3d4-0000-0000-0000-000000000000' was not found in the directory 'Fabrikam'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
            78,
            "no app with this client ID",
            "client_id and tenant",
        ),
        (
            "unauthorized_client",
            7000112,
            "Application 'a1b2c3d4-0000-0000-0000-000000000000'(mail) is disabled.",
            78,
            "the app is disabled",
            "another app registration",
        ),
        (
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            78,
            "public client flows are off",
            "Allow public client flows",
        ),
        (
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app 'a1b2c3d4-0000-0000-0000-000000000000'.",
            78,
            "the client secret is not a secret of this app",
            "not its Secret ID",
        ),
        (
            "invalid_client",
            7000222,
            "The provided client secret keys for app 'a1b2c3d4-0000-0000-0000-000000000000' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.",
            78,
            "the client secret has expired",
            "New client secret",
        ),
        (
            "invalid_client",
            700027,
            "Client assertion failed signature validation.",
            78,
            "the signed client assertion was refused",
            "Upload the certificate",
        ),
        (
            "invalid_client",
            700024,
            "Client assertion is not within its valid time range.",
            78,
            "not within its valid time range",
            "timedatectl",
        ),
    ];
    for &(error, code, text, exit, cause, remedy) in rows {
        let body: &'static str = Box::leak(
            format!(
                r#"{{"error":"{error}","error_description":"AADSTS{code}: {text}\r\nTrace ID: 0f5a1c2e-7d1b-4c57-9a52-0d6f3e1c8a00\r\nCorrelation ID: 5b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0\r\nTimestamp: 2026-12-01 21:00:00Z","error_codes":[{code}],"timestamp":"2026-12-01 21:00:00Z","trace_id":"0f5a1c2e-7d1b-4c57-9a52-0d6f3e1c8a00","correlation_id":"5b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0","error_uri":"https://login.microsoftonline.com/error?code={code}"}}"#
            )
            .into_boxed_str(),
        );
        let endpoint = fake::token_endpoint(400, "application/json", body, Duration::ZERO);
        let env = seeded(&endpoint.url, "5s");
        let o = env.run(&["token", "f"]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(exit), "AADSTS{code}: {e}");
        assert!(e.contains(cause), "AADSTS{code}: no cause {cause:?} in {e}");
        assert!(
            e.contains(remedy),
            "AADSTS{code}: no remedy {remedy:?} in {e}"
        );
        // The provider's own words, without its trace lines.
        assert!(e.contains(&format!("AADSTS{code}: {}", &text[..30])), "{e}");
        assert!(!e.contains("Trace ID"), "{e}");
        assert_refresh_token_kept(&env);
    }
}

#[test]
fn an_unknown_aadsts_code_is_shown_in_microsofts_words() {
    let endpoint = fake::token_endpoint(
        400,
        "application/json",
        r#"{"error":"invalid_grant","error_description":"AADSTS99999: Something new happened.\r\nTrace ID: 1\r\nCorrelation ID: 2\r\nTimestamp: 2026-12-01 21:00:00Z","error_codes":[99999]}"#,
        Duration::ZERO,
    );
    let env = seeded(&endpoint.url, "5s");
    let o = env.run(&["token", "f"]);
    assert_exit(&o, 77);
    let e = stderr(&o);
    assert!(
        e.contains("invalid_grant: AADSTS99999: Something new happened."),
        "{e}"
    );
    assert!(!e.contains("Trace ID"), "{e}");
}
