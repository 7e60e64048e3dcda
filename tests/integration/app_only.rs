//! App-only accounts (`auth = "client_credentials"`, RFC 6749 §4.4) against the real
//! authorization server and Dovecot: each test registers its own confidential client
//! at the test server, whose tokens introspect as belonging to one mailbox, so that
//! Dovecot takes them for that user only. Nobody logs in.

use crate::common;

use base64::Engine;
use common::authserver::{self, App};
use common::mailtoken::*;
use rustls::pki_types::{PrivateKeyDer, pem::PemObject};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

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
    let outputs = env.run_concurrently(50, &["token", "app"]);
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
        status.contains("grant:") && status.contains("app-only: each token is asked for"),
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

// ---- a certificate instead of a secret (private_key_jwt, RFC 7523 §2.2) -------------

/// An RSA key made by openssl and a certificate for it, valid for two days from now
/// or, `expired`, only in 2020, in `dir`; and the JWK set of the public key that the
/// test server checks assertions with.
fn app_certificate(dir: &Path, expired: bool) -> (PathBuf, PathBuf, Value) {
    let (cert, key) = (dir.join("app-cert.pem"), dir.join("app-key.pem"));
    let openssl = |args: &[&str]| {
        let o = Command::new("openssl").args(args).output().unwrap();
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    let (c, k) = (cert.to_str().unwrap(), key.to_str().unwrap());
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        k,
        "-out",
        c,
        "-days",
        "2",
        "-subj",
        "/CN=mailtoken test app",
    ]);
    set_mode(&key, 0o600);
    if expired {
        // The same key, in a certificate with other dates (openssl 3.0 cannot backdate).
        let der = PrivateKeyDer::from_pem_file(&key).unwrap();
        let PrivateKeyDer::Pkcs8(der) = der else {
            panic!("openssl wrote a PKCS #8 key")
        };
        let pair = rcgen::KeyPair::try_from(der.secret_pkcs8_der()).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["app".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let made = params.self_signed(&pair).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(made.der());
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|l| std::str::from_utf8(l).unwrap())
            .collect();
        std::fs::write(
            &cert,
            format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                lines.join("\n")
            ),
        )
        .unwrap();
    }
    let modulus = openssl(&["rsa", "-in", k, "-noout", "-modulus"]);
    let hex = modulus.trim().strip_prefix("Modulus=").unwrap();
    let n: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let jwk = json!({
        "kty": "RSA",
        "alg": "RS256",
        "use": "sig",
        "n": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(n),
        "e": "AQAB",
    });
    (cert, key, json!({ "keys": [jwk] }))
}

/// A world whose account `app` authenticates with `how` (the TOML lines that name the
/// certificate), for an app registered with `jwks`.
fn certificate_world(tag: &str, jwks: Value, how: &str) -> (Env, App) {
    let app = rt().block_on(authserver::register_app_with(
        &unique_login(tag),
        None,
        Some(jwks),
    ));
    let env = Env::with_file_store("");
    let acct = app_account("app", &app, "/nonexistent")
        .replace("client_secret_cmd = \"cat /nonexistent\"\n", how);
    env.write_config(&format!(
        "timeout = \"10s\"\n[store]\nkind = \"file\"\n{acct}"
    ));
    (env, app)
}

fn files(cert: &Path, key: &Path) -> String {
    format!(
        "certificate = \"{}\"\nprivate_key = \"{}\"\n",
        cert.display(),
        key.display()
    )
}

#[test]
fn a_certificate_signs_the_client_assertion_and_the_token_opens_the_mailbox() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, jwks) = app_certificate(dir.path(), false);
    let (env, app) = certificate_world("app-cert", jwks, &files(&cert, &key));
    let o = env.run(&["token", "app"]);
    assert_exit(&o, 0);
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    let info = introspect(stdout(&o).trim());
    assert_eq!(info["active"], true);
    assert_eq!(info["email"], app.mailbox.as_str());
    assert_exit(&env.run(&["verify", "app", "--imap"]), 0);
}

#[test]
fn certificate_cmd_prints_the_certificate_and_the_key_and_works_as_the_files_do() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, jwks) = app_certificate(dir.path(), false);
    let how = format!(
        "certificate_cmd = \"cat {} {}\"\n",
        cert.display(),
        key.display()
    );
    let (env, _) = certificate_world("app-certcmd", jwks, &how);
    let o = env.run(&["token", "app"]);
    assert_exit(&o, 0);
    assert_eq!(introspect(stdout(&o).trim())["active"], true);
}

#[test]
fn an_expired_certificate_is_refused_with_the_day_it_expired_and_nothing_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, jwks) = app_certificate(dir.path(), true);
    let (env, app) = certificate_world("app-certold", jwks, &files(&cert, &key));
    let o = env.run(&["token", "app"]);
    assert_exit(&o, 78);
    let e = stderr(&o);
    assert!(
        e.contains("the certificate expired at 2021-01-01T00:00:00Z"),
        "{e}"
    );
    assert!(e.contains("Certificates & secrets"), "{e}");
    assert_eq!(app_grants(&app), 0);
}

#[test]
fn a_key_file_other_users_can_read_gets_a_warning_with_its_name_and_mode() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, jwks) = app_certificate(dir.path(), false);
    set_mode(&key, 0o644);
    let (env, _) = certificate_world("app-certmode", jwks, &files(&cert, &key));
    let o = env.run(&["token", "app"]);
    assert_exit(&o, 0);
    let e = stderr(&o);
    assert!(
        e.contains(&format!(
            "warning: private_key {} has mode 0644",
            key.display()
        )),
        "{e}"
    );
    assert!(e.contains("chmod 600"), "{e}");
}

#[test]
fn a_certificate_the_app_was_not_registered_with_is_refused_as_invalid_client() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, registered) = app_certificate(dir.path(), false);
    let other = tempfile::tempdir().unwrap();
    let (cert, key, _) = app_certificate(other.path(), false);
    let (env, _) = certificate_world("app-certwrong", registered, &files(&cert, &key));
    let o = env.run(&["token", "app"]);
    assert_exit(&o, 78);
    assert!(stderr(&o).contains("invalid_client"), "{}", stderr(&o));
}

#[test]
fn the_daemon_serves_a_certificate_account_and_renews_it() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, jwks) = app_certificate(dir.path(), false);
    let (env, app) = certificate_world("app-certdaemon", jwks, &files(&cert, &key));
    let _daemon = env.serve();
    let o = env.run(&["token", "app"]);
    assert_exit(&o, 0);
    assert_eq!(introspect(stdout(&o).trim())["email"], app.mailbox.as_str());
    assert!(stdout(&env.run(&["status", "app"])).contains("answered by the daemon"));
    assert_exit(&env.run(&["verify", "app", "--smtp"]), 0);
}

#[test]
fn a_certificate_accounts_token_request_goes_through_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, jwks) = app_certificate(dir.path(), false);
    let (env, app) = certificate_world("app-certproxy", jwks, &files(&cert, &key));
    let proxy = std::env::var("MAILTOKEN_TEST_PROXY").expect("MAILTOKEN_TEST_PROXY");
    // The assertion's audience is the token endpoint as written, so no query of its
    // own here: the other proxied tests' token requests all carry one.
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    env.write_config(&format!("proxy = \"{proxy}\"\n{text}"));
    let o = env.run(&["token", "app"]);
    assert_exit(&o, 0);
    assert_eq!(introspect(stdout(&o).trim())["email"], app.mailbox.as_str());
    let log = std::fs::read_to_string(std::env::var("MAILTOKEN_TEST_PROXY_LOG").unwrap()).unwrap();
    assert!(
        log.contains(&format!("POST {}/token HTTP/", authserver::issuer())),
        "not proxied"
    );
}
