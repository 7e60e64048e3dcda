//! Running the built `mailtoken` binary the way a user or a mail program does: each test
//! gets its own config, state and runtime directories, so tests share the one
//! authorization server without sharing anything else.

use super::authserver::{self, App, Browser, Decision};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const BIN: &str = env!("CARGO_BIN_EXE_mailtoken");

/// One user's world: a home with a config file, a state dir and a runtime dir.
pub struct Env {
    pub dir: tempfile::TempDir,
    /// Point the D-Bus session address nowhere: a machine without a keyring.
    pub no_bus: bool,
    /// A session bus of the test's own (a [`super::keyring::PrivateKeyring`]'s).
    pub bus: Option<String>,
}

/// A login name no other test (or earlier run against the same server) uses, so the
/// server's per-account counters belong to this test alone.
pub fn unique_login(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{tag}-{}-{nanos}-{}@example.test",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// How an account talks to the test server.
#[derive(Clone, Copy)]
pub enum Client {
    /// Public client with rotating refresh tokens (Microsoft-like).
    Native,
    /// Same, with access tokens living a few seconds.
    NativeShort,
    /// Desktop client with a non-secret secret and access_type=offline (Google-like),
    /// with access tokens living a few seconds.
    GoogleShort,
    /// Public client asked without offline_access: no refresh token.
    NativeNoOffline,
    /// Public client whose device codes expire within seconds.
    NativeDeviceShort,
    /// Public client registered with only `https://localhost`, matched on any port
    /// (Thunderbird's Microsoft registration, as Microsoft treats it).
    NativeHttps,
}

pub fn account_toml(name: &str, login: &str, client: Client) -> String {
    let issuer = authserver::issuer();
    let (id, secret, scopes, params) = match client {
        Client::Native | Client::NativeShort | Client::NativeDeviceShort | Client::NativeHttps => (
            match client {
                Client::Native => authserver::NATIVE_CLIENT,
                Client::NativeShort => authserver::NATIVE_SHORT_CLIENT,
                Client::NativeHttps => authserver::NATIVE_HTTPS_CLIENT,
                _ => authserver::NATIVE_DEVICE_SHORT_CLIENT,
            },
            None,
            r#"["openid", "email", "mail", "offline_access"]"#,
            r#"{ prompt = "consent" }"#,
        ),
        Client::NativeNoOffline => (
            authserver::NATIVE_CLIENT,
            None,
            r#"["openid", "email", "mail"]"#,
            "{}",
        ),
        Client::GoogleShort => (
            authserver::GOOGLE_SHORT_CLIENT,
            Some(authserver::GOOGLE_CLIENT_SECRET),
            r#"["openid", "email", "mail"]"#,
            r#"{ access_type = "offline", prompt = "consent" }"#,
        ),
    };
    let secret = secret
        .map(|s| format!("client_secret = \"{s}\"\n"))
        .unwrap_or_default();
    let redirect = match client {
        Client::NativeHttps => "redirect_uri = \"https://localhost\"\n",
        _ => "",
    };
    format!(
        "[accounts.{name}]\nuser = \"{login}\"\nauth_url = \"{issuer}/auth\"\ntoken_url = \"{issuer}/token\"\n\
         device_url = \"{issuer}/device/auth\"\nrevoke_url = \"{issuer}/token/revocation\"\nclient_id = \"{id}\"\n\
         {secret}{redirect}scopes = {scopes}\nauth_params = {params}\n"
    )
}

impl Env {
    /// A world whose config is `store` (a `[store]` table and globals) plus `accounts`.
    pub fn new(head: &str, accounts: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("config/mailtoken")).unwrap();
        let env = Env {
            dir,
            no_bus: false,
            bus: None,
        };
        env.write_config(&if head.is_empty() {
            accounts.to_owned()
        } else {
            format!("{head}\n{accounts}")
        });
        env
    }

    /// The usual world: file store, a short network timeout.
    pub fn with_file_store(accounts: &str) -> Env {
        Env::new("timeout = \"10s\"\n[store]\nkind = \"file\"\n", accounts)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config/mailtoken/config.toml")
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(self.config_path(), text).unwrap();
    }

    pub fn tokens_path(&self) -> PathBuf {
        self.dir.path().join("state/mailtoken/tokens.json")
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env("MAILTOKEN_CONFIG", self.config_path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("XDG_STATE_HOME", self.dir.path().join("state"))
            .env("HOME", self.dir.path())
            .env_remove("MAILTOKEN_SOCKET")
            .stdin(Stdio::null());
        // The developer's or CI's proxies are not the tests' (tests/integration/proxy.rs
        // sets its own).
        for var in ["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"] {
            c.env_remove(var).env_remove(var.to_ascii_lowercase());
        }
        // A private runtime dir: nothing of the developer's own session leaks in.
        let run = self.dir.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        c.env("XDG_RUNTIME_DIR", run);
        if let Some(bus) = &self.bus {
            c.env("DBUS_SESSION_BUS_ADDRESS", bus);
        }
        if self.no_bus {
            c.env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus");
        }
        c
    }

    /// `program` (a mail program, git, a shell) with this world's environment, so that
    /// the `mailtoken` it runs finds the world's config and store.
    pub fn program(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = with_env_of(&self.cmd(), program);
        c.stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Logs `account` in through the test server as `login`, playing the browser.
    pub fn login(&self, account: &str, login: &str) -> Output {
        self.login_with(account, login, Decision::Approve, &[])
    }

    /// Starts `mailtoken login ARGS...` with piped stdio and reads the authorization URL
    /// it prints; returns the child, the URL and a thread gathering the rest of stderr.
    pub fn start_login(&self, args: &[&str]) -> (Child, String, std::thread::JoinHandle<String>) {
        let mut child = self.spawn_login(args);
        let (url, rest) = read_auth_url(&mut child);
        (child, url, rest)
    }

    /// `mailtoken login ARGS...` with stdin, stdout and stderr piped.
    pub fn spawn_login(&self, args: &[&str]) -> Child {
        self.cmd()
            .arg("login")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    pub fn login_with(
        &self,
        account: &str,
        login: &str,
        decision: Decision,
        extra: &[&str],
    ) -> Output {
        let mut args = vec![account, "--no-browser", "--timeout", "60s"];
        args.extend_from_slice(extra);
        let (child, url, stderr_rest) = self.start_login(&args);
        let redirect = rt()
            .block_on(Browser::new().authorize(&url, login, decision))
            .unwrap();
        let resp = rt().block_on(reqwest::get(redirect.as_str())).unwrap();
        assert!(
            resp.status().is_success() || decision == Decision::Deny,
            "listener answered {}",
            resp.status()
        );
        finish(child, stderr_rest)
    }

    /// `mailtoken ARGS...` started `n` times at once; their outputs, in order.
    pub fn run_concurrently(&self, n: usize, args: &[&str]) -> Vec<Output> {
        let children: Vec<Child> = (0..n)
            .map(|_| {
                self.cmd()
                    .args(args)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect()
    }

    /// The stored record of `account` in the file store, as JSON.
    pub fn stored(&self, account: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(self.tokens_path()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["accounts"][account].clone()
    }

    /// Edits the file store's record of `account` (e.g. to make its token expired).
    pub fn edit_stored(&self, account: &str, f: impl FnOnce(&mut serde_json::Value)) {
        edit_json(&self.tokens_path(), |v| f(&mut v["accounts"][account]));
    }

    /// Marks the stored access token of `account` as expired a while ago.
    pub fn expire(&self, account: &str) {
        self.edit_stored(account, expire_record);
    }
}

/// Makes a record's access token one that expired a while ago (obtained 3,700 s ago,
/// expired 100 s ago).
pub fn expire_record(r: &mut serde_json::Value) {
    r["obtained_at"] = (now() - 3700).into();
    r["expires_at"] = (now() - 100).into();
}

/// Rewrites the JSON file at `path` through `f` (a store's file, a rescue record, a
/// command store's record).
pub fn edit_json(path: &std::path::Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// An app registered for a fresh mailbox, and a world with an account `app` for it
/// (the secret in a 0600 file read by `client_secret_cmd`), with the test Dovecot's
/// servers.
pub fn app_env(tag: &str, lifetime: Option<u32>) -> (Env, App) {
    let app = rt().block_on(authserver::register_app(&unique_login(tag), lifetime));
    let env = Env::with_file_store("");
    let secret = env.dir.path().join("app-secret");
    std::fs::write(&secret, format!("{}\n", app.client_secret)).unwrap();
    set_mode(&secret, 0o600);
    env.write_config(&format!(
        "timeout = \"10s\"\n[store]\nkind = \"file\"\n{}",
        app_account("app", &app, &secret.display().to_string())
    ));
    (env, app)
}

pub fn app_account(name: &str, app: &App, secret_file: &str) -> String {
    let m = super::mailserver::mailserver();
    format!(
        "[accounts.{name}]\nauth = \"client_credentials\"\nuser = \"{}\"\n\
         token_url = \"{}/token\"\nclient_id = \"{}\"\nclient_secret_cmd = \"cat {secret_file}\"\n\
         scopes = [\"mail\"]\nca_file = \"{}\"\n\
         imap = {{ host = \"127.0.0.1\", port = {}, tls = \"implicit\" }}\n\
         pop = {{ host = \"127.0.0.1\", port = {}, tls = \"implicit\" }}\n\
         smtp = {{ host = \"127.0.0.1\", port = {}, tls = \"starttls\" }}\n",
        app.mailbox,
        authserver::issuer(),
        app.client_id,
        m.ca.display(),
        m.imaps_port,
        m.pop3s_port,
        m.submission_port,
    )
}

/// A loopback port that is free now (bound and let go), for a server a test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A file's or directory's permission bits.
pub fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Sets a file's or directory's permission bits.
pub fn set_mode(p: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The wall clock in Unix seconds, as records keep it.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// One of the test server's counters for `login` (`refresh_grants`, ...).
pub fn stats(login: &str, key: &str) -> u64 {
    rt().block_on(authserver::stats(login))[key]
        .as_u64()
        .unwrap()
}

/// What the test server says about an access token (RFC 7662), waited for.
pub fn introspect(token: &str) -> serde_json::Value {
    rt().block_on(authserver::introspect(token))
}

/// Whether the authorization server takes `token` as a working access token now.
pub fn active(token: &str) -> bool {
    introspect(token)["active"] == true
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Reads the login's stderr until the authorization URL appears; returns it and a
/// thread collecting the rest of stderr.
pub fn read_auth_url(child: &mut Child) -> (String, std::thread::JoinHandle<String>) {
    let (seen, rest) = read_stderr_until(child, |l| {
        l.trim().starts_with("http://") || l.trim().starts_with("https://")
    });
    let url = seen.lines().last().unwrap().trim().to_owned();
    (url, rest)
}

/// Reads a child's stderr, a line at a time, up to and including the first line for
/// which `stop` holds (at most 30 s); returns what was read and a thread gathering the
/// rest (which starts with what was read, so the whole of stderr ends up there).
pub fn read_stderr_until(
    child: &mut Child,
    stop: impl Fn(&str) -> bool,
) -> (String, std::thread::JoinHandle<String>) {
    let stderr = child.stderr.take().unwrap();
    let mut reader = BufReader::new(stderr);
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).unwrap();
        assert!(
            n > 0 && std::time::Instant::now() < deadline,
            "stderr ended before the line looked for; got:\n{seen}"
        );
        seen.push_str(&line);
        if stop(&line) {
            let all = seen.clone();
            let rest = std::thread::spawn(move || {
                let mut s = all;
                let _ = reader.read_to_string(&mut s);
                s
            });
            return (seen, rest);
        }
    }
}

/// Waits for a spawned login (at most a minute) and gathers its output.
pub fn finish(mut child: Child, stderr: std::thread::JoinHandle<String>) -> Output {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("login did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = Vec::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_end(&mut stdout).unwrap();
    }
    Output {
        status,
        stdout,
        stderr: stderr.join().unwrap().into_bytes(),
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the exit code, showing stderr when it is not the expected one.
#[track_caller]
pub fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

/// A command running `program` with the environment changes `base` carries (none of
/// its arguments).
pub fn with_env_of(base: &Command, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c
}

/// Runs `c` with `input` on its stdin and collects its output.
pub fn run_with_stdin(c: &mut Command, input: &str) -> Output {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    write_stdin(&mut child, input);
    child.wait_with_output().unwrap()
}

pub fn write_stdin(child: &mut Child, text: &str) {
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// A running `mailtoken serve` of an [`Env`]; stopped (SIGKILL) when dropped.
pub struct Daemon {
    pub child: Option<Child>,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Env {
    /// Where the daemon of this world listens: `$XDG_RUNTIME_DIR/mailtoken/socket`.
    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("run/mailtoken/socket")
    }

    /// Starts `mailtoken serve` and waits until it answers on its socket.
    pub fn serve(&self) -> Daemon {
        self.serve_with(self.cmd())
    }

    /// `mailtoken serve` run by `cmd` (this world's [`Env::cmd`], changed: under
    /// libfaketime, say), once it answers on its socket.
    pub fn serve_with(&self, mut cmd: Command) -> Daemon {
        let log = self
            .dir
            .path()
            .join(format!("serve-{}.log", unique_login("log")));
        let child = cmd
            .arg("serve")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let d = Daemon {
            child: Some(child),
            socket: self.socket_path(),
            log,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(reply) = d.try_raw(b"{\"v\":1,\"op\":\"ping\"}\n")
                && reply.contains("\"ok\":true")
            {
                return d;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the daemon did not start: {}", d.log());
    }
}

impl Daemon {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn signal(&self, sig: i32) {
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    /// SIGTERM, and the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        self.child.take().unwrap().wait().unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends raw bytes on a new connection and reads until the daemon closes it or
    /// nothing more comes for 6 s (longer than its read timeout).
    pub fn try_raw(&self, bytes: &[u8]) -> std::io::Result<String> {
        use std::os::unix::net::UnixStream;
        let mut s = UnixStream::connect(&self.socket)?;
        s.set_read_timeout(Some(Duration::from_secs(8)))?;
        s.write_all(bytes)?;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    // One reply per request line: stop once every line is answered.
                    let asked = bytes.iter().filter(|&&b| b == b'\n').count().max(1);
                    if out.iter().filter(|&&b| b == b'\n').count() >= asked {
                        break;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
