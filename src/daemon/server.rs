//! `mailtoken serve`: the broker daemon. It answers token requests on a unix socket from
//! memory, refreshes every account ahead of expiry so that no mail program waits on the
//! network, and shares the per-account lock and the store with daemonless CLI calls.
//!
//! Locking discipline: each account has a `Slot`. `Slot::state` (a std mutex) is held
//! only to read or update the cached state, never across an await or I/O. `Slot::gate`
//! (an async mutex) is held for the whole of one refresh: whoever holds it is the one
//! refreshing that account in this process; the file lock inside the Broker extends that
//! to other processes. `Slot::changed` is bumped after every state change, waking the
//! account's refresher and requests that `--wait`.

use super::protocol::{MAX_REQUEST, Op, Reply, Request, encode, parse_request};
use super::schedule;
use super::timer::sleep_until_wall;
use crate::broker::Broker;
use crate::cli::{ForProto, Format};
use crate::config::{Account, Config};
use crate::error::{Error, ExitCode, Result};
use crate::record::{self, TokenRecord};
use clap::ValueEnum;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::watch;

/// A request line must arrive whole within this time; an idle connection is closed.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a login announced by `mailtoken login` counts as pending for `--wait`.
const LOGIN_PENDING: Duration = Duration::from_secs(600);

pub fn serve() -> Result<()> {
    let config = Config::load_default()?;
    let broker = Broker::open(config)?;
    if let Some(n) = &broker.store_notice {
        eprintln!("mailtoken: {n}");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        // Blocking work is store reads and refreshes, a few at a time. Without a cap, 50
        // accounts loading at start grow the pool to ~45 threads, whose stacks and malloc
        // arenas glibc keeps after they exit (about 1 MiB of idle RSS).
        .max_blocking_threads(4)
        .enable_all()
        .build()
        .map_err(|e| Error::software(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(run(broker))
}

async fn run(broker: Broker) -> Result<()> {
    let socket = super::socket::Socket::open(&super::client::socket_path())?;
    let daemon = Arc::new(Daemon {
        broker: RwLock::new(Arc::new(broker)),
        slots: Mutex::new(HashMap::new()),
        uid: unsafe { libc::geteuid() },
    });
    let names: Vec<String> = daemon.broker().config.accounts.keys().cloned().collect();
    for name in &names {
        daemon.slot(name);
    }
    let listener = socket.listener()?;
    super::socket::notify_ready();
    eprintln!(
        "mailtoken: serving {} account(s) on {}",
        names.len(),
        socket.path.display()
    );
    let signal = |k| {
        tokio::signal::unix::signal(k)
            .map_err(|e| Error::software(format!("cannot watch signals: {e}")))
    };
    use tokio::signal::unix::SignalKind;
    let (mut term, mut int, mut hup) = (
        signal(SignalKind::terminate())?,
        signal(SignalKind::interrupt())?,
        signal(SignalKind::hangup())?,
    );
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => { tokio::spawn(serve_connection(daemon.clone(), stream)); }
                Err(e) => {
                    eprintln!("mailtoken: accept failed: {e}");
                    // EMFILE and friends: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = hup.recv() => daemon.reload_config().await,
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    eprintln!("mailtoken: shutting down");
    drop(socket);
    Ok(())
}

struct Daemon {
    broker: RwLock<Arc<Broker>>,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    uid: u32,
}

struct Slot {
    name: String,
    state: Mutex<SlotState>,
    gate: tokio::sync::Mutex<()>,
    changed: watch::Sender<u64>,
    refresher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Default)]
struct SlotState {
    /// The record has been read from the store since the last reload.
    loaded: bool,
    record: Option<TokenRecord>,
    /// The longest `--min-valid` any request asked for: refresh before falling under it.
    longest_min_valid: Duration,
    /// Consecutive transient failures, and when the next attempt may be made.
    failures: u32,
    retry_at: Option<u64>,
    last_error: Option<Error>,
    /// The refresh token was rejected: nothing is sent until the next login.
    needs_login: bool,
    login_pending_until: Option<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SlotState {
    /// When the refresher should refresh next: the schedule, or the end of a backoff if
    /// later; never while only a login can help.
    fn refresh_due(&self) -> Option<u64> {
        if self.needs_login {
            return None;
        }
        let at = schedule::refresh_at(self.record.as_ref()?, self.longest_min_valid)?;
        Some(at.max(self.retry_at.unwrap_or(0)))
    }
}

impl Slot {
    fn bump(&self) {
        self.changed.send_modify(|g| *g = g.wrapping_add(1));
    }
}

impl Daemon {
    fn broker(&self) -> Arc<Broker> {
        self.broker
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The account's slot, created (with its refresher) on first use.
    fn slot(self: &Arc<Self>, name: &str) -> Arc<Slot> {
        let mut slots = lock(&self.slots);
        if let Some(s) = slots.get(name) {
            return s.clone();
        }
        let slot = Arc::new(Slot {
            name: name.to_owned(),
            state: Mutex::new(SlotState {
                longest_min_valid: record::DEFAULT_MIN_VALID,
                ..Default::default()
            }),
            gate: tokio::sync::Mutex::new(()),
            changed: watch::channel(0).0,
            refresher: Mutex::new(None),
        });
        let task = tokio::spawn(self.clone().refresher(slot.clone()));
        *lock(&slot.refresher) = Some(task);
        slots.insert(name.to_owned(), slot.clone());
        slot
    }

    async fn dispatch(self: &Arc<Self>, req: Request) -> Reply {
        let result = match req.op {
            Op::Token {
                account,
                format,
                min_valid,
                for_proto,
                wait_ms,
            } => self
                .token(
                    &account,
                    &format,
                    Duration::from_secs(min_valid),
                    for_proto.as_deref(),
                    Duration::from_millis(wait_ms),
                )
                .await
                .map(Reply::credential),
            Op::Status { account } => self.status(account.as_deref()).await.map(Reply::data),
            Op::LoginStarted { account } => self.known(&account).map(|()| {
                let slot = self.slot(&account);
                lock(&slot.state).login_pending_until = Some(Instant::now() + LOGIN_PENDING);
                slot.bump();
                Reply::ok()
            }),
            Op::Reload { account } => self.known(&account).map(|()| {
                let slot = self.slot(&account);
                forget(&slot);
                Reply::ok()
            }),
            Op::Ping => Ok(Reply::data(
                serde_json::json!({ "pid": std::process::id() }),
            )),
        };
        result.unwrap_or_else(|e| Reply::error(&e))
    }

    fn known(&self, account: &str) -> Result<()> {
        self.broker().account(account).map(|_| ())
    }

    async fn token(
        self: &Arc<Self>,
        name: &str,
        format: &str,
        min_valid: Duration,
        for_proto: Option<&str>,
        wait: Duration,
    ) -> Result<String> {
        let format = Format::from_str(format, true)
            .map_err(|_| Error::usage(format!("unknown format `{format}`")))?;
        let for_proto = match for_proto {
            Some(p) => ForProto::from_str(p, true)
                .map_err(|_| Error::usage(format!("unknown protocol `{p}`")))?,
            None => ForProto::Imap,
        };
        let broker = self.broker();
        let account = broker.account(name)?.clone();
        if account.uses_app_password() {
            // Read from the keyring on each request, never kept in the daemon's memory.
            let out = blocking(move || crate::password::credential(&account, format)).await?;
            return Ok(out.trim_end_matches('\n').to_owned());
        }
        let rec = self
            .fresh_record(&broker, &account, min_valid, wait)
            .await?;
        let out = crate::commands::render(format, &account, &rec, for_proto)?;
        Ok(out.trim_end_matches('\n').to_owned())
    }

    /// A record whose token is good for `min_valid`, from memory when it can be.
    async fn fresh_record(
        self: &Arc<Self>,
        broker: &Arc<Broker>,
        account: &Account,
        min_valid: Duration,
        wait: Duration,
    ) -> Result<TokenRecord> {
        let slot = self.slot(&account.name);
        let deadline = Instant::now() + wait;
        let mut changes = slot.changed.subscribe();
        {
            let mut st = lock(&slot.state);
            if min_valid > st.longest_min_valid {
                st.longest_min_valid = min_valid;
                drop(st);
                slot.bump();
            }
        }
        loop {
            self.ensure_loaded(broker, account, &slot).await?;
            let now = record::now();
            let blocked = {
                let st = lock(&slot.state);
                if let Some(rec) = &st.record
                    && rec.usable_access_token(now, min_valid).is_some()
                {
                    return Ok(rec.clone());
                }
                let pending = st.login_pending_until.is_some_and(|t| t > Instant::now());
                if st.record.is_none() || st.needs_login {
                    // Nothing to refresh with: only a login can help.
                    let mut err = st
                        .last_error
                        .clone()
                        .unwrap_or_else(|| not_logged_in(account));
                    if pending {
                        err.message
                            .push_str(" (a login is in progress: `--wait` waits for it)");
                    }
                    Some((err, deadline))
                } else if let Some(at) = st.retry_at.filter(|&at| at > now) {
                    // Backing off after a transient failure: the calls do not multiply
                    // the requests to a provider that is down.
                    let mut err = st
                        .last_error
                        .clone()
                        .unwrap_or_else(|| Error::temp("the last refresh failed"));
                    err.message
                        .push_str(&format!(" (next attempt in {}s)", at - now));
                    let retry = Instant::now() + Duration::from_secs(at - now);
                    Some((err, retry.min(deadline)))
                } else {
                    None
                }
            };
            if let Some((err, until)) = blocked {
                // Wait for a change (a login, a reload, the end of a backoff) if --wait
                // allows; otherwise answer now.
                if Instant::now() >= deadline {
                    return Err(err);
                }
                tokio::select! {
                    _ = changes.changed() => {}
                    _ = tokio::time::sleep_until(until.into()) => {}
                }
                continue;
            }
            let seen = *slot.changed.borrow();
            let gate = slot.gate.lock().await;
            // Whoever held the gate before us changed the state: refreshed (then the
            // token may do), failed (then the backoff or the login rule applies to us
            // too, and we must not send a request of our own). Back to the checks.
            if *slot.changed.borrow() != seen {
                drop(gate);
                continue;
            }
            return self.refresh(broker, account, &slot).await;
        }
    }

    async fn ensure_loaded(
        &self,
        broker: &Arc<Broker>,
        account: &Account,
        slot: &Slot,
    ) -> Result<()> {
        if lock(&slot.state).loaded {
            return Ok(());
        }
        let (b, a) = (broker.clone(), account.clone());
        let rec = blocking(move || b.load(&a)).await?;
        let mut st = lock(&slot.state);
        if !st.loaded {
            st.needs_login = rec.as_ref().is_some_and(TokenRecord::needs_login);
            if st.needs_login {
                st.last_error = rec
                    .as_ref()
                    .and_then(|r| r.last_error.as_ref())
                    .map(|e| Error::noperm(e.message.clone()).with_remedy(login_remedy(account)));
            }
            st.record = rec;
            st.loaded = true;
        }
        Ok(())
    }

    /// One refresh through the Broker (store, file lock, token endpoint); the caller
    /// holds the slot's gate.
    async fn refresh(
        &self,
        broker: &Arc<Broker>,
        account: &Account,
        slot: &Slot,
    ) -> Result<TokenRecord> {
        let seen = lock(&slot.state)
            .record
            .as_ref()
            .map_or(0, |r| r.obtained_at);
        let (b, a) = (broker.clone(), account.clone());
        let result = blocking(move || b.refresh_unless_newer(&a, seen)).await;
        let notify = {
            let mut st = lock(&slot.state);
            match &result {
                Ok(rec) => {
                    st.record = Some(rec.clone());
                    st.failures = 0;
                    st.retry_at = None;
                    st.last_error = None;
                    st.needs_login = false;
                    st.login_pending_until = None;
                    false
                }
                Err(e) if e.code == ExitCode::NoPerm => {
                    let first = !st.needs_login;
                    st.needs_login = true;
                    st.last_error = Some(e.clone());
                    first
                }
                Err(e) => {
                    st.failures += 1;
                    let delay = schedule::backoff(st.failures, jitter());
                    st.retry_at = Some(record::now() + delay.as_secs().max(1));
                    st.last_error = Some(e.clone());
                    false
                }
            }
        };
        slot.bump();
        if notify && let Err(e) = &result {
            let (b, a, reason) = (broker.clone(), account.clone(), e.message.clone());
            tokio::task::spawn_blocking(move || super::notify::needs_login(&b.config, &a, &reason));
        }
        result
    }

    /// Keeps one account's token fresh: sleeps (on the wall clock, so across suspend)
    /// until the refresh is due, refreshes, and starts over; wakes early on any change.
    async fn refresher(self: Arc<Self>, slot: Arc<Slot>) {
        let mut changes = slot.changed.subscribe();
        loop {
            let broker = self.broker();
            let Ok(account) = broker.account(&slot.name).cloned() else {
                return;
            };
            if account.uses_app_password() {
                // Nothing to refresh; a reload may turn it into an OAuth account.
                if changes.changed().await.is_err() {
                    return;
                }
                continue;
            }
            if self.ensure_loaded(&broker, &account, &slot).await.is_err() {
                // The store is unreadable now; a request or a reload will try again.
                let _ = changes.changed().await;
                continue;
            }
            let due = lock(&slot.state).refresh_due();
            let Some(due) = due else {
                if changes.changed().await.is_err() {
                    return;
                }
                continue;
            };
            if due > record::now() {
                tokio::select! {
                    r = changes.changed() => { if r.is_err() { return; } continue; }
                    _ = sleep_until_wall(due) => {}
                }
            }
            let gate = slot.gate.lock().await;
            // Still due? A request may have refreshed while we slept or queued.
            let still_due = lock(&slot.state)
                .refresh_due()
                .is_some_and(|at| at <= record::now());
            if still_due {
                let _ = self.refresh(&broker, &account, &slot).await;
            }
            drop(gate);
            changes.mark_unchanged();
        }
    }

    async fn status(self: &Arc<Self>, account: Option<&str>) -> Result<serde_json::Value> {
        let broker = self.broker();
        let accounts: Vec<Account> = match account {
            Some(a) => vec![broker.account(a)?.clone()],
            None => broker.config.accounts.values().cloned().collect(),
        };
        let mut rows = Vec::new();
        for a in &accounts {
            if a.uses_app_password() {
                let a = a.clone();
                let mut row = blocking(move || Ok(crate::commands::app_password_row(&a))).await?;
                row.daemon = true;
                rows.push(row);
                continue;
            }
            let slot = self.slot(&a.name);
            let loaded = self.ensure_loaded(&broker, a, &slot).await;
            let st = lock(&slot.state);
            let rec = match loaded {
                Ok(()) => Ok(st.record.clone().map(|mut r| {
                    if let Some(e) = &st.last_error {
                        r.last_error = Some(record::LastError {
                            at: record::now(),
                            kind: if st.needs_login {
                                "invalid_grant"
                            } else {
                                "temporary"
                            }
                            .into(),
                            message: e.message.clone(),
                        });
                    }
                    r
                })),
                Err(e) => Err(e),
            };
            let mut row =
                crate::commands::status_row(a, rec, record::now(), &broker.store().describe());
            row.daemon = true;
            rows.push(row);
        }
        serde_json::to_value(rows).map_err(|e| Error::software(e.to_string()))
    }

    /// SIGHUP: read the config again. Accounts whose security-relevant settings changed
    /// (or that went away) lose their cached state; the others keep their tokens.
    async fn reload_config(self: &Arc<Self>) {
        let loaded = blocking(|| Config::load_default().and_then(Broker::open)).await;
        let new = match loaded {
            Ok(b) => Arc::new(b),
            Err(e) => {
                eprintln!("mailtoken: reload failed, keeping the old config: {e}");
                return;
            }
        };
        let old = self.broker();
        *self.broker.write().unwrap_or_else(|e| e.into_inner()) = new.clone();
        let mut slots = lock(&self.slots);
        slots.retain(|name, slot| {
            let same = match (old.config.accounts.get(name), new.config.accounts.get(name)) {
                (Some(a), Some(b)) => fingerprint(a) == fingerprint(b),
                (_, None) => {
                    if let Some(t) = lock(&slot.refresher).take() {
                        t.abort();
                    }
                    return false;
                }
                (None, Some(_)) => false,
            };
            if !same {
                forget(slot);
            } else {
                slot.bump();
            }
            true
        });
        drop(slots);
        for name in new.config.accounts.keys() {
            self.slot(name);
        }
        eprintln!("mailtoken: reloaded {}", new.config.path.display());
    }
}

/// Drops what the daemon remembers of an account, so the store is read again.
fn forget(slot: &Slot) {
    {
        let mut st = lock(&slot.state);
        let longest = st.longest_min_valid;
        *st = SlotState {
            longest_min_valid: longest,
            ..Default::default()
        };
    }
    slot.bump();
}

/// The settings that decide which tokens are valid for an account: if any changes, a
/// cached token may belong to another identity, client or scope.
fn fingerprint(a: &Account) -> String {
    let Ok(o) = a.oauth() else {
        return format!("{}|app password", a.user);
    };
    format!(
        "{}|{}|{}|{}|{:?}|{}|{:?}|{:?}",
        a.user,
        o.client_id,
        o.auth_url,
        o.token_url,
        o.scopes,
        o.client_secret.as_ref().map_or("", |s| s.expose()),
        o.client_secret_cmd,
        a.ca_file
    )
}

fn not_logged_in(account: &Account) -> Error {
    Error::noperm(format!("no token for {} yet", account.name)).with_remedy(login_remedy(account))
}

fn login_remedy(account: &Account) -> String {
    format!("Run `mailtoken login {}`.", account.name)
}

fn jitter() -> f64 {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(n % 1_000_000) / 1_000_000.0
}

/// Runs blocking work (keyring D-Bus calls, file locks, the token request's own runtime)
/// off the daemon's event loop.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::software(format!("worker failed: {e}")))?
}

async fn serve_connection(daemon: Arc<Daemon>, stream: UnixStream) {
    let peer_ok = stream.peer_cred().is_ok_and(|c| c.uid() == daemon.uid);
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    if !peer_ok {
        // Take the request off the wire first, so the refusal is its reply rather than
        // a reset the client would see as a broken pipe; then hang up.
        let mut line = zeroize::Zeroizing::new(Vec::new());
        let _ = tokio::time::timeout(READ_TIMEOUT, read_line(&mut reader, &mut line)).await;
        let e = Error::noperm("permission denied: this daemon serves only its own user");
        let _ = write.write_all(&encode(&Reply::error(&e))).await;
        return;
    }
    loop {
        let mut line = zeroize::Zeroizing::new(Vec::new());
        let read = tokio::time::timeout(READ_TIMEOUT, read_line(&mut reader, &mut line)).await;
        let (reply, close) = match read {
            Err(_) if line.is_empty() => return,
            Err(_) => (
                Reply::error(&Error::usage(format!(
                    "incomplete request: no end of line within {}s",
                    READ_TIMEOUT.as_secs()
                ))),
                true,
            ),
            Ok(Err(e)) => (Reply::error(&e), true),
            Ok(Ok(false)) if line.is_empty() => return,
            Ok(Ok(whole)) => {
                let reply = match parse_request(&line) {
                    Ok(req) => daemon.dispatch(req).await,
                    Err(e) => Reply::error(&e),
                };
                (reply, !whole)
            }
        };
        if write.write_all(&encode(&reply)).await.is_err() || close {
            return;
        }
    }
}

/// Reads one line (without its newline) of at most [`MAX_REQUEST`] bytes. `Ok(true)`:
/// a full line; `Ok(false)`: end of stream (with whatever came before it).
async fn read_line(
    reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    line: &mut Vec<u8>,
) -> Result<bool> {
    loop {
        let buf = reader
            .fill_buf()
            .await
            .map_err(|e| Error::io(format!("reading the request: {e}")))?;
        if buf.is_empty() {
            return Ok(false);
        }
        let (chunk, found) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], true),
            None => (buf, false),
        };
        if line.len() + chunk.len() > MAX_REQUEST {
            return Err(Error::usage(format!(
                "request longer than {MAX_REQUEST} bytes"
            )));
        }
        line.extend_from_slice(chunk);
        let used = chunk.len() + usize::from(found);
        reader.consume(used);
        if found {
            return Ok(true);
        }
    }
}
