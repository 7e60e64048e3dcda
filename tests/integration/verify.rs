//! `mailtoken verify` against the real Dovecot of the test harness (started by
//! scripts/test: tests/mailserver/start.sh, its `oauth2` passdb checking tokens by
//! introspection at the real authorization server), plus two stand-ins for what a real
//! server will not do on demand: a closed port and a server that accepts and then says
//! nothing (a plain std listener here, and it says so).

use crate::common;

use common::authserver::{self, NATIVE_CLIENT};
use common::mailtoken::*;
use serde_json::Value;
use std::net::TcpListener;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn port(var: &str) -> u16 {
    std::env::var(var)
        .unwrap_or_else(|_| {
            panic!("{var} is not set: run scripts/test, which starts the mail server")
        })
        .parse()
        .unwrap()
}

fn ca() -> String {
    std::env::var("MAIL_CA").expect("MAIL_CA is not set: run scripts/test")
}

/// The account's three servers on the test Dovecot, all implicit TLS.
fn servers(with_ca: bool) -> String {
    let ca_line = if with_ca {
        format!("ca_file = \"{}\"\n", ca())
    } else {
        String::new()
    };
    format!(
        "{ca_line}imap = {{ host = \"127.0.0.1\", port = {}, tls = \"implicit\" }}\n\
         pop = {{ host = \"127.0.0.1\", port = {}, tls = \"implicit\" }}\n\
         smtp = {{ host = \"127.0.0.1\", port = {}, tls = \"implicit\" }}\n",
        port("MAIL_IMAPS_PORT"),
        port("MAIL_POP3S_PORT"),
        port("MAIL_SUBMISSIONS_PORT"),
    )
}

/// A logged-in account `v` whose login name is the mailbox's user.
fn logged_in(tag: &str, client: Client, user: Option<&str>, with_ca: bool) -> (Env, String) {
    let login = unique_login(tag);
    let mut acct = account_toml("v", &login, client);
    if let Some(u) = user {
        acct = acct.replace(&format!("user = \"{login}\""), &format!("user = \"{u}\""));
    }
    let env = Env::with_file_store(&(acct + &servers(with_ca)));
    assert_exit(&env.login("v", &login), 0);
    (env, login)
}

fn json(o: &std::process::Output) -> Value {
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

#[test]
fn every_protocol_transport_and_mechanism_succeeds_with_a_fresh_token() {
    let (env, login) = logged_in("verify-all", Client::Native, None, true);
    let token = env.stored("v")["access_token"].as_str().unwrap().to_owned();
    let cases = [
        ("--imap", "MAIL_IMAPS_PORT", "implicit"),
        ("--imap", "MAIL_IMAP_PORT", "starttls"),
        ("--pop", "MAIL_POP3S_PORT", "implicit"),
        ("--pop", "MAIL_POP3_PORT", "starttls"),
        ("--smtp", "MAIL_SUBMISSIONS_PORT", "implicit"),
        ("--smtp", "MAIL_SUBMISSION_PORT", "starttls"),
    ];
    for (proto, var, tls) in cases {
        for mech in ["xoauth2", "oauthbearer"] {
            let p = port(var).to_string();
            let args = [
                "verify",
                "v",
                proto,
                "--port",
                &p,
                "--tls",
                tls,
                "--mechanism",
                mech,
                "--json",
            ];
            let o = env.run(&args);
            let what = format!("{args:?}: {}\n{}", stdout(&o), stderr(&o));
            assert_exit(&o, 0);
            let r = json(&o);
            let c = &r["checks"][0];
            assert_eq!(c["outcome"]["kind"], "accepted", "{what}");
            assert_eq!(c["mechanism"], mech.to_uppercase(), "{what}");
            assert_eq!(c["tls"], tls, "{what}");
            assert!(
                c["tls_version"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("TLS 1.")),
                "{what}"
            );
            assert!(
                !stdout(&o).contains(&token),
                "the token never appears: {what}"
            );
            let hidden = format!("<{} for {login}, token hidden>", mech.to_uppercase());
            assert!(
                c["transcript"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|l| l.as_str().unwrap().contains(&hidden)),
                "{what}"
            );
        }
    }
    // All configured servers at once, as a person runs it.
    let o = env.run(&["verify", "v"]);
    assert_exit(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("All 3 check(s) passed"), "{out}");
    for proto in ["IMAP 127.0.0.1", "POP3 127.0.0.1", "SMTP 127.0.0.1"] {
        assert!(out.contains(proto), "{out}");
    }
    assert!(!out.contains(&token));
}

#[test]
fn a_token_the_server_rejects_is_refreshed_once_and_the_retry_succeeds() {
    let (env, _) = logged_in("verify-expired", Client::NativeShort, None, true);
    // The token dies at the server (6 s lifetime) while our record still calls it
    // valid: the case of a token revoked early or a clock running behind.
    std::thread::sleep(Duration::from_secs(7));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    env.edit_stored("v", |r| r["expires_at"] = (now + 3600).into());
    let before = env.stored("v")["access_token"].clone();
    let o = env.run(&["verify", "v", "--imap", "--json"]);
    assert_exit(&o, 0);
    let c = &json(&o)["checks"][0];
    assert_eq!(c["outcome"]["kind"], "accepted", "{c}");
    assert_eq!(c["refreshed"], true, "{c}");
    let transcript = c["transcript"].to_string();
    assert!(
        transcript.contains("decoded:"),
        "the first attempt's challenge: {transcript}"
    );
    assert!(transcript.contains("second attempt"), "{transcript}");
    assert_ne!(
        env.stored("v")["access_token"],
        before,
        "the fresh token is stored"
    );
}

#[test]
fn a_revoked_grant_gives_77_with_the_decoded_challenge_and_the_login_command() {
    let (env, _) = logged_in("verify-revoked", Client::Native, None, true);
    let rt_token = env.stored("v")["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    rt().block_on(authserver::revoke(
        &rt_token,
        "refresh_token",
        NATIVE_CLIENT,
        None,
    ));
    let o = env.run(&["verify", "v", "--imap"]);
    assert_exit(&o, 77);
    let out = stdout(&o);
    assert!(out.contains("REJECTED"), "{out}");
    assert!(
        out.contains("challenge") && out.contains("\"status\""),
        "{out}"
    );
    assert!(out.contains("mailtoken login v"), "{out}");
    assert!(out.contains("invalid_grant"), "{out}");
}

#[test]
fn a_token_for_another_user_gives_77_and_says_so() {
    let (env, _) = logged_in(
        "verify-other",
        Client::Native,
        Some("someone-else@example.test"),
        true,
    );
    let o = env.run(&["verify", "v", "--smtp"]);
    assert_exit(&o, 77);
    let out = stdout(&o);
    assert!(out.contains("\"status\""), "decoded challenge: {out}");
    assert!(
        out.contains("another account than user = \"someone-else@example.test\""),
        "{out}"
    );
    // Refreshed once, rejected again: no loop.
    let o = env.run(&["verify", "v", "--smtp", "--json"]);
    assert_eq!(json(&o)["checks"][0]["refreshed"], true);
}

#[test]
fn starttls_on_an_implicit_port_and_the_reverse_give_the_port_diagnosis() {
    let (env, _) = logged_in("verify-ports", Client::Native, None, true);
    let imaps = port("MAIL_IMAPS_PORT").to_string();
    let t0 = Instant::now();
    let o = env.run(&[
        "verify",
        "v",
        "--imap",
        "--port",
        &imaps,
        "--tls",
        "starttls",
        "--timeout",
        "5s",
    ]);
    assert_exit(&o, 78);
    let out = stdout(&o);
    assert!(
        out.contains(&format!("port {imaps} of 127.0.0.1 speaks implicit TLS")),
        "{out}"
    );
    assert!(out.contains("tls = \"implicit\""), "{out}");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "noticed before the timeout"
    );

    let submission = port("MAIL_SUBMISSION_PORT").to_string();
    let o = env.run(&[
        "verify",
        "v",
        "--smtp",
        "--port",
        &submission,
        "--tls",
        "implicit",
    ]);
    assert_exit(&o, 78);
    let out = stdout(&o);
    assert!(out.contains("expects STARTTLS"), "{out}");
    assert!(out.contains("tls = \"starttls\""), "{out}");
}

#[test]
fn an_untrusted_certificate_gives_the_certificate_diagnosis() {
    let (env, _) = logged_in("verify-cert", Client::Native, None, false);
    let o = env.run(&["verify", "v", "--pop"]);
    assert_exit(&o, 69);
    let out = stdout(&o);
    assert!(out.contains("certificate not trusted"), "{out}");
    assert!(out.contains("does not trust"), "{out}");
    assert!(out.contains("ca_file"), "{out}");
}

/// An account with a valid token stored and no network needed to get it.
fn seeded_valid() -> Env {
    let env = Env::with_file_store(
        "[accounts.f]\nuser = \"f@example.test\"\nauth_url = \"http://127.0.0.1:9/auth\"\n\
         token_url = \"http://127.0.0.1:9/token\"\nclient_id = \"c\"\nscopes = [\"mail\"]\n",
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    std::fs::create_dir_all(env.tokens_path().parent().unwrap()).unwrap();
    std::fs::write(
        env.tokens_path(),
        format!(
            r#"{{"version":1,"accounts":{{"f":{{"refresh_token":"r","access_token":"a","obtained_at":{now},"expires_at":{},"logged_in_at":{now}}}}}}}"#,
            now + 3600
        ),
    )
    .unwrap();
    env
}

#[test]
fn a_closed_port_gives_69() {
    let env = seeded_valid();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let p = port.to_string();
    let o = env.run(&[
        "verify",
        "f",
        "--imap",
        "--host",
        "127.0.0.1",
        "--port",
        &p,
        "--tls",
        "implicit",
    ]);
    assert_exit(&o, 69);
    assert!(stdout(&o).contains("connection refused"), "{}", stdout(&o));
}

#[test]
fn a_server_that_never_answers_gives_75_within_the_timeout() {
    // Not a mail server: a listener that accepts and stays silent, which no real
    // server does on demand.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let p = l.local_addr().unwrap().port().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming() {
            held.push(s);
        }
    });
    let env = seeded_valid();
    for tls in ["implicit", "starttls"] {
        let t0 = Instant::now();
        let o = env.run(&[
            "verify",
            "f",
            "--smtp",
            "--host",
            "127.0.0.1",
            "--port",
            &p,
            "--tls",
            tls,
            "--timeout",
            "2s",
        ]);
        let took = t0.elapsed();
        assert_exit(&o, 75);
        assert!(stdout(&o).contains("no answer while"), "{}", stdout(&o));
        assert!(took < Duration::from_secs(4), "{tls}: took {took:?}");
    }
}

/// PLAIN and LOGIN, for app-password accounts, over every protocol and transport, with
/// the verifier's own dialogues (the library's `session::check`, since the commands
/// that store app passwords come with the mail-programs issue), against Dovecot's
/// passwd-file user; a wrong password is refused with the server's words.
#[test]
fn plain_and_login_with_an_app_password_over_every_protocol() {
    use common::mailserver::{APP_PASSWORD, APP_USER};
    use mailtoken::server::{Proto, Tls};
    use mailtoken::verify::Mechanism;
    use mailtoken::verify::session::{Credential, Outcome, Target, check};
    let tls = mailtoken::tls::client_config(Some(std::path::Path::new(&ca()))).unwrap();
    let cases = [
        (Proto::Imap, "MAIL_IMAPS_PORT", Tls::Implicit),
        (Proto::Imap, "MAIL_IMAP_PORT", Tls::Starttls),
        (Proto::Pop, "MAIL_POP3S_PORT", Tls::Implicit),
        (Proto::Pop, "MAIL_POP3_PORT", Tls::Starttls),
        (Proto::Smtp, "MAIL_SUBMISSIONS_PORT", Tls::Implicit),
        (Proto::Smtp, "MAIL_SUBMISSION_PORT", Tls::Starttls),
    ];
    rt().block_on(async {
        for (proto, var, mode) in cases {
            let target = Target {
                proto,
                host: "127.0.0.1".into(),
                port: port(var),
                tls: mode,
                message: None,
            };
            for mech in [Mechanism::Plain, Mechanism::Login] {
                let good = Credential::Password {
                    user: APP_USER,
                    password: APP_PASSWORD,
                };
                let a = check(&target, &tls, &good, Some(mech), Duration::from_secs(10)).await;
                let what = format!("{target:?} {mech:?}: {:#?}", a.transcript);
                assert!(matches!(a.outcome, Outcome::Accepted { .. }), "{what}");
                assert!(!what.contains(APP_PASSWORD), "{what}");
                let bad = Credential::Password {
                    user: APP_USER,
                    password: "wrong-password",
                };
                let a = check(&target, &tls, &bad, Some(mech), Duration::from_secs(10)).await;
                let what = format!("{target:?} {mech:?}: {:#?}", a.transcript);
                match &a.outcome {
                    Outcome::Rejected { reply, challenge } => {
                        assert!(reply.to_lowercase().contains("auth"), "{what}");
                        assert_eq!(challenge, &None, "{what}");
                    }
                    other => panic!("{other:?}: {what}"),
                }
            }
        }
    });
}

#[test]
fn send_to_submits_a_real_test_message_that_reaches_the_recipient() {
    let (env, login) = logged_in("verify-send", Client::Native, None, true);
    let to = unique_login("verify-send-rcpt");
    let o = env.run(&["verify", "v", "--smtp", "--send-to", &to, "--json"]);
    assert_exit(&o, 0);
    let c = &json(&o)["checks"][0];
    assert_eq!(
        c["diagnosis"],
        format!("SMTP accepted the credential and took the test message from {login} to {to}")
    );
    let m = common::mailserver::mailserver()
        .wait_for_message(&format!("X-Sink-Rcpt-To: <{to}>"), Duration::from_secs(10))
        .expect("the test message reaches the sink");
    assert!(m.contains(&format!("X-Sink-Mail-From: <{login}>")), "{m}");
    assert!(m.contains("Subject: mailtoken verify: test message"), "{m}");
}

#[test]
fn send_to_without_an_smtp_server_is_a_usage_error() {
    let (env, _) = logged_in("verify-send-imap", Client::Native, None, true);
    let o = env.run(&["verify", "v", "--imap", "--send-to", "x@example.test"]);
    assert_exit(&o, 64);
    assert!(
        stderr(&o).contains("--send-to needs an SMTP server"),
        "{}",
        stderr(&o)
    );
}
