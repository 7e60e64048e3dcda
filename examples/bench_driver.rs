//! The driver behind `scripts/bench` for the daemon's figures: it builds isolated worlds
//! (config, state and runtime dirs, as tests/integration/common/mailtoken.rs does), starts and stops
//! `mailtoken serve`, and prints each figure beside its target. Not a test: nothing here
//! fails a build; a missed target is printed as MISS and the run goes on.
//!
//!   bench_driver client|daemon|load|burst|backoff|abuse|scale
//!
//! Paths come from the environment (scripts/bench sets them): BENCH_BIN (mailtoken),
//! BENCH_SEED (the seed_store example), BENCH_PAIRS and BENCH_CLIENT (the C programs of
//! benches/), BENCH_WORK (a scratch dir, removed by the script) and BENCH_SUMMARY (a
//! file that gets one tab-separated row per figure, for the final table).
//!
//! Every daemon is started with PR_SET_PDEATHSIG = SIGKILL, so none outlives the driver
//! even if the driver is killed; the normal path stops each one with SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn main() {
    let what = std::env::args().nth(1).unwrap_or_default();
    match what.as_str() {
        "client" => client(),
        "daemon" => daemon(),
        "load" => load(),
        "burst" => burst(),
        "backoff" => backoff(),
        "abuse" => abuse(),
        "scale" => scale(),
        _ => {
            eprintln!("usage: bench_driver client|daemon|load|burst|backoff|abuse|scale");
            std::process::exit(64);
        }
    }
}

// --- paths, worlds, daemons ----------------------------------------------------------

fn env_path(key: &str) -> PathBuf {
    PathBuf::from(std::env::var_os(key).unwrap_or_else(|| panic!("{key} is not set")))
}

fn env_num(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The credential the seed_store example stores, as `token` prints it.
fn seeded_token() -> String {
    "bench-access-token-".repeat(8)
}

fn token_request(account: &str, wait_ms: u64) -> String {
    format!(
        "{{\"v\":1,\"op\":\"token\",\"account\":\"{account}\",\"format\":\"raw\",\"min_valid\":300,\"for\":\"imap\",\"wait_ms\":{wait_ms}}}\n"
    )
}

fn account_toml(name: &str, token_url: &str) -> String {
    format!(
        "[accounts.{name}]\nuser = \"{name}@example.test\"\nauth_url = \"http://127.0.0.1:9/auth\"\n\
         token_url = \"{token_url}\"\nclient_id = \"bench\"\nscopes = [\"mail\"]\n"
    )
}

/// One user's world: its own config, state dir and runtime dir (so its own socket).
struct World {
    dir: PathBuf,
}

impl World {
    fn new(name: &str, config: &str) -> World {
        let dir = env_path("BENCH_WORK").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["config", "state", "run"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("run"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(dir.join("config.toml"), config).unwrap();
        World { dir }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("run/mailtoken/socket")
    }

    /// A command in this world, as a mail program would run it: no stdin, no proxy, no
    /// session bus (the file store needs none).
    fn cmd(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.env("MAILTOKEN_CONFIG", self.dir.join("config.toml"))
            .env("MAILTOKEN_SOCKET", self.socket())
            .env("XDG_CONFIG_HOME", self.dir.join("config"))
            .env("XDG_STATE_HOME", self.dir.join("state"))
            .env("XDG_RUNTIME_DIR", self.dir.join("run"))
            .env("HOME", &self.dir)
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
            .stdin(Stdio::null());
        for v in [
            "http_proxy",
            "HTTP_PROXY",
            "https_proxy",
            "HTTPS_PROXY",
            "all_proxy",
            "ALL_PROXY",
        ] {
            c.env_remove(v);
        }
        c
    }

    fn seed(&self, accounts: &[String], expired: bool) {
        let mut c = self.cmd(&env_path("BENCH_SEED"));
        if expired {
            c.arg("--expired");
        }
        let o = c.args(accounts).stderr(Stdio::piped()).output().unwrap();
        assert!(
            o.status.success(),
            "seed_store failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// Spawns `mailtoken serve` (stderr to a log file) without waiting for it.
    fn spawn_daemon(&self) -> Daemon {
        let log = self.dir.join("serve.log");
        let mut c = self.cmd(&env_path("BENCH_BIN"));
        c.arg("serve")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        // SAFETY: prctl is async-signal-safe; the daemon dies with the driver.
        unsafe {
            c.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        Daemon {
            child: Some(c.spawn().unwrap()),
            socket: self.socket(),
            log,
        }
    }

    /// Starts `mailtoken serve` and waits until it answers a ping.
    fn serve(&self) -> Daemon {
        let d = self.spawn_daemon();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ping(&d.socket) {
                return d;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("the daemon did not start: {}", d.log());
    }
}

struct Daemon {
    child: Option<Child>,
    socket: PathBuf,
    log: PathBuf,
}

impl Daemon {
    fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then SIGKILL if it has not gone within 5 s.
    fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        eprintln!("bench_driver: the daemon ignored SIGTERM for 5 s; killing it");
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One request line on a new connection, one reply line back.
fn ask(socket: &Path, line: &str) -> std::io::Result<String> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(line.as_bytes())?;
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply)?;
    Ok(reply)
}

fn ping(socket: &Path) -> bool {
    ask(socket, "{\"v\":1,\"op\":\"ping\"}\n").is_ok_and(|r| r.contains("\"ok\":true"))
}

/// A field of /proc/PID/status, in kB.
fn proc_status_kib(pid: i32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// utime + stime of a whole process, in clock ticks (fields 14 and 15 of
/// /proc/PID/stat, counted after the parenthesised command name).
fn cpu_ticks(pid: i32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &text[text.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime 15.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

// --- reporting -----------------------------------------------------------------------

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Prints one figure with its target and appends it to the summary table.
fn figure(name: &str, measured: &str, target: &str, pass: Option<bool>) {
    let verdict = match pass {
        Some(true) => "pass",
        Some(false) => "MISS",
        None => "info",
    };
    if target.is_empty() {
        println!("  {name}: {measured}");
    } else {
        println!("  {name}: {measured} (target {target}) {verdict}");
    }
    if let Some(p) = std::env::var_os("BENCH_SUMMARY") {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(p)
            .unwrap();
        writeln!(
            f,
            "{name}\t{measured}\t{}\t{verdict}",
            if target.is_empty() { "-" } else { target }
        )
        .unwrap();
    }
}

fn note(s: &str) {
    println!("    {s}");
}

fn mib(kib: f64) -> String {
    format!("{:.2} MiB", kib / 1024.0)
}

// --- figure 1: the daemon's client path vs a minimal client --------------------------

/// Runs benches/bench_pairs (A vs B, alternating) in world `w`; its "key value" lines.
fn run_pairs(w: &World, n: u64, a: &[&std::ffi::OsStr], b: &[&std::ffi::OsStr]) -> Pairs {
    let o = w
        .cmd(&env_path("BENCH_PAIRS"))
        .arg(n.to_string())
        .args(a)
        .arg("--")
        .args(b)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "bench_pairs failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Pairs(String::from_utf8_lossy(&o.stdout).into_owned())
}

struct Pairs(String);

impl Pairs {
    fn get(&self, k: &str) -> f64 {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("bench_pairs printed no {k}: {}", self.0))
            .trim()
            .parse()
            .unwrap()
    }
}

fn client() {
    let w = World::new("client", &account_toml("bench", "http://127.0.0.1:9/token"));
    w.seed(&["bench".into()], false);
    let _d = w.serve();
    let n = env_num("BENCH_PAIRS_N", 1000);
    let bin = env_path("BENCH_BIN");
    let c = env_path("BENCH_CLIENT");
    // The minimal client prints the seeded token; bench_pairs then checks that every
    // run of both printed the same bytes as the first run of A.
    let sample = w.cmd(&c).arg("bench").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&sample.stdout),
        seeded_token() + "\n",
        "the minimal client prints the seeded token"
    );
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    let p = run_pairs(
        &w,
        n,
        &[bin.as_os_str(), os("token"), os("bench")],
        &[c.as_os_str(), os("bench")],
    );
    let failures = p.get("failures");
    let ratio = p.get("ratio_median");
    figure(
        "daemon token / minimal client, median of paired ratios",
        &format!(
            "{ratio:.2} (p10 {:.2}, p90 {:.2}; {n} pairs, {failures} wrong outputs)",
            p.get("ratio_p10"),
            p.get("ratio_p90")
        ),
        "<= 1.3",
        Some(ratio <= 1.3 && failures == 0.0),
    );
    figure(
        "daemon token, median wall (paired run)",
        &format!("{:.0} us", p.get("a_median_us")),
        "",
        None,
    );
    figure(
        "minimal C client, median wall (paired run)",
        &format!("{:.0} us", p.get("b_median_us")),
        "",
        None,
    );
    let rss = p.get("a_rss_max_kib");
    figure(
        "daemon token, peak RSS (ru_maxrss, max over runs)",
        &format!("{} (median {})", mib(rss), mib(p.get("a_rss_median_kib"))),
        "<= 3 MiB",
        Some(rss <= 3072.0),
    );
    figure(
        "minimal C client, peak RSS (ru_maxrss, max over runs)",
        &format!(
            "{} (launcher floor {})",
            mib(p.get("b_rss_max_kib")),
            mib(p.get("self_hwm_kib"))
        ),
        "",
        None,
    );
    // Diagnostics: where the gap comes from, each against the same C client.
    let n = n / 2;
    for (key, what) in [
        (
            "BENCH_STD_CLIENT",
            "diagnostic: Rust std-only client / minimal C client",
        ),
        (
            "BENCH_LEAN_CLIENT",
            "diagnostic: crate's client::ask without clap / minimal C client",
        ),
    ] {
        let Some(prog) = std::env::var_os(key) else {
            continue;
        };
        let p = run_pairs(
            &w,
            n,
            &[prog.as_os_str(), os("bench")],
            &[c.as_os_str(), os("bench")],
        );
        figure(
            what,
            &format!(
                "{:.2} ({:.0} us vs {:.0} us; peak RSS {}; {n} pairs, {} wrong outputs)",
                p.get("ratio_median"),
                p.get("a_median_us"),
                p.get("b_median_us"),
                mib(p.get("a_rss_max_kib")),
                p.get("failures")
            ),
            "",
            None,
        );
    }
}

// --- figure 3: idle daemon with 50 accounts ------------------------------------------

fn daemon() {
    let names: Vec<String> = (1..=50).map(|i| format!("acct{i:02}")).collect();
    let config: String = std::iter::once("[store]\nkind = \"file\"\n".to_owned())
        .chain(
            names
                .iter()
                .map(|n| account_toml(n, "http://127.0.0.1:9/token")),
        )
        .collect::<Vec<_>>()
        .join("\n");
    let w = World::new("daemon50", &config);
    w.seed(&names, false);

    // Start-to-accepting: spawn, then connect-and-ping in a loop (50 us apart) until
    // the first ping is answered. Two starts first, unmeasured, for the page cache.
    let starts = env_num("BENCH_STARTS", 20) as usize;
    let mut times = Vec::new();
    for i in 0..starts + 2 {
        let t0 = Instant::now();
        let mut d = w.spawn_daemon();
        let deadline = t0 + Duration::from_secs(10);
        loop {
            if ping(&d.socket) {
                break;
            }
            assert!(Instant::now() < deadline, "no start: {}", d.log());
            std::thread::sleep(Duration::from_micros(50));
        }
        let t = t0.elapsed();
        d.stop();
        if i >= 2 {
            times.push(t.as_secs_f64() * 1e3);
        }
    }
    let med = quantile(&mut times, 0.5);
    let max = quantile(&mut times, 1.0);
    figure(
        "daemon start to first answered ping, 50 accounts (median)",
        &format!("{med:.2} ms (max {max:.2} ms, {starts} starts)"),
        "<= 10 ms",
        Some(med <= 10.0),
    );

    // Idle: every account holds a token (checked through the socket), then settle.
    let d = w.serve();
    for n in &names {
        let r = ask(&d.socket, &token_request(n, 0)).unwrap();
        assert!(r.contains(&seeded_token()), "{n}: {r}");
    }
    std::thread::sleep(Duration::from_secs(2));
    let pid = d.pid();
    let rss = proc_status_kib(pid, "VmRSS") as f64;
    let (anon, file) = (
        proc_status_kib(pid, "RssAnon") as f64,
        proc_status_kib(pid, "RssFile") as f64,
    );
    let threads_before = proc_status_kib(pid, "Threads");
    let ticks0 = cpu_ticks(pid);
    let idle = env_num("BENCH_IDLE_SECS", 10);
    std::thread::sleep(Duration::from_secs(idle));
    let ticks = cpu_ticks(pid) - ticks0;
    let rss_after = proc_status_kib(pid, "VmRSS") as f64;
    let hwm = proc_status_kib(pid, "VmHWM") as f64;
    figure(
        "daemon idle RSS, 50 accounts holding tokens (VmRSS 2 s after the last request)",
        &format!(
            "{} (anonymous {}, mapped from files {}; {} after the idle window; VmHWM {}; threads {} -> {})",
            mib(rss),
            mib(anon),
            mib(file),
            mib(rss_after),
            mib(hwm),
            threads_before,
            proc_status_kib(pid, "Threads")
        ),
        "<= 6 MiB",
        Some(rss <= 6144.0 && rss_after <= 6144.0),
    );
    figure(
        &format!("daemon CPU while idle (utime+stime over {idle} s)"),
        &format!("{ticks} ticks (1 tick = 1/{} s)", unsafe {
            libc::sysconf(libc::_SC_CLK_TCK)
        }),
        "0 ticks",
        Some(ticks == 0),
    );
}

// --- figure 4: 64 concurrent clients -------------------------------------------------

fn load() {
    let w = World::new("load", &account_toml("bench", "http://127.0.0.1:9/token"));
    w.seed(&["bench".into()], false);
    let d = w.serve();
    let clients = env_num("BENCH_LOAD_CLIENTS", 64) as usize;
    let secs = env_num("BENCH_LOAD_SECS", 10);
    let request = token_request("bench", 0);
    // The reply carries the token's expiry, which the seeding chose: take the first
    // reply, check it, and hold every later one to it byte for byte.
    let expected = {
        let s = UnixStream::connect(&d.socket).unwrap();
        (&s).write_all(request.as_bytes()).unwrap();
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ok"], true, "{line}");
        assert_eq!(v["credential"], seeded_token().as_str(), "{line}");
        assert!(v["expires_at"].as_u64().is_some(), "{line}");
        line
    };
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let ticks0 = cpu_ticks(d.pid());
    let start = Instant::now();
    // Each of the 64 threads keeps one request in flight, on a new connection per
    // request as `mailtoken token` makes one; every reply is compared byte for byte.
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (stop, errors) = (stop.clone(), errors.clone());
            let (socket, request, expected) = (d.socket.clone(), request.clone(), expected.clone());
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(100_000);
                let mut line = Vec::with_capacity(512);
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let ok = (|| -> std::io::Result<bool> {
                        let s = UnixStream::connect(&socket)?;
                        s.set_read_timeout(Some(Duration::from_secs(30)))?;
                        (&s).write_all(request.as_bytes())?;
                        line.clear();
                        BufReader::new(&s).read_until(b'\n', &mut line)?;
                        Ok(line == expected.as_bytes())
                    })();
                    lat.push(t.elapsed().as_secs_f64() * 1e6);
                    if !matches!(ok, Ok(true)) {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let mut lat: Vec<f64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let elapsed = start.elapsed().as_secs_f64();
    let ticks = cpu_ticks(d.pid()) - ticks0;
    let n = lat.len();
    let errors = errors.load(Ordering::Relaxed);
    let p50 = quantile(&mut lat, 0.5);
    let p99 = quantile(&mut lat, 0.99);
    let max = quantile(&mut lat, 1.0);
    figure(
        &format!("load: {clients} concurrent clients for {secs} s, new connection per request"),
        &format!(
            "{:.0} requests/s, p99 {:.2} ms (p50 {:.2} ms, max {:.2} ms), {n} requests, {errors} wrong or failed",
            n as f64 / elapsed,
            p99 / 1e3,
            p50 / 1e3,
            max / 1e3
        ),
        "every reply correct",
        Some(errors == 0 && n > 0),
    );
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    note(&format!(
        "daemon CPU during the load: {:.0}% of one core; daemon VmHWM after it: {}",
        ticks as f64 / hz / elapsed * 100.0,
        mib(proc_status_kib(d.pid(), "VmHWM") as f64)
    ));
}

// --- figure 5: a fake token endpoint -------------------------------------------------

/// A FAKE OAuth token endpoint on 127.0.0.1 (HTTP/1.1, one thread per connection),
/// standing in for a provider: nothing here talks to a real one. It counts the requests
/// to /token and answers each, after `delay`, either a token response
/// `{"access_token":"fake-access-N","token_type":"Bearer","expires_in":3600}` (N = the
/// request's number) or a bare 503.
struct FakeEndpoint {
    port: u16,
    requests: Arc<Mutex<Vec<Instant>>>,
    fail: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
}

impl FakeEndpoint {
    fn start() -> FakeEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let fe = FakeEndpoint {
            port,
            requests: Arc::new(Mutex::new(Vec::new())),
            fail: Arc::new(AtomicBool::new(false)),
            delay_ms: Arc::new(AtomicU64::new(0)),
        };
        let (requests, fail, delay) = (fe.requests.clone(), fe.fail.clone(), fe.delay_ms.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (requests, fail, delay) = (requests.clone(), fail.clone(), delay.clone());
                std::thread::spawn(move || {
                    let _ = serve_http(conn, &requests, &fail, &delay);
                });
            }
        });
        fe
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    fn set(&self, fail: bool, delay: Duration) {
        self.fail.store(fail, Ordering::SeqCst);
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
        self.requests.lock().unwrap().clear();
    }

    fn times(&self) -> Vec<Instant> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve_http(
    mut conn: TcpStream,
    requests: &Mutex<Vec<Instant>>,
    fail: &AtomicBool,
    delay: &AtomicU64,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let n = {
        let mut r = requests.lock().unwrap();
        if first.starts_with("POST /token") {
            r.push(Instant::now());
        }
        r.len()
    };
    std::thread::sleep(Duration::from_millis(delay.load(Ordering::SeqCst)));
    let (status, json) = if fail.load(Ordering::SeqCst) {
        ("503 Service Unavailable", String::new())
    } else {
        (
            "200 OK",
            format!(
                "{{\"access_token\":\"fake-access-{n}\",\"token_type\":\"Bearer\",\"expires_in\":3600}}"
            ),
        )
    };
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    )?;
    conn.flush()
}

fn fake_world(name: &str, fe: &FakeEndpoint) -> World {
    // `timeout` is the token request's timeout: far above the endpoint's 500 ms.
    let w = World::new(
        name,
        &format!(
            "timeout = \"10s\"\n[store]\nkind = \"file\"\n{}",
            account_toml("bench", &fe.url())
        ),
    );
    w.seed(&["bench".into()], true);
    w
}

fn burst() {
    let fe = FakeEndpoint::start();
    fe.set(false, Duration::from_millis(500));
    let w = fake_world("burst", &fe);
    let bin = env_path("BENCH_BIN");
    // The daemon's refresher starts refreshing the expired token as soon as it starts;
    // the 50 calls land while that request is in flight (it takes 500 ms).
    let _d = w.serve();
    let t0 = Instant::now();
    let children: Vec<_> = (0..50)
        .map(|_| {
            w.cmd(&bin)
                .args(["token", "bench", "--wait", "5s"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let spawned = t0.elapsed();
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let all_done = t0.elapsed();
    let ok = outs
        .iter()
        .filter(|o| o.status.success() && o.stdout == b"fake-access-1\n")
        .count();
    if let Some(bad) = outs
        .iter()
        .find(|o| !(o.status.success() && o.stdout == b"fake-access-1\n"))
    {
        note(&format!(
            "a failed call: {} {}",
            bad.status,
            String::from_utf8_lossy(&bad.stderr).trim()
        ));
    }
    let requests = fe.times().len();
    figure(
        "burst: 50 x `token --wait 5s` on an expired token, endpoint answering after 500 ms",
        &format!(
            "{ok}/50 succeeded, {requests} token request(s) (spawned in {:.0} ms, all done in {:.0} ms)",
            spawned.as_secs_f64() * 1e3,
            all_done.as_secs_f64() * 1e3
        ),
        "50/50, 1 request",
        Some(ok == 50 && requests == 1),
    );
}

/// When the attempt after failure number `k` may come, with callers that cannot be
/// served asking all the time (src/state.rs): at `state::PROBE_INTERVAL` (5 s) after
/// the failure's whole second, whatever the backoff (which is never shorter), so
/// between 4 and 5 s after the failure; a little slack (0.3 s) covers timer and process
/// latency, and the 100 ms between calls.
fn allowed_gap(_k: u32) -> (f64, f64) {
    let probe = mailtoken::state::PROBE_INTERVAL as f64;
    (probe - 1.0 - 0.3, probe + 0.1 + 0.3)
}

/// The fewest and the most attempts the schedule allows within `window` after the
/// first, when each attempt takes `took`.
fn schedule_range(window: f64, took: f64) -> (usize, usize) {
    let count = |late: bool| {
        let (mut t, mut n, mut k) = (0.0f64, 0usize, 1u32);
        while t < window {
            n += 1;
            let (lo, hi) = allowed_gap(k);
            t += took + if late { hi - 0.3 } else { lo + 0.3 };
            k += 1;
        }
        n
    };
    (count(true), count(false))
}

/// The endpoint fails with 503 (after `delay`) for `window` while a caller starts
/// `mailtoken token bench` (no --wait) every 100 ms, not waiting for the previous one:
/// several mail programs polling. The requests the endpoint saw must follow the probe
/// rule: one attempt, then one every 5 s after the last failure, however many ask.
fn outage(name: &str, fe: &FakeEndpoint, delay: Duration, window: Duration) {
    fe.set(true, delay);
    let w = fake_world(name, fe);
    let bin = env_path("BENCH_BIN");
    let d = w.serve();
    let t0 = Instant::now();
    let mut running: Vec<Child> = Vec::new();
    let (mut calls, mut ok, mut temp, mut other) = (0u32, 0u32, 0u32, 0u32);
    let mut reap = |running: &mut Vec<Child>, block: bool| {
        running.retain_mut(|c| {
            let st = if block {
                c.wait().ok()
            } else {
                c.try_wait().ok().flatten()
            };
            match st.map(|s| s.code()) {
                None => true,
                Some(Some(0)) => {
                    ok += 1;
                    false
                }
                Some(Some(75)) => {
                    temp += 1;
                    false
                }
                Some(_) => {
                    other += 1;
                    false
                }
            }
        });
    };
    let mut next = t0;
    while t0.elapsed() < window {
        running.push(
            w.cmd(&bin)
                .args(["token", "bench"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        calls += 1;
        reap(&mut running, false);
        next += Duration::from_millis(100);
        if let Some(s) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(s);
        }
    }
    reap(&mut running, true);
    let times = fe.times();
    drop(d);
    let first = times.first().copied().unwrap_or(t0);
    let offsets: Vec<f64> = times
        .iter()
        .map(|t| t.saturating_duration_since(first).as_secs_f64())
        .collect();
    let took = delay.as_secs_f64();
    // Gap k: from the end of attempt k (its failure) to the start of attempt k + 1.
    let mut broken = Vec::new();
    for (k, pair) in offsets.windows(2).enumerate() {
        let gap = pair[1] - pair[0] - took;
        let (lo, hi) = allowed_gap(k as u32 + 1);
        if gap < lo || gap > hi {
            broken.push(format!(
                "retry {} came {gap:.1} s after failure {}, allowed {:.0}-{:.0} s",
                k + 1,
                k + 1,
                lo + 0.3,
                hi - 0.3
            ));
        }
    }
    let (lo, hi) = schedule_range(window.as_secs_f64(), took);
    let n = times.len();
    let list: Vec<String> = offsets.iter().map(|o| format!("{o:.1}")).collect();
    figure(
        &format!(
            "outage: 503{} for {} s, `token` every 100 ms",
            if delay.is_zero() {
                String::new()
            } else {
                format!(" after {} ms", delay.as_millis())
            },
            window.as_secs()
        ),
        &format!(
            "{n} refresh requests for {calls} calls ({ok} ok, {temp} exit 75, {other} other); requests at +[{}] s",
            list.join(", ")
        ),
        &format!(
            "{} requests, one 4-5 s after each failure",
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        ),
        Some((lo..=hi).contains(&n) && other == 0 && broken.is_empty()),
    );
    for b in &broken {
        note(b);
    }
}

fn backoff() {
    let fe = FakeEndpoint::start();
    let window = Duration::from_secs(env_num("BENCH_OUTAGE_SECS", 30));
    outage("outage-fast", &fe, Duration::ZERO, window);
    // The same with a slow failure (a provider that takes 500 ms to say 503): calls that
    // arrive while a refresh is in flight queue behind it.
    let slow = Duration::from_secs(env_num("BENCH_SLOW_OUTAGE_SECS", 20));
    outage("outage-slow", &fe, Duration::from_millis(500), slow);
}

// --- figure 7: the daemon under abuse ------------------------------------------------

/// Raises this process's soft RLIMIT_NOFILE to `want` (or the hard limit); the daemons
/// it starts inherit it. Returns the soft limit now.
fn raise_nofile(want: u64) -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) };
    if l.rlim_cur < want {
        l.rlim_cur = want.min(l.rlim_max);
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) };
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) };
    }
    l.rlim_cur
}

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// One reply line of a connection the daemon closed, if it wrote one: what it sent
/// (empty when it just hung up) or `None` while the connection is still open.
fn closed_with(s: &mut UnixStream) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return if got.is_empty() { None } else { Some(got) };
            }
            Err(_) => return Some(got),
        }
    }
}

/// While (a) `BENCH_ABUSE_IDLE` [10000] connections are opened and held open and
/// silent, (b) a client writes its request one byte a
/// second, and (c) 64 clients ask for tokens in a loop, `mailtoken token bench` (the
/// CLI) is called `BENCH_ABUSE_CALLS` [100] times. Every abusive client's reply is
/// checked: an idle connection gets nothing (the daemon only hangs up), the slow writer
/// an error reply, and each loop client the token.
fn abuse() {
    let idle_n = env_num("BENCH_ABUSE_IDLE", 10_000) as usize;
    let calls = env_num("BENCH_ABUSE_CALLS", 100) as usize;
    let limit = raise_nofile(idle_n as u64 + 1024);
    let w = World::new("abuse", &account_toml("bench", "http://127.0.0.1:9/token"));
    w.seed(&["bench".into()], false);
    let d = w.serve();
    let pid = d.pid();
    let request = token_request("bench", 0);
    let expected = ask(&d.socket, &request).unwrap();
    assert!(expected.contains(&seeded_token()), "{expected}");
    std::thread::sleep(Duration::from_secs(2));
    let (fds0, rss0) = (fd_count(pid), proc_status_kib(pid, "VmRSS"));
    note(&format!(
        "driver and daemon RLIMIT_NOFILE {limit}; daemon before: {fds0} fds, VmRSS {}",
        mib(rss0 as f64)
    ));

    let stop = Arc::new(AtomicBool::new(false));
    let wrong = Arc::new(Mutex::new(Vec::<String>::new()));
    let bad = |wrong: &Mutex<Vec<String>>, what: String| {
        let mut w = wrong.lock().unwrap();
        if w.len() < 5 {
            w.push(what);
        }
    };
    // (a) the idle connections: opened as fast as one thread can, then held, silent.
    let idle = {
        let (stop, wrong, socket) = (stop.clone(), wrong.clone(), d.socket.clone());
        std::thread::spawn(move || {
            let t = Instant::now();
            let mut conns: Vec<UnixStream> = Vec::with_capacity(idle_n);
            let mut failed = 0u64;
            for _ in 0..idle_n {
                match UnixStream::connect(&socket) {
                    Ok(s) => {
                        s.set_nonblocking(true).unwrap();
                        conns.push(s);
                    }
                    Err(_) => failed += 1,
                }
            }
            let took = t.elapsed();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let (mut closed, mut open) = (0u64, 0u64);
            for s in &mut conns {
                match closed_with(s) {
                    None => open += 1,
                    Some(got) if got.is_empty() => closed += 1,
                    Some(got) => bad(
                        &wrong,
                        format!("an idle connection got {:?}", String::from_utf8_lossy(&got)),
                    ),
                }
            }
            (conns.len() as u64, took, closed, failed, open)
        })
    };
    // (b) the slow writer: one byte a second, on a new connection after each reply.
    let slow = {
        let (stop, wrong, socket, request) = (
            stop.clone(),
            wrong.clone(),
            d.socket.clone(),
            request.clone(),
        );
        std::thread::spawn(move || {
            let mut replies = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut s) = UnixStream::connect(&socket) else {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                };
                s.set_nonblocking(true).unwrap();
                let mut sent = 0;
                let got = loop {
                    if let Some(got) = closed_with(&mut s) {
                        break got;
                    }
                    if stop.load(Ordering::Relaxed) {
                        break Vec::new();
                    }
                    if sent < request.len() {
                        let _ = s.write(&request.as_bytes()[sent..sent + 1]);
                        sent += 1;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                };
                if got.is_empty() && stop.load(Ordering::Relaxed) {
                    break;
                }
                let text = String::from_utf8_lossy(&got).into_owned();
                let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_default();
                let words = v["message"].as_str().unwrap_or_default();
                if v["ok"] == false
                    && (words.contains("incomplete request") || words.contains("make room"))
                    && !text.contains("bench-access-token")
                {
                    replies += 1;
                } else {
                    bad(&wrong, format!("the slow writer got {text:?}"));
                }
            }
            replies
        })
    };
    // (c) 64 clients in a loop, every reply held to the first one byte for byte.
    let busy: Vec<_> = (0..64)
        .map(|_| {
            let (stop, wrong) = (stop.clone(), wrong.clone());
            let (socket, request, expected) = (d.socket.clone(), request.clone(), expected.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                let mut line = String::new();
                while !stop.load(Ordering::Relaxed) {
                    let ok = (|| -> std::io::Result<bool> {
                        let s = UnixStream::connect(&socket)?;
                        s.set_read_timeout(Some(Duration::from_secs(30)))?;
                        (&s).write_all(request.as_bytes())?;
                        line.clear();
                        BufReader::new(&s).read_line(&mut line)?;
                        Ok(line == expected)
                    })();
                    n += 1;
                    if !matches!(ok, Ok(true)) {
                        bad(&wrong, format!("a loop client got {ok:?}: {line:?}"));
                    }
                }
                n
            })
        })
        .collect();

    // The calls, 20 ms apart, from while the connections are being opened.
    std::thread::sleep(Duration::from_millis(50));
    let bin = env_path("BENCH_BIN");
    let mut times = Vec::with_capacity(calls);
    let mut failed_calls = 0;
    for _ in 0..calls {
        let t = Instant::now();
        let o = w
            .cmd(&bin)
            .args(["token", "bench"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        if !(o.status.success() && o.stdout == format!("{}\n", seeded_token()).as_bytes()) {
            failed_calls += 1;
            bad(
                &wrong,
                format!(
                    "a CLI call: {} {}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (fds_during, rss_during) = (fd_count(pid), proc_status_kib(pid, "VmRSS"));
    stop.store(true, Ordering::Relaxed);
    let (opened, took, closed, connect_failed, still_open) = idle.join().unwrap();
    let slow_replies = slow.join().unwrap();
    let loops: u64 = busy.into_iter().map(|h| h.join().unwrap()).sum();
    // Every client is gone (the idle ones with the thread that held them): settle.
    std::thread::sleep(Duration::from_secs(3));
    // Counted before the ping: its own connection may still be open in the daemon a
    // moment after the ping has its answer.
    let (fds1, rss1) = (fd_count(pid), proc_status_kib(pid, "VmRSS"));
    let alive = ping(&d.socket);
    let wrong = wrong.lock().unwrap().clone();

    let med = quantile(&mut times, 0.5);
    let p99 = quantile(&mut times, 0.99);
    let max = quantile(&mut times, 1.0);
    figure(
        &format!(
            "abuse: `mailtoken token` under {idle_n} idle connections, a slow writer and 64 looping clients, p99 of {calls} calls"
        ),
        &format!("{p99:.1} ms (median {med:.1} ms, max {max:.1} ms; {failed_calls} wrong)"),
        "p99 <= 50 ms",
        Some(p99 <= 50.0 && failed_calls == 0),
    );
    figure(
        "abuse: every abusive client's replies right",
        &format!(
            "{opened} idle connections opened in {:.2} s ({closed} closed by the daemon with no reply, {still_open} open at the end, {connect_failed} connects refused), {slow_replies} slow-writer error replies, {loops} loop requests; {} wrong",
            took.as_secs_f64(),
            wrong.len()
        ),
        "0 wrong",
        Some(wrong.is_empty() && alive),
    );
    for w in &wrong {
        note(w);
    }
    if fds1 != fds0 {
        let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .map(|p| p.display().to_string())
            .collect();
        fds.sort();
        note(&format!("the daemon's descriptors now: {}", fds.join(", ")));
    }
    figure(
        "abuse: the daemon afterwards (3 s after the last client left)",
        &format!(
            "{} ({fds1} fds, VmRSS {}; before {fds0} fds, {}; after the last call {fds_during} fds, {})",
            if alive { "answers" } else { "DEAD" },
            mib(rss1 as f64),
            mib(rss0 as f64),
            mib(rss_during as f64)
        ),
        "answers; fds as before; RSS <= before + 1 MiB",
        Some(alive && fds1 == fds0 && rss1 <= rss0 + 1024),
    );
}

// --- figure 8: 1,000 accounts ------------------------------------------------------

fn accounts_world(name: &str, n: usize) -> (World, Vec<String>) {
    let names: Vec<String> = (1..=n).map(|i| format!("acct{i:04}")).collect();
    let config: String = std::iter::once("[store]\nkind = \"file\"\n".to_owned())
        .chain(
            names
                .iter()
                .map(|n| account_toml(n, "http://127.0.0.1:9/token")),
        )
        .collect::<Vec<_>>()
        .join("\n");
    let w = World::new(name, &config);
    w.seed(&names, false);
    (w, names)
}

/// VmRSS and RssAnon (kB) of a daemon of world `w` after one request per account and
/// 2 s of settling.
fn settled_rss(w: &World, names: &[String]) -> (u64, u64) {
    let d = w.serve();
    for n in names {
        let r = ask(&d.socket, &token_request(n, 0)).unwrap();
        assert!(r.contains(&seeded_token()), "{n}: {r}");
    }
    std::thread::sleep(Duration::from_secs(2));
    (
        proc_status_kib(d.pid(), "VmRSS"),
        proc_status_kib(d.pid(), "RssAnon"),
    )
}

fn scale() {
    let many = env_num("BENCH_SCALE_ACCOUNTS", 1000) as usize;
    let (w1, one) = accounts_world("scale1", 1);
    let (wn, names) = accounts_world("scale-many", many);

    // (a) `token` with many accounts vs one: both daemons running, paired runs.
    {
        let _d1 = w1.serve();
        let _dn = wn.serve();
        let bin = env_path("BENCH_BIN");
        let pick = &names[many / 2];
        let env = |w: &World| {
            std::ffi::OsString::from(format!("MAILTOKEN_SOCKET={}", w.socket().display()))
        };
        let (ea, eb) = (env(&wn), env(&w1));
        let os = std::ffi::OsStr::new;
        let n = env_num("BENCH_PAIRS_N", 1000);
        let p = run_pairs(
            &w1,
            n,
            &[ea.as_os_str(), bin.as_os_str(), os("token"), os(pick)],
            &[eb.as_os_str(), bin.as_os_str(), os("token"), os(&one[0])],
        );
        let ratio = p.get("ratio_median");
        let failures = p.get("failures");
        figure(
            &format!(
                "scale: `token` via the daemon, {many} accounts / 1 account, median of paired ratios"
            ),
            &format!(
                "{ratio:.3} (p10 {:.3}, p90 {:.3}; {:.0} us vs {:.0} us; {n} pairs, {failures} wrong outputs)",
                p.get("ratio_p10"),
                p.get("ratio_p90"),
                p.get("a_median_us"),
                p.get("b_median_us")
            ),
            "<= 1.05",
            Some(ratio <= 1.05 && failures == 0.0),
        );
    }

    // (b) start to first answered ping.
    let starts = env_num("BENCH_STARTS", 20) as usize;
    let mut times = Vec::new();
    for i in 0..starts + 2 {
        let t0 = Instant::now();
        let mut d = wn.spawn_daemon();
        let deadline = t0 + Duration::from_secs(10);
        while !ping(&d.socket) {
            assert!(Instant::now() < deadline, "no start: {}", d.log());
            std::thread::sleep(Duration::from_micros(50));
        }
        let t = t0.elapsed();
        d.stop();
        if i >= 2 {
            times.push(t.as_secs_f64() * 1e3);
        }
    }
    let med = quantile(&mut times, 0.5);
    let max = quantile(&mut times, 1.0);
    figure(
        &format!("scale: daemon start to first answered ping, {many} accounts (median)"),
        &format!("{med:.2} ms (max {max:.2} ms, {starts} starts)"),
        "<= 50 ms",
        Some(med <= 50.0),
    );

    // (c) memory per account: three daemons of each size, alternating; medians.
    let (mut r1, mut rn, mut a1, mut an) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        let (r, a) = settled_rss(&w1, &one);
        r1.push(r as f64);
        a1.push(a as f64);
        let (r, a) = settled_rss(&wn, &names);
        rn.push(r as f64);
        an.push(a as f64);
    }
    let (r1, rn, a1, an) = (
        quantile(&mut r1, 0.5),
        quantile(&mut rn, 0.5),
        quantile(&mut a1, 0.5),
        quantile(&mut an, 0.5),
    );
    let per = (rn - r1) / (many - 1) as f64;
    figure(
        &format!(
            "scale: daemon memory per account, (VmRSS with {many} - VmRSS with 1) / {}",
            many - 1
        ),
        &format!(
            "{per:.2} KiB ({} vs {}; anonymous only: {:.2} KiB, {} vs {}; medians of 3 daemons each, one request per account, 2 s settled)",
            mib(rn),
            mib(r1),
            (an - a1) / (many - 1) as f64,
            mib(an),
            mib(a1)
        ),
        "<= 4 KiB",
        Some(per <= 4.0),
    );
}
