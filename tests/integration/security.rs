//! Security, tested (issue 14): the daemon's socket refuses another user, a real one
//! (`scripts/test` creates it: `MAILTOKEN_TEST_OTHER_USER`); the login's loopback
//! listener answers nothing but its one redirect, for its own host name only, and a
//! request head of at most 8 KiB; mailtoken's processes are not dumpable; the file store
//! and the rescue records are 0600 in 0700 directories. (No secret in any process's argv
//! or environment, or in the suite's logs: `tests/secretscan/`, around the whole suite.)

use crate::common;

use common::authserver::{Browser, Decision};
use common::mailtoken::*;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use url::Url;

/// The second user `scripts/test` made (useradd --system): its name, uid and gid.
fn other_user() -> (String, u32, u32) {
    let name = std::env::var("MAILTOKEN_TEST_OTHER_USER").expect(
        "MAILTOKEN_TEST_OTHER_USER is not set: scripts/test creates the user \
         (useradd --system --no-create-home mailtoken-test-other) and exports its name",
    );
    let id = |flag: &str| -> u32 {
        let o = Command::new("id").args([flag, &name]).output().unwrap();
        assert!(o.status.success(), "no user {name}: {}", stderr(&o));
        stdout(&o).trim().parse().unwrap()
    };
    let (uid, gid) = (id("-u"), id("-g"));
    assert!(
        uid != 0 && uid != unsafe { libc::geteuid() },
        "{name} must be another user than the tests' own (uid {uid})"
    );
    (name, uid, gid)
}

/// `program` run as the other user, with `env`'s world (its environment changes).
fn as_other(env: &Env, program: &str) -> Command {
    let (name, _, _) = other_user();
    let mut c = with_env_of(&env.cmd(), "setpriv");
    c.args([
        &format!("--reuid={name}"),
        &format!("--regid={name}"),
        "--clear-groups",
        "--",
        program,
    ])
    .env_remove("DBUS_SESSION_BUS_ADDRESS")
    .stdin(Stdio::null());
    c
}

/// Gives `env`'s whole directory to the other user, so that a mailtoken run as that
/// user finds its config and may write its state there.
fn give_to_other(env: &Env) {
    let (_, uid, gid) = other_user();
    std::fs::create_dir_all(env.dir.path().join("run")).unwrap();
    let o = Command::new("chown")
        .args(["-R", &format!("{uid}:{gid}")])
        .arg(env.dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn another_user_is_refused_on_the_socket() {
    let env = Env::with_file_store(&account_toml("u", &unique_login("uid"), Client::Native));
    let daemon = env.serve();
    // Open the way on purpose (as a careless chmod would) so that only the peer check
    // stands between another user and the tokens.
    for p in [
        env.dir.path().to_owned(),
        env.dir.path().join("run"),
        env.socket_path().parent().unwrap().to_owned(),
    ] {
        set_mode(&p, 0o755);
    }
    set_mode(&daemon.socket, 0o777);
    // The real client, as the other user, with nothing of ours but the socket's path.
    let (name, _, _) = other_user();
    let o = Command::new("setpriv")
        .args([
            &format!("--reuid={name}"),
            &format!("--regid={name}"),
            "--clear-groups",
            "env",
            "-i",
        ])
        .arg(format!("MAILTOKEN_SOCKET={}", daemon.socket.display()))
        .args([BIN, "token", "u"])
        .output()
        .unwrap();
    assert_exit(&o, 77);
    assert!(
        stderr(&o).contains("permission denied: this daemon serves only its own user"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).is_empty());
}

// ---- the login's loopback listener ------------------------------------------------

/// A login waiting for its redirect, and the redirect the authorization server sent the
/// browser to (the real code and state), not yet delivered.
struct Waiting {
    env: Env,
    child: Child,
    rest: std::thread::JoinHandle<String>,
    redirect: Url,
}

fn waiting_login(tag: &str) -> Waiting {
    let login = unique_login(tag);
    let env = Env::with_file_store(&account_toml("a", &login, Client::Native));
    let (child, url, rest) = env.start_login(&["a", "--no-browser", "--timeout", "60s"]);
    let redirect = rt()
        .block_on(Browser::new().authorize(&url, &login, Decision::Approve))
        .unwrap();
    Waiting {
        env,
        child,
        rest,
        redirect,
    }
}

impl Waiting {
    fn port(&self) -> u16 {
        self.redirect.port().unwrap()
    }

    /// The path and query of the real redirect.
    fn target(&self) -> String {
        format!(
            "{}?{}",
            self.redirect.path(),
            self.redirect.query().unwrap()
        )
    }

    /// Delivers the real redirect, as the browser does; the login then ends well.
    fn complete(self) {
        let r = rt().block_on(reqwest::get(self.redirect.as_str())).unwrap();
        assert_eq!(r.status(), 200);
        let o = finish(self.child, self.rest);
        assert_exit(&o, 0);
        let token = stdout(&self.env.run(&["token", "a"]));
        assert_eq!(introspect(token.trim())["active"], true);
    }
}

/// One request on a connection of its own: the answer's status, head and body.
fn raw(port: u16, request: &str) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

#[test]
fn a_redirect_from_a_page_of_another_host_is_refused_and_the_real_one_still_logs_in() {
    let w = waiting_login("rebinding");
    // DNS rebinding: a page of evil.example, its name resolving to 127.0.0.1, sends the
    // browser's request to the listener's port; it names its own host. Even with the
    // real code and state (which such a page could not know) nothing is done with it.
    let (port, target) = (w.port(), w.target());
    for host in [
        format!("evil.example:{port}"),
        format!("127.0.0.1.evil.example:{port}"),
        format!("localhost:{}", port.wrapping_add(1)),
    ] {
        let (status, _, body) = raw(
            port,
            &format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(
            (status, &*body),
            (421, "421 Misdirected Request\n"),
            "{host}"
        );
    }
    w.complete();
}

#[test]
fn an_oversized_request_is_refused_and_the_real_redirect_still_logs_in() {
    let w = waiting_login("oversized");
    let (port, target) = (w.port(), w.target());
    let host = format!("Host: 127.0.0.1:{port}\r\n");
    let pad = "x".repeat(9 * 1024);
    let (status, _, body) = raw(
        port,
        &format!("GET {target}&p={pad} HTTP/1.1\r\n{host}\r\n"),
    );
    assert_eq!((status, &*body), (431, ""), "a long target");
    let (status, _, _) = raw(
        port,
        &format!("GET {target} HTTP/1.1\r\n{host}Cookie: {pad}\r\n\r\n"),
    );
    assert_eq!(status, 431, "long headers");
    w.complete();
}

#[test]
fn the_login_listener_answers_nothing_but_its_redirect() {
    let w = waiting_login("onlyredirect");
    let (port, target) = (w.port(), w.target());
    let query = w.redirect.query().unwrap().to_owned();
    let host = format!("Host: localhost:{port}\r\n");
    for path in [
        "/favicon.ico",
        "/index.html",
        "/..%2f..%2fetc/passwd",
        "/a/b/",
    ] {
        let (status, _, body) = raw(port, &format!("GET {path}?{query} HTTP/1.1\r\n{host}\r\n"));
        assert_eq!((status, &*body), (404, "404 Not Found\n"), "{path}");
    }
    for method in [
        "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
    ] {
        let (status, head, body) = raw(
            port,
            &format!(
                "{method} {target} HTTP/1.1\r\n{host}X-Echo: echo-me\r\nContent-Length: 0\r\n\r\n"
            ),
        );
        assert_eq!(status, 405, "{method}: {head}");
        assert!(
            head.to_ascii_lowercase().contains("\r\nallow: get"),
            "{head}"
        );
        assert_eq!(body, "405 Method Not Allowed\n", "{method}");
    }
    // HEAD would answer the redirect without its page: refused as well.
    let (status, _, body) = raw(port, &format!("HEAD {target} HTTP/1.1\r\n{host}\r\n"));
    assert_eq!((status, &*body), (405, ""));
    w.complete();
}

// ---- no core dumps, no debugger --------------------------------------------------------

/// Who owns `/proc/PID/environ`: the process's user, or root when the process is not
/// dumpable (proc(5): the files of `/proc/PID`, not the directory, follow the
/// "dumpable" attribute).
fn environ_owner(pid: u32) -> u32 {
    std::fs::metadata(format!("/proc/{pid}/environ"))
        .unwrap()
        .uid()
}

/// The first `Uid:` of `/proc/PID/status`: whom the process runs as.
fn runs_as(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Whether the other user may read `/proc/PID/environ`, as a debugger reads memory
/// (both need ptrace access, proc(5)).
fn other_reads_environ(env: &Env, pid: u32) -> bool {
    as_other(env, "cat")
        .arg(format!("/proc/{pid}/environ"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn mailtokens_processes_are_not_dumpable_even_by_their_own_user() {
    let (_, uid, _) = other_user();
    let login = unique_login("dumpable");
    let env = Env::with_file_store(&account_toml("a", &login, Client::Native));
    give_to_other(&env);
    // What any process of that user looks like: its /proc entry is its own, and the
    // user may read its environment.
    let control = Killed(as_other(&env, "sleep").arg("60").spawn().unwrap());
    // The daemon, and a login waiting for the browser (the CLI holds tokens too).
    let daemon = Killed(
        as_other(&env, BIN)
            .arg("serve")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut waiting = as_other(&env, BIN)
        .args(["login", "a", "--no-browser", "--timeout", "60s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = read_auth_url(&mut waiting);
    let login = Killed(waiting);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env.socket_path().exists() {
        assert!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = |k: &Killed| k.0.id();
    assert_eq!(runs_as(pid(&control)), uid);
    assert_eq!(environ_owner(pid(&control)), uid);
    assert!(other_reads_environ(&env, pid(&control)));
    for (what, p) in [("the daemon", pid(&daemon)), ("a login", pid(&login))] {
        assert_eq!(runs_as(p), uid, "{what} runs as the other user");
        // A non-dumpable process's /proc files belong to root (PR_SET_DUMPABLE in
        // prctl(2)), and its memory is closed to its own user.
        assert_eq!(environ_owner(p), 0, "{what}'s /proc files are root's");
        assert!(
            !other_reads_environ(&env, p),
            "{what}'s environment is closed to its own user"
        );
    }
}

/// `core_pattern` names a file (not a program, `|...`): the directory it is written to,
/// relative to a process's working directory `cwd`.
fn core_dir(cwd: &Path) -> Option<std::path::PathBuf> {
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let pattern = pattern.trim();
    if pattern.starts_with('|') || pattern.is_empty() {
        return None;
    }
    let p = cwd.join(pattern);
    Some(p.parent().unwrap().to_owned())
}

/// Starts `c` in `cwd` with no limit on the size of its core, kills it with SIGSEGV and
/// says whether the kernel dumped its core (WCOREDUMP).
fn crash(mut c: Command, cwd: &Path, ready: impl FnOnce(u32)) -> bool {
    c.current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        c.pre_exec(|| {
            let unlimited = libc::rlimit {
                rlim_cur: libc::RLIM_INFINITY,
                rlim_max: libc::RLIM_INFINITY,
            };
            match libc::setrlimit(libc::RLIMIT_CORE, &unlimited) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    let mut child = c.spawn().unwrap();
    ready(child.id());
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGSEGV) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
    status.core_dumped()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_crashing_daemon_leaves_no_core_dump() {
    let login = unique_login("core");
    let env = Env::with_file_store(&account_toml("a", &login, Client::Native));
    assert_exit(&env.login("a", &login), 0);
    let dumps = tempfile::tempdir().unwrap();
    // The control: any other process, crashed the same way, leaves its core.
    let control_cwd = dumps.path().join("control");
    std::fs::create_dir(&control_cwd).unwrap();
    let mut sleep = Command::new("sleep");
    sleep.arg("60");
    assert!(
        crash(sleep, &control_cwd, |_| std::thread::sleep(
            Duration::from_millis(200)
        )),
        "no core dump even for `sleep` with RLIMIT_CORE unlimited: this machine dumps no \
         cores (core_pattern {:?}, fs.suid_dumpable {:?}), so this test can show nothing",
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default(),
        std::fs::read_to_string("/proc/sys/fs/suid_dumpable").unwrap_or_default(),
    );
    let file_dumps = core_dir(&control_cwd);
    if let Some(d) = &file_dumps {
        assert!(!entries(d).is_empty(), "the control's core file in {d:?}");
    }
    // The daemon, holding the account's tokens in memory.
    let daemon_cwd = dumps.path().join("daemon");
    std::fs::create_dir(&daemon_cwd).unwrap();
    let before = core_dir(&daemon_cwd).map(|d| entries(&d));
    let mut serve = env.cmd();
    serve.arg("serve");
    let socket = env.socket_path();
    let dumped = crash(serve, &daemon_cwd, |_| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "the daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Asked once, so that it holds the account's tokens.
        assert_exit(&env.run(&["token", "a"]), 0);
    });
    assert!(!dumped, "the kernel dumped the daemon's core");
    if let (Some(d), Some(before)) = (core_dir(&daemon_cwd), before) {
        assert_eq!(entries(&d), before, "no core file in {d:?}");
    }
}

// ---- the files that hold tokens --------------------------------------------------------

/// Every directory under `root` (itself included) is 0700 and every file in them 0600;
/// returns the files, relative to `root`.
fn assert_private(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700, "{} is {mode:04o}", dir.display());
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                dirs.push(e.path());
                continue;
            }
            let mode = meta.permissions().mode() & 0o7777;
            assert_eq!(mode, 0o600, "{} is {mode:04o}", e.path().display());
            files.push(
                e.path()
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    files.sort();
    files
}

#[test]
fn the_token_file_is_0600_in_a_0700_directory_after_a_login_and_after_a_refresh() {
    let login = unique_login("modes");
    let env = Env::with_file_store(&account_toml("a", &login, Client::Native));
    let state = env.dir.path().join("state/mailtoken");
    assert_exit(&env.login("a", &login), 0);
    let files = assert_private(&state);
    assert!(files.contains(&"tokens.json".to_owned()), "{files:?}");
    let before = env.stored("a")["refresh_token"].clone();
    env.expire("a");
    assert_exit(&env.run(&["token", "a"]), 0);
    assert_ne!(
        env.stored("a")["refresh_token"],
        before,
        "a refresh happened"
    );
    let files = assert_private(&state);
    assert!(
        files.contains(&"tokens.json".to_owned()) && files.iter().any(|f| f.starts_with("locks/")),
        "{files:?}"
    );
}

#[test]
fn a_rescue_record_is_0600_in_a_0700_directory() {
    let login = unique_login("rescuemodes");
    let env = Env::new("", "");
    let records = env.dir.path().join("records");
    std::fs::create_dir_all(&records).unwrap();
    let d = records.display();
    // A store command that keeps DIR/ACCOUNT.json and fails to write while DIR/broken
    // exists, as on a full disk (see store_refusal.rs).
    env.write_config(&format!(
        "timeout = \"10s\"\n[store]\nkind = \"command\"\n\
         read = \"cat {d}/{{account}}.json 2>/dev/null || true\"\n\
         write = \"if [ -e {d}/broken ]; then echo 'write error: No space left on device' >&2; exit 1; fi; cat > {d}/{{account}}.json\"\n\
         {}",
        account_toml("a", &login, Client::Native)
    ));
    assert_exit(&env.login("a", &login), 0);
    let stored = records.join("a.json");
    let mut record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stored).unwrap()).unwrap();
    record["obtained_at"] = (now() - 3700).into();
    record["expires_at"] = (now() - 100).into();
    std::fs::write(&stored, record.to_string()).unwrap();
    std::fs::write(records.join("broken"), "").unwrap();
    let o = env.run(&["token", "a"]);
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("could not be saved"), "{}", stderr(&o));
    let files = assert_private(&env.dir.path().join("state/mailtoken"));
    assert!(files.contains(&"rescue/a.json".to_owned()), "{files:?}");
}

#[test]
fn a_state_directory_left_open_is_closed_and_its_token_file_too() {
    let login = unique_login("opendir");
    let env = Env::with_file_store(&account_toml("a", &login, Client::Native));
    // The directories made 0755 by hand (or by an old umask-following tool) before the
    // first login; the way to them open to everyone.
    let state = env.dir.path().join("state/mailtoken");
    std::fs::create_dir_all(&state).unwrap();
    for p in [env.dir.path(), &env.dir.path().join("state"), &state] {
        set_mode(p, 0o755);
    }
    assert_exit(&env.login("a", &login), 0);
    let tokens = env.tokens_path();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&tokens), 0o600);
    // mailtoken's own directory is made 0700; the ones above it are not its own.
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&env.dir.path().join("state")), 0o755);
    let o = as_other(&env, "cat").arg(&tokens).output().unwrap();
    assert!(
        !o.status.success() && stdout(&o).is_empty(),
        "another user read the tokens: {}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("Permission denied"), "{}", stderr(&o));
}
