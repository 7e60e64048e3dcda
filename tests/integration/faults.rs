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
    assert!(
        stderr(&o).contains("did not answer within 1s"),
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
