//! `mailtoken serve` against the real authorization server: refresh-ahead, single flight
//! under a burst, invalid_grant handling with one notification, SIGHUP, restarts, the
//! peer uid check, and hostile input on the socket.

use crate::common;

use common::authserver;
use common::fake;
use common::mailtoken::*;
use std::process::Stdio;
use std::time::{Duration, Instant, UNIX_EPOCH};

#[test]
fn refresh_ahead_never_hands_out_a_token_with_less_than_min_valid_left() {
    let login = unique_login("ahead");
    let env = Env::with_file_store(&account_toml("a", &login, Client::NativeShort));
    assert_exit(&env.login("a", &login), 0);
    let daemon = env.serve();
    // Three 6-second lifetimes; min-valid 3s is half of one, the most it can mean here.
    let end = Instant::now() + Duration::from_secs(18);
    let mut seen = std::collections::HashSet::new();
    while Instant::now() < end {
        let o = env.run(&["token", "a", "--min-valid", "3s"]);
        assert_exit(&o, 0);
        let token = stdout(&o).trim().to_owned();
        if seen.insert(token.clone()) {
            let info = rt().block_on(authserver::introspect(&token));
            assert_eq!(info["active"], true, "{info}");
            // Whole seconds on both sides: the token had at least 3 s when handed out,
            // so at least 2 by the time introspection answers.
            let left = info["exp"].as_u64().unwrap() as i64 - now() as i64;
            assert!(left >= 2, "token handed out with {left}s left");
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(
        seen.len() >= 4,
        "the daemon refreshed ahead: {} tokens seen",
        seen.len()
    );
    let refreshes = stats(&login, "refresh_grants");
    assert!(
        (4..=8).contains(&refreshes),
        "about one refresh per half-life, got {refreshes}"
    );
    drop(daemon);
}

#[test]
fn a_burst_of_fifty_on_an_expired_token_causes_one_refresh() {
    let login = unique_login("dburst");
    let env = Env::with_file_store(&account_toml("b", &login, Client::Native));
    assert_exit(&env.login("b", &login), 0);
    env.expire("b");
    let _daemon = env.serve();
    let children: Vec<_> = (0..50)
        .map(|_| {
            env.cmd()
                .args(["token", "b", "--wait", "5s"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for o in &outs {
        assert_exit(o, 0);
    }
    assert!(outs.iter().all(|o| o.stdout == outs[0].stdout));
    assert_eq!(stats(&login, "refresh_grants"), 1);
    assert_eq!(
        rt().block_on(authserver::introspect(stdout(&outs[0]).trim()))["active"],
        true
    );
}

#[test]
fn invalid_grant_stops_the_refresher_and_notifies_once() {
    let login = unique_login("dinvalid");
    let env = Env::with_file_store(&account_toml("c", &login, Client::NativeShort));
    let notes = env.dir.path().join("notes");
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    env.write_config(&format!(
        "notify_cmd = 'echo \"$MAILTOKEN_ACCOUNT|$MAILTOKEN_USER|$MAILTOKEN_REASON\" >> {}'\n{config}",
        notes.display()
    ));
    assert_exit(&env.login("c", &login), 0);
    let rt_value = env.stored("c")["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    rt().block_on(authserver::revoke(
        &rt_value,
        "refresh_token",
        authserver::NATIVE_SHORT_CLIENT,
        None,
    ));
    let daemon = env.serve();
    // Long enough for the refresher to hit the rejection and, were it not stopped, to
    // try again several times (the tokens live 6 s).
    std::thread::sleep(Duration::from_secs(9));
    let text = std::fs::read_to_string(&notes).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "notified exactly once: {text:?}\n{}",
        daemon.log()
    );
    assert!(lines[0].starts_with(&format!("c|{login}|")), "{}", lines[0]);
    assert!(lines[0].contains("rejected"), "{}", lines[0]);
    assert!(
        !lines[0].contains(&rt_value),
        "no secret in the hook's environment"
    );
    let o = env.run(&["token", "c"]);
    assert_exit(&o, 77);
    assert!(stderr(&o).contains("mailtoken login c"), "{}", stderr(&o));
    let j: serde_json::Value =
        serde_json::from_str(&stdout(&env.run(&["status", "--json"]))).unwrap();
    assert_eq!(j[0]["state"], "needs_login", "{j}");
    // A new login (which tells the daemon) mends it.
    assert_exit(&env.login("c", &login), 0);
    assert_exit(&env.run(&["token", "c"]), 0);
    assert_eq!(std::fs::read_to_string(&notes).unwrap().lines().count(), 1);
}

#[test]
fn sighup_reloads_the_config_and_keeps_unchanged_accounts_tokens() {
    let login = unique_login("hup");
    let env = Env::with_file_store(&account_toml("d", &login, Client::Native));
    assert_exit(&env.login("d", &login), 0);
    let daemon = env.serve();
    let before = stdout(&env.run(&["token", "d"]));
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    env.write_config(&format!(
        "{config}{}",
        account_toml("e", &unique_login("hup2"), Client::Native)
    ));
    daemon.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = stdout(&env.run(&["status", "--json"]));
        if s.contains("\"account\": \"e\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new account never showed: {s}\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        stdout(&env.run(&["token", "d"])),
        before,
        "kept in memory, no refresh"
    );
    assert_eq!(stats(&login, "refresh_grants"), 0);
    // A broken config is refused and the old one kept.
    env.write_config("[accounts.d\n");
    daemon.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    assert!(daemon.log().contains("reload failed"), "{}", daemon.log());
    assert_eq!(stdout(&env.run(&["token", "d"])), before);
}

#[test]
fn a_restarted_daemon_works_without_a_login_and_replaces_a_stale_socket() {
    let login = unique_login("restart");
    let env = Env::with_file_store(&account_toml("r", &login, Client::Native));
    assert_exit(&env.login("r", &login), 0);
    let daemon = env.serve();
    let t1 = stdout(&env.run(&["token", "r"]));
    assert!(daemon.stop().success());
    assert!(
        !env.socket_path().exists(),
        "a clean exit removes the socket"
    );

    let mut daemon = env.serve();
    assert_eq!(stdout(&env.run(&["token", "r"])), t1);
    // A second daemon on the same socket refuses to start, and says why.
    let o = env.run(&["serve"]);
    assert_exit(&o, 69);
    assert!(stderr(&o).contains("already serving"), "{}", stderr(&o));
    // A crash leaves the socket file behind; the next daemon replaces it.
    daemon.child.as_mut().unwrap().kill().unwrap();
    daemon.child.as_mut().unwrap().wait().unwrap();
    assert!(env.socket_path().exists());
    let _daemon = env.serve();
    assert_eq!(stdout(&env.run(&["token", "r"])), t1);
}

#[test]
fn without_a_daemon_the_cli_falls_back_in_process() {
    let login = unique_login("fallback");
    let env = Env::with_file_store(&account_toml("f", &login, Client::Native));
    assert_exit(&env.login("f", &login), 0);
    // A socket file with nobody behind it (left by a crash) must not break anything.
    std::fs::create_dir_all(env.socket_path().parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(env.socket_path()).unwrap());
    let o = env.run(&["token", "f"]);
    assert_exit(&o, 0);
    assert!(stdout(&env.run(&["status"])).contains("store:"));
    assert!(!stdout(&env.run(&["status"])).contains("answered by the daemon"));
}

#[test]
fn garbage_oversized_and_half_sent_requests_get_errors_and_the_daemon_lives_on() {
    let env = Env::with_file_store(&account_toml("g", &unique_login("garbage"), Client::Native));
    let daemon = env.serve();
    let r = daemon
        .try_raw(b"garbage\n{\"v\":1,\"op\":\"ping\"}\n")
        .unwrap();
    let lines: Vec<&str> = r.lines().collect();
    assert_eq!(lines.len(), 2, "{r}");
    assert!(
        lines[0].contains("\"ok\":false") && lines[0].contains("not JSON"),
        "{r}"
    );
    assert!(lines[1].contains("\"ok\":true"), "{r}");

    let r = daemon.try_raw(b"{\"v\":9,\"op\":\"ping\"}\n{\"v\":1,\"op\":\"launch\"}\n{\"v\":1,\"op\":\"token\",\"account\":\"nobody\"}\n").unwrap();
    let lines: Vec<&str> = r.lines().collect();
    assert!(lines[0].contains("version 9"), "{r}");
    assert!(lines[1].contains("bad request"), "{r}");
    assert!(
        lines[2].contains("no account `nobody`") && lines[2].contains("\"code\":78"),
        "{r}"
    );

    let mut big = vec![b'x'; 100 * 1024];
    big.push(b'\n');
    let r = daemon.try_raw(&big).unwrap();
    assert!(r.contains("longer than"), "{r}");

    let start = Instant::now();
    let r = daemon.try_raw(b"{\"v\":1,\"op\":").unwrap();
    assert!(r.contains("incomplete request"), "{r}");
    assert!(start.elapsed() < Duration::from_secs(8));

    // Many half-open connections at once do not stop others from being served.
    let idle: Vec<_> = (0..20)
        .map(|_| std::os::unix::net::UnixStream::connect(&daemon.socket).unwrap())
        .collect();
    assert!(
        daemon
            .try_raw(b"{\"v\":1,\"op\":\"ping\"}\n")
            .unwrap()
            .contains("\"ok\":true")
    );
    drop(idle);
}

#[test]
fn socket_activation_and_readiness_are_spoken_as_systemd_expects() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let login = unique_login("activation");
    let env = Env::with_file_store(&account_toml("s", &login, Client::Native));
    assert_exit(&env.login("s", &login), 0);
    // What systemd does for mailtoken.socket + Type=notify: bind the socket itself,
    // pass it as descriptor 3 with LISTEN_PID/LISTEN_FDS, and listen for READY=1.
    let sock_dir = env.socket_path().parent().unwrap().to_owned();
    std::fs::create_dir_all(&sock_dir).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(env.socket_path()).unwrap();
    let notify_path = env.dir.path().join("notify");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let fd = listener.as_raw_fd();
    let mut cmd = env.cmd();
    cmd.env("NOTIFY_SOCKET", &notify_path);
    let mut sh = std::process::Command::new("sh");
    sh.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" serve")
        .arg(BIN);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    // SAFETY: dup2 is async-signal-safe; it runs in the child between fork and exec.
    unsafe {
        sh.pre_exec(move || {
            // dup2 onto itself would keep close-on-exec: clear it instead.
            let rc = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let log = env.dir.path().join("activated.log");
    let mut child = sh
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 64];
    let n = notify.recv(&mut buf).unwrap_or_else(|e| {
        panic!(
            "no READY=1 within 10 s ({e}): {}",
            std::fs::read_to_string(&log).unwrap()
        )
    });
    assert_eq!(&buf[..n], b"READY=1");
    let o = env.run(&["status", "s"]);
    assert!(
        stdout(&o).contains("answered by the daemon"),
        "{}",
        stdout(&o)
    );
    assert_exit(&env.run(&["token", "s"]), 0);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    assert!(
        env.socket_path().exists(),
        "the socket belongs to systemd: left in place"
    );
}

#[test]
fn during_an_outage_calls_queued_behind_a_failing_refresh_send_nothing_more() {
    let fake = fake::token_endpoint(
        503,
        "text/plain",
        "down for maintenance",
        Duration::from_millis(700),
    );
    let env = fake::seeded(&fake.url, "10s");
    let _daemon = env.serve();
    // The refresher starts the first attempt at once; ten calls arrive while it hangs.
    std::thread::sleep(Duration::from_millis(100));
    let children: Vec<_> = (0..10)
        .map(|_| {
            env.cmd()
                .args(["token", "f"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert_exit(&o, 75);
        assert!(stderr(&o).contains("HTTP 503"), "{}", stderr(&o));
    }
    // And calls during the backoff say when the next attempt is, without sending one.
    let o = env.run(&["token", "f"]);
    assert_exit(&o, 75);
    assert!(stderr(&o).contains("next attempt in"), "{}", stderr(&o));
    assert_eq!(
        fake.requests(),
        1,
        "one request for the refresher and all eleven calls"
    );
    assert_eq!(env.stored("f")["refresh_token"], fake::RT);
}

#[test]
fn status_shows_when_the_last_error_happened_not_when_it_was_asked() {
    let fake = fake::token_endpoint(503, "text/plain", "down", Duration::ZERO);
    let env = fake::seeded(&fake.url, "5s");
    let daemon = env.serve();
    // The token is expired: the refresher tries at once, and fails.
    let deadline = Instant::now() + Duration::from_secs(5);
    while fake.requests() == 0 {
        assert!(Instant::now() < deadline, "{}", daemon.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let failed_at = now();
    // Asked later (and before the backoff's next attempt, 4 s at the earliest).
    std::thread::sleep(Duration::from_millis(3500));
    let j: serde_json::Value =
        serde_json::from_str(&stdout(&env.run(&["status", "--json"]))).unwrap();
    assert_eq!(fake.requests(), 1);
    let text = j[0]["last_error"].as_str().unwrap();
    assert!(text.contains("HTTP 503"), "{text}");
    // "... (2026-12-01T21:00:00Z)": the time is the failure's.
    let (_, t) = text.rsplit_once('(').unwrap();
    let at = humantime::parse_rfc3339(t.trim_end_matches(')'))
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(at.abs_diff(failed_at) <= 1, "{text}: failed at {failed_at}");
}

#[test]
fn after_an_outage_a_caller_gets_a_token_within_ten_seconds_and_probes_stay_bounded() {
    let outage = fake::outage_endpoint();
    let env = fake::seeded(&outage.url, "5s");
    let daemon = env.serve();
    // 45 s of 503 with the token expired and a caller every half second. The backoff
    // alone (about 5, 10, 20, 40 s) would put the next attempt 15 s or more after the
    // provider's return.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(45) {
        assert_exit(&env.run(&["token", "f"]), 75);
        std::thread::sleep(Duration::from_millis(500));
    }
    let during = outage.arrivals().len();
    outage.set_down(false);
    let back = Instant::now();
    loop {
        let o = env.run(&["token", "f"]);
        if o.status.success() {
            assert!(stdout(&o).starts_with("fresh-"), "{}", stdout(&o));
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "no token 10 s after the outage ended: {}\n{}",
            stderr(&o),
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The bound (state::PROBE_INTERVAL): one request per 5 s at most, however many
    // callers; on whole-second clocks two requests are at least 4 s apart.
    let arrivals = outage.arrivals();
    for w in arrivals.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_secs(4),
            "two requests {:?} apart",
            w[1] - w[0]
        );
    }
    assert!(during <= 45 / 5 + 1, "{during} requests in 45 s");
    assert!(
        during >= 45 / 5 - 1,
        "callers probed: {during} requests in 45 s"
    );
    assert_eq!(env.stored("f")["refresh_token"], fake::RT);
}
