//! Clocks (issue 14): the wall clock stepped an hour forward and back under a running
//! daemon and under CLI calls, as NTP or `date -s` step it, and a daemon stopped past a
//! token's expiry (SIGSTOP, then SIGCONT, as after a suspend). Every printed token is
//! checked with the real authorization server's introspection: none may be expired.
//!
//! The step is libfaketime's (LD_PRELOAD): `FAKETIME_TIMESTAMP_FILE` holds the offset,
//! re-read on every call (`FAKETIME_NO_CACHE`), and `FAKETIME_DONT_FAKE_MONOTONIC`
//! leaves the monotonic and boot clocks alone, so mailtoken sees what a real step
//! looks like: the wall clock jumps, the clocks that cannot be set do not. The
//! authorization server's clock is not touched: its tokens die on time.
//!
//! The tokens live 6 s (`Client::NativeShort`), so a wall-clock check fooled by a step
//! back hands out a dead token within seconds.

use crate::common;

use common::mailtoken::*;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The wall-clock offset that the faked processes see, changed while they run.
struct FakeClock {
    dir: tempfile::TempDir,
    lib: PathBuf,
}

impl FakeClock {
    fn new() -> FakeClock {
        let triple = format!("{}-linux-gnu", std::env::consts::ARCH);
        let lib = [
            format!("/usr/lib/{triple}/faketime/libfaketime.so.1"),
            "/usr/lib/faketime/libfaketime.so.1".to_owned(),
            "/usr/local/lib/faketime/libfaketime.so.1".to_owned(),
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("libfaketime is not installed (scripts/test installs the faketime package)");
        let clock = FakeClock {
            dir: tempfile::tempdir().unwrap(),
            lib,
        };
        clock.set(0);
        clock
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("offset")
    }

    /// Steps the faked wall clock to `offset` seconds from the real one. The file is
    /// replaced by a rename, so a process reading it never sees half of it.
    fn set(&self, offset: i64) {
        let tmp = self.dir.path().join("offset.tmp");
        std::fs::write(&tmp, format!("{offset:+}\n")).unwrap();
        std::fs::rename(&tmp, self.file()).unwrap();
    }

    /// `c` runs with the faked wall clock.
    fn apply<'c>(&self, c: &'c mut Command) -> &'c mut Command {
        c.env("LD_PRELOAD", &self.lib)
            .env("FAKETIME_TIMESTAMP_FILE", self.file())
            .env("FAKETIME_NO_CACHE", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
    }

    fn run(&self, env: &Env, args: &[&str]) -> Output {
        self.apply(&mut env.cmd()).args(args).output().unwrap()
    }

    /// `mailtoken serve` with the faked clock, once it answers on its socket.
    fn serve(&self, env: &Env) -> Daemon {
        let mut cmd = env.cmd();
        self.apply(&mut cmd);
        env.serve_with(cmd)
    }
}

/// A world with a logged-in account `c` whose access tokens live 6 s.
fn short_lived_world(tag: &str) -> (Env, String) {
    let login = unique_login(tag);
    let env = Env::with_file_store(&account_toml("c", &login, Client::NativeShort));
    assert_exit(&env.login("c", &login), 0);
    (env, login)
}

/// `mailtoken token c` every 300 ms for `how_long`: each call must print a token
/// that the authorization server says is active. Returns the distinct tokens seen.
fn every_token_is_active(
    clock: &FakeClock,
    env: &Env,
    how_long: Duration,
    when: &str,
    daemon: Option<&Daemon>,
) -> Vec<String> {
    let end = Instant::now() + how_long;
    let mut seen: Vec<String> = Vec::new();
    while Instant::now() < end {
        let o = clock.run(env, &["token", "c"]);
        assert_exit(&o, 0);
        let token = stdout(&o).trim().to_owned();
        let answer = introspect(&token);
        assert_eq!(
            answer["active"],
            true,
            "{when}: an expired token was printed (token {} of this phase; stored: {}){}",
            seen.len() + 1,
            env.stored("c"),
            daemon
                .map(|d| format!("\ndaemon log:\n{}", d.log()))
                .unwrap_or_default()
        );
        if seen.last() != Some(&token) {
            seen.push(token);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    seen
}

/// 14 s: more than two lifetimes of a 6-second token, so a token obtained before the
/// step has died during it, and its successors were obtained on the stepped clock.
const AFTER_THE_STEP: Duration = Duration::from_secs(14);

#[test]
fn without_a_daemon_a_clock_set_back_an_hour_never_gets_an_expired_token_printed() {
    let clock = FakeClock::new();
    let (env, login) = short_lived_world("clock-cli-back");
    every_token_is_active(
        &clock,
        &env,
        Duration::from_secs(2),
        "before the step",
        None,
    );
    let before = stats_refreshes(&login);
    clock.set(-3600);
    let seen = every_token_is_active(&clock, &env, AFTER_THE_STEP, "set back an hour", None);
    // The answers kept coming from new tokens, refreshed on the stepped clock.
    assert!(seen.len() >= 3, "{} tokens in 14 s", seen.len());
    assert!(stats_refreshes(&login) >= before + 2);
}

#[test]
fn without_a_daemon_a_clock_set_forward_an_hour_keeps_answering_with_valid_tokens() {
    let clock = FakeClock::new();
    let (env, _login) = short_lived_world("clock-cli-fwd");
    every_token_is_active(
        &clock,
        &env,
        Duration::from_secs(2),
        "before the step",
        None,
    );
    clock.set(3600);
    let seen = every_token_is_active(&clock, &env, AFTER_THE_STEP, "set forward an hour", None);
    assert!(seen.len() >= 3, "{} tokens in 14 s", seen.len());
}

#[test]
fn the_daemon_never_serves_an_expired_token_after_the_clock_is_set_back_an_hour() {
    let clock = FakeClock::new();
    let (env, login) = short_lived_world("clock-d-back");
    let daemon = clock.serve(&env);
    every_token_is_active(
        &clock,
        &env,
        Duration::from_secs(2),
        "before the step",
        Some(&daemon),
    );
    let before = stats_refreshes(&login);
    clock.set(-3600);
    let seen = every_token_is_active(
        &clock,
        &env,
        AFTER_THE_STEP,
        "set back an hour",
        Some(&daemon),
    );
    assert!(seen.len() >= 3, "{} tokens in 14 s", seen.len());
    assert!(stats_refreshes(&login) >= before + 2);
    // It is the daemon that answered, and it is still running.
    assert!(
        daemon
            .try_raw(b"{\"v\":1,\"op\":\"ping\"}\n")
            .unwrap()
            .contains("\"ok\":true")
    );
}

#[test]
fn the_daemon_keeps_serving_valid_tokens_after_the_clock_is_set_forward_an_hour() {
    let clock = FakeClock::new();
    let (env, _login) = short_lived_world("clock-d-fwd");
    let daemon = clock.serve(&env);
    every_token_is_active(
        &clock,
        &env,
        Duration::from_secs(2),
        "before the step",
        Some(&daemon),
    );
    clock.set(3600);
    let seen = every_token_is_active(
        &clock,
        &env,
        AFTER_THE_STEP,
        "set forward an hour",
        Some(&daemon),
    );
    assert!(seen.len() >= 3, "{} tokens in 14 s", seen.len());
    assert!(
        daemon
            .try_raw(b"{\"v\":1,\"op\":\"ping\"}\n")
            .unwrap()
            .contains("\"ok\":true")
    );
}

/// The bound: the first answer after waking comes within a second. What is
/// timed is the whole `mailtoken token` call from the moment SIGCONT is sent: the
/// daemon waking, finding its token dead and refreshing it at the authorization server
/// (a local node process, which other tests keep busy too), and the CLI's own start
/// and exit. Measured: 13-53 ms with 200 kill trials running beside it on the 2-core
/// machine (the figure is printed). The assertion keeps the one second, which
/// leaves a loaded machine some twenty times what it takes; more margin would only
/// hide a real regression (a refresh left to a backoff or a timer would take seconds).
#[test]
fn a_daemon_stopped_past_the_token_s_expiry_answers_within_a_second_of_waking() {
    let (env, login) = short_lived_world("clock-stop");
    let daemon = env.serve();
    let o = env.run(&["token", "c"]);
    assert_exit(&o, 0);
    let held = stdout(&o).trim().to_owned();
    daemon.signal(libc::SIGSTOP);
    // Past the 6-second lifetime of the token the daemon holds.
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(
        introspect(&held)["active"],
        false,
        "the held token has died"
    );
    let refreshes = stats_refreshes(&login);
    let mut c = env.cmd();
    c.args(["token", "c"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    daemon.signal(libc::SIGCONT);
    let woke = Instant::now();
    let o = c.output().unwrap();
    let took = woke.elapsed();
    assert_exit(&o, 0);
    let token = stdout(&o).trim().to_owned();
    assert_eq!(introspect(&token)["active"], true, "{}", daemon.log());
    assert!(stats_refreshes(&login) > refreshes);
    eprintln!("first answer {} ms after SIGCONT", took.as_millis());
    assert!(
        took < Duration::from_secs(1),
        "the first answer came {took:?} after waking\n{}",
        daemon.log()
    );
}

fn stats_refreshes(login: &str) -> u64 {
    stats(login, "refresh_grants")
}
