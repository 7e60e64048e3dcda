//! Google Workspace service accounts (`auth = "service_account"`, the JWT bearer grant
//! of RFC 7523 §2.1) against the test authorization server, which hands each test a
//! key of its own (a Google-style JSON key whose token_uri is its `/sa-token`) and
//! checks the assertion's signature, iss, sub, aud, exp and scope as Google does, with
//! Google's words when it refuses; the tokens it issues are oidc-provider's own, so the
//! test Dovecot takes them for the mailbox `sub`.

use crate::common;

use common::authserver;
use common::mailserver::mailserver;
use common::mailtoken::*;
use serde_json::Value;
use std::path::Path;

/// A new service account key from the test server (`delegated`: domain-wide delegation
/// granted), for a fresh service account email.
fn new_key(delegated: bool) -> Value {
    let email =
        unique_login("sa").replace("@example.test", "@mailtoken-test.iam.gserviceaccount.com");
    let url = format!(
        "{}/_test/service-account?email={}&delegated={}",
        authserver::issuer(),
        url::form_urlencoded::byte_serialize(email.as_bytes()).collect::<String>(),
        u8::from(delegated)
    );
    rt().block_on(async { reqwest::get(url).await.unwrap().json().await.unwrap() })
}

fn write_key(path: &Path, key: &Value, mode: u32) {
    std::fs::write(path, serde_json::to_vec_pretty(key).unwrap()).unwrap();
    set_mode(path, mode);
}

/// A world with a Google account `sa` acting as `mailbox` with `key` (in a file of
/// `mode`), with the test Dovecot's servers.
fn sa_world(mailbox: &str, key: &Value, mode: u32) -> Env {
    let m = mailserver();
    let env = Env::with_file_store("");
    let path = env.dir.path().join("sa.json");
    write_key(&path, key, mode);
    env.write_config(&format!(
        "timeout = \"10s\"\n[store]\nkind = \"file\"\n[accounts.sa]\nprovider = \"google\"\n\
         auth = \"service_account\"\nuser = \"{mailbox}\"\nkey_file = \"{}\"\nscopes = [\"mail\"]\n\
         ca_file = \"{}\"\nimap = {{ host = \"127.0.0.1\", port = {}, tls = \"implicit\" }}\n\
         pop = {{ host = \"127.0.0.1\", port = {}, tls = \"implicit\" }}\n\
         smtp = {{ host = \"127.0.0.1\", port = {}, tls = \"starttls\" }}\n",
        path.display(),
        m.ca.display(),
        m.imaps_port,
        m.pop3s_port,
        m.submission_port
    ));
    env
}

fn sa_grants(key: &Value) -> u64 {
    stats(
        &format!("sa:{}", key["client_email"].as_str().unwrap()),
        "sa_grants",
    )
}

#[test]
fn a_service_account_gets_a_token_for_the_mailbox_it_acts_as_and_reuses_it() {
    let key = new_key(true);
    let mailbox = unique_login("sa-box");
    let env = sa_world(&mailbox, &key, 0o600);
    let o = env.run(&["token", "sa"]);
    assert_exit(&o, 0);
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    let t = stdout(&o);
    let info = introspect(t.trim());
    assert_eq!(info["active"], true);
    assert_eq!(info["email"], mailbox.as_str());
    assert_eq!(stdout(&env.run(&["token", "sa"])), t);
    assert_eq!(sa_grants(&key), 1);
}

#[test]
fn verify_passes_imap_pop3_and_smtp_as_the_service_accounts_mailbox() {
    let key = new_key(true);
    let env = sa_world(&unique_login("sa-verify"), &key, 0o600);
    let o = env.run(&["verify", "sa"]);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains("All 3 check(s) passed"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn without_domain_wide_delegation_the_refusal_says_where_to_grant_it() {
    let key = new_key(false);
    let env = sa_world(&unique_login("sa-nodwd"), &key, 0o600);
    let o = env.run(&["token", "sa"]);
    assert_exit(&o, 78);
    let e = stderr(&o);
    assert!(e.contains("unauthorized_client"), "{e}");
    assert!(e.contains("Domain-wide delegation is missing"), "{e}");
    assert!(
        e.contains("Manage Domain Wide Delegation") && e.contains("scope mail"),
        "{e}"
    );
}

#[test]
fn a_replaced_key_is_refused_as_a_bad_signature_with_what_to_do() {
    let old = new_key(true);
    // A second key for the same account replaces the first at the server.
    let url = format!(
        "{}/_test/service-account?email={}",
        authserver::issuer(),
        url::form_urlencoded::byte_serialize(old["client_email"].as_str().unwrap().as_bytes())
            .collect::<String>()
    );
    let _new: Value =
        rt().block_on(async { reqwest::get(url).await.unwrap().json().await.unwrap() });
    let env = sa_world(&unique_login("sa-oldkey"), &old, 0o600);
    let o = env.run(&["token", "sa"]);
    assert_exit(&o, 78);
    let e = stderr(&o);
    assert!(e.contains("Invalid JWT Signature."), "{e}");
    assert!(e.contains("make a new JSON key"), "{e}");
}

#[test]
fn a_user_outside_the_domain_is_named_in_the_refusal() {
    let key = new_key(true);
    let env = sa_world("someone@elsewhere.example", &key, 0o600);
    let o = env.run(&["token", "sa"]);
    assert_exit(&o, 78);
    let e = stderr(&o);
    assert!(e.contains("Invalid email or User ID"), "{e}");
    assert!(
        e.contains("user = \"someone@elsewhere.example\" is not a mailbox"),
        "{e}"
    );
}

#[test]
fn an_oauth_client_file_in_key_file_is_named_for_what_it_is() {
    let client = serde_json::json!({ "installed": { "client_id": "x", "client_secret": "y" } });
    let env = sa_world(&unique_login("sa-notkey"), &client, 0o600);
    let o = env.run(&["token", "sa"]);
    assert_exit(&o, 78);
    let e = stderr(&o);
    assert!(
        e.contains("this is an OAuth client's file (\"installed\"), not a service account key"),
        "{e}"
    );
    assert!(e.contains("Keys > Add key"), "{e}");
}

#[test]
fn a_key_file_other_users_can_read_gets_a_warning_with_its_mode() {
    let key = new_key(true);
    let env = sa_world(&unique_login("sa-mode"), &key, 0o644);
    let o = env.run(&["token", "sa"]);
    assert_exit(&o, 0);
    let e = stderr(&o);
    assert!(
        e.contains("warning: key_file") && e.contains("has mode 0644"),
        "{e}"
    );
}

#[test]
fn a_clock_two_hours_fast_is_named_as_the_reason_from_the_servers_date() {
    let key = new_key(true);
    let env = sa_world(&unique_login("sa-clock"), &key, 0o600);
    let c = env.cmd();
    let program = c.get_program().to_owned();
    let mut faked = with_env_of(&c, "faketime");
    faked.args(["-f", "+2h"]).arg(program).args(["token", "sa"]);
    let o = faked.output().unwrap();
    assert_exit(&o, 78);
    let e = stderr(&o);
    assert!(e.contains("Check your iat and exp values"), "{e}");
    assert!(
        e.contains("This machine's clock is 2h") && e.contains("ahead of the token endpoint's"),
        "{e}"
    );
    assert!(e.contains("timedatectl"), "{e}");
}

#[test]
fn an_assertion_for_another_audience_is_refused_with_what_to_change() {
    let key = new_key(true);
    let env = sa_world(&unique_login("sa-aud"), &key, 0o600);
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    // token_url set: the assertion names it as its audience, which the server refuses.
    env.write_config(&text.replace(
        "scopes = [\"mail\"]\n",
        &format!(
            "scopes = [\"mail\"]\ntoken_url = \"{}/sa-token?x=1\"\n",
            authserver::issuer()
        ),
    ));
    let o = env.run(&["token", "sa"]);
    assert_exit(&o, 78);
    let e = stderr(&o);
    assert!(e.contains("Failed audience check"), "{e}");
    assert!(e.contains("leave token_url out"), "{e}");
}

#[test]
fn a_scope_the_service_account_may_not_have_is_refused_with_gmails_scope() {
    let key = new_key(true);
    let env = sa_world(&unique_login("sa-scope"), &key, 0o600);
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    env.write_config(&text.replace("scopes = [\"mail\"]", "scopes = [\"calendar\"]"));
    let o = env.run(&["token", "sa"]);
    assert_exit(&o, 78);
    let e = stderr(&o);
    assert!(
        e.contains("refused the scopes calendar (invalid_scope"),
        "{e}"
    );
    assert!(e.contains("https://mail.google.com/"), "{e}");
}

#[test]
fn the_daemon_serves_a_service_account_through_the_configs_proxy() {
    let key = new_key(true);
    let mailbox = unique_login("sa-daemon");
    let env = sa_world(&mailbox, &key, 0o600);
    let proxy = std::env::var("MAILTOKEN_TEST_PROXY").expect("MAILTOKEN_TEST_PROXY");
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    env.write_config(&format!("proxy = \"{proxy}\"\n{text}"));
    let _daemon = env.serve();
    let o = env.run(&["token", "sa"]);
    assert_exit(&o, 0);
    assert_eq!(introspect(stdout(&o).trim())["email"], mailbox.as_str());
    let status = stdout(&env.run(&["status", "sa"]));
    assert!(status.contains("answered by the daemon"), "{status}");
    assert!(
        status.contains(&format!("the HTTP proxy {proxy} (from the config)")),
        "{status}"
    );
    let log = std::fs::read_to_string(std::env::var("MAILTOKEN_TEST_PROXY_LOG").unwrap()).unwrap();
    assert!(
        log.contains(&format!("POST {}/sa-token ", authserver::issuer())),
        "not proxied"
    );
}
