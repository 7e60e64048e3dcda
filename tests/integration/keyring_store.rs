//! The keyring store against a real Secret Service (gnome-keyring on a private D-Bus
//! session). Set MAILTOKEN_TEST_SECRET_SERVICE=1 to run it; without it the tests fail, so
//! that a run without a keyring never looks like a pass. `scripts/test` sets it up:
//!
//! ```sh
//! tmp=$(mktemp -d); XDG_DATA_HOME=$tmp/data XDG_RUNTIME_DIR=$tmp/run MAILTOKEN_TEST_SECRET_SERVICE=1 \
//!   dbus-run-session -- sh -c 'mkdir -p -m 700 "$XDG_RUNTIME_DIR";
//!     printf %s test-password | gnome-keyring-daemon --unlock --components=secrets >/dev/null;
//!     cargo test --test integration keyring_store'
//! ```
#![cfg(all(
    unix,
    not(any(target_os = "macos", target_os = "ios", target_os = "android"))
))]

use mailtoken::error::ExitCode;
use mailtoken::record::TokenRecord;
use mailtoken::secret::Secret;
use mailtoken::store::keyring::KeyringStore;
use mailtoken::store::{self, StoreConfig, StoreKind, TokenStore};
use std::time::Instant;

fn require_secret_service() {
    if std::env::var_os("MAILTOKEN_TEST_SECRET_SERVICE").is_none() {
        panic!(
            "this test needs a real Secret Service; run it under dbus-run-session with an unlocked \
             gnome-keyring and MAILTOKEN_TEST_SECRET_SERVICE=1 (see the top of tests/integration/keyring_store.rs, \
             or run scripts/test)"
        );
    }
}

/// An account name of this test run, so that runs against a shared keyring never collide.
fn account(name: &str) -> String {
    format!("{name}-{}@test.invalid", std::process::id())
}

fn record(refresh_token: String) -> TokenRecord {
    TokenRecord {
        refresh_token: Some(Secret::new(refresh_token)),
        access_token: Some(Secret::new("ya29.access")),
        expires_at: Some(4600),
        obtained_at: 1000,
        logged_in_at: 900,
        scopes: vec!["https://mail.google.com/".into()],
        ..Default::default()
    }
}

#[test]
fn save_load_delete_round_trip() {
    require_secret_service();
    let store =
        KeyringStore::open(mailtoken::store::command::DEFAULT_TIMEOUT).expect("the keyring opens");
    let alice = account("alice");
    // Real refresh tokens are up to ~1.5 KiB (Microsoft); go well beyond.
    let long: String = (0..8192)
        .map(|i| char::from(b'A' + (i % 26) as u8))
        .collect();
    assert_eq!(store.load(&alice).unwrap(), None);
    store.save(&alice, &record(long.clone())).unwrap();
    assert_eq!(store.load(&alice).unwrap(), Some(record(long)));
    // Saving again replaces the entry instead of adding a second one.
    store.save(&alice, &record("rotated".into())).unwrap();
    assert_eq!(store.load(&alice).unwrap(), Some(record("rotated".into())));
    assert!(store.delete(&alice).unwrap());
    assert!(!store.delete(&alice).unwrap());
    assert_eq!(store.load(&alice).unwrap(), None);
}

#[test]
fn auto_chooses_the_keyring_when_it_answers() {
    require_secret_service();
    let opened = store::open(&StoreConfig {
        kind: StoreKind::Auto,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(opened.store.describe(), "keyring (Secret Service)");
    assert!(opened.notice.is_none());
}

#[test]
fn a_value_that_is_not_a_record_is_a_data_error() {
    use keyring_core::api::CredentialStoreApi;
    require_secret_service();
    let bob = account("bob");
    // Written behind the store's back, as another program might.
    let raw = zbus_secret_service_keyring_store::Store::new().unwrap();
    raw.build("mailtoken", &bob, None)
        .unwrap()
        .set_password("ya29.not-json")
        .unwrap();
    let store = KeyringStore::open(mailtoken::store::command::DEFAULT_TIMEOUT).unwrap();
    let err = store.load(&bob).unwrap_err();
    assert_eq!(err.code, ExitCode::DataErr);
    let shown = err.to_string();
    assert!(shown.contains(&format!("user \"{bob}\"")), "{shown}");
    assert!(!shown.contains("ya29"), "{shown}");
    assert!(store.delete(&bob).unwrap());
}

/// `mailtoken token` opens the store and loads one record on every call of a mail
/// program; this prints how long that takes (debug build) for the record.
#[test]
fn open_and_load_are_quick() {
    require_secret_service();
    let carol = account("carol");
    KeyringStore::open(mailtoken::store::command::DEFAULT_TIMEOUT)
        .unwrap()
        .save(&carol, &record("x".repeat(1500)))
        .unwrap();
    let mut times = Vec::new();
    for _ in 0..10 {
        let start = Instant::now();
        let store = KeyringStore::open(mailtoken::store::command::DEFAULT_TIMEOUT).unwrap();
        assert!(store.load(&carol).unwrap().is_some());
        times.push(start.elapsed());
    }
    times.sort();
    eprintln!(
        "open+load: min {:?}, median {:?}, max {:?}",
        times[0], times[5], times[9]
    );
    KeyringStore::open(mailtoken::store::command::DEFAULT_TIMEOUT)
        .unwrap()
        .delete(&carol)
        .unwrap();
}

/// Runs test `name` of this binary again as the child, under a private bus that
/// `dbus-run-session ARGS` starts, and checks that it passed.
fn run_child_under_bus(name: &str, dbus_args: &[&str], env: &[(&str, &std::path::Path)]) {
    let exe = std::env::current_exe().unwrap();
    // `timeout`: a D-Bus client waits forever for a reply the bus never sends.
    let mut cmd = std::process::Command::new("timeout");
    cmd.args(["60", "dbus-run-session"])
        .args(dbus_args)
        .arg("--")
        .arg(exe)
        .args(["--exact", &format!("keyring_store::{name}"), "--nocapture"]);
    cmd.env("MAILTOKEN_KEYRING_CHILD", name);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("dbus-run-session runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "the child failed:\n{text}"
    );
}

fn is_child(name: &str) -> bool {
    std::env::var("MAILTOKEN_KEYRING_CHILD").is_ok_and(|c| c == name)
}

/// A session bus on which nothing provides org.freedesktop.secrets: `auto` falls back to
/// the file store with a notice, `keyring` fails with EX_UNAVAILABLE.
#[test]
fn without_a_secret_service_auto_falls_back_to_the_file() {
    const NAME: &str = "without_a_secret_service_auto_falls_back_to_the_file";
    if is_child(NAME) {
        let opened = store::open(&StoreConfig::default()).unwrap();
        assert!(
            opened.store.describe().starts_with("file "),
            "{}",
            opened.store.describe()
        );
        let notice = opened.notice.unwrap();
        assert!(
            notice.contains("no Secret Service on the session bus"),
            "{notice}"
        );
        let err = KeyringStore::open(mailtoken::store::command::DEFAULT_TIMEOUT)
            .err()
            .unwrap();
        assert_eq!(err.code, ExitCode::Unavailable);
        assert!(err.remedy.unwrap().contains("kind = \"file\""));
        return;
    }
    require_secret_service();
    let dir = tempfile::tempdir().unwrap();
    // A bus config without any service directory, so nothing can be activated.
    let conf = dir.path().join("bus.conf");
    std::fs::write(&conf, crate::common::keyring::NO_ACTIVATION_BUS).unwrap();
    let conf_arg = format!("--config-file={}", conf.display());
    run_child_under_bus(NAME, &[&conf_arg], &[("XDG_STATE_HOME", dir.path())]);
}

/// gnome-keyring started by D-Bus activation with no unlocked login collection (a
/// headless login): reads find nothing, and a save is refused as "locked" (EX_NOPERM).
#[test]
fn a_locked_keyring_refuses_saves_with_noperm() {
    const NAME: &str = "a_locked_keyring_refuses_saves_with_noperm";
    if is_child(NAME) {
        let store = KeyringStore::open(mailtoken::store::command::DEFAULT_TIMEOUT).unwrap();
        assert_eq!(store.load("alice").unwrap(), None);
        let err = store.save("alice", &record("rt".into())).unwrap_err();
        assert_eq!(err.code, ExitCode::NoPerm, "{err}");
        assert!(err.message.starts_with("the keyring is locked"), "{err}");
        return;
    }
    require_secret_service();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    run_child_under_bus(
        NAME,
        &[],
        &[
            ("XDG_DATA_HOME", &dir.path().join("data")),
            ("XDG_RUNTIME_DIR", &run),
        ],
    );
}
