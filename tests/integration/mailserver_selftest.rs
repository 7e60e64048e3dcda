//! The test mail server itself (tests/mailserver/start.sh: a private Dovecot 2.3 whose
//! oauth2 passdb introspects tokens at the test authorization server, and an SMTP sink
//! behind its submission service), spoken to by hand: proves the harness before
//! `mailtoken verify` relies on it.

use crate::common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::mailserver::*;
use common::mailtoken::unique_login;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Decodes the base64 JSON of a `+ ...` / `334 ...` challenge line.
fn challenge_json(line: &str, prefix: &str) -> Value {
    let b64 = line
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("expected {prefix:?}..., got {line:?}"));
    let raw = STANDARD
        .decode(b64.trim())
        .unwrap_or_else(|e| panic!("challenge {b64:?} is not base64: {e}"));
    serde_json::from_slice(&raw).unwrap_or_else(|e| {
        panic!(
            "challenge is not JSON ({e}): {}",
            String::from_utf8_lossy(&raw)
        )
    })
}

fn last(lines: &[String]) -> &str {
    lines.last().expect("at least one line")
}

#[test]
fn imaps_xoauth2_with_a_valid_token_is_ok_and_sees_a_delivered_message() {
    let ms = mailserver();
    let login = unique_login("ms-imap");
    let token = access_token(&login);
    let needle = format!("needle-{}", unique_login("imap"));
    ms.deliver_to_inbox(
        &login,
        &format!("From: someone@example.test\nTo: {login}\nSubject: test\n\nbody {needle}\n"),
    );

    let mut s = ms.connect_tls(ms.imaps_port);
    let greeting = s.read_line();
    assert!(greeting.starts_with("* OK "), "{greeting}");
    assert!(greeting.contains("AUTH=XOAUTH2"), "{greeting}");
    s.send(&format!(
        "a AUTHENTICATE XOAUTH2 {}",
        xoauth2(&login, &token)
    ));
    let r = s.imap_response("a");
    assert!(last(&r).starts_with("a OK "), "{r:?}\n{}", ms.log_tail(10));
    s.send("b SELECT INBOX");
    let r = s.imap_response("b");
    assert!(r.iter().any(|l| l == "* 1 EXISTS"), "{r:?}");
    s.send("c FETCH 1 BODY.PEEK[TEXT]");
    let r = s.imap_response("c");
    assert!(r.iter().any(|l| l.contains(&needle)), "{r:?}");
    s.send("d LOGOUT");
    s.imap_response("d");

    // The same mailbox over POP3 with STLS, and the token again (no cache: introspected
    // once more).
    let mut p = ms.connect_plain(ms.pop3_port);
    assert!(p.read_line().starts_with("+OK"));
    p.send("STLS");
    let ok = p.read_line();
    assert!(ok.starts_with("+OK"), "{ok}");
    p.start_tls();
    p.send(&format!("AUTH XOAUTH2 {}", xoauth2(&login, &token)));
    let ok = p.read_line();
    assert_eq!(ok, "+OK Logged in.", "{}", ms.log_tail(10));
    p.send("STAT");
    let stat = p.read_line();
    assert!(stat.starts_with("+OK 1 "), "{stat}");
    p.send("RETR 1");
    let lines = p.read_until(|l| l == ".");
    assert!(lines.iter().any(|l| l.contains(&needle)), "{lines:?}");
    p.send("QUIT");
}

#[test]
fn imaps_xoauth2_with_a_bogus_token_gets_the_json_challenge_then_no_without_penalty() {
    let ms = mailserver();
    // Three failures in a row from 127.0.0.1: with Dovecot's auth penalty the later
    // ones would wait 4 and 8 s before the challenge.
    for round in 0..3 {
        let mut s = ms.connect_tls(ms.imaps_port);
        s.read_line();
        let t0 = Instant::now();
        s.send(&format!(
            "a AUTHENTICATE XOAUTH2 {}",
            xoauth2("bogus@example.test", "not-a-token")
        ));
        let challenge = s.read_line();
        let json = challenge_json(&challenge, "+ ");
        assert_eq!(json["status"], "401", "{json}");
        assert_eq!(json["schemes"], "bearer", "{json}");
        assert_eq!(json["scope"], REQUIRED_SCOPE, "{json}");
        assert!(
            json["openid-configuration"]
                .as_str()
                .is_some_and(|u| u.ends_with("/.well-known/openid-configuration")),
            "{json}"
        );
        s.send("");
        let r = s.imap_response("a");
        assert_eq!(
            last(&r),
            "a NO [AUTHENTICATIONFAILED] Authentication failed.",
            "{r:?}"
        );
        let took = t0.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "round {round}: failure took {took:?}"
        );
    }
}

#[test]
fn oauthbearer_and_a_token_without_scope_mail_are_handled_like_gmail() {
    let ms = mailserver();
    let login = unique_login("ms-bearer");
    let token = access_token(&login);
    // OAUTHBEARER with a good token.
    let mut s = ms.connect_tls(ms.imaps_port);
    s.read_line();
    s.send(&format!(
        "a AUTHENTICATE OAUTHBEARER {}",
        oauthbearer(&login, &token, "localhost", ms.imaps_port)
    ));
    let r = s.imap_response("a");
    assert!(last(&r).starts_with("a OK "), "{r:?}");

    // A token without scope `mail`: the XOAUTH2 challenge, then NO.
    let narrow = access_token_with_scope(&login, "openid email");
    let mut s = ms.connect_tls(ms.imaps_port);
    s.read_line();
    s.send(&format!(
        "a AUTHENTICATE XOAUTH2 {}",
        xoauth2(&login, &narrow)
    ));
    let json = challenge_json(&s.read_line(), "+ ");
    assert_eq!(json["status"], "401", "{json}");
    s.send("");
    let r = s.imap_response("a");
    assert!(last(&r).starts_with("a NO [AUTHENTICATIONFAILED]"), "{r:?}");
    let logged = ms.wait_for_log(
        &[
            &format!("oauth2({login},"),
            "Token is not valid for scope 'mail'",
        ],
        Duration::from_secs(5),
    );
    assert!(logged.is_some(), "{}", ms.log_tail(20));
}

#[test]
fn app_passwords_work_with_plain_and_login_and_wrong_ones_do_not() {
    let ms = mailserver();
    let mut s = ms.connect_tls(ms.imaps_port);
    s.read_line();
    s.send(&format!(
        "a AUTHENTICATE PLAIN {}",
        plain(APP_USER, "wrong-password")
    ));
    let r = s.imap_response("a");
    assert_eq!(
        last(&r),
        "a NO [AUTHENTICATIONFAILED] Authentication failed.",
        "{r:?}"
    );
    // A token is not a password, and a password is not a token.
    s.send(&format!(
        "b AUTHENTICATE XOAUTH2 {}",
        xoauth2(APP_USER, APP_PASSWORD)
    ));
    let challenge = s.read_line();
    assert!(challenge.starts_with("+ "), "{challenge}");
    s.send("");
    let r = s.imap_response("b");
    assert!(last(&r).starts_with("b NO "), "{r:?}");
    s.send(&format!(
        "c AUTHENTICATE PLAIN {}",
        plain(APP_USER, APP_PASSWORD)
    ));
    let r = s.imap_response("c");
    assert!(last(&r).starts_with("c OK "), "{r:?}");
    s.send("d LOGOUT");
    s.imap_response("d");

    let mut s = ms.connect_tls(ms.imaps_port);
    s.read_line();
    s.send(&format!("a LOGIN {APP_USER_2} {APP_PASSWORD_2}"));
    let r = s.imap_response("a");
    assert!(last(&r).starts_with("a OK "), "{r:?}");
}

#[test]
fn submission_starttls_accepts_xoauth2_and_relays_to_the_sink() {
    let ms = mailserver();
    let login = unique_login("ms-smtp");
    let token = access_token(&login);
    let needle = format!("needle-{}", unique_login("smtp"));

    let mut s = ms.connect_plain(ms.submission_port);
    let greeting = s.smtp_reply();
    assert!(last(&greeting).starts_with("220 "), "{greeting:?}");
    s.send("EHLO client.example");
    let ehlo = s.smtp_reply();
    assert!(ehlo.iter().any(|l| l == "250-STARTTLS"), "{ehlo:?}");
    s.send("STARTTLS");
    let go = s.smtp_reply();
    assert!(last(&go).starts_with("220 "), "{go:?}");
    s.start_tls();
    s.send("EHLO client.example");
    let ehlo = s.smtp_reply();
    assert!(
        ehlo.iter()
            .any(|l| l.starts_with("250-AUTH ") && l.contains("XOAUTH2")),
        "{ehlo:?}"
    );
    s.send(&format!("AUTH XOAUTH2 {}", xoauth2(&login, &token)));
    let auth = s.smtp_reply();
    assert_eq!(last(&auth), "235 2.7.0 Logged in.", "{}", ms.log_tail(10));
    s.send(&format!("MAIL FROM:<{login}>"));
    assert!(last(&s.smtp_reply()).starts_with("250 "));
    s.send("RCPT TO:<rcpt@example.test>");
    assert!(last(&s.smtp_reply()).starts_with("250 "));
    s.send("DATA");
    assert!(last(&s.smtp_reply()).starts_with("354 "));
    s.send(&format!(
        "From: <{login}>\r\nTo: <rcpt@example.test>\r\nSubject: selftest\r\n\r\n{needle}\r\n."
    ));
    let queued = s.smtp_reply();
    assert!(last(&queued).starts_with("250 "), "{queued:?}");
    s.send("QUIT");

    let message = ms
        .wait_for_message(&needle, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("not in the sink; log:\n{}", ms.log_tail(10)));
    assert!(
        message.contains(&format!("X-Sink-Mail-From: <{login}>")),
        "{message}"
    );
    assert!(
        message.contains("X-Sink-Rcpt-To: <rcpt@example.test>"),
        "{message}"
    );
}

#[test]
fn bad_tokens_fail_on_pop3_and_smtp_with_the_usual_lines() {
    let ms = mailserver();
    // POP3S, OAUTHBEARER: the RFC 7628 error JSON, the client's ^A, then -ERR.
    let mut p = ms.connect_tls(ms.pop3s_port);
    p.read_line();
    p.send(&format!(
        "AUTH OAUTHBEARER {}",
        oauthbearer("bogus@example.test", "nope", "localhost", ms.pop3s_port)
    ));
    let json = challenge_json(&p.read_line(), "+ ");
    assert_eq!(json["status"], "invalid_token", "{json}");
    p.send("AQ==");
    assert_eq!(p.read_line(), "-ERR [AUTH] Authentication failed.");

    // Submissions (implicit TLS), XOAUTH2: 334 challenge, empty line, 535.
    let mut s = ms.connect_tls(ms.submissions_port);
    s.smtp_reply();
    s.send("EHLO client.example");
    s.smtp_reply();
    s.send(&format!(
        "AUTH XOAUTH2 {}",
        xoauth2("bogus@example.test", "nope")
    ));
    let json = challenge_json(&s.read_line(), "334 ");
    assert_eq!(json["status"], "401", "{json}");
    s.send("");
    assert_eq!(last(&s.smtp_reply()), "535 5.7.8 Authentication failed.");
}
