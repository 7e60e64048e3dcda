//! The daemon as a system service for servers (integrations/systemd/system/): its
//! socket passed by systemd's own socket activator (`systemd-socket-activate`, as
//! mailtoken.socket would), `serve --allow-group`, and clients of other users run with
//! `setpriv` in and out of that group; and the unit's sandbox as `systemd-analyze
//! security` rates it.

use crate::common;

use common::mailtoken::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The group the test's clients are let in by: Debian's `mail` (gid 8).
const GROUP: &str = "mail";
const GID: &str = "8";
/// Debian's `nobody`.
const NOBODY: &str = "65534";

#[test]
fn the_system_daemon_serves_members_of_its_group_and_refuses_other_users() {
    let (env, app) = app_env("system-svc", None);
    let dir = tempfile::tempdir().unwrap();
    set_mode(dir.path(), 0o755);
    let socket = dir.path().join("socket");
    // As mailtoken.socket would: systemd's own activator binds the socket and starts
    // the daemon with it (LISTEN_FDS), with the world's environment.
    let base = env.cmd();
    let mut activate = Command::new("systemd-socket-activate");
    activate.arg("-l").arg(&socket);
    // It hands the program only the variables named with --setenv, as systemd does
    // with Environment=.
    for (k, v) in base.get_envs() {
        if let Some(v) = v {
            let mut kv = k.to_owned();
            kv.push("=");
            kv.push(v);
            activate.arg("--setenv").arg(kv);
        }
    }
    let mut daemon = activate
        .arg("--setenv")
        .arg(format!("MAILTOKEN_SOCKET={}", socket.display()))
        .arg(base.get_program())
        .args(["serve", "--allow-group", GROUP])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // systemd-socket-activate made the socket; mailtoken.socket's SocketMode=0660
    // with SocketGroup= is the same door: the group may connect.
    wait_for(&socket);
    set_mode(&socket, 0o666);
    let front = copy_front(dir.path());
    let as_user = |groups: &[&str]| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid", NOBODY, "--regid", NOBODY]);
        match groups {
            [] => c.arg("--clear-groups"),
            gs => c.arg(format!("--groups={}", gs.join(","))),
        };
        c.arg(&front)
            .args(["token", "app"])
            .env_clear()
            .env("MAILTOKEN_SOCKET", &socket)
            .env("HOME", "/nonexistent");
        c.output().unwrap()
    };
    let member = as_user(&[GID]);
    if member.status.code() != Some(0) {
        let _ = daemon.kill();
        let out = daemon.wait_with_output().unwrap();
        panic!(
            "member refused: {}\ndaemon: {}",
            stderr(&member),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        introspect(stdout(&member).trim())["email"],
        app.mailbox.as_str()
    );
    let stranger = as_user(&[]);
    assert_ne!(stranger.status.code(), Some(0));
    assert!(
        stderr(&stranger).contains("permission denied"),
        "{}",
        stderr(&stranger)
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
}

/// A copy of the front executable that any user may run (the build tree's may sit in
/// a directory only its owner can enter).
fn copy_front(dir: &Path) -> std::path::PathBuf {
    let to = dir.join("mailtoken");
    std::fs::copy(BIN, &to).unwrap();
    set_mode(&to, 0o755);
    to
}

fn wait_for(p: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", p.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `systemd-analyze security`'s overall exposure for a unit file (0 safe, 10 exposed).
fn exposure(unit: &str) -> f64 {
    let path = format!("{}/integrations/systemd/{unit}", env!("CARGO_MANIFEST_DIR"));
    let o = Command::new("systemd-analyze")
        .args(["security", "--offline=true", &path])
        .output()
        .unwrap();
    let text = stdout(&o);
    text.lines()
        .find_map(|l| {
            l.split("Overall exposure level for mailtoken.service: ")
                .nth(1)
        })
        .and_then(|r| r.split_whitespace().next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no rating for {unit} in:\n{text}{}", stderr(&o)))
}

#[test]
fn the_system_unit_is_sandboxed_to_an_ok_exposure_rating() {
    let rating = exposure("system/mailtoken.service");
    assert!(rating <= 2.5, "system unit exposure {rating}");
}

#[test]
fn the_user_unit_is_tightened_as_far_as_a_user_service_allows() {
    // 8.9 ("EXPOSED") before; mount namespaces and the like need a system service.
    let rating = exposure("mailtoken.service");
    assert!(rating <= 6.5, "user unit exposure {rating}");
}
