//! `kill -9` at random moments of a refresh (issue 14), of `mailtoken token` with the
//! refresh worker it hands the refresh to (src/worker.rs: both are killed, as in a power
//! loss; killing `token` alone loses nothing, `slow_provider::a_token_call_killed_while_
//! its_refresh_waits_for_the_answer_loses_nothing`) and of the daemon refreshing at its
//! start, against the real authorization
//! server with rotating refresh tokens: there, using a refresh token that was already
//! rotated revokes the whole grant, so a rotation that never reached the store shows
//! up as a dead account.
//!
//! Each trial makes the stored access token expired, starts the process (which then
//! refreshes at once) and kills it (SIGKILL) at a random moment: half the kills are
//! spread over the process's whole run (from its start to past the save), the other
//! half over the refresh itself (from the moment its request reaches the server to past
//! the save). After each kill:
//!
//! * the store must load (a corrupt store fails the test at once), with at most one
//!   temp file beside it (the killed writer's);
//! * the server has rotated the refresh token at most once (never two refreshes);
//! * the grant is checked: `mailtoken token` must refresh with what the store holds
//!   and print an active token, or get `invalid_grant`;
//! * a lost grant is acceptable only as the window that no client can close: the server
//!   had rotated the refresh token for the killed process's request (which reached it
//!   before the kill) and the store still holds the one before. Any other loss fails.
//!
//! Instrumentation, all outside mailtoken: the token endpoint is reached through a
//! relay in this test (plain TCP, passing every byte on, which notes when a request
//! arrives and when the server's answer has been handed to mailtoken, and lets the
//! server finish a request whose client was killed before the next trial starts); the
//! server records when it rotated each refresh token (`rotated_at_ms` of
//! `/_test/stats`, tests/authserver/server.mjs); inotify notes when `tokens.json` is
//! renamed into place. All three read the same wall clock.
//!
//! The figures (kills by phase, losses, the window's width) are printed for
//! docs/reliability.md: `/work/devenv/run --test integration kill_trials:: --
//! --nocapture` (or `scripts/test kill_trials:: -- --nocapture`).

use crate::common;

use common::authserver;
use common::mailtoken::*;
use mailtoken::store::TokenStore;
use mailtoken::store::file::FileStore;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Kills per test: two tests (`token` in-process, the daemon), 200 kills in all.
const KILLS: usize = 100;

/// Milliseconds since the epoch, as the server's `rotated_at_ms` counts them.
fn ms_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// xorshift64*: the kill moments, from a seed that is printed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

// ---------------------------------------------------------------- the relay

/// One connection through the relay.
#[derive(Default)]
struct Conn {
    /// When the first byte of a request arrived from mailtoken.
    request_at: Option<f64>,
    /// Whole requests passed to the server, and whole answers received from it.
    requests: u32,
    answers: u32,
    /// When the last whole answer was written to mailtoken's socket (not set when
    /// mailtoken was gone by then).
    delivered_at: Option<f64>,
    client_gone: bool,
    server_gone: bool,
    upstream: Option<TcpStream>,
    /// The client's port, which tells the settling probe's connection apart.
    client_port: u16,
}

/// A TCP relay to the authorization server, for the token endpoint.
struct Relay {
    port: u16,
    conns: Arc<Mutex<Vec<Arc<Mutex<Conn>>>>>,
    requests: Receiver<f64>,
}

impl Relay {
    fn start() -> Relay {
        let issuer = authserver::issuer();
        let upstream = issuer
            .strip_prefix("http://")
            .expect("the test server speaks plain HTTP")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns: Arc<Mutex<Vec<Arc<Mutex<Conn>>>>> = Arc::default();
        let (tx, requests) = channel();
        let all = conns.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let server = TcpStream::connect(&upstream).expect("the authorization server");
                let conn = Arc::new(Mutex::new(Conn {
                    upstream: server.try_clone().ok(),
                    client_port: client.peer_addr().map_or(0, |a| a.port()),
                    ..Conn::default()
                }));
                all.lock().unwrap().push(conn.clone());
                pass_requests(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    conn.clone(),
                    tx.clone(),
                );
                pass_answers(server, client, conn);
            }
        });
        Relay {
            port,
            conns,
            requests,
        }
    }

    fn token_url(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// How many connections there have been so far (a trial's are those after).
    fn mark(&self) -> usize {
        while self.requests.try_recv().is_ok() {}
        self.conns.lock().unwrap().len()
    }

    /// Waits until every connection since `mark` has lost its client (the process is
    /// dead or done) and the server has answered every whole request it was given
    /// (a request sent just before the kill is still carried out by the server: it
    /// must be, before the grant is checked); then closes them on the server's side.
    fn settle(&self, mark: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        // A connection the process made just before it died may still wait in the
        // listen queue: once the relay has taken a probe connected after it, it has
        // taken every earlier one too (one accepting thread, in order).
        let probe = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let port = probe.local_addr().unwrap().port();
        while !self.conns.lock().unwrap()[mark..]
            .iter()
            .any(|c| c.lock().unwrap().client_port == port)
        {
            assert!(Instant::now() < deadline, "the relay took no connection");
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(probe);
        loop {
            let conns: Vec<_> = self.conns.lock().unwrap()[mark..].to_vec();
            let done = conns.iter().all(|c| {
                let c = c.lock().unwrap();
                c.client_gone && (c.answers >= c.requests || c.server_gone)
            });
            if done {
                for c in conns {
                    if let Some(s) = c.lock().unwrap().upstream.take() {
                        let _ = s.shutdown(Shutdown::Both);
                    }
                }
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not answer a request of the killed process"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// What the connections since `mark` saw: when the first request arrived, and
    /// when the last answer was handed over.
    fn seen(&self, mark: usize) -> (Option<f64>, Option<f64>) {
        let conns = self.conns.lock().unwrap();
        let mut first = None::<f64>;
        let mut delivered = None::<f64>;
        for c in &conns[mark..] {
            let c = c.lock().unwrap();
            if let Some(r) = c.request_at {
                first = Some(first.map_or(r, |f| f.min(r)));
            }
            if let Some(d) = c.delivered_at {
                delivered = Some(delivered.map_or(d, |x| x.max(d)));
            }
        }
        (first, delivered)
    }
}

/// The length of the first whole HTTP message in `buf` (headers and a
/// `Content-Length` or chunked body), if it is all there.
fn message_len(buf: &[u8]) -> Option<usize> {
    let head = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let headers = String::from_utf8_lossy(&buf[..head]).to_ascii_lowercase();
    let field = |name: &str| {
        headers
            .lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
    };
    if let Some(n) = field("content-length:") {
        let n: usize = n.parse().ok()?;
        return (buf.len() >= head + n).then_some(head + n);
    }
    if field("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
        let end = buf[head..].windows(5).position(|w| w == b"0\r\n\r\n")?;
        return Some(head + end + 5);
    }
    Some(head)
}

/// mailtoken → server. A client that goes away does not take its request back: the
/// server's side stays open until `Relay::settle` closes it.
fn pass_requests(mut from: TcpStream, mut to: TcpStream, conn: Arc<Mutex<Conn>>, tx: Sender<f64>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        let mut pending = Vec::new();
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let at = ms_now();
            {
                let mut c = conn.lock().unwrap();
                if c.request_at.is_none() {
                    c.request_at = Some(at);
                    let _ = tx.send(at);
                }
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
            pending.extend_from_slice(&buf[..n]);
            while let Some(len) = message_len(&pending) {
                pending.drain(..len);
                conn.lock().unwrap().requests += 1;
            }
        }
        conn.lock().unwrap().client_gone = true;
    });
}

/// server → mailtoken.
fn pass_answers(mut from: TcpStream, mut to: TcpStream, conn: Arc<Mutex<Conn>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        let mut pending = Vec::new();
        let mut client_alive = true;
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            client_alive = client_alive && to.write_all(&buf[..n]).is_ok();
            let at = ms_now();
            pending.extend_from_slice(&buf[..n]);
            while let Some(len) = message_len(&pending) {
                pending.drain(..len);
                let mut c = conn.lock().unwrap();
                c.answers += 1;
                if client_alive {
                    c.delivered_at = Some(at);
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        conn.lock().unwrap().server_gone = true;
    });
}

// ---------------------------------------------------------------- renames

/// When `tokens.json` was renamed into place (inotify `IN_MOVED_TO`, stamped when this
/// thread reads the event: an upper bound, a fraction of a millisecond late).
struct Renames {
    at: Arc<Mutex<Vec<f64>>>,
}

impl Renames {
    fn watch(dir: &Path) -> Renames {
        use std::os::unix::ffi::OsStrExt;
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        assert!(fd >= 0, "inotify: {}", std::io::Error::last_os_error());
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
        let wd = unsafe { libc::inotify_add_watch(fd, path.as_ptr(), libc::IN_MOVED_TO) };
        assert!(wd >= 0, "inotify: {}", std::io::Error::last_os_error());
        let at: Arc<Mutex<Vec<f64>>> = Arc::default();
        let seen = at.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    return;
                }
                let now = ms_now();
                let mut off = 0;
                let head = std::mem::size_of::<libc::inotify_event>();
                while off + head <= n as usize {
                    // SAFETY: the kernel wrote whole events; read_unaligned copes with
                    // their packing.
                    let ev: libc::inotify_event =
                        unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
                    let name = &buf[off + head..off + head + ev.len as usize];
                    let name = name.split(|&b| b == 0).next().unwrap_or_default();
                    if ev.mask & libc::IN_IGNORED != 0 {
                        unsafe { libc::close(fd) };
                        return;
                    }
                    if name == b"tokens.json" {
                        seen.lock().unwrap().push(now);
                    }
                    off += head + ev.len as usize;
                }
            }
        });
        Renames { at }
    }

    /// The first rename at or after `t`.
    fn first_after(&self, t: f64) -> Option<f64> {
        self.at.lock().unwrap().iter().copied().find(|&a| a >= t)
    }
}

// ---------------------------------------------------------------- the trials

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    /// `mailtoken token k`, refreshing in-process.
    Token,
    /// `mailtoken serve`, whose refresher refreshes the expired token at start.
    Daemon,
}

/// SIGKILL to `pid` (our own unreaped child) and every process it started. It is
/// stopped first (SIGSTOP), so that it starts none while they are looked up.
fn kill_with_descendants(pid: u32) {
    // SAFETY: kill(2) on our own unreaped child: its pid cannot be reused meanwhile.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };
    let state = |p: u32| {
        std::fs::read_to_string(format!("/proc/{p}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.chars().next()))
            .flatten()
    };
    let t = Instant::now();
    while !matches!(state(pid), Some('T' | 'Z' | 'X') | None) {
        assert!(t.elapsed() < Duration::from_secs(5), "{pid} did not stop");
        std::thread::yield_now();
    }
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let p = all[i];
        for task in std::fs::read_dir(format!("/proc/{p}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            all.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
        i += 1;
    }
    // Children first: once their parent dies they are reparented, and their pids stay
    // theirs until reaped, so killing them after it would be no less safe, only slower.
    for p in all.iter().rev() {
        // SAFETY: kill(2); a descendant is a zombie at worst until its parent reaps it.
        unsafe { libc::kill(*p as libc::pid_t, libc::SIGKILL) };
    }
}

/// Where in the refresh a kill landed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// No byte of the request had reached the server.
    BeforeRequest,
    /// The request was sent; its answer had not been handed to mailtoken.
    DuringRequest,
    /// The answer was handed to mailtoken; the store did not have it yet.
    AfterAnswer,
    /// The store had the new tokens.
    AfterSave,
}

const PHASES: [Phase; 4] = [
    Phase::BeforeRequest,
    Phase::DuringRequest,
    Phase::AfterAnswer,
    Phase::AfterSave,
];

struct World {
    env: Env,
    login: String,
    relay: Relay,
    renames: Renames,
}

impl World {
    fn new(tag: &str) -> World {
        let relay = Relay::start();
        let login = unique_login(tag);
        let toml = account_toml("k", &login, Client::Native).replace(
            &format!("token_url = \"{}/token\"", authserver::issuer()),
            &format!("token_url = \"{}\"", relay.token_url()),
        );
        assert!(toml.contains(&relay.token_url()), "{toml}");
        let env = Env::with_file_store(&toml);
        assert_exit(&env.login("k", &login), 0);
        let renames = Renames::watch(env.tokens_path().parent().unwrap());
        World {
            env,
            login,
            relay,
            renames,
        }
    }

    fn stored_refresh_token(&self) -> String {
        self.env.stored("k")["refresh_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn rotations(&self) -> Vec<f64> {
        let s = rt().block_on(authserver::stats(&self.login));
        s["rotated_at_ms"]
            .as_array()
            .expect("the server records rotations: start this tree's tests/authserver/server.mjs")
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    }

    fn reuse_revocations(&self) -> u64 {
        stats(&self.login, "reuse_revocations")
    }

    fn spawn(&self, target: Target) -> Child {
        let mut c = self.env.cmd();
        match target {
            Target::Token => c.args(["token", "k"]),
            Target::Daemon => c.arg("serve"),
        };
        // What `token` printed before it died is read after the kill (a token fits in
        // the pipe's buffer, so the pipe never holds it up).
        c.stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// One refresh to its end, as the check after a kill does (in-process: the daemon
    /// is dead). The token must be active, or the grant is gone (`None`).
    fn check_grant(&self) -> Result<String, String> {
        self.env.expire("k");
        let o = self.env.run(&["token", "k"]);
        if o.status.success() {
            let token = stdout(&o).lines().last().unwrap_or_default().to_owned();
            assert_eq!(
                introspect(&token)["active"],
                true,
                "a dead token was printed"
            );
            return Ok(token);
        }
        Err(stderr(&o))
    }

    /// The store must load; at most the killed writer's temp file may lie beside it.
    fn check_store(&self) {
        let path = self.env.tokens_path();
        let record = FileStore::new(&path)
            .load("k")
            .unwrap_or_else(|e| panic!("CORRUPT STORE after a kill: {e}"));
        assert!(record.is_some(), "the record is gone from the store");
        let dir = path.parent().unwrap();
        let temps: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(temps.len() <= 1, "temp files pile up: {temps:?}");
        let rescue = self.env.dir.path().join("state/mailtoken/rescue");
        assert!(
            !rescue.exists() || std::fs::read_dir(&rescue).unwrap().next().is_none(),
            "a file store on a working disk needed a rescue record"
        );
    }
}

/// What happened in one trial.
struct Trial {
    phase: Phase,
    /// The kill came this long after the server rotated the refresh token (negative:
    /// before), when it did.
    kill_after_rotation: Option<f64>,
    lost: bool,
}

/// Durations of uninterrupted refreshes, in ms.
#[derive(Default)]
struct Windows {
    /// From the request's first byte to the rename: once the request is sent, the
    /// server rotates the refresh token even if the client dies at once (every kill
    /// in that span lost the grant).
    request_to_rename: Vec<f64>,
    /// From the server's rotation to the rename of `tokens.json`: the loss window.
    rotation_to_rename: Vec<f64>,
    /// From the rotation to the answer handed to mailtoken (the server's and the
    /// network's part, which no client can shorten).
    rotation_to_answer: Vec<f64>,
    /// From the answer handed to mailtoken to the rename (mailtoken's part).
    answer_to_rename: Vec<f64>,
}

impl Windows {
    fn note(
        &mut self,
        (request, answered): (Option<f64>, Option<f64>),
        rotated: f64,
        renamed: Option<f64>,
    ) {
        if let Some(s) = renamed {
            self.rotation_to_rename.push(s - rotated);
            if let Some(r) = request {
                self.request_to_rename.push(s - r);
            }
        }
        if let Some(a) = answered {
            self.rotation_to_answer.push(a - rotated);
            if let Some(s) = renamed {
                self.answer_to_rename.push(s - a);
            }
        }
    }
}

fn summary(v: &[f64]) -> String {
    if v.is_empty() {
        return "no samples".into();
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    format!(
        "n={} min {:.2} median {:.2} p95 {:.2} max {:.2} ms",
        v.len(),
        v[0],
        q(0.5),
        q(0.95),
        v[v.len() - 1]
    )
}

/// Times an uninterrupted refresh by `target`: from the start to the request reaching
/// the server, and to the store's rename (ms).
fn calibrate(w: &World, target: Target, windows: &mut Windows) -> (f64, f64) {
    let (mut to_request, mut to_rename) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        w.env.expire("k");
        let rotations = w.rotations().len();
        let mark = w.relay.mark();
        let start = ms_now();
        let mut child = w.spawn(target);
        let deadline = Instant::now() + Duration::from_secs(20);
        let renamed = loop {
            if let Some(s) = w.renames.first_after(start) {
                break s;
            }
            assert!(Instant::now() < deadline, "no refresh was saved");
            std::thread::sleep(Duration::from_millis(1));
        };
        if target == Target::Daemon {
            let _ = child.kill();
        }
        child.wait().unwrap();
        w.relay.settle(mark);
        let (request, answered) = w.relay.seen(mark);
        to_request.push(request.unwrap() - start);
        to_rename.push(renamed - start);
        let rotated = w.rotations()[rotations..].to_vec();
        assert_eq!(rotated.len(), 1);
        windows.note((request, answered), rotated[0], Some(renamed));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(&mut to_request), median(&mut to_rename))
}

fn trials(target: Target, tag: &str) {
    let w = World::new(tag);
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rng = Rng(seed);
    let mut windows = Windows::default();
    let (to_request, to_rename) = calibrate(&w, target, &mut windows);
    let refresh_span = (to_rename - to_request).max(1.0);
    let started = Instant::now();
    let mut done: Vec<Trial> = Vec::new();
    let mut finished_first = 0;
    let mut relogins = 0;
    while done.len() < KILLS {
        assert!(
            done.len() + finished_first < KILLS * 3,
            "{finished_first} runs ended before their kill"
        );
        w.env.expire("k");
        let before = w.stored_refresh_token();
        let rotations_before = w.rotations().len();
        let revocations_before = w.reuse_revocations();
        let mark = w.relay.mark();
        // Half the kills over the whole run, half over the refresh itself.
        let whole_run = done.len().is_multiple_of(2);
        let start = ms_now();
        let mut child = w.spawn(target);
        let kill_at = if whole_run {
            start + rng.unit() * to_rename * 1.3
        } else {
            let request = w
                .relay
                .requests
                .recv_timeout(Duration::from_secs(20))
                .expect("the refresh request did not come");
            request + rng.unit() * refresh_span * 1.5
        };
        let wait = kill_at - ms_now();
        if wait > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(wait / 1000.0));
        }
        // `token` with the refresh worker it started (src/worker.rs), which would
        // otherwise finish the refresh: both die, as in a power loss.
        kill_with_descendants(child.id());
        let killed = ms_now();
        let status = child.wait().unwrap();
        let mut printed = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut printed)
            .unwrap();
        w.relay.settle(mark);
        if status.signal() != Some(libc::SIGKILL) {
            // `token` was done before the kill: not a kill trial.
            assert!(status.success(), "token failed: {status}");
            finished_first += 1;
            continue;
        }
        w.check_store();
        let rotated = w.rotations()[rotations_before..].to_vec();
        assert!(
            rotated.len() <= 1,
            "two refreshes in one run: rotations at {rotated:?}"
        );
        let kept = w.stored_refresh_token() != before;
        let (request, answered) = w.relay.seen(mark);
        // Only the killed process talks to the relay during the trial, so a request
        // that reached it is the process's own, sent before it died, even when the
        // relay read it after kill(2) returned (a process on the other core runs on
        // until the signal takes it, and the relay's read comes later still).
        let sent = request.is_some();
        let phase = if kept {
            Phase::AfterSave
        } else if !sent {
            Phase::BeforeRequest
        } else if answered.is_some_and(|a| a <= killed) {
            Phase::AfterAnswer
        } else {
            Phase::DuringRequest
        };
        if !printed.is_empty() {
            // Stored before handed out: a token that was printed is in the store.
            assert_eq!(
                w.env.stored("k")["access_token"].as_str(),
                printed.lines().last(),
                "a killed `token` printed a token the store does not hold"
            );
        }
        let rotation = rotated.first().copied();
        assert!(
            !kept || rotation.is_some(),
            "the store changed without a refresh"
        );
        if kept {
            windows.note(
                (request, answered),
                rotation.unwrap(),
                w.renames.first_after(rotation.unwrap()),
            );
        }
        let window_loss = rotation.is_some() && !kept;
        if window_loss {
            // The only acceptable loss: rotated for this process's request, not stored.
            assert!(
                sent && rotation.unwrap() >= start,
                "a rotation not caused by the killed process's request (request at {request:?}, killed at {killed}, rotated at {rotation:?})"
            );
        }
        let (vmark, vrotations) = (w.relay.mark(), w.rotations().len());
        let check = w.check_grant();
        w.relay.settle(vmark);
        if check.is_ok()
            && let [rotated] = w.rotations()[vrotations..]
        {
            windows.note(w.relay.seen(vmark), rotated, w.renames.first_after(rotated));
        }
        let lost = check.is_err();
        match (&check, window_loss) {
            (Ok(_), false) => {}
            (Err(e), true) => {
                assert!(
                    e.contains("invalid_grant"),
                    "after a rotation the store did not keep ({phase:?}), the check failed otherwise than with invalid_grant: {e}\nstored: {}\nserver: {}",
                    w.env.stored("k"),
                    rt().block_on(authserver::stats(&w.login))
                );
                assert_eq!(
                    w.reuse_revocations(),
                    revocations_before + 1,
                    "the grant died of the reuse of the pre-rotation refresh token"
                );
                assert_exit(&w.env.login("k", &w.login), 0);
                relogins += 1;
            }
            (Ok(_), true) => panic!(
                "the store held the pre-rotation refresh token, yet it still worked ({phase:?})"
            ),
            (Err(e), false) => panic!(
                "LOST GRANT outside the window: kill in phase {phase:?}, rotation {rotation:?}, kill at {killed}, stored refresh token replaced: {kept}\n{e}"
            ),
        }
        done.push(Trial {
            phase,
            kill_after_rotation: rotation.map(|r| killed - r),
            lost,
        });
    }
    let elapsed = started.elapsed();
    let name = match target {
        Target::Token => "mailtoken token (the refresh in its worker; both killed)",
        Target::Daemon => "mailtoken serve (refresh at start)",
    };
    let mut report = format!(
        "\n== kill -9 trials: {name}, seed {seed}, {:.1} s ==\n{} kills ({finished_first} more runs ended before their kill), 0 corrupt stores\n\
         uninterrupted run: request {to_request:.1} ms after the start, rename {to_rename:.1} ms\n",
        elapsed.as_secs_f64(),
        done.len()
    );
    for phase in PHASES {
        let n = done.iter().filter(|t| t.phase == phase).count();
        let lost = done.iter().filter(|t| t.phase == phase && t.lost).count();
        report.push_str(&format!("  {phase:?}: {n} kills, {lost} grants lost\n"));
    }
    let losses: Vec<f64> = done
        .iter()
        .filter(|t| t.lost)
        .filter_map(|t| t.kill_after_rotation)
        .collect();
    let kept: Vec<f64> = done
        .iter()
        .filter(|t| t.phase == Phase::AfterSave)
        .filter_map(|t| t.kill_after_rotation)
        .collect();
    report.push_str(&format!(
        "lost grants: {} of {} kills, all in the window (rotated, not yet stored); {relogins} logins again\n\
         kill after the rotation, lost: {}\nkill after the rotation, kept: {}\n\
         window measured on uninterrupted refreshes:\n  request sent -> rename: {}\n  rotation -> rename: {}\n  rotation -> answer handed over: {}\n  answer -> rename (mailtoken's part): {}\n",
        losses.len(),
        done.len(),
        summary(&losses),
        summary(&kept),
        summary(&windows.request_to_rename),
        summary(&windows.rotation_to_rename),
        summary(&windows.rotation_to_answer),
        summary(&windows.answer_to_rename),
    ));
    eprintln!("{report}");
}

#[test]
fn token_killed_at_random_moments_of_a_refresh_loses_a_grant_only_in_the_rotation_window() {
    trials(Target::Token, "kill-token");
}

#[test]
fn the_daemon_killed_at_random_moments_of_a_refresh_loses_a_grant_only_in_the_rotation_window() {
    trials(Target::Daemon, "kill-daemon");
}
