//! A token endpoint that answers slowly for minutes: slow answers within the timeout
//! (the real authorization server behind [`Gate`], each answer held for seconds), then
//! answers later than the timeout (a FAKE endpoint behind the gate: a real server will
//! not hang on demand; and the real server's answers held past the timeout). No caller
//! waits longer than the timeout (or its `--wait`), no expired token is ever printed,
//! the endpoint is not flooded, and nothing is lost: an answer that comes after the
//! callers were told so is still stored, with the daemon and without it.

use crate::common;

use common::authserver;
use common::fake;
use common::gate::Gate;
use common::mailtoken::*;
use std::time::{Duration, Instant};

#[test]
fn answers_seconds_late_hold_no_caller_past_the_timeout_and_every_token_printed_is_valid() {
    let login = unique_login("slow");
    let gate = Gate::start(&authserver::issuer());
    // 6-second access tokens, rotating refresh tokens; every token request through the
    // gate.
    let account = gate.account("a", &login, Client::NativeShort);
    let env = Env::with_file_store(&account);
    assert_exit(&env.login("a", &login), 0);
    let daemon = env.serve();
    // From now on each answer of the server waits 4 s: under the 10 s timeout, longer
    // than the 3 s of life a token has left when the daemon refreshes it ahead.
    gate.set_delay(Duration::from_secs(4));
    let start = Instant::now();
    let mut latencies = Vec::new();
    let mut tokens = std::collections::BTreeSet::new();
    while start.elapsed() < Duration::from_secs(40) {
        let t = Instant::now();
        let o = env.run(&["token", "a", "--min-valid", "1s"]);
        let took = t.elapsed();
        assert_exit(&o, 0);
        let token = stdout(&o).trim().to_owned();
        // Checked at the server at once: valid when printed.
        assert!(
            active(&token),
            "an expired token was printed after {took:?}\n{}",
            daemon.log()
        );
        assert!(
            took < Duration::from_secs(12),
            "a caller waited {took:?}, past the 10 s timeout"
        );
        latencies.push(took);
        tokens.insert(token);
        std::thread::sleep(Duration::from_millis(250));
    }
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    eprintln!(
        "{} calls in 40 s against 4 s answers: median {:?}, p90 {:?}, max {:?}; {} tokens; {} refreshes",
        latencies.len(),
        p(0.5),
        p(0.9),
        p(1.0),
        tokens.len(),
        stats(&login, "refresh_grants")
    );
    // Refreshes went on (several tokens), one at a time: at most one per 4-second answer.
    let refreshes = stats(&login, "refresh_grants");
    assert!(tokens.len() >= 3, "{tokens:?}");
    assert!(refreshes <= 40 / 4 + 1, "{refreshes} refreshes in 40 s");
    // The rotated refresh tokens were all kept: the grant lives.
    gate.set_delay(Duration::ZERO);
    std::thread::sleep(Duration::from_secs(7));
    let o = env.run(&["token", "a", "--min-valid", "1s"]);
    assert_exit(&o, 0);
    let last = stdout(&o).trim().to_owned();
    assert!(active(&last), "{}", daemon.log());
    assert!(
        !tokens.contains(&last),
        "a refresh after the slow minute worked"
    );
}

#[test]
fn answers_later_than_the_timeout_give_a_prompt_failure_and_the_late_answer_is_served() {
    // A FAKE endpoint (fresh tokens, no rotation) behind the gate, which holds each
    // answer 20 s while the 3 s timeout runs out (a real server will not hang on
    // demand; the rotating case with the real server is the next test).
    let endpoint = fake::outage_endpoint();
    endpoint.set_down(false);
    let gate = Gate::start(endpoint.url.trim_end_matches("/token"));
    gate.set_delay(Duration::from_secs(20));
    let env = fake::seeded(&format!("{}/token", gate.url), "3s");
    let daemon = env.serve();
    let begun = Instant::now();

    // Without --wait: answered after the 3 s timeout, and told that the refresh goes on.
    let t = Instant::now();
    let o = env.run(&["token", "f"]);
    let took = t.elapsed();
    assert_exit(&o, 75);
    assert!(stdout(&o).is_empty());
    assert!(
        stderr(&o).contains("has not ended within 3s")
            && stderr(&o).contains("waits on for the answer"),
        "{}",
        stderr(&o)
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "{took:?}"
    );

    // With --wait 8s: it waits its 8 s for the same refresh, then gives up.
    let t = Instant::now();
    let o = env.run(&["token", "f", "--wait", "8s"]);
    let took = t.elapsed();
    assert_exit(&o, 75);
    assert!(stdout(&o).is_empty());
    assert!(
        took >= Duration::from_secs(7) && took < Duration::from_secs(11),
        "{took:?}"
    );

    // A caller waiting when the late answer comes gets its token, and it is that
    // answer's: one request in all, sent when the first caller came.
    let o = env.run(&["token", "f", "--wait", "30s"]);
    assert_exit(&o, 0);
    assert!(stdout(&o).trim().starts_with("fresh-"), "{}", stdout(&o));
    let at = begun.elapsed();
    assert!(
        at >= Duration::from_secs(19) && at < Duration::from_secs(26),
        "served at {at:?}"
    );
    assert_eq!(gate.answers(), 1, "{}", daemon.log());
    daemon.stop();
    assert_eq!(env.stored("f")["refresh_token"], fake::RT);
}

/// The real server, rotating refresh tokens and revoking the grant when a spent one
/// is presented again, behind the gate holding each answer 6 s against a 3 s timeout.
fn rotating_behind_a_late_gate(tag: &str) -> (Env, Gate, String) {
    let login = unique_login(tag);
    let gate = Gate::start(&authserver::issuer());
    let account = gate.account("a", &login, Client::Native);
    let env = Env::new("timeout = \"3s\"\n[store]\nkind = \"file\"\n", &account);
    assert_exit(&env.login("a", &login), 0);
    env.expire("a");
    gate.set_delay(Duration::from_secs(6));
    (env, gate, login)
}

/// The refresh token the store holds for account `a`.
fn stored_refresh_token(env: &Env) -> String {
    env.stored("a")["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// After a caller was told the refresh goes on: the late answer is stored (its new
/// refresh token), the grant lives, and nothing was presented twice.
fn the_late_answer_was_kept(env: &Env, login: &str, before: &str) {
    let t = Instant::now();
    while env.stored("a")["refresh_token"].as_str() == Some(before) {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the late answer was never stored"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(stats(login, "refresh_grants"), 1);
    let o = env.run(&["token", "a"]);
    assert_exit(&o, 0);
    assert!(active(stdout(&o).trim()), "{}", stderr(&o));
    // Refresh once more: the kept refresh token is the grant's live one.
    env.expire("a");
    let o = env.run(&["token", "a"]);
    assert_exit(&o, 0);
    assert!(active(stdout(&o).trim()), "{}", stderr(&o));
    assert_eq!(stats(login, "reuse_revocations"), 0);
}

#[test]
fn a_rotated_refresh_token_answered_after_the_timeout_is_kept_by_the_daemon() {
    let (env, gate, login) = rotating_behind_a_late_gate("late-d");
    let before = stored_refresh_token(&env);
    let daemon = env.serve();
    let t = Instant::now();
    let o = env.run(&["token", "a"]);
    assert_exit(&o, 75);
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    assert!(
        stderr(&o).contains("waits on for the answer"),
        "{}",
        stderr(&o)
    );
    gate.set_delay(Duration::ZERO);
    the_late_answer_was_kept(&env, &login, &before);
    daemon.stop();
}

#[test]
fn a_rotated_refresh_token_answered_after_the_timeout_is_kept_without_a_daemon() {
    let (env, gate, login) = rotating_behind_a_late_gate("late-c");
    // The answer waits for the release below, however long the callers take.
    gate.set_delay(Duration::ZERO);
    gate.hold();
    let before = stored_refresh_token(&env);
    // `output()` reads stdout and stderr to their ends: the refresh that goes on holds
    // neither, so the caller (a mail program) is not held past the timeout either.
    let t = Instant::now();
    let o = env.run(&["token", "a"]);
    let took = t.elapsed();
    assert_exit(&o, 75);
    assert!(took < Duration::from_secs(6), "{took:?}");
    assert!(
        stderr(&o).contains("has not answered within 3s")
            && stderr(&o).contains("The refresh goes on in process"),
        "{}",
        stderr(&o)
    );
    // A second caller meanwhile is held no longer than the timeout either: the lock is
    // the waiting refresh's.
    let t = Instant::now();
    let o = env.run(&["token", "a"]);
    assert_exit(&o, 75);
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    assert!(
        stderr(&o).contains("has held the lock for a"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        env.stored("a")["refresh_token"].as_str(),
        Some(before.as_str())
    );
    gate.release();
    the_late_answer_was_kept(&env, &login, &before);
}

#[test]
fn a_token_call_killed_while_its_refresh_waits_for_the_answer_loses_nothing() {
    let (env, gate, login) = rotating_behind_a_late_gate("late-k");
    gate.set_delay(Duration::ZERO);
    let before = stored_refresh_token(&env);
    gate.hold();
    let mut child = env
        .cmd()
        .args(["token", "a"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The server has rotated the refresh token and answered; the answer is on its way.
    assert!(gate.wait_held(Duration::from_secs(10)), "no refresh came");
    child.kill().unwrap();
    child.wait().unwrap();
    gate.release();
    the_late_answer_was_kept(&env, &login, &before);
}

#[test]
fn a_daemon_stopped_while_its_refresh_waits_for_the_answer_keeps_the_answer() {
    let (env, gate, login) = rotating_behind_a_late_gate("late-t");
    gate.set_delay(Duration::ZERO);
    let before = stored_refresh_token(&env);
    gate.hold();
    let daemon = env.serve();
    // The daemon refreshes the expired token at its start; the server has answered.
    assert!(gate.wait_held(Duration::from_secs(10)), "no refresh came");
    daemon.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    gate.release();
    let status = daemon.stop();
    assert!(status.success(), "{status}");
    // Stored by the time it exited.
    assert_ne!(
        env.stored("a")["refresh_token"].as_str(),
        Some(before.as_str())
    );
    the_late_answer_was_kept(&env, &login, &before);
}
