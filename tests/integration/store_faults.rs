//! The stores failing for real, at the worst moment: after the real authorization
//! server has rotated the refresh token (its public clients rotate on every use, and the
//! reuse of an old refresh token revokes the whole grant), when the new tokens must be
//! kept. A full disk (a small tmpfs), a read-only file system, a rename the kernel
//! refuses (a bind mount over the store's file), the keyring daemon killed between the
//! refresh and the save, and store commands that hang or fail.
//!
//! The promise checked each time: the caller gets a working token, nothing on disk is
//! broken, the rotated refresh token is kept (so the grant survives: the next refresh at
//! the real server succeeds), and the message says what is wrong with the store, not
//! "log in again".
//!
//! The mounts need root (as `scripts/test` runs); each is undone when its test ends.
#![cfg(target_os = "linux")]

use crate::common;

use common::authserver;
use common::gate::Gate;
use common::keyring::PrivateKeyring;
use common::mailtoken::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A mount made for one test, undone (lazily, so a process still in it cannot keep it)
/// when dropped.
struct Mount(PathBuf);

impl Mount {
    fn run(args: &[&str]) {
        let o = Command::new("mount").args(args).output().unwrap();
        assert!(
            o.status.success(),
            "mount {args:?}: {} (the store fault tests need root, as scripts/test runs them)",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// A tmpfs of `size` (as mount(8) spells it) at `dir`, owned by us, mode 0700.
    fn tmpfs(dir: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let opts = format!("size={size},mode=0700");
        Mount::run(&["-t", "tmpfs", "-o", &opts, "tmpfs", dir.to_str().unwrap()]);
        Mount(dir.to_owned())
    }

    /// `file` bound over `target`: renaming onto `target` then fails with EBUSY
    /// (rename(2)), while reading it still works.
    fn bind(file: &Path, target: &Path) -> Mount {
        Mount::run(&["--bind", file.to_str().unwrap(), target.to_str().unwrap()]);
        Mount(target.to_owned())
    }

    fn read_only(&self) {
        Mount::run(&["-o", "remount,ro", self.0.to_str().unwrap()]);
    }

    fn read_write(&self) {
        Mount::run(&["-o", "remount,rw", self.0.to_str().unwrap()]);
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system of `dir` with one file until the kernel says ENOSPC; the
/// file, to remove when space should come back.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 4096];
    loop {
        match f.write_all(&block) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
    let _ = f.sync_all();
    path
}

/// `Env::expire` for a rescue record (a file store of its own).
fn expire_in(path: &Path, account: &str) {
    edit_json(path, |v| expire_record(&mut v["accounts"][account]));
}

/// The caller of a refresh whose tokens the store refused: a working token, a message
/// about the store (with `why`, the OS's words) and not about logging in.
#[track_caller]
fn assert_served_despite_the_store(o: &std::process::Output, why: &str) -> String {
    assert_exit(o, 0);
    let token = stdout(o).trim().to_owned();
    assert!(active(&token), "a working token was handed out");
    let e = stderr(o);
    assert!(e.contains("could not be saved"), "{e}");
    assert!(e.contains(why), "{e}");
    assert!(e.contains("no need to log in again"), "{e}");
    assert!(!e.contains("mailtoken login"), "{e}");
    token
}

/// Nothing but the store's own files in its directory: no temp file left behind.
#[track_caller]
fn assert_no_leftovers(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().into_string().unwrap();
        assert!(
            !name.ends_with(".tmp"),
            "a temp file was left behind: {name}"
        );
    }
}

/// After the store works again: the next refresh uses the rotated refresh token that was
/// kept (the old one would revoke the grant), the store takes the result, and the rescue
/// record is gone.
#[track_caller]
fn assert_grant_survives(env: &Env, login: &str, rescue: &Path, old: &str) {
    expire_in(rescue, "a");
    let o = env.run(&["token", "a"]);
    assert_exit(&o, 0);
    let fresh = stdout(&o).trim().to_owned();
    assert_ne!(fresh, old);
    assert!(active(&fresh), "the grant survived: {}", stderr(&o));
    assert_eq!(stats(login, "refresh_grants"), 2);
    assert!(!rescue.exists(), "the store took the tokens");
    assert_eq!(env.stored("a")["access_token"], fresh.as_str());
}

#[test]
fn a_full_disk_under_the_file_store_keeps_the_rotated_tokens_and_the_grant() {
    let login = unique_login("full");
    let env = Env::with_file_store(&account_toml("a", &login, Client::Native));
    let state = env.dir.path().join("state");
    let _m = Mount::tmpfs(&state, "256k");
    assert_exit(&env.login("a", &login), 0);
    env.expire("a");
    let before = std::fs::read(env.tokens_path()).unwrap();
    let filler = fill(&state);

    let o = env.run(&["token", "a"]);
    let token = assert_served_despite_the_store(&o, "No space left on device");
    // The old file is whole, and the half-written temp file is gone.
    assert_eq!(std::fs::read(env.tokens_path()).unwrap(), before);
    assert_no_leftovers(env.tokens_path().parent().unwrap());
    // The state directory's disk is full: the runtime directory (another file system)
    // took the tokens.
    let rescue = env.dir.path().join("run/mailtoken/rescue/a.json");
    assert!(
        stderr(&o).contains(&rescue.display().to_string()),
        "{}",
        stderr(&o)
    );
    assert_eq!(mode(&rescue), 0o600);
    assert_eq!(mode(rescue.parent().unwrap()), 0o700);
    // The next caller is answered from them, without a request.
    let o = env.run(&["token", "a"]);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o).trim(), token);
    assert_eq!(stats(&login, "refresh_grants"), 1);

    std::fs::remove_file(filler).unwrap();
    assert_grant_survives(&env, &login, &rescue, &token);
}

#[test]
fn a_read_only_state_directory_still_serves_and_keeps_the_rotated_tokens() {
    let login = unique_login("rofs");
    let env = Env::with_file_store(&account_toml("a", &login, Client::Native));
    let state = env.dir.path().join("state");
    let m = Mount::tmpfs(&state, "1m");
    assert_exit(&env.login("a", &login), 0);
    let stored = env.stored("a");
    m.read_only();

    // A valid token is read and handed out as ever.
    let o = env.run(&["token", "a"]);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o).trim(), stored["access_token"].as_str().unwrap());

    m.read_write();
    env.expire("a");
    let before = std::fs::read(env.tokens_path()).unwrap();
    m.read_only();
    let o = env.run(&["token", "a"]);
    let token = assert_served_despite_the_store(&o, "Read-only file system");
    assert_eq!(std::fs::read(env.tokens_path()).unwrap(), before);
    let rescue = env.dir.path().join("run/mailtoken/rescue/a.json");
    assert_eq!(mode(&rescue), 0o600);
    let o = env.run(&["token", "a"]);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o).trim(), token);

    m.read_write();
    assert_grant_survives(&env, &login, &rescue, &token);
}

#[test]
fn a_rename_the_kernel_refuses_loses_nothing() {
    let login = unique_login("rename");
    let env = Env::with_file_store(&account_toml("a", &login, Client::Native));
    assert_exit(&env.login("a", &login), 0);
    env.expire("a");
    // A copy of the store bound over it: it reads the same, and rename(2) onto a mount
    // point fails with EBUSY.
    let copy = env.dir.path().join("tokens-copy.json");
    std::fs::copy(env.tokens_path(), &copy).unwrap();
    let bound = Mount::bind(&copy, &env.tokens_path());

    let o = env.run(&["token", "a"]);
    let token = assert_served_despite_the_store(&o, "busy");
    assert_no_leftovers(env.tokens_path().parent().unwrap());
    // The state directory itself takes writes: the rescue record is there.
    let rescue = env.dir.path().join("state/mailtoken/rescue/a.json");
    assert_eq!(mode(&rescue), 0o600);

    drop(bound);
    assert_grant_survives(&env, &login, &rescue, &token);
}

/// A keyring world (its own gnome-keyring; the real server behind the gate, 6-second
/// tokens, `head` the config's start) with a `token` call running whose refresh the
/// server has answered, the answer held at the gate: the refresh token is rotated, and
/// mailtoken has not seen the answer.
fn keyring_refresh_held(
    tag: &str,
    head: &str,
) -> (PrivateKeyring, Gate, Env, String, std::process::Child) {
    let keyring = PrivateKeyring::start();
    let login = unique_login(tag);
    let gate = Gate::start(&authserver::issuer());
    let mut env = Env::new(head, &gate.account("a", &login, Client::NativeShort));
    env.bus = Some(keyring.bus.clone());
    assert_exit(&env.login("a", &login), 0);
    // The access token lives 6 s and is handed out with half its life left at least.
    std::thread::sleep(Duration::from_millis(3500));
    gate.hold();
    let child = env
        .cmd()
        .args(["token", "a"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        gate.wait_held(Duration::from_secs(20)),
        "no refresh reached the server"
    );
    assert_eq!(stats(&login, "refresh_grants"), 1);
    (keyring, gate, env, login, child)
}

#[test]
fn the_keyring_killed_between_the_refresh_and_the_save_loses_nothing() {
    let (keyring, gate, env, login, child) =
        keyring_refresh_held("kkill", "timeout = \"10s\"\n[store]\nkind = \"keyring\"\n");
    keyring.kill();
    gate.release();
    let o = child.wait_with_output().unwrap();
    assert_exit(&o, 0);
    let token = stdout(&o).trim().to_owned();
    let e = stderr(&o);
    assert!(active(&token), "{e}");
    assert!(e.contains("could not be saved"), "{e}");
    assert!(!e.contains("mailtoken login"), "{e}");
    let rescue = env.dir.path().join("state/mailtoken/rescue/a.json");
    assert_eq!(mode(&rescue), 0o600);

    // A new keyring daemon on the same collection: the next refresh uses the kept
    // refresh token and the keyring takes the result.
    keyring.unlock();
    std::thread::sleep(Duration::from_millis(3500));
    let o = env.run(&["token", "a"]);
    assert_exit(&o, 0);
    let fresh = stdout(&o).trim().to_owned();
    assert_ne!(fresh, token);
    assert!(active(&fresh), "the grant survived: {}", stderr(&o));
    assert_eq!(stats(&login, "refresh_grants"), 2);
    assert!(!rescue.exists(), "the keyring took the tokens");
    // And it holds them: a call now is answered from the keyring alone.
    let o = env.run(&["token", "a"]);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o).trim(), fresh);
}

#[test]
fn a_keyring_that_stops_answering_before_the_save_is_given_up_at_the_store_timeout() {
    let (keyring, gate, env, login, child) = keyring_refresh_held(
        "kstop",
        "timeout = \"10s\"\n[store]\nkind = \"keyring\"\ntimeout = \"2s\"\n",
    );
    // The keyring stops answering (SIGSTOP: wedged, or suspended with its session),
    // with the rotated refresh token on its way.
    let pid = keyring.daemon_pid();
    // SAFETY: signalling the gnome-keyring this test's keyring started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let released = Instant::now();
    gate.release();
    let o = child.wait_with_output().unwrap();
    let took = released.elapsed();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    assert_exit(&o, 0);
    let token = stdout(&o).trim().to_owned();
    let e = stderr(&o);
    assert!(active(&token), "{e}");
    assert!(
        e.contains("could not be saved") && e.contains("did not answer within 2s"),
        "{e}"
    );
    assert!(took < Duration::from_secs(6), "{took:?}");
    let rescue = env.dir.path().join("state/mailtoken/rescue/a.json");
    assert_eq!(mode(&rescue), 0o600);

    // The keyring answers again: the next refresh uses the rescued refresh token, and
    // the keyring takes the result.
    std::thread::sleep(Duration::from_millis(3500));
    let o = env.run(&["token", "a"]);
    assert_exit(&o, 0);
    let fresh = stdout(&o).trim().to_owned();
    assert!(active(&fresh), "the grant survived: {}", stderr(&o));
    assert!(!rescue.exists(), "the keyring took the tokens");
    assert_eq!(stats(&login, "reuse_revocations"), 0);
}

/// A world whose store is a pair of shell commands keeping `DIR/ACCOUNT.json`, where
/// `read_extra`/`write_extra` run first (a hang, a failure) while `DIR/read-hangs` or
/// `DIR/write-hangs` exists; `DIR` in them is the directory.
fn command_world(
    login: &str,
    read_extra: &str,
    write_extra: &str,
    timeout: &str,
) -> (Env, PathBuf) {
    let env = Env::new("", "");
    let dir = env.dir.path().join("records");
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display();
    let (read_extra, write_extra) = (
        read_extra.replace("DIR", &d.to_string()),
        write_extra.replace("DIR", &d.to_string()),
    );
    env.write_config(&format!(
        "timeout = \"10s\"\n[store]\nkind = \"command\"\ntimeout = \"{timeout}\"\n\
         read = \"if [ -e {d}/read-hangs ]; then {read_extra}; fi; cat {d}/{{account}}.json 2>/dev/null || true\"\n\
         write = \"if [ -e {d}/write-hangs ]; then {write_extra}; fi; cat > {d}/{{account}}.json\"\n\
         {}",
        account_toml("a", login, Client::Native)
    ));
    (env, dir)
}

#[test]
fn a_store_command_that_hangs_on_read_is_stopped_at_its_timeout() {
    let login = unique_login("cmdhang");
    let (env, dir) = command_world(
        &login,
        "sleep 600 & echo $! > DIR/sleep.pid; wait",
        "true",
        "2s",
    );
    assert_exit(&env.login("a", &login), 0);
    std::fs::write(dir.join("read-hangs"), "").unwrap();
    let started = Instant::now();
    let o = env.run(&["token", "a"]);
    let took = started.elapsed();
    assert_exit(&o, 75);
    assert!(stdout(&o).is_empty());
    let e = stderr(&o);
    assert!(
        e.contains("did not finish within 2s and was stopped"),
        "{e}"
    );
    assert!(e.contains("raise `timeout` in [store]"), "{e}");
    // Stopped at 2 s, not when its `sleep 600` would end; the margin is the loaded
    // 2-core machine's.
    assert!(took < Duration::from_secs(20), "{took:?}");
    // Nothing of it is left running: the `sleep` it started is gone too (or a zombie
    // waiting for init, which a container's init may never reap).
    // SIGKILL was sent before `token` returned; the kernel may take a moment to tear
    // the process down (seen: state R with its memory already gone), so look for up
    // to 2 s.
    let pid = std::fs::read_to_string(dir.join("sleep.pid")).unwrap();
    let stat = || std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    let ended = |stat: &str| {
        stat.is_empty()
            || stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    while !ended(&stat()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let last = stat();
    assert!(
        ended(&last),
        "the store command's child {pid} still runs: {last}"
    );
}

#[test]
fn a_store_command_that_hangs_on_write_after_a_refresh_keeps_the_rotated_tokens() {
    let login = unique_login("cmdwhang");
    let (env, dir) = command_world(&login, "true", "sleep 600", "2s");
    assert_exit(&env.login("a", &login), 0);
    edit_json(&dir.join("a.json"), expire_record);
    std::fs::write(dir.join("write-hangs"), "").unwrap();
    let o = env.run(&["token", "a"]);
    let token = assert_served_despite_the_store(&o, "did not finish within 2s");
    let rescue = env.dir.path().join("state/mailtoken/rescue/a.json");
    assert_eq!(mode(&rescue), 0o600);

    std::fs::remove_file(dir.join("write-hangs")).unwrap();
    expire_in(&rescue, "a");
    let o = env.run(&["token", "a"]);
    assert_exit(&o, 0);
    let fresh = stdout(&o).trim().to_owned();
    assert_ne!(fresh, token);
    assert!(active(&fresh), "the grant survived: {}", stderr(&o));
    assert_eq!(stats(&login, "refresh_grants"), 2);
    assert!(!rescue.exists());
}

#[test]
fn a_store_command_that_fails_on_read_says_so_and_asks_for_nothing_else() {
    let login = unique_login("cmdfail");
    let (env, dir) = command_world(
        &login,
        "echo 'gpg: decryption failed: No secret key' >&2; exit 2",
        "true",
        "10s",
    );
    assert_exit(&env.login("a", &login), 0);
    std::fs::write(dir.join("read-hangs"), "").unwrap();
    let o = env.run(&["token", "a"]);
    assert_exit(&o, 74);
    assert!(stdout(&o).is_empty());
    let e = stderr(&o);
    assert!(e.contains("gpg: decryption failed: No secret key"), "{e}");
    assert!(e.contains("exit status: 2"), "{e}");
    assert_eq!(stats(&login, "refresh_grants"), 0, "nothing was refreshed");
}
