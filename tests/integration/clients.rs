//! The mail programs whose `setup` blocks no other test runs: mutt 2.2 and aerc 0.14
//! from Debian, and himalaya from the Rust registry when it is installed (it takes
//! minutes to build: scripts/test builds it only with MAILTOKEN_TEST_HIMALAYA=1). Each
//! is configured by exactly the block `mailtoken setup` prints, sends through the test
//! Dovecot and lists its INBOX, driven in a real terminal (tmux) where it is a screen
//! program.

use crate::common;

use common::mailserver::mailserver;
use common::mailtoken::*;
use common::programs::{message, setup};
use common::tmux::Tmux;
use std::path::Path;
use std::time::Duration;

/// A logged-in account `name` on the test Dovecot: IMAPS and submission (STARTTLS), on
/// `localhost` (in the server certificate).
fn world(name: &str) -> (Env, String) {
    let m = mailserver();
    let login = unique_login(name);
    let acct = account_toml(name, &login, Client::Native)
        + &format!(
            "ca_file = \"{}\"\nimap = {{ host = \"localhost\", port = {}, tls = \"implicit\" }}\n\
             smtp = {{ host = \"localhost\", port = {}, tls = \"starttls\" }}\n",
            m.ca.display(),
            m.imaps_port,
            m.submission_port
        );
    let env = Env::with_file_store(&acct);
    assert_exit(&env.login(name, &login), 0);
    (env, login)
}

#[test]
fn mutt_sends_and_lists_the_inbox_with_xoauth2() {
    let (env, login) = world("mutt");
    let m = mailserver();
    let rc = env.dir.path().join("muttrc");
    let text = setup(&env, &["mutt", "mutt"], &rc);
    assert!(
        text.contains("set imap_authenticators = \"xoauth2\""),
        "{text}"
    );

    let subject = format!("mutt-send {login}");
    let mut c = env.program("mutt");
    c.args(["-n", "-F"])
        .arg(&rc)
        .args(["-s", &subject, "--", "rcpt@example.test"]);
    let o = run_with_stdin(&mut c, "Sent by mutt in the mailtoken test suite.\n");
    assert!(
        o.status.success(),
        "mutt send: {}{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(
        m.wait_for_message(&subject, Duration::from_secs(10))
            .is_some(),
        "mutt's message did not arrive"
    );

    let unique = format!("mutt-inbox {login}");
    m.deliver_to_inbox(&login, &message("sender@example.test", &unique));
    let cmd = format!(
        "mutt -n -F {}",
        mailtoken::setup::shell_quote(rc.to_str().unwrap())
    );
    let t = Tmux::start(&env, &cmd, None);
    t.wait_for(&unique, Duration::from_secs(30));
    t.type_line("q");
}

#[test]
fn aerc_lists_the_inbox_and_sends_with_xoauth2() {
    let (env, login) = world("aerc");
    let m = mailserver();
    let conf = env.dir.path().join("config/aerc/accounts.conf");
    let text = setup(&env, &["aerc", "aerc"], &conf);
    assert!(text.contains("source = imaps+xoauth2://"), "{text}");
    let unique = format!("aerc-inbox {login}");
    m.deliver_to_inbox(&login, &message("sender@example.test", &unique));
    // aerc trusts the system's CA store; Go reads SSL_CERT_FILE for it (the block's
    // comment says how to add the CA for good).
    let subject = format!("aerc-send {login}");
    let cmd = format!(
        "SSL_CERT_FILE={} EDITOR=true aerc 'mailto:rcpt@example.test?subject={}'",
        m.ca.display(),
        subject.replace(' ', "%20").replace('@', "%40")
    );
    let t = Tmux::start(&env, &cmd, None);
    // The composer's editor (`true`) returns at once; aerc asks what to do with it.
    t.wait_for("Send this email?", Duration::from_secs(30));
    t.type_line("y");
    assert!(
        m.wait_for_message(&subject, Duration::from_secs(20))
            .is_some(),
        "aerc's message did not arrive:\n{}",
        t.screen()
    );
    t.wait_for(&unique, Duration::from_secs(30));
}

/// himalaya 2.2, if the suite was given one (`cargo install --locked himalaya`).
fn himalaya() -> Option<String> {
    let p = std::env::var("MAILTOKEN_TEST_HIMALAYA_BIN").ok()?;
    Path::new(&p).is_file().then_some(p)
}

#[test]
fn himalaya_lists_the_inbox_and_sends_with_xoauth2() {
    let Some(bin) = himalaya() else {
        // scripts/test says on its output whether himalaya was built; the README says
        // why it is not by default.
        assert!(
            std::env::var("MAILTOKEN_TEST_HIMALAYA").as_deref() != Ok("1"),
            "MAILTOKEN_TEST_HIMALAYA=1 but no himalaya binary in MAILTOKEN_TEST_HIMALAYA_BIN"
        );
        return;
    };
    let (env, login) = world("hima");
    let m = mailserver();
    let conf = env.dir.path().join("config/himalaya/config.toml");
    let text = setup(&env, &["himalaya", "hima"], &conf);
    let unique = format!("himalaya-inbox {login}");
    m.deliver_to_inbox(&login, &message("sender@example.test", &unique));
    let mut c = env.program(&bin);
    c.env("SSL_CERT_FILE", &m.ca)
        .args(["-c"])
        .arg(&conf)
        .args(["envelope", "list", "-a", "hima"]);
    let o = c.output().unwrap();
    assert!(
        stdout(&o).contains(&unique),
        "himalaya envelope list: {}{}\nconfig:\n{text}",
        stdout(&o),
        stderr(&o)
    );
    let subject = format!("himalaya-send {login}");
    let mut c = env.program(&bin);
    c.env("SSL_CERT_FILE", &m.ca)
        .args(["-c"])
        .arg(&conf)
        .args(["message", "send", "-a", "hima"]);
    let o = run_with_stdin(
        &mut c,
        &format!("From: {login}\r\nTo: rcpt@example.test\r\nSubject: {subject}\r\n\r\nhello\r\n"),
    );
    assert!(
        o.status.success(),
        "himalaya message send: {}{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(
        m.wait_for_message(&subject, Duration::from_secs(10))
            .is_some()
    );
}
