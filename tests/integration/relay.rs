//! The SMTP relay for programs that know no OAuth: `mailtoken serve` runs it for an
//! account logged in at the real authorization server, and it signs in to the test
//! Dovecot's submission server (STARTTLS, XOAUTH2) for them. The clients are real and
//! not ours: msmtp with `auth plain` and `auth off`, and Python's smtplib.

use crate::common;

use common::mailserver::mailserver;
use common::mailtoken::*;
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A logged-in account `r` whose SMTP server is Dovecot's submission port, with a relay
/// on a port of its own (`auth` of the relay table), and its daemon.
fn relay_world(tag: &str, auth: &str) -> (Env, String, u16, Daemon) {
    let m = mailserver();
    let login = unique_login(tag);
    let port = free_port();
    let acct = account_toml("r", &login, Client::Native)
        + &format!(
            "ca_file = \"{}\"\nsmtp = {{ host = \"127.0.0.1\", port = {}, tls = \"starttls\" }}\n\
             [accounts.r.relay]\nsmtp = \"127.0.0.1:{port}\"\nauth = \"{auth}\"\n",
            m.ca.display(),
            m.submission_port
        );
    let env = Env::with_file_store(&acct);
    assert_exit(&env.login("r", &login), 0);
    let daemon = env.serve();
    (env, login, port, daemon)
}

fn relay_password(env: &Env) -> String {
    let o = env.run(&["relay-password", "r"]);
    assert_exit(&o, 0);
    stdout(&o).trim().to_owned()
}

fn msmtp_through(
    env: &Env,
    port: u16,
    login: &str,
    auth: Option<&str>,
    subject: &str,
) -> std::process::Output {
    let rc = env.dir.path().join("relay-msmtprc");
    let auth_lines = match auth {
        Some(pw) => format!("auth plain\nuser {login}\npassword {pw}\n"),
        None => "auth off\n".to_owned(),
    };
    std::fs::write(
        &rc,
        format!("account relay\nhost 127.0.0.1\nport {port}\nfrom {login}\ntls off\n{auth_lines}"),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut c = env.program("msmtp");
    c.arg(format!("--file={}", rc.display()))
        .args(["-a", "relay", "rcpt@example.test"]);
    run_with_stdin(
        &mut c,
        &format!(
            "From: {login}\r\nTo: rcpt@example.test\r\nSubject: {subject}\r\n\r\nThrough the relay.\r\n"
        ),
    )
}

#[test]
fn msmtp_with_a_plain_login_sends_through_the_relay_with_oauth_upstream() {
    let (env, login, port, _daemon) = relay_world("relay-msmtp", "password");
    let pw = relay_password(&env);
    let subject = format!("relay plain {login}");
    let o = msmtp_through(&env, port, &login, Some(&pw), &subject);
    assert!(o.status.success(), "msmtp: {}", stderr(&o));
    let m = mailserver()
        .wait_for_message(&subject, Duration::from_secs(10))
        .expect("the message reaches the sink");
    assert!(m.contains(&format!("X-Sink-Mail-From: <{login}>")), "{m}");
}

#[test]
fn msmtp_without_a_login_sends_through_a_relay_that_needs_none() {
    let (env, login, port, _daemon) = relay_world("relay-open", "none");
    let subject = format!("relay open {login}");
    let o = msmtp_through(&env, port, &login, None, &subject);
    assert!(o.status.success(), "msmtp: {}", stderr(&o));
    assert!(
        mailserver()
            .wait_for_message(&subject, Duration::from_secs(10))
            .is_some()
    );
}

#[test]
fn a_wrong_relay_password_is_refused_with_535_and_nothing_is_sent() {
    let (env, login, port, _daemon) = relay_world("relay-wrong", "password");
    let _ = relay_password(&env);
    let subject = format!("relay wrong {login}");
    let o = msmtp_through(&env, port, &login, Some("not-the-relay-password"), &subject);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("535"), "{}", stderr(&o));
    assert!(
        mailserver()
            .wait_for_message(&subject, Duration::from_secs(1))
            .is_none()
    );
}

#[test]
fn pythons_smtplib_logs_in_and_sends_through_the_relay() {
    let (env, login, port, _daemon) = relay_world("relay-python", "password");
    let pw = relay_password(&env);
    let subject = format!("relay smtplib {login}");
    let script = format!(
        r#"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", {port}, timeout=20)
code, text = s.ehlo()
features = text.decode()
assert "AUTH PLAIN LOGIN" in features, features
assert "STARTTLS" not in features, features
assert "PIPELINING" in features, features
try:
    s.login("{login}", "wrong")
    sys.exit("a wrong password was taken")
except smtplib.SMTPAuthenticationError as e:
    assert e.smtp_code == 535, e
s.login("{login}", "{pw}")
s.sendmail("{login}", ["rcpt@example.test"], "From: {login}\r\nTo: rcpt@example.test\r\nSubject: {subject}\r\n\r\nHello.\r\n")
s.quit()
"#
    );
    let o = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(o.status.success(), "python: {}{}", stdout(&o), stderr(&o));
    assert!(
        mailserver()
            .wait_for_message(&subject, Duration::from_secs(10))
            .is_some()
    );
}

#[test]
fn a_relay_on_a_non_loopback_address_is_refused_where_the_config_says_it() {
    let env = Env::with_file_store(
        "[accounts.r]\nprovider = \"google\"\nuser = \"r@gmail.com\"\nclient_id = \"i\"\nclient_secret = \"s\"\n\
         [accounts.r.relay]\nsmtp = \"0.0.0.0:2587\"\n",
    );
    let o = env.run(&["status"]);
    assert_exit(&o, 78);
    let e = stderr(&o);
    assert!(
        e.contains("config.toml:11:8: relay smtp: `0.0.0.0:2587` is not a loopback address"),
        "{e}"
    );
}
