//! Many mail programs asking at once: 50 `mailtoken token` processes started together on
//! an expired token cause exactly one refresh at the real authorization server, and all
//! 50 print the same, valid token.

use crate::common;

use common::authserver;
use common::mailtoken::*;

#[test]
fn fifty_processes_on_an_expired_token_cause_exactly_one_refresh() {
    let login = unique_login("burst");
    let env = Env::with_file_store(&account_toml("c", &login, Client::Native));
    assert_exit(&env.login("c", &login), 0);
    env.expire("c");

    let outputs = env.run_concurrently(50, &["token", "c"]);
    for o in &outputs {
        assert_exit(o, 0);
    }
    let first = stdout(&outputs[0]);
    assert!(
        outputs.iter().all(|o| stdout(o) == first),
        "all 50 print the same token"
    );
    let stats = rt().block_on(authserver::stats(&login));
    assert_eq!(stats["refresh_grants"], 1, "{stats}");
    assert_eq!(
        rt().block_on(authserver::introspect(first.trim()))["active"],
        true
    );
    assert_eq!(
        env.stored("c")["access_token"].as_str().unwrap(),
        first.trim()
    );
}
