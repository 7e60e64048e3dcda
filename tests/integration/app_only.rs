//! App-only accounts (`auth = "client_credentials"`, RFC 6749 §4.4) against the real
//! authorization server and Dovecot: each test registers its own confidential client
//! at the test server, whose tokens introspect as belonging to one mailbox, so that
//! Dovecot takes them for that user only. Nobody logs in.

use crate::common;

use common::authserver::App;
use common::mailtoken::*;
use std::process::Stdio;

fn app_grants(app: &App) -> u64 {
    stats(&format!("client:{}", app.client_id), "app_grants")
}

#[test]
fn an_app_only_token_is_active_for_its_mailbox_and_reused_within_its_lifetime() {
    let (env, app) = app_env("app-token", None);
    let o = env.run(&["token", "app"]);
    assert_exit(&o, 0);
    let t = stdout(&o);
    let info = introspect(t.trim());
    assert_eq!(info["active"], true);
    assert_eq!(info["email"], app.mailbox.as_str());
    assert_eq!(app_grants(&app), 1);
    // Within its lifetime the stored one is the answer.
    assert_eq!(stdout(&env.run(&["token", "app"])), t);
    assert_eq!(app_grants(&app), 1);
    assert_eq!(env.stored("app")["app_only"], true);
    assert!(env.stored("app")["refresh_token"].is_null());
}

#[test]
fn an_expired_app_only_token_is_replaced_by_asking_again() {
    let (env, app) = app_env("app-expiry", None);
    let first = stdout(&env.run(&["token", "app"]));
    env.expire("app");
    let o = env.run(&["token", "app"]);
    assert_exit(&o, 0);
    let second = stdout(&o);
    assert_ne!(first, second);
    assert_eq!(introspect(second.trim())["active"], true);
    assert_eq!(app_grants(&app), 2);
}

#[test]
fn fifty_processes_at_once_make_one_app_only_token_request() {
    let (env, app) = app_env("app-fifty", None);
    let children: Vec<_> = (0..50)
        .map(|_| {
            env.cmd()
                .args(["token", "app"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for o in &outputs {
        assert_exit(o, 0);
    }
    let first = stdout(&outputs[0]);
    assert!(
        outputs.iter().all(|o| stdout(o) == first),
        "one token for all"
    );
    assert_eq!(app_grants(&app), 1);
}

#[test]
fn the_daemon_serves_an_app_only_account_and_renews_it_ahead_of_expiry() {
    // Tokens that live 8 s: the daemon renews them before they are due.
    let (env, app) = app_env("app-daemon", Some(8));
    let daemon = env.serve();
    let o = env.run(&["token", "app", "--min-valid", "2s"]);
    assert_exit(&o, 0);
    let first = stdout(&o);
    assert_eq!(introspect(first.trim())["active"], true);
    // One request for the first token, whoever in the daemon asked first.
    assert_eq!(app_grants(&app), 1, "{}", daemon.log());
    let started = std::time::Instant::now();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while app_grants(&app) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon did not renew: {}",
            daemon.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // Renewed ahead: half the 8 s lifetime (schedule::lead), not at expiry.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );
    let o = env.run(&["token", "app", "--min-valid", "2s"]);
    assert_exit(&o, 0);
    assert_ne!(stdout(&o), first);
    let status = stdout(&env.run(&["status", "app"]));
    assert!(
        status.contains("grant:") && status.contains("client credentials"),
        "{status}"
    );
}

#[test]
fn verify_passes_imap_pop3_and_smtp_with_an_app_only_token() {
    let (env, _) = app_env("app-verify", None);
    let o = env.run(&["verify", "app"]);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains("All 3 check(s) passed"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_token_for_another_mailbox_is_refused_by_the_mail_server() {
    let (env, _) = app_env("app-wrongbox", None);
    let other = unique_login("someone-else");
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    let user = text
        .lines()
        .find(|l| l.starts_with("user = "))
        .unwrap()
        .to_owned();
    env.write_config(&text.replace(&user, &format!("user = \"{other}\"")));
    let o = env.run(&["verify", "app", "--imap"]);
    assert_exit(&o, 77);
}

#[test]
fn login_on_an_app_only_account_says_nobody_logs_in() {
    let (env, _) = app_env("app-login", None);
    let o = env.run(&["login", "app", "--no-browser"]);
    assert_exit(&o, 64);
    let e = stderr(&o);
    assert!(
        e.contains("client credentials grant: nobody logs in"),
        "{e}"
    );
    assert!(e.contains("mailtoken token app"), "{e}");
}

#[test]
fn a_wrong_client_secret_is_a_config_error_that_names_the_secret() {
    let (env, _) = app_env("app-badsecret", None);
    std::fs::write(env.dir.path().join("app-secret"), "not-the-secret\n").unwrap();
    let o = env.run(&["token", "app"]);
    assert_exit(&o, 78);
    let e = stderr(&o);
    assert!(e.contains("invalid_client"), "{e}");
    assert!(e.contains("client_secret"), "{e}");
}
