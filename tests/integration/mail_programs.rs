//! The real mail programs from Debian, configured by exactly what `mailtoken setup`
//! prints, with mailtoken as their only source of credentials, against the real
//! authorization server and the private Dovecot that scripts/test starts.

use crate::common;

use common::mailserver::mailserver;
use common::mailtoken::*;
use common::programs::{message, msmtp_send, setup};
use mailtoken::setup::shell_quote;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// A logged-in account `name` whose SMTP (and IMAP) servers are the test Dovecot's.
fn world(name: &str, client: Client, smtp_port: u16, smtp_tls: &str, imap: &str) -> (Env, String) {
    let m = mailserver();
    let login = unique_login(name);
    let acct = account_toml(name, &login, client)
        + &format!(
            "ca_file = \"{}\"\nsmtp = {{ host = \"127.0.0.1\", port = {smtp_port}, tls = \"{smtp_tls}\" }}\n{imap}",
            m.ca.display()
        );
    let env = Env::with_file_store(&acct);
    assert_exit(&env.login(name, &login), 0);
    (env, login)
}

#[test]
fn msmtp_sends_with_xoauth2_over_starttls_and_again_after_the_token_expired() {
    let m = mailserver();
    let (env, login) = world("ms", Client::NativeShort, m.submission_port, "starttls", "");
    let rc = env.dir.path().join("msmtprc");
    let text = setup(&env, &["msmtp", "ms"], &rc);
    assert!(
        text.contains("auth xoauth2") && text.contains("tls_starttls on"),
        "{text}"
    );
    let tag = format!("xoauth2-starttls {login}");
    msmtp_send(&env, &rc, "ms", &login, &tag);
    // The access token lives 6 s at this client: past it, msmtp's passwordeval gets a
    // refreshed one from mailtoken and the message still goes out.
    let first = env.stored("ms")["access_token"].clone();
    std::thread::sleep(Duration::from_secs(7));
    msmtp_send(&env, &rc, "ms", &login, &format!("after expiry {login}"));
    assert_ne!(env.stored("ms")["access_token"], first, "refreshed");
}

#[test]
fn msmtp_sends_with_oauthbearer_over_implicit_tls() {
    let m = mailserver();
    let (env, login) = world("mo", Client::Native, m.submissions_port, "implicit", "");
    let rc = env.dir.path().join("msmtprc");
    let text = setup(&env, &["msmtp", "mo", "--mechanism", "oauthbearer"], &rc);
    assert!(
        text.contains("auth oauthbearer") && text.contains("tls_starttls off"),
        "{text}"
    );
    msmtp_send(
        &env,
        &rc,
        "mo",
        &login,
        &format!("oauthbearer-implicit {login}"),
    );
}

#[test]
fn neomutt_sends_and_reads_the_inbox_over_imap_with_xoauth2() {
    let m = mailserver();
    let imap = format!(
        "imap = {{ host = \"127.0.0.1\", port = {}, tls = \"implicit\" }}\n",
        m.imaps_port
    );
    let (env, login) = world("nm", Client::Native, m.submission_port, "starttls", &imap);
    let rc = env.dir.path().join("neomuttrc");
    let text = setup(&env, &["neomutt", "nm"], &rc);
    assert!(
        text.contains("set imap_authenticators = \"xoauth2\""),
        "{text}"
    );

    // Send without a terminal, as scripts do.
    let subject = format!("neomutt-send {login}");
    let mut c = env.program("neomutt");
    c.args(["-n", "-F"])
        .arg(&rc)
        .args(["-s", &subject, "--", "rcpt@example.test"]);
    let o = run_with_stdin(&mut c, "Sent by neomutt in the mailtoken test suite.\n");
    assert!(
        o.status.success(),
        "neomutt send: {}{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(
        m.wait_for_message(&subject, Duration::from_secs(10))
            .is_some(),
        "neomutt's message did not arrive"
    );

    // Read: a message is put in the INBOX; neomutt opens the INBOX over IMAP (on a
    // pseudo-terminal from script(1)) and pipes the first message to a file.
    let unique = format!("inbox-check {login}");
    m.deliver_to_inbox(&login, &message("sender@example.test", &unique));
    let out = env.dir.path().join("piped.txt");
    let keys = format!("push '<pipe-message>cat > {}<enter><quit>'", out.display());
    let cmd = format!(
        "neomutt -n -F {} -e \"set pipe_decode=no wait_key=no\" -e \"{}\"",
        shell_quote(rc.to_str().unwrap()),
        keys
    );
    let mut c = env.program("script");
    c.args(["-qec", &cmd, "/dev/null"]).env("TERM", "xterm");
    let o = run_with_timeout(c, Duration::from_secs(30));
    let got = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(
        got.contains(&unique),
        "neomutt did not read the message over IMAP: {got:?}\n{}{}",
        stdout(&o),
        stderr(&o)
    );
}

fn run_with_timeout(mut c: Command, limit: Duration) -> Output {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn mbsync_syncs_the_inbox_with_xoauth2_through_the_cyrus_plugin() {
    let m = mailserver();
    // isync checks certificates against DNS names only, so the host is `localhost`
    // (in the test certificate's names).
    let imap = format!(
        "imap = {{ host = \"localhost\", port = {}, tls = \"implicit\" }}\n",
        m.imaps_port
    );
    let (env, login) = world("mb", Client::Native, m.submission_port, "starttls", &imap);
    let rc = env.dir.path().join("mbsyncrc");
    let text = setup(&env, &["mbsync", "mb"], &rc);
    assert!(text.contains("AuthMechs XOAUTH2"), "{text}");
    let unique = format!("mbsync-check {login}");
    m.deliver_to_inbox(&login, &message("sender@example.test", &unique));
    // The snippet keeps mail under ~/Mail/mb; HOME is the test world's directory.
    std::fs::create_dir_all(env.dir.path().join("Mail/mb")).unwrap();
    let mut c = env.program("mbsync");
    c.arg("-c").arg(&rc).arg("mb");
    let o = run_with_timeout(c, Duration::from_secs(30));
    assert!(o.status.success(), "mbsync: {}{}", stdout(&o), stderr(&o));
    let inbox = env.dir.path().join("Mail/mb/INBOX");
    let found = ["new", "cur"].iter().any(|d| {
        std::fs::read_dir(inbox.join(d)).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(&unique)))
        })
    });
    assert!(
        found,
        "the message is not in {}: {}{}",
        inbox.display(),
        stdout(&o),
        stderr(&o)
    );
}

#[test]
fn msmtp_sends_as_the_mailbox_with_an_app_only_token() {
    let (env, app) = app_env("msmtp-app", None);
    let rc = env.dir.path().join("msmtprc");
    let text = setup(&env, &["msmtp", "app"], &rc);
    assert!(text.contains("auth xoauth2"), "{text}");
    msmtp_send(
        &env,
        &rc,
        "app",
        &app.mailbox,
        &format!("app-only {}", app.mailbox),
    );
}
