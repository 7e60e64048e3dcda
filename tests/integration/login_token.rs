//! Logging in and handing out tokens against the real authorization server
//! (panva's oidc-provider, started by scripts/test), with the file store.

use crate::common;

use common::authserver::{self, Browser, Decision};
use common::mailtoken::*;
use std::time::Duration;

fn refresh_grants(login: &str) -> u64 {
    rt().block_on(authserver::stats(login))["refresh_grants"]
        .as_u64()
        .unwrap()
}

#[test]
fn login_stores_tokens_and_token_prints_an_active_access_token() {
    let login = unique_login("basic");
    let env = Env::with_file_store(&account_toml("alice", &login, Client::Native));
    let o = env.login("alice", &login);
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("Logged in alice"), "{}", stderr(&o));
    let rec = env.stored("alice");
    assert!(
        rec["refresh_token"].as_str().is_some_and(|s| !s.is_empty()),
        "{rec}"
    );
    assert!(rec["expires_at"].as_u64().is_some());

    let o = env.run(&["token", "alice"]);
    assert_exit(&o, 0);
    let token = stdout(&o);
    assert_eq!(token.lines().count(), 1, "only the token on stdout");
    assert!(stderr(&o).is_empty(), "nothing on stderr: {}", stderr(&o));
    let info = introspect(token.trim());
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["email"], login.as_str());
    assert_eq!(
        token.trim(),
        rec["access_token"].as_str().unwrap(),
        "the cached token, no refresh"
    );
    assert_eq!(refresh_grants(&login), 0);
}

#[test]
fn after_the_ttl_token_refreshes_without_login_and_keeps_the_rotated_refresh_token() {
    let login = unique_login("ttl");
    let env = Env::with_file_store(&account_toml("bob", &login, Client::NativeShort));
    assert_exit(&env.login("bob", &login), 0);
    let first_rt = env.stored("bob")["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let t1 = stdout(&env.run(&["token", "bob"]));

    // The short client's tokens live 6 s; past half of that (whole seconds), the
    // default --min-valid (5 min, capped at half the lifetime) asks for a new one.
    std::thread::sleep(Duration::from_millis(4200));
    let o = env.run(&["token", "bob"]);
    assert_exit(&o, 0);
    let t2 = stdout(&o);
    assert_ne!(t1, t2, "a new access token");
    assert_eq!(introspect(t2.trim())["active"], true);
    assert_eq!(refresh_grants(&login), 1);
    let rec = env.stored("bob");
    let second_rt = rec["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(
        first_rt, second_rt,
        "the server rotated the refresh token and we kept the new one"
    );
    assert!(rec["refreshed_at"].as_u64().is_some());

    // The kept one works: the old one would now revoke the whole grant.
    std::thread::sleep(Duration::from_millis(4200));
    let o = env.run(&["token", "bob"]);
    assert_exit(&o, 0);
    assert_eq!(introspect(stdout(&o).trim())["active"], true);
    assert_eq!(refresh_grants(&login), 2);
}

#[test]
fn google_style_client_gets_a_refresh_token_with_access_type_offline() {
    let login = unique_login("google");
    let env = Env::with_file_store(&account_toml("g", &login, Client::GoogleShort));
    assert_exit(&env.login("g", &login), 0);
    let rt = env.stored("g")["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    env.expire("g");
    let o = env.run(&["token", "g", "--format", "json"]);
    assert_exit(&o, 0);
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["user"], login.as_str());
    assert_eq!(
        introspect(j["access_token"].as_str().unwrap())["active"],
        true
    );
    assert_eq!(
        env.stored("g")["refresh_token"].as_str().unwrap(),
        rt,
        "Google-style: no rotation"
    );
}

#[test]
fn min_valid_longer_than_the_remaining_life_forces_a_refresh() {
    let login = unique_login("minvalid");
    let env = Env::with_file_store(&account_toml("m", &login, Client::Native));
    assert_exit(&env.login("m", &login), 0);
    let t1 = stdout(&env.run(&["token", "m"]));
    // A fresh 3600 s token: asking for 2h is capped at half its lifetime (30 min),
    // which it has, so the cache answers.
    assert_eq!(stdout(&env.run(&["token", "m", "--min-valid", "2h"])), t1);
    // Age the token by 40 minutes: 20 of its 60 minutes are left.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    env.edit_stored("m", |r| {
        r["obtained_at"] = (now - 2400).into();
        r["expires_at"] = (now + 1200).into();
    });
    assert_eq!(stdout(&env.run(&["token", "m", "--min-valid", "10m"])), t1);
    let t2 = stdout(&env.run(&["token", "m", "--min-valid", "25m"]));
    assert_ne!(t1, t2);
    assert_eq!(refresh_grants(&login), 1);
}

#[test]
fn sasl_formats_carry_the_user_and_the_token() {
    use base64::Engine;
    let login = unique_login("sasl");
    let env = Env::with_file_store(&account_toml("s", &login, Client::Native));
    assert_exit(&env.login("s", &login), 0);
    let raw = stdout(&env.run(&["token", "s"])).trim().to_owned();
    let x = stdout(&env.run(&["token", "s", "--format", "xoauth2"]));
    let x = base64::engine::general_purpose::STANDARD
        .decode(x.trim())
        .unwrap();
    assert_eq!(
        x,
        format!("user={login}\x01auth=Bearer {raw}\x01\x01").into_bytes()
    );
    let o = stdout(&env.run(&["token", "s", "--format", "oauthbearer"]));
    let o = base64::engine::general_purpose::STANDARD
        .decode(o.trim())
        .unwrap();
    assert_eq!(
        o,
        format!("n,a={login},\x01auth=Bearer {raw}\x01\x01").into_bytes(),
        "no servers configured"
    );
}

#[test]
fn a_revoked_refresh_token_gives_77_with_the_reason_and_keeps_the_record() {
    let login = unique_login("revoked");
    let env = Env::with_file_store(&account_toml("r", &login, Client::Native));
    assert_exit(&env.login("r", &login), 0);
    let rt = env.stored("r")["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    rt_revoke(&rt);
    env.expire("r");
    let o = env.run(&["token", "r"]);
    assert_exit(&o, 77);
    let e = stderr(&o);
    assert!(
        e.contains("refresh token for r was rejected (invalid_grant"),
        "{e}"
    );
    assert!(e.contains("mailtoken login r"), "{e}");
    assert!(!e.contains(&rt), "no secret in the message");
    assert!(stdout(&o).is_empty());
    assert_eq!(
        env.stored("r")["refresh_token"].as_str().unwrap(),
        rt,
        "never lose a refresh token"
    );
    let s = env.run(&["status", "r", "--json"]);
    assert_exit(&s, 0);
    let j: serde_json::Value = serde_json::from_str(&stdout(&s)).unwrap();
    assert_eq!(j[0]["state"], "needs_login", "{j}");
    // Logging in again mends it.
    assert_exit(&env.login("r", &login), 0);
    assert_exit(&env.run(&["token", "r"]), 0);
}

fn rt_revoke(token: &str) {
    rt().block_on(authserver::revoke(
        token,
        "refresh_token",
        authserver::NATIVE_CLIENT,
        None,
    ));
}

#[test]
fn denied_consent_gives_77_with_the_providers_words() {
    let login = unique_login("deny");
    let env = Env::with_file_store(&account_toml("d", &login, Client::Native));
    let o = env.login_with("d", &login, Decision::Deny, &[]);
    assert_exit(&o, 77);
    let e = stderr(&o);
    assert!(
        e.contains("access_denied") && e.contains("End-User aborted interaction"),
        "{e}"
    );
    assert!(e.contains("allow access"), "{e}");
    assert!(!env.tokens_path().exists(), "nothing stored");
}

#[test]
fn a_redirect_with_a_wrong_state_is_refused_and_the_real_one_still_succeeds() {
    let login = unique_login("state");
    let env = Env::with_file_store(&account_toml("st", &login, Client::Native));
    let (mut child, url, rest) = env.start_login(&["st", "--no-browser", "--timeout", "60s"]);
    let redirect = rt()
        .block_on(Browser::new().authorize(&url, &login, Decision::Approve))
        .unwrap();
    let mut forged = redirect.clone();
    let pairs: Vec<(String, String)> = redirect
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                "forged".to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    let r = rt().block_on(reqwest::get(forged.as_str())).unwrap();
    assert_eq!(r.status(), 400);
    let mut no_state = redirect.clone();
    no_state.set_query(Some("code=x"));
    assert_eq!(
        rt().block_on(reqwest::get(no_state.as_str()))
            .unwrap()
            .status(),
        400
    );
    assert!(child.try_wait().unwrap().is_none(), "the wait goes on");
    let r = rt().block_on(reqwest::get(redirect.as_str())).unwrap();
    assert_eq!(r.status(), 200);
    let o = finish(child, rest);
    assert_exit(&o, 0);
    assert_exit(&env.run(&["token", "st"]), 0);
}

#[test]
fn paste_login_takes_the_redirected_url_from_stdin() {
    let login = unique_login("paste");
    let env = Env::with_file_store(&account_toml("p", &login, Client::Native));
    let (mut child, url, rest) = env.start_login(&["p", "--paste", "--timeout", "60s"]);
    let redirect = rt()
        .block_on(Browser::new().authorize(&url, &login, Decision::Approve))
        .unwrap();
    write_stdin(&mut child, &format!("  {redirect}\n"));
    let o = finish(child, rest);
    assert_exit(&o, 0);
    let t = stdout(&env.run(&["token", "p"]));
    assert_eq!(introspect(t.trim())["active"], true);
}

#[test]
fn paste_login_refuses_a_url_with_the_wrong_state_as_bad_input() {
    let login = unique_login("pastebad");
    let env = Env::with_file_store(&account_toml("pb", &login, Client::Native));
    let (mut child, url, rest) = env.start_login(&["pb", "--paste", "--port", "45123"]);
    assert!(
        url.contains("redirect_uri=http%3A%2F%2F127.0.0.1%3A45123%2F"),
        "{url}"
    );
    write_stdin(
        &mut child,
        "http://127.0.0.1:45123/?code=abc&state=not-ours\n",
    );
    let o = finish(child, rest);
    assert_exit(&o, 65);
    assert!(stderr(&o).contains("does not match"), "{}", stderr(&o));
}

#[test]
fn a_login_without_a_refresh_token_says_so_plainly() {
    let login = unique_login("nort");
    let env = Env::with_file_store(&account_toml("n", &login, Client::NativeNoOffline));
    let o = env.login("n", &login);
    assert_exit(&o, 0);
    let e = stderr(&o);
    assert!(
        e.contains("issued no refresh token") && e.contains("offline_access"),
        "{e}"
    );
    assert_exit(&env.run(&["token", "n"]), 0);
    env.expire("n");
    let o = env.run(&["token", "n"]);
    assert_exit(&o, 77);
    assert!(
        stderr(&o).contains("gave no refresh token"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn logout_revokes_at_the_provider_and_forgets_the_account() {
    let login = unique_login("logout");
    let env = Env::with_file_store(&account_toml("l", &login, Client::Native));
    assert_exit(&env.login("l", &login), 0);
    let rec = env.stored("l");
    let at = rec["access_token"].as_str().unwrap().to_owned();
    let o = env.run(&["logout", "l"]);
    assert_exit(&o, 0);
    assert!(env.stored("l").is_null());
    // Revoking the refresh token ends the grant, and with it the access tokens.
    assert_eq!(introspect(&at)["active"], false);
    let o = env.run(&["token", "l"]);
    assert_exit(&o, 77);
    assert!(stderr(&o).contains("mailtoken login l"), "{}", stderr(&o));
}

#[test]
fn status_lists_accounts_in_words_and_json() {
    let login = unique_login("status");
    let mut accounts = account_toml("one", &login, Client::Native);
    accounts.push_str(&account_toml(
        "two",
        &unique_login("status2"),
        Client::Native,
    ));
    let env = Env::with_file_store(&accounts);
    assert_exit(&env.login("one", &login), 0);
    let o = env.run(&["status"]);
    assert_exit(&o, 0);
    let s = stdout(&o);
    assert!(s.contains("one (") && s.contains("valid for"), "{s}");
    assert!(
        s.contains("two (") && s.contains("run `mailtoken login two`"),
        "{s}"
    );
    assert!(
        !s.contains(env.stored("one")["access_token"].as_str().unwrap()),
        "no token in status"
    );
    let j: serde_json::Value =
        serde_json::from_str(&stdout(&env.run(&["status", "--json"]))).unwrap();
    assert_eq!(j[0]["state"], "valid");
    assert_eq!(j[0]["has_refresh_token"], true);
    assert_eq!(j[1]["state"], "none");
}

#[test]
fn without_a_keyring_the_file_store_is_used_with_a_one_line_notice() {
    let login = unique_login("nokeyring");
    let mut env = Env::new(
        "timeout = \"10s\"\n",
        &account_toml("h", &login, Client::Native),
    );
    env.no_bus = true;
    let o = env.login("h", &login);
    assert_exit(&o, 0);
    let err = stderr(&o);
    let notice: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("no keyring answered"))
        .collect();
    assert_eq!(notice.len(), 1, "{err}");
    assert!(notice[0].contains("tokens.json"), "{}", notice[0]);
    assert!(env.tokens_path().exists());
    let o = env.run(&["token", "h"]);
    assert_exit(&o, 0);
    assert!(
        stderr(&o).is_empty(),
        "a password command stays quiet: {}",
        stderr(&o)
    );
}

#[test]
fn every_refresh_asks_for_the_scopes_of_the_login() {
    let login = unique_login("refreshscope");
    let env = Env::with_file_store(&account_toml("s", &login, Client::Native));
    assert_exit(&env.login("s", &login), 0);
    env.expire("s");
    let o = env.run(&["token", "s"]);
    assert_exit(&o, 0);
    let stats = rt().block_on(authserver::stats(&login));
    assert_eq!(stats["refresh_grants"], 1);
    assert_eq!(
        stats["last_refresh_scope"],
        "openid email mail offline_access"
    );
    assert_eq!(
        introspect(stdout(&o).trim())["scope"],
        "openid email mail offline_access"
    );
}
