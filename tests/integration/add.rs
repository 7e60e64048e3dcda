//! `mailtoken add ADDRESS`, as a new user runs it, against the test domains of
//! tests/discovery/start.sh (a real dnsmasq and an HTTPS server with autoconfig files,
//! both started once by scripts/test), the real authorization server, the private
//! Dovecot, gnome-keyring and msmtp. The interactive path is typed into a real terminal
//! (tmux).

use crate::common;

use common::authserver::{self, Browser, Decision};
use common::mailserver::mailserver;
use common::mailtoken::*;
use common::programs::{msmtp_send, write_private};
use common::tmux::Tmux;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

fn dns() -> String {
    std::env::var("MAILTOKEN_TEST_DNS").expect(
        "MAILTOKEN_TEST_DNS is not set: run scripts/test, which starts the test domains' DNS server (tests/discovery/start.sh)",
    )
}

/// dnsmasq's log of the queries it answered.
fn dns_log() -> String {
    let dir = std::env::var("DISCOVERY_DIR").expect("DISCOVERY_DIR (scripts/test)");
    std::fs::read_to_string(Path::new(&dir).join("dns.log")).unwrap_or_default()
}

/// `mailtoken add ARGS... --dns TEST_DNS --ca-file TEST_CA`, stdin `input` (a pipe).
fn add(env: &Env, args: &[&str], input: &str) -> Output {
    let ca = mailserver().ca;
    let mut c = env.cmd();
    c.arg("add")
        .args(args)
        .args(["--dns", &dns()])
        .arg("--ca-file")
        .arg(&ca);
    run_with_stdin(&mut c, input)
}

fn config_text(env: &Env) -> String {
    std::fs::read_to_string(env.config_path()).unwrap()
}

/// A world with no config file, nor its directory.
fn fresh() -> Env {
    let env = Env::new("", "");
    std::fs::remove_dir_all(env.config_path().parent().unwrap()).unwrap();
    env
}

fn msmtp_sends(env: &Env, rc_text: &str, account: &str, from: &str) {
    let rc = env.dir.path().join("msmtprc");
    write_private(&rc, rc_text);
    let subject = format!("sent after mailtoken add {from} {}", std::process::id());
    msmtp_send(env, &rc, account, from, &subject);
}

#[test]
fn add_finds_google_workspace_behind_a_custom_domain_by_its_mx_record() {
    let env = fresh();
    let o = add(
        &env,
        &[
            "alice@gws.test",
            "--client-id",
            "1234-abc.apps.googleusercontent.com",
            "--client-secret-cmd",
            "pass show google/client-secret",
            "--no-login",
            "--store",
            "file",
        ],
        "",
    );
    assert_exit(&o, 0);
    let err = stderr(&o);
    assert!(
        err.contains("gws.test: Gmail / Google Workspace (the MX record of gws.test names aspmx.l.google.com)"),
        "{err}"
    );
    assert!(
        dns_log().contains("query[MX] gws.test"),
        "the answer came from the test DNS server"
    );
    let text = config_text(&env);
    assert!(
        text.starts_with("[accounts.alice]\nprovider = \"google\"\nuser = \"alice@gws.test\"\n"),
        "{text}"
    );
    assert!(text.contains("client_secret_cmd = \"pass show google/client-secret\"\n"));
    assert!(text.contains("[store]\nkind = \"file\"\n"));
    // A new file and its directory, private.
    assert_eq!(mode(&env.config_path()), 0o600);
    assert_eq!(mode(env.config_path().parent().unwrap()), 0o700);
    assert!(err.contains("Next: `mailtoken login alice`"), "{err}");
    // The account it wrote is the one `status` reads.
    assert_exit(&env.run(&["status", "alice"]), 0);
}

#[test]
fn add_finds_microsoft_365_behind_a_custom_domain_and_the_login_goes_to_its_tenant() {
    let env = Env::with_file_store("");
    let o = add(
        &env,
        &[
            "bob@m365.test",
            "work",
            "--client-id",
            "00000000-1111-2222-3333-444444444444",
            "--no-login",
        ],
        "",
    );
    assert_exit(&o, 0);
    let err = stderr(&o);
    assert!(
        err.contains("Outlook.com / Microsoft 365 (the MX record of m365.test names m365-test.mail.protection.outlook.com)"),
        "{err}"
    );
    let text = config_text(&env);
    assert!(
        text.contains("[accounts.work]\nprovider = \"microsoft\"\n"),
        "{text}"
    );
    assert!(text.contains("tenant = \"m365.test\"\n"), "{text}");
    // The login it leads to: Microsoft's endpoint for that tenant, with the client.
    let (mut child, url, _rest) = env.start_login(&["work", "--no-browser", "--timeout", "10s"]);
    let _ = child.kill();
    assert!(
        url.starts_with("https://login.microsoftonline.com/m365.test/oauth2/v2.0/authorize?"),
        "{url}"
    );
    assert!(
        url.contains("client_id=00000000-1111-2222-3333-444444444444"),
        "{url}"
    );
}

#[test]
fn add_with_srv_records_only_keeps_the_app_password_in_the_keyring_and_msmtp_sends() {
    let env = Env::with_file_store("");
    let o = add(
        &env,
        &[
            "add@srv.test",
            "srvacct",
            "--password-stdin",
            "--client",
            "msmtp",
        ],
        "add-pass-word-9012\n",
    );
    assert_exit(&o, 0);
    let err = stderr(&o);
    let m = mailserver();
    assert!(
        err.contains(&format!(
            "IMAP server: localhost:{} (the SRV record _imaps._tcp.srv.test (RFC 6186))",
            m.imaps_port
        )),
        "{err}"
    );
    assert!(
        err.contains("Stored the app password of srvacct in the"),
        "{err}"
    );
    // verify logged in for real, with the stored password.
    for (p, port) in [
        ("IMAP", m.imaps_port),
        ("POP3", m.pop3s_port),
        ("SMTP", m.submissions_port),
    ] {
        assert!(
            err.contains(&format!("  {p} localhost:{port}: logged in with PLAIN")),
            "{err}"
        );
    }
    let text = config_text(&env);
    assert!(text.contains("auth = \"password\""), "{text}");
    assert!(
        text.contains(&format!(
            "smtp = {{ host = \"localhost\", port = {}, tls = \"implicit\" }}",
            m.submissions_port
        )),
        "{text}"
    );
    assert!(
        !text.contains("add-pass-word"),
        "the password is in the keyring, not the config"
    );
    msmtp_sends(&env, &stdout(&o), "srvacct", "add@srv.test");
    assert_exit(&env.run(&["logout", "srvacct"]), 0);
}

#[test]
fn add_reads_the_domains_well_known_autoconfig_file() {
    let env = Env::with_file_store("");
    let o = add(
        &env,
        &["add@wk.test", "wk", "--password-stdin"],
        "add-pass-word-3456\n",
    );
    assert_exit(&o, 0);
    let err = stderr(&o);
    assert!(
        err.contains(
            "autoconfig https://wk.test/.well-known/autoconfig/mail/config-v1.1.xml: 2 server(s)"
        ),
        "{err}"
    );
    let m = mailserver();
    assert!(
        config_text(&env).contains(&format!(
            "smtp = {{ host = \"localhost\", port = {}, tls = \"starttls\" }}",
            m.submission_port
        )),
        "{}",
        config_text(&env)
    );
    // Without a terminal and without --client, the way to the settings is named.
    assert!(err.contains("mailtoken setup msmtp wk"), "{err}");
    assert_exit(&env.run(&["logout", "wk"]), 0);
}

#[test]
fn add_dry_run_uses_the_ispdb_and_changes_nothing() {
    let head = "# my accounts\n\n[accounts.old]   # keep me\nauth = \"password\"\nuser = \"o@example.test\"\nsmtp = { host = \"smtp.example.test\" ,port=465 }\n";
    let env = Env::new("", head);
    let before = std::fs::metadata(env.config_path())
        .unwrap()
        .modified()
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let o = add(&env, &["someone@ispdb.test", "--dry-run"], "");
    assert_exit(&o, 0);
    let err = stderr(&o);
    assert!(
        err.contains("autoconfig https://autoconfig.thunderbird.net/v1.1/ispdb.test: 2 server(s)"),
        "{err}"
    );
    assert!(
        err.contains("Would add to") && err.contains("[accounts.someone]"),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(config_text(&env), head);
    assert_eq!(
        std::fs::metadata(env.config_path())
            .unwrap()
            .modified()
            .unwrap(),
        before
    );
}

#[test]
fn add_explains_a_domain_with_nothing_to_find_and_how_to_spell_the_servers_out() {
    let env = Env::with_file_store("");
    let before = config_text(&env);
    let o = add(&env, &["x@none.test", "--client-id", "c"], "");
    assert_exit(&o, 69);
    let err = stderr(&o);
    for want in [
        "MX records of none.test: none",
        "autoconfig https://autoconfig.none.test/mail/config-v1.1.xml: cannot connect (autoconfig.none.test does not exist in DNS)",
        "autoconfig https://autoconfig.thunderbird.net/v1.1/none.test: HTTP 404",
        // A "." target: the service is decidedly not offered (RFC 6186 §3.4).
        "SRV _imap._tcp.none.test: none",
        "found no mail servers for none.test",
        "--imap HOST[:PORT] --smtp HOST[:PORT]",
        "--dns HOST:PORT",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert_eq!(config_text(&env), before);
    // Spelled out as the message says, it goes on to a mail program that sends.
    let m = mailserver();
    let (imap, smtp) = (
        format!("localhost:{}", m.imaps_port),
        format!("localhost:{}", m.submissions_port),
    );
    let o = add(
        &env,
        &[
            "add@none.test",
            "none",
            "--imap",
            &imap,
            "--smtp",
            &smtp,
            "--auth",
            "password",
            "--password-stdin",
            "--client",
            "msmtp",
        ],
        "add-pass-word-7890\n",
    );
    assert_exit(&o, 0);
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "IMAP localhost:{} (implicit TLS), from --imap",
            m.imaps_port
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "  SMTP localhost:{}: logged in with PLAIN",
            m.submissions_port
        )),
        "{err}"
    );
    msmtp_sends(&env, &stdout(&o), "none", "add@none.test");
    assert_exit(&env.run(&["logout", "none"]), 0);
}

#[test]
fn add_keeps_every_byte_of_the_config_and_refuses_a_second_account_of_the_same_name() {
    let head = "# Accounts of mine   (odd spacing kept)\ntimeout   =  \"10s\"\n\n[store]\nkind = \"file\"   # no keyring here\n\n\n[accounts.old]\nprovider=\"fastmail\"\nuser = 'o@fastmail.com'\n# trailing comment, no newline at the end";
    let env = Env::new("", head);
    std::fs::set_permissions(env.config_path(), std::fs::Permissions::from_mode(0o640)).unwrap();
    let args = [
        "carol@gws.test",
        "mine",
        "--client-id",
        "id-1",
        "--client-secret-cmd",
        "echo s",
        "--no-login",
    ];
    let o = add(&env, &args, "");
    assert_exit(&o, 0);
    let text = config_text(&env);
    assert!(text.starts_with(head), "every old byte stays:\n{text}");
    assert_eq!(&text[head.len()..head.len() + 2], "\n\n");
    assert!(
        text[head.len()..].starts_with("\n\n[accounts.mine]\nprovider = \"google\""),
        "{text}"
    );
    // The config already chose its store: add leaves that alone.
    assert!(!text[head.len()..].contains("[store]"), "{text}");
    assert_eq!(mode(&env.config_path()), 0o640, "the file keeps its mode");
    // The block shown is the block written.
    assert!(
        stderr(&o).contains(&text[head.len() + 2..]),
        "{}",
        stderr(&o)
    );

    let o = add(&env, &args, "");
    assert_exit(&o, 64);
    assert!(
        stderr(&o).contains("already has an account named mine"),
        "{}",
        stderr(&o)
    );
    assert_eq!(config_text(&env), text, "a refused add changes nothing");

    // A config that does not load is named at its line and column, and stays as it is.
    env.write_config("[accounts.x]\nuser = \"a\"\nbogus = = 1\n");
    let o = add(
        &env,
        &["dave@gws.test", "--client-id", "i", "--no-login"],
        "",
    );
    assert_exit(&o, 78);
    assert!(stderr(&o).contains("config.toml:3:"), "{}", stderr(&o));
}

#[test]
fn add_without_a_terminal_never_prompts_and_names_the_missing_flag() {
    let env = Env::with_file_store("");
    let before = config_text(&env);
    let o = add(&env, &["erin@gws.test", "--no-login"], "");
    assert_exit(&o, 64);
    let err = stderr(&o);
    assert!(err.contains("mailtoken add needs OAuth client ID"), "{err}");
    assert!(err.contains("--client-id"), "{err}");
    let o = add(
        &env,
        &["erin@gws.test", "--client-id", "x", "--no-login"],
        "",
    );
    assert_exit(&o, 64);
    assert!(stderr(&o).contains("--client-secret-cmd"), "{}", stderr(&o));
    let o = add(&env, &["add@srv.test", "--no-login"], "");
    assert_exit(&o, 64);
    assert!(stderr(&o).contains("--password-stdin"), "{}", stderr(&o));
    assert_eq!(config_text(&env), before);
}

#[test]
fn add_write_puts_the_settings_into_the_programs_config_once_with_a_backup() {
    let env = Env::with_file_store("");
    let base = config_text(&env);
    let msmtprc = env.dir.path().join(".msmtprc");
    std::fs::write(&msmtprc, "# mine\ndefaults\ntls on\n").unwrap();
    let run = |user: &str| {
        add(
            &env,
            &[
                "fay@gws.test",
                "fay",
                "--user",
                user,
                "--client-id",
                "id",
                "--client-secret-cmd",
                "echo s",
                "--no-login",
                "--client",
                "msmtp",
                "--write",
            ],
            "",
        )
    };
    let o = run("fay@gws.test");
    assert_exit(&o, 0);
    assert!(
        stderr(&o).contains("Added the settings to"),
        "{}",
        stderr(&o)
    );
    let one = std::fs::read_to_string(&msmtprc).unwrap();
    assert!(
        one.starts_with("# mine\ndefaults\ntls on\n\n# >>> mailtoken account fay >>>\n"),
        "{one}"
    );
    assert!(one.contains("account fay\n"), "{one}");
    assert_eq!(
        std::fs::read_to_string(env.dir.path().join(".msmtprc.mailtoken-backup")).unwrap(),
        "# mine\ndefaults\ntls on\n"
    );
    // The account is added again (after it was removed from mailtoken's config) with
    // another login name: its block is replaced, not repeated.
    env.write_config(&base);
    let o = run("fay.other@gws.test");
    assert_exit(&o, 0);
    assert!(
        stderr(&o).contains("Replaced this account's earlier settings"),
        "{}",
        stderr(&o)
    );
    let two = std::fs::read_to_string(&msmtprc).unwrap();
    assert_eq!(
        two.matches("# >>> mailtoken account fay >>>").count(),
        1,
        "{two}"
    );
    assert_eq!(two.matches("\naccount fay\n").count(), 1, "{two}");
    assert!(
        two.contains("fay.other@gws.test") && !two.contains("user fay@gws.test"),
        "{two}"
    );
    assert_eq!(
        std::fs::read_to_string(env.dir.path().join(".msmtprc.mailtoken-backup.1")).unwrap(),
        one
    );
    // The same settings a third time: nothing to change, no backup.
    env.write_config(&base);
    let o = run("fay.other@gws.test");
    assert_exit(&o, 0);
    assert!(
        stderr(&o).contains("already has these settings"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_to_string(&msmtprc).unwrap(), two);
    assert!(!env.dir.path().join(".msmtprc.mailtoken-backup.2").exists());
}

/// A "browser" for the terminal test: `xdg-open URL` writes the URL to a file, where the
/// test picks it up and plays the person at the authorization server's pages.
fn browser_dir(env: &Env) -> (PathBuf, PathBuf) {
    let bin = env.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let url_file = env.dir.path().join("browser-url");
    let script = bin.join("xdg-open");
    std::fs::write(
        &script,
        format!("#!/bin/sh\n# the test's browser: hands the URL to the test\nprintf '%s\\n' \"$1\" > {}.tmp && mv {0}.tmp {0}\n", url_file.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (bin, url_file)
}

#[test]
fn add_on_a_terminal_goes_from_an_address_to_msmtp_sending_in_a_few_answers() {
    let env = Env::with_file_store("");
    let local = unique_login("tty").split('@').next().unwrap().to_owned();
    let login = format!("{local}@auto.test");
    let (bin, url_file) = browser_dir(&env);
    let setup = env.dir.path().join("setup.txt");
    let cmd = format!(
        "{BIN} add {login} --dns {} --ca-file {} > {}",
        dns(),
        mailserver().ca.display(),
        setup.display()
    );
    let t = Tmux::start(&env, &cmd, Some(&bin));
    let long = Duration::from_secs(30);
    let s = t.wait_for("Account name (for mailtoken and the mail program) [", long);
    assert!(
        s.contains("OAuth endpoints: ") && s.contains("(the issuer's metadata)"),
        "{s}"
    );
    t.type_line(""); // Enter: the suggested name
    t.wait_for("OAuth client ID:", long);
    t.type_line(authserver::NATIVE_CLIENT);
    t.wait_for("OAuth client secret (Enter for none) (not shown):", long);
    t.type_line("");
    // The browser opens: log in and allow, as a person would.
    let deadline = std::time::Instant::now() + long;
    let url = loop {
        if let Ok(u) = std::fs::read_to_string(&url_file) {
            break u.trim().to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no browser was opened:\n{}",
            t.screen()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let redirect = rt()
        .block_on(Browser::new().authorize(&url, &login, Decision::Approve))
        .unwrap();
    assert!(
        rt().block_on(reqwest::get(redirect.as_str()))
            .unwrap()
            .status()
            .is_success()
    );
    let s = t.wait_for("Which mail program shall I print the settings for", long);
    assert!(s.contains(&format!("Logged in {local}")), "{s}");
    t.type_line(""); // Enter: msmtp
    let (code, s) = t.wait_exit(long);
    assert_eq!(code, 0, "{s}");
    for p in ["IMAP", "POP3", "SMTP"] {
        assert!(
            s.contains(&format!("  {p} localhost:")) && s.contains("logged in with XOAUTH2"),
            "{s}"
        );
    }
    let rc = std::fs::read_to_string(&setup).unwrap();
    assert!(rc.contains(&format!("account {local}")), "{rc}");
    let text = config_text(&env);
    assert!(
        text.contains(&format!("client_id = \"{}\"", authserver::NATIVE_CLIENT)),
        "{text}"
    );
    assert!(
        text.contains("auth_params = { prompt = \"consent\" }"),
        "{text}"
    );
    msmtp_sends(&env, &rc, &local, &login);
}

#[test]
fn add_on_a_terminal_keeps_a_typed_client_secret_off_the_screen() {
    let env = Env::with_file_store("");
    let cmd = format!(
        "{BIN} add gina@gws.test --no-login --dns {} --ca-file {}",
        dns(),
        mailserver().ca.display()
    );
    let t = Tmux::start(&env, &cmd, None);
    let long = Duration::from_secs(30);
    t.wait_for(
        "Account name (for mailtoken and the mail program) [gina]:",
        long,
    );
    t.type_line("");
    let s = t.wait_for("OAuth client ID:", long);
    // Google's registration, step by step, with its links, before the question.
    assert!(
        s.contains("1. Open https://console.cloud.google.com/")
            && s.contains("4. Clients > Create client > Desktop app"),
        "{s}"
    );
    t.type_line("9876-xyz.apps.googleusercontent.com");
    t.wait_for("OAuth client secret (not shown):", long);
    t.type_line("GOCSPX-typed-secret-4711");
    t.wait_for("Which mail program shall I print the settings for", long);
    t.type_line("neomutt");
    let (code, s) = t.wait_exit(long);
    assert!(s.contains("set imap_authenticators = \"xoauth2\""), "{s}");
    assert_eq!(code, 0, "{s}");
    assert!(
        !s.contains("typed-secret-4711"),
        "the secret was echoed or shown:\n{s}"
    );
    assert!(
        s.contains("client_secret = \"(as typed; not shown)\""),
        "{s}"
    );
    let text = config_text(&env);
    assert!(
        text.contains("client_secret = \"GOCSPX-typed-secret-4711\""),
        "{text}"
    );
    assert!(
        text.contains("client_id = \"9876-xyz.apps.googleusercontent.com\""),
        "{text}"
    );
}

#[test]
fn add_with_a_preset_writes_only_the_servers_given_as_flags() {
    let env = Env::with_file_store("");
    let o = add(
        &env,
        &[
            "hal@gws.test",
            "--provider",
            "google",
            "--smtp",
            "smtp-relay.gmail.com:587",
            "--client-id",
            "i",
            "--client-secret-cmd",
            "true",
            "--no-login",
        ],
        "",
    );
    assert_exit(&o, 0);
    let err = stderr(&o);
    assert!(
        err.contains("Provider: Gmail / Google Workspace (--provider)")
            && !err.contains("Looking up"),
        "{err}"
    );
    let text = config_text(&env);
    assert!(
        text.contains("smtp = { host = \"smtp-relay.gmail.com\", port = 587, tls = \"starttls\" }"),
        "{text}"
    );
    assert!(
        !text.contains("imap ="),
        "the preset's own IMAP server is not written out: {text}"
    );
}
