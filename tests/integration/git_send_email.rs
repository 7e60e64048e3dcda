//! `mailtoken git-credential` driven by the real git, and git send-email delivering a
//! patch, configured as integrations/git-send-email/README.md says, against the real
//! authorization server and the private Dovecot that scripts/test starts.
//!
//! Git is Debian's (`/usr/bin/git`, installed by scripts/test with git-email); the
//! `git credential` tests also run every other git found first on PATH (say one built
//! from source), since the protocol grew keys (`password_expiry_utc` in 2.41,
//! `capability[]` in 2.46) that the helper must take in stride.

use crate::common;

use common::mailserver::mailserver;
use common::mailtoken::*;
use mailtoken::setup::shell_quote;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A git binary and its version (major, minor).
#[derive(Clone, Debug)]
struct Git {
    path: PathBuf,
    version: (u32, u32),
    text: String,
}

impl Git {
    fn at(path: PathBuf) -> Option<Git> {
        let o = Command::new(&path).arg("--version").output().ok()?;
        let text = String::from_utf8_lossy(&o.stdout).trim().to_owned();
        let mut nums = text
            .strip_prefix("git version ")?
            .split(['.', ' '])
            .map(|n| n.parse::<u32>().unwrap_or(0));
        Some(Git {
            version: (nums.next()?, nums.next()?),
            path,
            text,
        })
    }
}

/// Debian's git first, then the first git on PATH when it is another one.
fn gits() -> Vec<Git> {
    let mut found: Vec<Git> = Vec::new();
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("git"))
            .find(|g| g.is_file())
    });
    for candidate in [Some(PathBuf::from("/usr/bin/git")), on_path]
        .into_iter()
        .flatten()
    {
        let Ok(real) = candidate.canonicalize() else {
            continue;
        };
        if found.iter().any(|g| g.path == real) {
            continue;
        }
        if let Some(g) = Git::at(real) {
            found.push(g);
        }
    }
    assert!(
        !found.is_empty(),
        "no git: run scripts/test, which installs Debian's git and git-email"
    );
    found
}

/// A POSIX shell word.
/// The helper as integrations/git-send-email/README.md writes it, with the built binary.
fn helper() -> String {
    format!("!{} git-credential", shell_quote(BIN))
}

/// `git ARGS` in the test world: its mailtoken environment (config, state, runtime
/// dir, HOME), a private global git config, no system config, no prompts.
fn git(env: &Env, g: &Git) -> Command {
    let mut c = env.program(&g.path);
    for k in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_CONFIG",
        "GIT_CONFIG_PARAMETERS",
        "GIT_CONFIG_COUNT",
        "GIT_ASKPASS",
        "SSH_ASKPASS",
        "EMAIL",
    ] {
        c.env_remove(k);
    }
    c.env("GIT_CONFIG_GLOBAL", env.dir.path().join("gitconfig"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null());
    c
}

/// `git config --global ARGS` (into the world's private global config).
fn git_config(env: &Env, g: &Git, args: &[&str]) {
    let o = git(env, g)
        .arg("config")
        .arg("--global")
        .args(args)
        .output()
        .unwrap();
    assert_exit(&o, 0);
}

/// The README's credential lines for `smtp://HOST:PORT`: reset any general helper for
/// that URL, then ask mailtoken.
fn credential_helper_for(env: &Env, g: &Git, host: &str, port: u16) {
    let key = format!("credential.smtp://{host}:{port}.helper");
    git_config(env, g, &[&key, ""]);
    git_config(env, g, &["--add", &key, &helper()]);
}

/// `key=value` lines into pairs (repeated keys kept).
fn pairs(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn value<'a>(p: &'a [(String, String)], key: &str) -> Option<&'a str> {
    p.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn token(env: &Env, account: &str) -> String {
    let o = env.run(&["token", account]);
    assert_exit(&o, 0);
    stdout(&o).trim().to_owned()
}

/// An account on the test Dovecot's SMTP submission server under the name `host`.
fn account(name: &str, login: &str, host: &str, port: u16, tls: &str) -> String {
    account_toml(name, login, Client::Native)
        + &format!(
            "ca_file = \"{}\"\nsmtp = {{ host = \"{host}\", port = {port}, tls = \"{tls}\" }}\n",
            mailserver().ca.display()
        )
}

/// Two logged-in accounts: `a` on 127.0.0.1 (STARTTLS submission) and `b` on
/// localhost (implicit TLS submissions), each with its own user.
fn two_accounts(tag: &str) -> (Env, String, String) {
    let m = mailserver();
    let (la, lb) = (
        unique_login(&format!("{tag}-a")),
        unique_login(&format!("{tag}-b")),
    );
    let env = Env::with_file_store(
        &(account("a", &la, "127.0.0.1", m.submission_port, "starttls")
            + &account("b", &lb, "localhost", m.submissions_port, "implicit")),
    );
    assert_exit(&env.login("a", &la), 0);
    assert_exit(&env.login("b", &lb), 0);
    (env, la, lb)
}

#[test]
fn git_credential_fill_gives_the_right_accounts_user_and_token() {
    let m = mailserver();
    let (env, la, lb) = two_accounts("gitcred-fill");
    let store_file = env.dir.path().join("git-credentials");
    for g in gits() {
        std::fs::remove_file(env.dir.path().join("gitconfig")).ok();
        // A general helper that keeps whatever it is given, as many people have: the
        // README's empty `helper =` line must keep the token away from it.
        git_config(
            &env,
            &g,
            &[
                "credential.helper",
                &format!(
                    "store --file={}",
                    shell_quote(&store_file.to_string_lossy())
                ),
            ],
        );
        credential_helper_for(&env, &g, "127.0.0.1", m.submission_port);
        credential_helper_for(&env, &g, "localhost", m.submissions_port);
        let new_protocol = g.version >= (2, 41);
        // Newer callers announce capabilities; git passes them on to the helper.
        let caps = if g.version >= (2, 46) {
            "capability[]=authtype\ncapability[]=state\n"
        } else {
            ""
        };
        for (host, port, login, name) in [
            ("127.0.0.1", m.submission_port, &la, "a"),
            ("localhost", m.submissions_port, &lb, "b"),
        ] {
            let what = format!("{} asking for smtp://{host}:{port}", g.text);
            let input = format!("{caps}protocol=smtp\nhost={host}:{port}\n\n");
            let o = run_with_stdin(git(&env, &g).args(["credential", "fill"]), &input);
            assert_exit(&o, 0);
            let p = pairs(&stdout(&o));
            assert_eq!(value(&p, "username"), Some(login.as_str()), "{what}");
            assert_eq!(
                value(&p, "password"),
                Some(token(&env, name).as_str()),
                "{what}"
            );
            if new_protocol {
                let expiry: u64 = value(&p, "password_expiry_utc")
                    .unwrap_or_else(|| panic!("{what}: no password_expiry_utc in {p:?}"))
                    .parse()
                    .unwrap();
                assert!(expiry > now() + 300, "{what}: expiry {expiry} is not ahead");
                // The stored expiry, read on the clock as it is now: the boot clock's
                // rounding may take up to a second off (record.rs, `clock_setback`).
                let stored = env.stored(name)["expires_at"].as_u64().unwrap();
                assert!(
                    (stored - 1..=stored).contains(&expiry),
                    "{what}: expiry {expiry}, stored {stored}"
                );
            }
            // The same with the user given, as send-email does with sendemail.smtpUser.
            let input = format!("protocol=smtp\nhost={host}:{port}\nusername={login}\n\n");
            let o = run_with_stdin(git(&env, &g).args(["credential", "fill"]), &input);
            assert_exit(&o, 0);
            assert_eq!(value(&pairs(&stdout(&o)), "username"), Some(login.as_str()));
            assert!(stderr(&o).is_empty(), "{what}: {}", stderr(&o));

            // What git does after a login that worked, and after one that failed: the
            // helper keeps nothing and forgets nothing.
            let filled = stdout(&o);
            for op in ["approve", "reject", "approve"] {
                let o = run_with_stdin(git(&env, &g).args(["credential", op]), &filled);
                assert_exit(&o, 0);
            }
            assert_eq!(
                env.stored(name)["access_token"].as_str(),
                value(&pairs(&filled), "password")
            );
        }
        // The token went nowhere else: not into the general helper's file.
        let kept = std::fs::read_to_string(&store_file).unwrap_or_default();
        assert!(
            !kept.contains(&token(&env, "a")) && !kept.contains(&token(&env, "b")),
            "{}: the store helper got the token: {kept}",
            g.text
        );

        // a's server with b's user: no account fits, git is told nothing (and, with
        // prompts off, gives up), the reason is on stderr.
        let input = format!(
            "protocol=smtp\nhost=127.0.0.1:{}\nusername={lb}\n\n",
            m.submission_port
        );
        let o = run_with_stdin(git(&env, &g).args(["credential", "fill"]), &input);
        assert_ne!(o.status.code(), Some(0), "{}", stdout(&o));
        assert!(stdout(&o).is_empty(), "{}", stdout(&o));
        assert!(
            stderr(&o).contains(&format!(
                "mailtoken: no account on the server of smtp://{lb}@127.0.0.1:{} has user `{lb}` (accounts there: a ({la}))",
                m.submission_port
            )),
            "{}",
            stderr(&o)
        );
    }
    // Both tokens still work at the server after all the approving and rejecting.
    for name in ["a", "b"] {
        let o = env.run(&["verify", name, "--smtp"]);
        assert_exit(&o, 0);
    }
}

#[test]
fn git_credential_get_through_the_daemon_and_when_not_logged_in() {
    let m = mailserver();
    let (env, la, _) = two_accounts("gitcred-daemon");
    let g = gits().remove(0);
    credential_helper_for(&env, &g, "127.0.0.1", m.submission_port);
    let input = format!("protocol=smtp\nhost=127.0.0.1:{}\n\n", m.submission_port);
    let daemon = env.serve();
    let served = token(&env, "a");
    // The daemon holds the token in memory now; without the store, only it can answer.
    std::fs::remove_file(env.tokens_path()).unwrap();
    let o = run_with_stdin(git(&env, &g).args(["credential", "fill"]), &input);
    assert_exit(&o, 0);
    let p = pairs(&stdout(&o));
    assert_eq!(value(&p, "username"), Some(la.as_str()));
    assert_eq!(value(&p, "password"), Some(served.as_str()));
    // The helper itself also says when the token expires, through the daemon too.
    let o = run_with_stdin(env.cmd().args(["git-credential", "get"]), &input);
    assert_exit(&o, 0);
    let expiry: u64 = value(&pairs(&stdout(&o)), "password_expiry_utc")
        .unwrap()
        .parse()
        .unwrap();
    assert!(expiry > now() + 300, "{expiry}");
    drop(daemon);

    // Without the daemon and with nothing stored: the usual "log in" error, exit 77,
    // on stderr only; git shows it and carries on without a password.
    let o = run_with_stdin(env.cmd().args(["git-credential", "get"]), &input);
    assert_exit(&o, 77);
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("no token for a") && stderr(&o).contains("mailtoken login a"),
        "{}",
        stderr(&o)
    );
    let o = run_with_stdin(git(&env, &g).args(["credential", "fill"]), &input);
    assert_ne!(o.status.code(), Some(0));
    assert!(stdout(&o).is_empty());
    assert!(stderr(&o).contains("mailtoken login a"), "{}", stderr(&o));
}

#[test]
fn git_credential_stays_out_of_the_way_when_no_account_fits() {
    let m = mailserver();
    let shared = |name: &str| {
        account(
            name,
            &format!("{name}@example.test"),
            "127.0.0.1",
            m.submission_port,
            "starttls",
        )
    };
    let env = Env::with_file_store(&(shared("x") + &shared("y")));
    let get = |input: &str| run_with_stdin(env.cmd().args(["git-credential", "get"]), input);
    // Two accounts on one server and no user: nothing on stdout, exit 0, one line why.
    let o = get(&format!(
        "protocol=smtp\nhost=127.0.0.1:{}\n\n",
        m.submission_port
    ));
    assert_exit(&o, 0);
    assert!(stdout(&o).is_empty());
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with(&format!(
            "mailtoken: 2 accounts have the server of smtp://127.0.0.1:{}: x (x@example.test), y (y@example.test);",
            m.submission_port
        )),
        "{}",
        stderr(&o)
    );
    // No account on that server.
    let o = get("protocol=smtp\nhost=smtp.example.org:587\nusername=x@example.test\n");
    assert_exit(&o, 0);
    assert!(stdout(&o).is_empty());
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(
        stderr(&o)
            .contains("no account has the server of smtp://x@example.test@smtp.example.org:587")
    );
    // Not mail at all (a general helper is asked about every https remote): silence.
    let o = get("protocol=https\nhost=127.0.0.1\npath=repo.git\n\n");
    assert_exit(&o, 0);
    assert!(
        stdout(&o).is_empty() && stderr(&o).is_empty(),
        "{}",
        stderr(&o)
    );
    // store, erase and operations from later gits: read, nothing done, nothing said.
    for op in ["store", "erase", "something-new"] {
        let o = run_with_stdin(
            env.cmd().args(["git-credential", op]),
            "protocol=smtp\nhost=127.0.0.1\nusername=x@example.test\npassword=p\n\n",
        );
        assert_exit(&o, 0);
        assert!(
            stdout(&o).is_empty() && stderr(&o).is_empty(),
            "{op}: {}",
            stderr(&o)
        );
    }
}

/// A repository with one commit whose subject is `subject`; returns the patch file
/// `git format-patch -1` made of it.
fn one_patch(env: &Env, g: &Git, subject: &str) -> PathBuf {
    let repo = env.dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let in_repo = |args: &[&str]| {
        let o = git(env, g).current_dir(&repo).args(args).output().unwrap();
        assert_exit(&o, 0);
        stdout(&o)
    };
    in_repo(&["init", "-q"]);
    std::fs::write(repo.join("hello.txt"), "hello from mailtoken's tests\n").unwrap();
    in_repo(&["add", "hello.txt"]);
    in_repo(&["commit", "-q", "-m", subject]);
    let out = in_repo(&["format-patch", "-1", "-o", "patches"]);
    repo.join(out.trim())
}

/// What `mailtoken setup CLIENT ACCOUNT` prints, as the README tells people to use it.
fn setup(env: &Env, client: &str, account: &str) -> String {
    let o = env.run(&["setup", client, account]);
    assert_exit(&o, 0);
    stdout(&o)
}

/// msmtp's config for `account` from `mailtoken setup msmtp` (XOAUTH2, the account's
/// server and `ca_file`, the built binary's absolute path in `passwordeval`).
fn msmtprc(env: &Env, account: &str) -> PathBuf {
    let rc = env.dir.path().join("msmtprc");
    std::fs::write(&rc, setup(env, "msmtp", account)).unwrap();
    // msmtp wants its config private.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    rc
}

fn common_git_config(env: &Env, g: &Git, login: &str) {
    git_config(env, g, &["user.name", "Mailtoken Test"]);
    git_config(env, g, &["user.email", login]);
}

#[test]
fn git_send_email_delivers_a_patch_through_msmtp() {
    let m = mailserver();
    let g = gits().remove(0);
    let login = unique_login("gitsend-msmtp");
    let env = Env::with_file_store(&account(
        "work",
        &login,
        "127.0.0.1",
        m.submission_port,
        "starttls",
    ));
    assert_exit(&env.login("work", &login), 0);
    common_git_config(&env, &g, &login);
    let rc = msmtprc(&env, "work");
    let text = std::fs::read_to_string(&rc).unwrap();
    // XOAUTH2 with STARTTLS on the submission port, the test CA, the built binary.
    let has = |key: &str, part: &str| {
        text.lines()
            .any(|l| l.starts_with(&format!("{key} ")) && l.contains(part))
    };
    assert!(has("auth", "xoauth2"), "{text}");
    assert!(has("port", &m.submission_port.to_string()), "{text}");
    assert!(has("tls_starttls", "on"), "{text}");
    assert!(has("tls_trust_file", &m.ca.to_string_lossy()), "{text}");
    assert!(has("passwordeval", &format!("{BIN} token work")), "{text}");
    git_config(
        &env,
        &g,
        &[
            "sendemail.sendmailCmd",
            &format!(
                "msmtp --file={} -a work",
                shell_quote(&rc.to_string_lossy())
            ),
        ],
    );
    let subject = format!("gitcred test patch {}", unique_login("subject"));
    let patch = one_patch(&env, &g, &subject);
    let rcpt = "maintainer@example.test";
    let o = git(&env, &g)
        .args(["send-email", "--to", rcpt, "--confirm=never", "--quiet"])
        .arg(&patch)
        .output()
        .unwrap();
    assert_exit(&o, 0);
    let got = m
        .wait_for_message(&subject, Duration::from_secs(20))
        .unwrap_or_else(|| panic!("the patch did not arrive; Dovecot:\n{}", m.log_tail(20)));
    assert!(got.contains(&format!("X-Sink-Rcpt-To: <{rcpt}>")), "{got}");
    assert!(
        got.contains(&format!("X-Sink-Mail-From: <{login}>")),
        "{got}"
    );
    assert!(got.contains("+hello from mailtoken's tests"), "{got}");
    assert!(!got.contains(&token(&env, "work")));
}

/// Whether this machine's Perl Authen::SASL has XOAUTH2 (2.1800 and later).
fn perl_has_xoauth2() -> bool {
    Command::new("perl")
        .args(["-MAuthen::SASL::Perl::XOAUTH2", "-e1"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn git_send_email_native_xoauth2_asks_the_helper_for_smtp_host_port() {
    let m = mailserver();
    let g = gits().remove(0);
    let login = unique_login("gitsend-native");
    let env = Env::with_file_store(&account(
        "work",
        &login,
        "127.0.0.1",
        m.submission_port,
        "starttls",
    ));
    assert_exit(&env.login("work", &login), 0);
    common_git_config(&env, &g, &login);
    let port = m.submission_port;
    // The snippet of `mailtoken setup git-send-email`, with its helper behind a shell
    // function that notes what git asked, and the test CA.
    let snippet = setup(&env, "git-send-email", "work");
    for line in [
        "\tsmtpServer = 127.0.0.1".to_owned(),
        format!("\tsmtpServerPort = {port}"),
        "\tsmtpEncryption = tls".to_owned(),
        format!("\tsmtpUser = {login}"),
        "\tsmtpAuth = XOAUTH2".to_owned(),
        format!("[credential \"smtp://127.0.0.1:{port}\"]"),
        "\thelper =".to_owned(),
    ] {
        assert!(
            snippet.lines().any(|l| l == line),
            "no `{line}` in:\n{snippet}"
        );
    }
    let helper_line = format!("\thelper = \"!{} git-credential\"", shell_quote(BIN));
    assert!(
        snippet.contains(&helper_line),
        "no `{helper_line}` in:\n{snippet}"
    );
    let log = env.dir.path().join("helper.log");
    let logging = format!(
        "!f() {{ tee -a {} | {} git-credential \"$@\"; }}; f",
        shell_quote(&log.to_string_lossy()),
        shell_quote(BIN)
    );
    let global = env.dir.path().join("gitconfig");
    let mut config = std::fs::read_to_string(&global).unwrap_or_default();
    config += &snippet.replace(
        &helper_line,
        &format!(
            "\thelper = \"{}\"",
            logging.replace('\\', "\\\\").replace('"', "\\\"")
        ),
    );
    std::fs::write(&global, config).unwrap();
    git_config(
        &env,
        &g,
        &["sendemail.smtpSSLCertPath", &m.ca.to_string_lossy()],
    );
    let subject = format!("gitcred native patch {}", unique_login("subject"));
    let patch = one_patch(&env, &g, &subject);
    let o = git(&env, &g)
        .args([
            "send-email",
            "--to",
            "maintainer@example.test",
            "--confirm=never",
            "--quiet",
        ])
        .arg(&patch)
        .output()
        .unwrap();
    // What send-email asked: protocol smtp, host with the port, the user.
    let asked = std::fs::read_to_string(&log).unwrap_or_default();
    let first = asked.split("\n\n").next().unwrap_or_default();
    let p = pairs(first);
    assert_eq!(value(&p, "protocol"), Some("smtp"), "{asked}");
    assert_eq!(
        value(&p, "host"),
        Some(format!("127.0.0.1:{port}").as_str()),
        "{asked}"
    );
    assert_eq!(value(&p, "username"), Some(login.as_str()), "{asked}");
    if perl_has_xoauth2() {
        assert_exit(&o, 0);
        assert!(
            m.wait_for_message(&subject, Duration::from_secs(20))
                .is_some()
        );
    } else {
        // Debian 12's Authen::SASL 2.1600: the trap the README describes. git then
        // rejects the credential, which must not cost the login.
        assert_ne!(o.status.code(), Some(0));
        assert!(
            stderr(&o).contains("No SASL mechanism found"),
            "{}",
            stderr(&o)
        );
        let o = env.run(&["verify", "work", "--smtp"]);
        assert_exit(&o, 0);
    }
}
