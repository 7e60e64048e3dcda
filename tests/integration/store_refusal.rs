//! A store that refuses the tokens a refresh has just obtained (a full disk, a failing
//! store command, a locked keyring) must not lose the rotated refresh token, and must
//! not say "log in again" or notify as if the grant had been rejected. Against the real
//! authorization server, whose public clients rotate refresh tokens: reusing an old one
//! revokes the whole grant, so a lost rotation shows up as a dead account.

use crate::common;

use common::keyring::PrivateKeyring;
use common::mailtoken::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A world whose store is a pair of shell commands keeping `DIR/ACCOUNT.json`; the
/// write fails, as on a full disk, while `DIR/broken` exists.
fn command_store_world(account: &str, login: &str, client: Client, head: &str) -> (Env, PathBuf) {
    let env = Env::new("", "");
    let dir = env.dir.path().join("records");
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display();
    env.write_config(&format!(
        "timeout = \"10s\"\n{head}[store]\nkind = \"command\"\n\
         read = \"cat {d}/{{account}}.json 2>/dev/null || true\"\n\
         write = \"if [ -e {d}/broken ]; then echo 'write error: No space left on device' >&2; exit 1; fi; cat > {d}/{{account}}.json\"\n\
         {}",
        account_toml(account, login, client)
    ));
    (env, dir)
}

fn rescue_file(env: &Env, account: &str) -> PathBuf {
    env.dir
        .path()
        .join(format!("state/mailtoken/rescue/{account}.json"))
}

#[test]
fn a_store_that_refuses_the_rotated_tokens_loses_nothing_and_asks_for_no_login() {
    let login = unique_login("refused");
    let (env, dir) = command_store_world("a", &login, Client::Native, "");
    assert_exit(&env.login("a", &login), 0);
    let stored = dir.join("a.json");
    edit_json(&stored, expire_record);
    std::fs::write(dir.join("broken"), "").unwrap();

    // The refresh succeeds, the store refuses its result: the token is handed out, and
    // the user is told what is wrong with the store, not to log in.
    let o = env.run(&["token", "a"]);
    assert_exit(&o, 0);
    let token = stdout(&o).trim().to_owned();
    assert!(active(&token), "a working token was handed out");
    let e = stderr(&o);
    assert!(e.contains("could not be saved"), "{e}");
    assert!(e.contains("No space left on device"), "{e}");
    assert!(
        e.contains("kept in") && e.contains("no need to log in again"),
        "{e}"
    );
    assert!(!e.contains("mailtoken login"), "{e}");
    let rescue = rescue_file(&env, "a");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&rescue).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The next call is answered from the rescued tokens, without a request.
    let o = env.run(&["token", "a"]);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o).trim(), token);
    assert_eq!(stats(&login, "refresh_grants"), 1);
    let s = stdout(&env.run(&["status", "a"]));
    assert!(
        s.contains("not stored:") && s.contains(&rescue.display().to_string()),
        "{s}"
    );

    // The store works again; the next refresh uses the rotated refresh token (the old
    // one would revoke the grant), and the store takes the result.
    std::fs::remove_file(dir.join("broken")).unwrap();
    edit_json(&rescue, |v| expire_record(&mut v["accounts"]["a"]));
    let o = env.run(&["token", "a"]);
    assert_exit(&o, 0);
    let fresh = stdout(&o).trim().to_owned();
    assert_ne!(fresh, token);
    assert!(active(&fresh), "the grant survived: {}", stderr(&o));
    assert_eq!(stats(&login, "refresh_grants"), 2);
    assert!(
        !rescue.exists(),
        "the rescue record is gone once the store took the tokens"
    );
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stored).unwrap()).unwrap();
    assert_eq!(record["access_token"], fresh.as_str());
}

#[test]
fn the_daemon_keeps_tokens_the_store_refused_and_saves_them_when_it_can() {
    let login = unique_login("drefused");
    let dir_notes = tempfile::tempdir().unwrap();
    let notes = dir_notes.path().join("notes");
    let head = format!(
        "notify_cmd = 'echo \"$MAILTOKEN_REASON\" >> {}'\n",
        notes.display()
    );
    let (env, dir) = command_store_world("d", &login, Client::NativeShort, &head);
    assert_exit(&env.login("d", &login), 0);
    std::fs::write(dir.join("broken"), "").unwrap();
    let daemon = env.serve();
    // The tokens live 6 s: the refresher refreshes every 3 s or so, each time into a
    // store that refuses the result.
    let end = Instant::now() + Duration::from_secs(8);
    while Instant::now() < end {
        let o = env.run(&["token", "d"]);
        assert_exit(&o, 0);
        assert!(active(stdout(&o).trim()));
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(stats(&login, "refresh_grants") >= 2, "{}", daemon.log());
    let j: serde_json::Value =
        serde_json::from_str(&stdout(&env.run(&["status", "--json"]))).unwrap();
    assert_eq!(j[0]["state"], "valid", "{j}");
    let unsaved = j[0]["unsaved"].as_str().unwrap_or_default();
    assert!(unsaved.contains("No space left on device"), "{j}");
    assert!(!notes.exists(), "nobody is told to log in");

    // The store works again: the daemon's next save (a retry or a refresh) lands.
    std::fs::remove_file(dir.join("broken")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let j: serde_json::Value =
            serde_json::from_str(&stdout(&env.run(&["status", "--json"]))).unwrap();
        if j[0].get("unsaved").is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still unsaved: {j}\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    drop(daemon);
    // Without the daemon, the stored refresh token is the live one.
    edit_json(&dir.join("d.json"), expire_record);
    let o = env.run(&["token", "d"]);
    assert_exit(&o, 0);
    assert!(active(stdout(&o).trim()), "{}", stderr(&o));
    assert!(!rescue_file(&env, "d").exists());
}

/// The keyring locked under a running daemon (a screen lock, `seahorse`): the daemon
/// cannot read the store to refresh. That is a store to unlock, not a grant to renew:
/// no "log in again", no notification, and once the keyring is unlocked (here by a new
/// gnome-keyring taking over, which also ends the daemon's Secret Service session) the
/// daemon refreshes again by itself.
#[test]
fn a_locked_keyring_under_the_daemon_is_a_store_to_unlock_not_a_login_to_redo() {
    let keyring = PrivateKeyring::start();
    let login = unique_login("locked");
    let notes = tempfile::tempdir().unwrap();
    let notes = notes.path().join("notes");
    let mut env = Env::new(
        &format!(
            "timeout = \"10s\"\nnotify_cmd = 'echo \"$MAILTOKEN_REASON\" >> {}'\n[store]\nkind = \"keyring\"\n",
            notes.display()
        ),
        &account_toml("k", &login, Client::NativeShort),
    );
    env.bus = Some(keyring.bus.clone());
    assert_exit(&env.login("k", &login), 0);
    let daemon = env.serve();
    assert_exit(&env.run(&["token", "k"]), 0);
    keyring.lock();
    // The tokens live 6 s: within a few seconds the refresher meets the lock.
    let deadline = Instant::now() + Duration::from_secs(15);
    let row = loop {
        let j: serde_json::Value =
            serde_json::from_str(&stdout(&env.run(&["status", "--json"]))).unwrap();
        if j[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("keyring is locked"))
        {
            break j[0].clone();
        }
        assert!(Instant::now() < deadline, "{j}\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_ne!(row["state"], "needs_login", "{row}");
    // Once the access token has expired, a caller is told to unlock, not to log in.
    std::thread::sleep(Duration::from_secs(7));
    let o = env.run(&["token", "k"]);
    assert_exit(&o, 77);
    let e = stderr(&o);
    assert!(
        e.contains("keyring is locked") && e.contains("Unlock"),
        "{e}"
    );
    assert!(!e.contains("mailtoken login"), "{e}");
    assert!(!notes.exists(), "nobody was told to log in");

    keyring.unlock();
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let o = env.run(&["token", "k"]);
        if o.status.success() {
            assert!(active(stdout(&o).trim()));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no token after the unlock: {}\n{}",
            stderr(&o),
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(!notes.exists());
}
