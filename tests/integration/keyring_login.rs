//! The whole path through a real Secret Service (gnome-keyring under dbus-run-session,
//! set up by scripts/test): login stores the tokens in the keyring, `token` reads them
//! back, `logout` removes them. With no `[store]` table the keyring is chosen because it
//! answers.

use crate::common;

use common::authserver;
use common::mailtoken::*;

fn require_secret_service() {
    assert_eq!(
        std::env::var("MAILTOKEN_TEST_SECRET_SERVICE").as_deref(),
        Ok("1"),
        "this test needs a real Secret Service: run scripts/test, which starts gnome-keyring under dbus-run-session"
    );
}

#[test]
fn login_token_and_logout_through_the_real_keyring() {
    require_secret_service();
    let login = unique_login("keyring");
    let env = Env::new(
        "timeout = \"10s\"\n[store]\nkind = \"keyring\"\n",
        &account_toml("k", &login, Client::NativeShort),
    );
    let o = env.login("k", &login);
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("keyring"), "{}", stderr(&o));
    assert!(!env.tokens_path().exists(), "nothing in the file store");

    let o = env.run(&["token", "k"]);
    assert_exit(&o, 0);
    let t1 = stdout(&o);
    assert_eq!(
        rt().block_on(authserver::introspect(t1.trim()))["active"],
        true
    );

    // Past half the short lifetime: refreshed, and the rotated refresh token is written
    // back to the keyring (the next refresh would fail otherwise).
    for _ in 0..2 {
        std::thread::sleep(std::time::Duration::from_millis(4200));
        let o = env.run(&["token", "k"]);
        assert_exit(&o, 0);
        assert_eq!(
            rt().block_on(authserver::introspect(stdout(&o).trim()))["active"],
            true
        );
    }
    assert_eq!(
        rt().block_on(authserver::stats(&login))["refresh_grants"],
        2
    );

    let s = stdout(&env.run(&["status", "k"]));
    assert!(s.contains("store:") && s.contains("keyring"), "{s}");
    assert_exit(&env.run(&["logout", "k"]), 0);
    let o = env.run(&["token", "k"]);
    assert_exit(&o, 77);
}

#[test]
fn without_a_store_table_the_answering_keyring_is_used() {
    require_secret_service();
    let login = unique_login("auto");
    let env = Env::new(
        "timeout = \"10s\"\n",
        &account_toml("a", &login, Client::Native),
    );
    let o = env.login("a", &login);
    assert_exit(&o, 0);
    assert!(
        !stderr(&o).contains("no keyring answered"),
        "{}",
        stderr(&o)
    );
    assert!(!env.tokens_path().exists());
    assert_exit(&env.run(&["token", "a"]), 0);
    assert_exit(&env.run(&["logout", "a"]), 0);
}
