//! The SMTP relay for programs that know no OAuth: `mailtoken serve` runs it for an
//! account logged in at the real authorization server, and it signs in to the test
//! Dovecot's submission server (STARTTLS, XOAUTH2) for them. The clients are real and
//! not ours: msmtp with `auth plain` and `auth off`, and Python's smtplib.

use crate::common;

use common::mailserver::mailserver;
use common::mailtoken::*;
use std::time::Duration;

/// Python (the system's, with its standard library's mail clients) running `script`.
fn python(script: &str) -> std::process::Output {
    std::process::Command::new("python3")
        .args(["-c", script])
        .output()
        .unwrap()
}

/// The config of account `r` for `login`: its `upstream` server line and its relay
/// table's lines, the test CA trusted for the Dovecot it talks to.
fn relay_account(login: &str, client: Client, upstream: &str, relay: &str) -> String {
    format!(
        "{}ca_file = \"{}\"\n{upstream}\n[accounts.r.relay]\n{relay}",
        account_toml("r", login, client),
        mailserver().ca.display()
    )
}

/// The test Dovecot's server line for `proto`: submission with STARTTLS, IMAP and POP3
/// with implicit TLS.
fn dovecot(proto: &str) -> String {
    let m = mailserver();
    let (port, tls) = match proto {
        "smtp" => (m.submission_port, "starttls"),
        "imap" => (m.imaps_port, "implicit"),
        _ => (m.pop3s_port, "implicit"),
    };
    format!("{proto} = {{ host = \"127.0.0.1\", port = {port}, tls = \"{tls}\" }}")
}

/// A logged-in account `r` whose SMTP server is Dovecot's submission port, with a relay
/// on a port of its own (`auth` of the relay table), and its daemon.
fn relay_world(tag: &str, auth: &str) -> (Env, String, u16, Daemon) {
    let login = unique_login(tag);
    let port = free_port();
    let acct = relay_account(
        &login,
        Client::Native,
        &dovecot("smtp"),
        &format!("smtp = \"127.0.0.1:{port}\"\nauth = \"{auth}\"\n"),
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
    set_mode(&rc, 0o600);
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
    let status = stdout(&env.run(&["status", "r"]));
    assert!(
        status.contains(&format!(
            "SMTP on 127.0.0.1:{port}, WITHOUT a login: anyone on this machine can send as {login}"
        )),
        "{status}"
    );
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
    let o = python(&script);
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

/// Python's smtplib connecting to the relay: the greeting's code and text, or 220.
fn python_greeting(port: u16) -> (i64, String) {
    let script = format!(
        r#"
import smtplib
try:
    s = smtplib.SMTP("127.0.0.1", {port}, timeout=20)
    print(220)
    print("ok")
    s.quit()
except smtplib.SMTPConnectError as e:
    print(e.smtp_code)
    print(e.smtp_error.decode())
"#
    );
    let o = python(&script);
    let out = stdout(&o);
    let mut lines = out.lines();
    let code = lines.next().and_then(|l| l.parse().ok()).unwrap_or(-1);
    (code, lines.collect::<Vec<_>>().join("\n"))
}

#[test]
fn a_real_server_that_is_down_gives_the_client_a_temporary_failure() {
    let port = free_port();
    let dead = free_port();
    let login = unique_login("relay-down");
    let acct = relay_account(
        &login,
        Client::Native,
        &format!("smtp = {{ host = \"127.0.0.1\", port = {dead}, tls = \"starttls\" }}"),
        &format!("smtp = \"127.0.0.1:{port}\"\n"),
    );
    let env = Env::with_file_store(&acct);
    assert_exit(&env.login("r", &login), 0);
    let _daemon = env.serve();
    let (code, text) = python_greeting(port);
    assert_eq!(code, 421, "{text}");
    assert!(
        text.contains(&format!("cannot sign in to 127.0.0.1:{dead}")),
        "{text}"
    );
}

#[test]
fn an_account_that_needs_a_login_gives_a_permanent_refusal_that_says_so() {
    let port = free_port();
    let login = unique_login("relay-nologin");
    let acct = relay_account(
        &login,
        Client::Native,
        &dovecot("smtp"),
        &format!("smtp = \"127.0.0.1:{port}\"\n"),
    );
    let env = Env::with_file_store(&acct);
    let _daemon = env.serve();
    let (code, text) = python_greeting(port);
    assert_eq!(code, 554, "{text}");
    assert!(text.contains("mailtoken login r"), "{text}");
}

#[test]
fn a_token_the_server_refuses_is_refreshed_once_and_the_message_still_goes_out() {
    let m = mailserver();
    let login = unique_login("relay-refresh");
    let port = free_port();
    let acct = relay_account(
        &login,
        Client::NativeShort,
        &dovecot("smtp"),
        &format!("smtp = \"127.0.0.1:{port}\"\n"),
    );
    let env = Env::with_file_store(&acct);
    assert_exit(&env.login("r", &login), 0);
    // The token dies at the server (6 s lifetime) while the record still calls it
    // valid for an hour: the daemon hands it to the relay, and the server refuses it.
    std::thread::sleep(Duration::from_secs(7));
    let dead = env.stored("r")["access_token"].as_str().unwrap().to_owned();
    env.edit_stored("r", |r| r["expires_at"] = (now() + 3600).into());
    let _daemon = env.serve();
    let pw = relay_password(&env);
    let subject = format!("relay after a refused token {login}");
    let o = msmtp_through(&env, port, &login, Some(&pw), &subject);
    assert!(o.status.success(), "msmtp: {}", stderr(&o));
    assert!(
        m.wait_for_message(&subject, Duration::from_secs(10))
            .is_some()
    );
    assert_ne!(
        env.stored("r")["access_token"].as_str().unwrap(),
        dead,
        "refreshed"
    );
}

#[test]
fn pythons_imaplib_logs_in_through_the_imap_relay_reads_a_message_and_idles() {
    let m = mailserver();
    let login = unique_login("relay-imap");
    let port = free_port();
    let acct = relay_account(
        &login,
        Client::Native,
        &dovecot("imap"),
        &format!("imap = \"127.0.0.1:{port}\"\n"),
    );
    let env = Env::with_file_store(&acct);
    assert_exit(&env.login("r", &login), 0);
    let _daemon = env.serve();
    let pw = relay_password(&env);
    m.deliver_to_inbox(
        &login,
        &format!(
            "From: a@example.test\r\nTo: {login}\r\nSubject: first {login}\r\n\r\nBODYMARK-1\r\n"
        ),
    );
    let script = format!(
        r#"
import imaplib, sys
M = imaplib.IMAP4("127.0.0.1", {port}, timeout=30)
caps = M.capabilities
assert "AUTH=PLAIN" in caps and "STARTTLS" not in caps and "IDLE" in caps, caps
try:
    M.login("{login}", "wrong")
    sys.exit("a wrong password was taken")
except imaplib.IMAP4.error as e:
    assert "AUTHENTICATIONFAILED" in str(e), e
M.login("{login}", "{pw}")
typ, data = M.select("INBOX")
assert typ == "OK", data
typ, data = M.search(None, "BODY", "BODYMARK-1")
ids = data[0].split()
assert ids, data
typ, msg = M.fetch(ids[0], "(RFC822)")
assert b"BODYMARK-1" in msg[0][1], msg
tag = M._new_tag().decode()
M.send(f"{{tag}} IDLE\r\n".encode())
line = M.readline()
assert line.startswith(b"+"), line
print("IDLING", flush=True)
while True:
    line = M.readline()
    if b"EXISTS" in line:
        break
M.send(b"DONE\r\n")
while not M.readline().startswith(tag.encode()):
    pass
M.logout()
print("DONE", flush=True)
"#
    );
    let mut py = std::process::Command::new("python3")
        .args(["-c", &script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(py.stdout.take().unwrap());
    let mut line = String::new();
    use std::io::BufRead;
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "IDLING", "python stopped before IDLE: {}", {
        let o = py.wait_with_output().unwrap();
        stderr(&o)
    });
    m.deliver_to_inbox(
        &login,
        &format!(
            "From: a@example.test\r\nTo: {login}\r\nSubject: second {login}\r\n\r\nBODYMARK-2\r\n"
        ),
    );
    line.clear();
    out.read_line(&mut line).unwrap();
    let o = py.wait_with_output().unwrap();
    assert_eq!(line.trim(), "DONE", "python: {}", stderr(&o));
    assert!(o.status.success(), "python: {}", stderr(&o));
}

#[test]
fn pythons_poplib_logs_in_through_the_pop3_relay_and_retrieves_a_message() {
    let m = mailserver();
    let login = unique_login("relay-pop");
    let port = free_port();
    let acct = relay_account(
        &login,
        Client::Native,
        &dovecot("pop"),
        &format!("pop = \"127.0.0.1:{port}\"\n"),
    );
    let env = Env::with_file_store(&acct);
    assert_exit(&env.login("r", &login), 0);
    let _daemon = env.serve();
    let pw = relay_password(&env);
    m.deliver_to_inbox(
        &login,
        &format!("From: a@example.test\r\nTo: {login}\r\nSubject: pop {login}\r\n\r\nPOPMARK\r\n"),
    );
    let script = format!(
        r#"
import poplib, sys
P = poplib.POP3("127.0.0.1", {port}, timeout=30)
caps = P.capa()
assert "STLS" not in caps and "USER" in caps, caps
P.user("{login}")
try:
    P.pass_("wrong")
    sys.exit("a wrong password was taken")
except poplib.error_proto as e:
    assert b"[AUTH]" in e.args[0], e
P = poplib.POP3("127.0.0.1", {port}, timeout=30)
P.user("{login}")
P.pass_("{pw}")
count, size = P.stat()
assert count >= 1, (count, size)
resp, lines, octets = P.retr(1)
assert b"POPMARK" in b"\n".join(lines), lines
P.quit()
"#
    );
    let o = python(&script);
    assert!(o.status.success(), "python: {}{}", stdout(&o), stderr(&o));
}

// ---- Postfix, relaying through the SMTP relay -----------------------------------

/// Sends a message of `body` to Postfix by SMTP (Python's smtplib), from `from`.
fn to_postfix(port: u16, from: &str, subject: &str, body: &str) {
    let script = format!(
        r#"
import smtplib, sys
body = sys.stdin.read()
s = smtplib.SMTP("127.0.0.1", {port}, timeout=60)
s.sendmail("{from}", ["rcpt@example.test"], "From: {from}\r\nTo: rcpt@example.test\r\nSubject: {subject}\r\n\r\n" + body)
s.quit()
"#
    );
    let mut c = std::process::Command::new("python3");
    c.args(["-c", &script]);
    let o = run_with_stdin(&mut c, body);
    assert!(o.status.success(), "smtplib to Postfix: {}", stderr(&o));
}

#[test]
fn postfix_relays_through_the_relay_with_a_plain_login_also_after_the_token_expired() {
    let m = mailserver();
    let login = unique_login("relay-postfix");
    let port = free_port();
    let acct = relay_account(
        &login,
        Client::NativeShort,
        &dovecot("smtp"),
        &format!("smtp = \"127.0.0.1:{port}\"\n"),
    );
    let env = Env::with_file_store(&acct);
    assert_exit(&env.login("r", &login), 0);
    let _daemon = env.serve();
    let pw = relay_password(&env);
    let postfix = common::postfix::Postfix::start(port, Some((&login, &pw)));
    let first = format!("postfix first {login}");
    to_postfix(postfix.port, &login, &first, "Relayed by Postfix.\r\n");
    assert!(
        m.wait_for_message(&first, Duration::from_secs(20))
            .is_some(),
        "not delivered; Postfix says:\n{}",
        postfix.log()
    );
    // The access token lives 6 s at this client: past it, the daemon's fresh one.
    std::thread::sleep(Duration::from_secs(7));
    let second = format!("postfix after expiry {login}");
    to_postfix(
        postfix.port,
        &login,
        &second,
        "Relayed by Postfix again.\r\n",
    );
    assert!(
        m.wait_for_message(&second, Duration::from_secs(20))
            .is_some(),
        "not delivered; Postfix says:\n{}",
        postfix.log()
    );
}

#[test]
fn postfix_without_a_login_relays_a_10_mb_message_intact() {
    use sha2::{Digest, Sha256};
    let m = mailserver();
    let login = unique_login("relay-postfix-big");
    let port = free_port();
    let acct = relay_account(
        &login,
        Client::Native,
        &dovecot("smtp"),
        &format!("smtp = \"127.0.0.1:{port}\"\nauth = \"none\"\n"),
    );
    let env = Env::with_file_store(&acct);
    assert_exit(&env.login("r", &login), 0);
    let _daemon = env.serve();
    let postfix = common::postfix::Postfix::start(port, None);
    // 10 MB of base64-like lines (76 characters), each different.
    let mut body = String::with_capacity(10 * 1024 * 1024 + 100_000);
    let mut i: u64 = 0;
    while body.len() < 10 * 1024 * 1024 {
        let line = format!(
            "{:076x}",
            (i.wrapping_mul(0x9e37_79b9_7f4a_7c15)) as u128 * 0x1_0000_0001
        );
        body.push_str(&line[line.len() - 76..]);
        body.push_str("\r\n");
        i += 1;
    }
    let want = Sha256::digest(body.as_bytes());
    let subject = format!("postfix 10 MB {login}");
    to_postfix(postfix.port, &login, &subject, &body);
    let got = m
        .wait_for_message(&subject, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("not delivered; Postfix says:\n{}", postfix.log()));
    // The body as delivered: after the header block.
    let delivered = got
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    let delivered = delivered
        .get(delivered.len().saturating_sub(body.len())..)
        .unwrap_or_default();
    assert_eq!(delivered.len(), body.len(), "size");
    assert_eq!(Sha256::digest(delivered.as_bytes()), want, "content");
}

#[test]
fn postfix_set_up_by_what_setup_postfix_prints_relays_through_the_relay() {
    let m = mailserver();
    let login = unique_login("relay-setup-postfix");
    let port = free_port();
    let acct = relay_account(
        &login,
        Client::Native,
        &dovecot("smtp"),
        &format!("smtp = \"127.0.0.1:{port}\"\n"),
    );
    let env = Env::with_file_store(&acct);
    assert_exit(&env.login("r", &login), 0);
    let _daemon = env.serve();
    let o = env.run(&["setup", "postfix", "r"]);
    assert_exit(&o, 0);
    let script = stdout(&o);
    assert!(
        script.contains(&format!("postconf -e 'relayhost = [127.0.0.1]:{port}'")),
        "{script}"
    );
    assert!(
        !script.contains(&relay_password(&env)),
        "the password is not printed"
    );
    let postfix = common::postfix::Postfix::start_unconfigured();
    let applied = postfix.apply(env.program("sh"), &script);
    assert!(
        applied.status.success(),
        "{}{}",
        stdout(&applied),
        stderr(&applied)
    );
    let subject = format!("postfix by setup {login}");
    to_postfix(
        postfix.port,
        &login,
        &subject,
        "Relayed by a Postfix set up by mailtoken.\r\n",
    );
    assert!(
        m.wait_for_message(&subject, Duration::from_secs(20))
            .is_some(),
        "not delivered; Postfix says:\n{}",
        postfix.log()
    );
}

#[test]
fn a_revoked_grant_refuses_the_client_for_good_and_notifies_once() {
    let login = unique_login("relay-revoked");
    let port = free_port();
    let acct = relay_account(
        &login,
        Client::Native,
        &dovecot("smtp"),
        &format!("smtp = \"127.0.0.1:{port}\"\n"),
    );
    let env = Env::with_file_store(&acct);
    let notes = env.dir.path().join("notes");
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    env.write_config(&format!(
        "notify_cmd = 'echo \"$MAILTOKEN_ACCOUNT|$MAILTOKEN_REASON\" >> {}'\n{config}",
        notes.display()
    ));
    assert_exit(&env.login("r", &login), 0);
    // The provider revokes the grant: the stored access token dies with it, and so
    // does the refresh token.
    let rt_value = env.stored("r")["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    rt().block_on(common::authserver::revoke(
        &rt_value,
        "refresh_token",
        common::authserver::NATIVE_CLIENT,
        None,
    ));
    let _daemon = env.serve();
    let (code, text) = python_greeting(port);
    assert_eq!(code, 554, "{text}");
    assert!(text.contains("mailtoken login r"), "{text}");
    // A second client hears the same at once, and nobody is told twice.
    let (code, _) = python_greeting(port);
    assert_eq!(code, 554);
    std::thread::sleep(Duration::from_millis(500));
    let told = std::fs::read_to_string(&notes).unwrap_or_default();
    assert_eq!(told.lines().count(), 1, "{told}");
    assert!(told.starts_with("r|"), "{told}");
}

#[test]
fn a_hundred_concurrent_sessions_through_the_relay_each_deliver_their_message_once() {
    let (env, login, port, _daemon) = relay_world("relay-load", "password");
    let pw = relay_password(&env);
    let script = format!(
        r#"
import smtplib, threading, sys
errors = []
def send(i):
    try:
        s = smtplib.SMTP("127.0.0.1", {port}, timeout=60)
        s.login("{login}", "{pw}")
        s.sendmail("{login}", ["rcpt@example.test"], f"From: {login}\r\nTo: rcpt@example.test\r\nSubject: load {login} #{{i}}#\r\n\r\nMessage {{i}}.\r\n")
        s.quit()
    except Exception as e:
        errors.append(f"{{i}}: {{e!r}}")
threads = [threading.Thread(target=send, args=(i,)) for i in range(100)]
for t in threads: t.start()
for t in threads: t.join()
if errors:
    sys.exit("\n".join(errors))
"#
    );
    let o = python(&script);
    assert!(o.status.success(), "python: {}", stderr(&o));
    let m = mailserver();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let msgs = m.sink_messages();
        let counts: Vec<usize> = (0..100)
            .map(|i| {
                let needle = format!("Subject: load {login} #{i}#");
                msgs.iter().filter(|(_, t)| t.contains(&needle)).count()
            })
            .collect();
        if counts.iter().all(|&c| c == 1) {
            break;
        }
        assert!(
            counts.iter().all(|&c| c <= 1),
            "a message arrived twice: {counts:?}"
        );
        assert!(std::time::Instant::now() < deadline, "missing: {counts:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Sends one message by SMTP over the unix socket `path`, as the local user `uid`
/// (setpriv), with Python's socket module; the relay's first reply line and whether
/// the message was taken.
fn smtp_over_unix_as(
    uid: &str,
    path: &std::path::Path,
    from: &str,
    subject: &str,
) -> (String, bool) {
    let script = format!(
        r#"
import socket
s = socket.socket(socket.AF_UNIX)
s.connect("{path}")
f = s.makefile("rwb")
def reply():
    lines = []
    while True:
        l = f.readline().decode().rstrip("\r\n")
        lines.append(l)
        if l[3:4] != "-":
            return lines
def cmd(c):
    f.write(c.encode() + b"\r\n"); f.flush()
    return reply()
greeting = reply()[0]
print(greeting)
if greeting.startswith("220"):
    cmd("EHLO unix")
    cmd("MAIL FROM:<{from}>")
    cmd("RCPT TO:<rcpt@example.test>")
    cmd("DATA")
    f.write(b"From: {from}\r\nTo: rcpt@example.test\r\nSubject: {subject}\r\n\r\nOver a unix socket.\r\n.\r\n"); f.flush()
    print(reply()[-1])
    cmd("QUIT")
"#,
        path = path.display()
    );
    let o = std::process::Command::new("setpriv")
        .args([
            "--reuid",
            uid,
            "--regid",
            uid,
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            &script,
        ])
        .output()
        .unwrap();
    let out = stdout(&o);
    let mut lines = out.lines();
    let greeting = lines
        .next()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("(nothing: {})", stderr(&o)));
    let taken = lines.next().is_some_and(|l| l.starts_with("250"));
    (greeting, taken)
}

#[test]
fn a_unix_socket_relay_lets_the_listed_local_users_in_without_a_login_and_no_one_else() {
    let m = mailserver();
    let login = unique_login("relay-users");
    let dir = tempfile::tempdir().unwrap();
    set_mode(dir.path(), 0o755);
    let socket = dir.path().join("smtp");
    // nobody (65534) is listed; daemon (1), a real second user, is not.
    let acct = relay_account(
        &login,
        Client::Native,
        &dovecot("smtp"),
        &format!(
            "smtp = \"{}\"\nauth = \"users\"\nusers = [65534]\n",
            socket.display()
        ),
    );
    let env = Env::with_file_store(&acct);
    assert_exit(&env.login("r", &login), 0);
    let _daemon = env.serve();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    // Bound and opened to other users (0666) once the daemon says it serves.
    use std::os::unix::fs::MetadataExt;
    while std::fs::metadata(&socket).map_or(true, |m| m.mode() & 0o777 != 0o666) {
        assert!(std::time::Instant::now() < deadline, "no relay socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let subject = format!("relay unix {login}");
    let (greeting, taken) = smtp_over_unix_as("65534", &socket, &login, &subject);
    assert!(greeting.starts_with("220"), "{greeting}");
    assert!(taken);
    assert!(
        m.wait_for_message(&subject, Duration::from_secs(10))
            .is_some()
    );
    let (greeting, taken) = smtp_over_unix_as("1", &socket, &login, &subject);
    assert_eq!(
        greeting,
        "554 5.7.1 this relay does not serve this local user"
    );
    assert!(!taken);
}

#[test]
fn a_relay_at_its_connection_limit_tells_the_next_client_to_come_back_later() {
    let login = unique_login("relay-limit");
    let port = free_port();
    let acct = relay_account(
        &login,
        Client::Native,
        &dovecot("smtp"),
        &format!("smtp = \"127.0.0.1:{port}\"\nmax_connections = 1\n"),
    );
    let env = Env::with_file_store(&acct);
    assert_exit(&env.login("r", &login), 0);
    let _daemon = env.serve();
    // The first client holds the only place (it waits for its greeting and stays).
    let (code, _) = python_greeting(port);
    assert_eq!(code, 220);
    let held = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&held), &mut first).unwrap();
    assert!(first.starts_with("220"), "{first}");
    let (code, text) = python_greeting(port);
    assert_eq!(code, 421, "{text}");
    assert!(text.contains("too many connections"), "{text}");
    drop(held);
}

#[test]
fn a_relay_without_a_login_by_uid_on_tcp_is_refused_in_the_config() {
    let env = Env::with_file_store(
        "[accounts.r]\nprovider = \"google\"\nuser = \"r@gmail.com\"\nclient_id = \"i\"\nclient_secret = \"s\"\n\
         [accounts.r.relay]\nsmtp = \"127.0.0.1:2587\"\nauth = \"users\"\nusers = [1000]\n",
    );
    let o = env.run(&["status"]);
    assert_exit(&o, 78);
    assert!(
        stderr(&o).contains("relay auth = \"users\" works on unix sockets only"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_app_password_account_is_relayed_with_plain_upstream() {
    use common::mailserver::{APP_PASSWORD_2, APP_USER_2};
    let m = mailserver();
    let port = free_port();
    // (localhost, APP_USER_2): the keyring pair no other test files an app password under.
    let env = Env::with_file_store(&format!(
        "[accounts.r]\nauth = \"password\"\nuser = \"{APP_USER_2}\"\nca_file = \"{}\"\n\
         smtp = {{ host = \"localhost\", port = {}, tls = \"starttls\" }}\n\
         [accounts.r.relay]\nsmtp = \"127.0.0.1:{port}\"\n",
        m.ca.display(),
        m.submission_port
    ));
    let o = run_with_stdin(
        env.cmd().args(["set-password", "r"]),
        &format!("{APP_PASSWORD_2}\n"),
    );
    assert_exit(&o, 0);
    let _daemon = env.serve();
    let pw = relay_password(&env);
    let subject = format!("relay app password {}", unique_login("x"));
    let o = msmtp_through(&env, port, APP_USER_2, Some(&pw), &subject);
    assert!(o.status.success(), "msmtp: {}", stderr(&o));
    assert!(
        m.wait_for_message(&subject, Duration::from_secs(10))
            .is_some()
    );
}
