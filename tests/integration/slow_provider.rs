//! A token endpoint that answers slowly for minutes, with the daemon in front of the
//! callers: slow answers within the timeout (the real authorization server behind
//! [`Gate`], each answer held for seconds), then answers later than the timeout (a FAKE
//! endpoint behind the gate: a real server will not hang on demand). No caller waits
//! longer than the timeout (or its `--wait`), no expired token is ever printed, the
//! endpoint is not flooded, and nothing is lost.

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
    let issuer = authserver::issuer();
    // 6-second access tokens, rotating refresh tokens; every token request through the
    // gate.
    let account = account_toml("a", &login, Client::NativeShort).replace(
        &format!("token_url = \"{issuer}/token\""),
        &format!("token_url = \"{}/token\"", gate.url),
    );
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
fn answers_later_than_the_timeout_give_a_prompt_failure_without_wait_and_the_token_with_it() {
    // A FAKE endpoint (fresh tokens, no rotation) behind the gate, which holds each
    // answer 60 s while the 3 s timeout runs out.
    let endpoint = fake::outage_endpoint();
    endpoint.set_down(false);
    let gate = Gate::start(endpoint.url.trim_end_matches("/token"));
    gate.set_delay(Duration::from_secs(60));
    let env = fake::seeded(&format!("{}/token", gate.url), "3s");
    let daemon = env.serve();
    let begun = Instant::now();

    // Without --wait: the refresh it starts times out, and it is told so.
    let t = Instant::now();
    let o = env.run(&["token", "f"]);
    let took = t.elapsed();
    assert_exit(&o, 75);
    assert!(stdout(&o).is_empty());
    assert!(
        stderr(&o).contains("did not answer within 3s"),
        "{}",
        stderr(&o)
    );
    assert!(took < Duration::from_secs(8), "{took:?}");

    // With --wait 12s: it waits through the retries for 12 s, then gives up (a retry in
    // flight at the deadline may add up to one timeout).
    let t = Instant::now();
    let o = env.run(&["token", "f", "--wait", "12s"]);
    let took = t.elapsed();
    assert_exit(&o, 75);
    assert!(stdout(&o).is_empty());
    assert!(
        took >= Duration::from_secs(11) && took < Duration::from_secs(20),
        "{took:?}"
    );
    // Retries were spaced (state::PROBE_INTERVAL, 5 s), not one per caller or per
    // second.
    let asked = gate.answers();
    let elapsed = begun.elapsed().as_secs();
    assert!(
        asked <= 1 + u32::try_from(elapsed / 5).unwrap() + 1,
        "{asked} requests in {elapsed} s\n{}",
        daemon.log()
    );

    // The endpoint answers in time again while a caller waits: it gets the new token
    // within a retry interval or so.
    let waiter = env
        .cmd()
        .args(["token", "f", "--wait", "30s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    gate.set_delay(Duration::ZERO);
    let recovered = Instant::now();
    let o = waiter.wait_with_output().unwrap();
    assert_exit(&o, 0);
    assert!(stdout(&o).trim().starts_with("fresh-"), "{}", stdout(&o));
    assert!(
        recovered.elapsed() < Duration::from_secs(12),
        "{:?}",
        recovered.elapsed()
    );
    // The refresh token the endpoint never replaced is still the stored one.
    daemon.stop();
    assert_eq!(env.stored("f")["refresh_token"], fake::RT);
}
