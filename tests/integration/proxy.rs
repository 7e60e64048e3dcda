//! Token requests through a real HTTP proxy: the tinyproxy `scripts/test` starts on
//! loopback, whose log names each request it forwards. Each test gives its token
//! endpoint a query of its own (`/token?via=...`, which the authorization server
//! ignores), so it finds its own requests in the shared log.

use crate::common;

use common::authserver;
use common::mailtoken::*;
use std::time::Duration;

fn proxy() -> String {
    std::env::var("MAILTOKEN_TEST_PROXY")
        .expect("MAILTOKEN_TEST_PROXY is not set: run scripts/test, which starts tinyproxy")
}

/// Whether the proxy's log shows a request for `url` (waiting a little: it writes
/// its log after forwarding).
fn proxied(url: &str) -> bool {
    let log = std::env::var("MAILTOKEN_TEST_PROXY_LOG").expect("MAILTOKEN_TEST_PROXY_LOG");
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains(&format!("POST {url} ")) {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A logged-in account `p` (logged in directly) whose token endpoint has a query of
/// its own, with the stored access token expired so that the next `token` asks; `head`
/// goes at the top of the config.
fn world(tag: &str, head: &str) -> (Env, String) {
    let login = unique_login(tag);
    let via = format!(
        "{}/token?via={}",
        authserver::issuer(),
        login.replace('@', "-")
    );
    let acct = account_toml("p", &login, Client::Native).replace(
        &format!("token_url = \"{}/token\"", authserver::issuer()),
        &format!("token_url = \"{via}\""),
    );
    let env = Env::new(
        &format!("timeout = \"10s\"\n{head}[store]\nkind = \"file\"\n"),
        &acct,
    );
    assert_exit(&env.login("p", &login), 0);
    env.expire("p");
    (env, via)
}

#[test]
fn a_token_request_goes_through_the_proxy_the_environment_names() {
    let (env, via) = world("proxy-env", "");
    assert!(!proxied(&via), "the login went direct");
    let o = env
        .cmd()
        .args(["token", "p"])
        .env("HTTP_PROXY", proxy())
        .output()
        .unwrap();
    assert_exit(&o, 0);
    assert_eq!(introspect(stdout(&o).trim())["active"], true);
    assert!(proxied(&via), "tinyproxy did not forward {via}");
}

#[test]
fn no_proxy_sends_the_request_straight_to_the_provider() {
    let (env, via) = world("proxy-bypass", "");
    let o = env
        .cmd()
        .args(["token", "p"])
        .env("http_proxy", proxy())
        .env("NO_PROXY", "localhost,127.0.0.1")
        .output()
        .unwrap();
    assert_exit(&o, 0);
    assert!(!proxied(&via), "went through the proxy despite NO_PROXY");
}

#[test]
fn the_configs_proxy_wins_over_the_environments() {
    let (env, via) = world("proxy-config", &format!("proxy = \"{}\"\n", proxy()));
    let o = env
        .cmd()
        .args(["token", "p"])
        .env("HTTP_PROXY", "http://127.0.0.1:1")
        .output()
        .unwrap();
    assert_exit(&o, 0);
    assert!(proxied(&via));
    let v: serde_json::Value =
        serde_json::from_slice(&env.run(&["status", "p", "--json"]).stdout).unwrap();
    assert_eq!(v[0]["token_endpoint"], via.as_str());
    assert_eq!(
        v[0]["proxy"],
        format!("the HTTP proxy {} (from the config)", proxy())
    );
}

#[test]
fn a_proxy_that_is_down_gives_75_naming_the_proxy_and_never_its_password() {
    let (env, via) = world("proxy-down", "");
    let o = env
        .cmd()
        .args(["token", "p"])
        .env("HTTP_PROXY", "http://alice:s3cret-pw@127.0.0.1:1")
        .output()
        .unwrap();
    assert_exit(&o, 75);
    let e = stderr(&o);
    assert!(
        e.contains(&format!(
            "the HTTP proxy http://127.0.0.1:1 (from HTTP_PROXY) did not get the request to {via} through"
        )),
        "{e}"
    );
    assert!(e.contains("The provider was not reached"), "{e}");
    assert!(!e.contains("s3cret-pw"), "{e}");
    let status = env
        .cmd()
        .args(["status", "p", "--json"])
        .env("HTTP_PROXY", "http://alice:s3cret-pw@127.0.0.1:1")
        .output()
        .unwrap();
    assert!(
        !stdout(&status).contains("s3cret-pw"),
        "{}",
        stdout(&status)
    );
}

#[test]
fn an_app_only_token_comes_through_the_proxy_too() {
    let (env, app) = app_env("proxy-app", None);
    let via = format!("{}/token?via={}", authserver::issuer(), app.client_id);
    let text = std::fs::read_to_string(env.config_path()).unwrap().replace(
        &format!("token_url = \"{}/token\"", authserver::issuer()),
        &format!("token_url = \"{via}\""),
    );
    env.write_config(&text);
    let o = env
        .cmd()
        .args(["token", "app"])
        .env("HTTP_PROXY", proxy())
        .output()
        .unwrap();
    assert_exit(&o, 0);
    assert_eq!(introspect(stdout(&o).trim())["email"], app.mailbox.as_str());
    assert!(proxied(&via));
    let o = env
        .cmd()
        .args(["verify", "app", "--imap"])
        .env("HTTP_PROXY", proxy())
        .output()
        .unwrap();
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains(&format!(
            "Token requests: {via}, the HTTP proxy {} (from HTTP_PROXY)",
            proxy()
        )),
        "{}",
        stdout(&o)
    );
}

/// A seeded account whose token endpoint is the FAKE https one, trusted through the
/// test CA.
fn https_world(endpoint: &common::fake::FakeEndpoint) -> Env {
    let env = common::fake::seeded(&endpoint.url, "10s");
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    env.write_config(&format!(
        "{text}ca_file = \"{}\"\n",
        common::mailserver::mailserver().ca.display()
    ));
    env
}

#[test]
fn an_https_token_endpoint_is_reached_through_the_proxys_connect_tunnel() {
    let endpoint = common::fake::https_token_endpoint(
        r#"{"access_token":"through-the-tunnel","token_type":"Bearer","expires_in":3600}"#,
    );
    let env = https_world(&endpoint);
    let o = env
        .cmd()
        .args(["token", "f"])
        .env("HTTPS_PROXY", proxy())
        .output()
        .unwrap();
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "through-the-tunnel\n");
    let port = url::Url::parse(&endpoint.url).unwrap().port().unwrap();
    let log = std::fs::read_to_string(std::env::var("MAILTOKEN_TEST_PROXY_LOG").unwrap()).unwrap();
    assert!(
        log.contains(&format!("CONNECT 127.0.0.1:{port} ")),
        "no CONNECT in the proxy's log"
    );
}

#[test]
fn a_proxy_that_refuses_the_tunnel_is_named_with_exit_75() {
    let endpoint =
        common::fake::https_token_endpoint(r#"{"access_token":"x","token_type":"Bearer"}"#);
    let env = https_world(&endpoint);
    let refusing = common::fake::refusing_proxy();
    let o = env
        .cmd()
        .args(["token", "f"])
        .env("HTTPS_PROXY", &refusing)
        .output()
        .unwrap();
    assert_exit(&o, 75);
    let e = stderr(&o);
    assert!(
        e.contains(&format!("the HTTP proxy {refusing} (from HTTPS_PROXY)")),
        "{e}"
    );
    assert!(e.contains("refused"), "{e}");
    assert!(e.contains("The provider was not reached"), "{e}");
    assert_eq!(endpoint.requests(), 0);
}
