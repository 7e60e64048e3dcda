//! The daemon's memory: one slot per account, holding the account's state machine
//! (`state.rs`), and the work done on it: answering a token request from memory,
//! loading from the store, one refresh at a time, retrying a save the store refused.
//!
//! Locking discipline: `Slot::state` (a std mutex) is held only to read or change the
//! state, never across an await or I/O. Only one refresh per account runs: it starts
//! by moving the state to `Refreshing` under that mutex, so a second caller sees it and
//! waits; the Broker's file lock extends that to other processes. `Slot::changed` is
//! bumped after every change, waking the account's refresher and the requests that
//! `--wait`.

use super::timer::WallClock;
use crate::broker::{Broker, Served};
use crate::config::Account;
use crate::credential::Source;
use crate::error::{Error, Result};
use crate::record::{self, DEFAULT_MIN_VALID, FailureKind};
use crate::secret::Secret;
use crate::state::{AccountState, Decision, Effect, RefreshError};
use crate::status::Row;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

pub struct Daemon {
    broker: RwLock<Arc<Broker>>,
    /// The one wall-clock timer the refreshers sleep on.
    pub clock: WallClock,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    /// The daemon's own uid, which its socket serves...
    pub uid: u32,
    /// ...and the members of this group (`serve --allow-group`).
    pub allow_gid: Option<u32>,
    /// Refreshes whose thread runs: the daemon waits for them before it exits.
    pub in_flight: Arc<InFlight>,
    /// At most [`REFRESH_THREADS`] refresh threads at once.
    refresh_threads: Arc<tokio::sync::Semaphore>,
}

/// How many refreshes may run at once, each on a thread of its own. Enough that a few
/// accounts whose provider hangs leave room for the others; few enough that a thousand
/// accounts due at once (the daemon's start after a night off) make a short queue, not
/// a thousand threads and connections at once.
pub const REFRESH_THREADS: usize = 8;

/// How many refresh threads run, and a way to wait until none does.
#[derive(Default)]
pub struct InFlight {
    count: AtomicU64,
    idle: Notify,
}

impl InFlight {
    fn start(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.clone())
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// Returns once no refresh thread runs, or at `deadline`.
    pub async fn until_idle(&self, deadline: Instant) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline.into(), idle)
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// One refresh thread running; dropped when it ends.
struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::SeqCst);
        self.0.idle.notify_waiters();
    }
}

pub struct Slot {
    pub name: String,
    pub state: Mutex<AccountState>,
    /// The longest `--min-valid` any request asked for: refresh before falling under it.
    longest_min_valid: Mutex<Duration>,
    tickets: AtomicU64,
    /// Until when callers wait for the refresh in flight: its start plus `timeout`.
    /// The refresh itself waits longer for a sent request's answer (`oauth::patience`).
    refresh_bound: Mutex<Option<Instant>>,
    pub changed: Changes,
    pub refresher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A slot's change counter, and a way to wait for its next change. A `watch` channel
/// did this before at about 350 bytes a slot (its eight-way `Notify`); with 1,000
/// accounts that was a tenth of the daemon's memory (docs/benchmarks.md, section 8).
#[derive(Default)]
pub struct Changes {
    generation: AtomicU64,
    notify: Notify,
}

impl Changes {
    pub fn bump(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// A watcher that has seen the changes made so far.
    pub fn subscribe(&self) -> Watcher<'_> {
        Watcher {
            changes: self,
            seen: self.generation(),
        }
    }
}

pub struct Watcher<'a> {
    changes: &'a Changes,
    seen: u64,
}

impl Watcher<'_> {
    /// Marks every change made so far as seen.
    pub fn borrow_and_update(&mut self) {
        self.seen = self.changes.generation();
    }

    /// Returns once a change not seen yet was made (at once if one was made already),
    /// and marks it seen. No change is lost: the waiter is registered before the
    /// counter is read, and `bump` counts before it wakes.
    pub async fn changed(&mut self) {
        loop {
            let notified = self.changes.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = self.changes.generation();
            if now != self.seen {
                self.seen = now;
                return;
            }
            notified.await;
        }
    }
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Slot {
    fn new(name: &str) -> Slot {
        Slot {
            name: name.to_owned(),
            state: Mutex::new(AccountState::Unloaded),
            longest_min_valid: Mutex::new(DEFAULT_MIN_VALID),
            tickets: AtomicU64::new(0),
            refresh_bound: Mutex::new(None),
            changed: Changes::default(),
            refresher: Mutex::new(None),
        }
    }

    pub fn bump(&self) {
        self.changed.bump();
    }

    pub fn longest_min_valid(&self) -> Duration {
        *lock(&self.longest_min_valid)
    }

    /// Drops what the daemon remembers of the account, so the store is read again.
    pub fn forget(&self) {
        *lock(&self.state) = AccountState::Unloaded;
        self.bump();
    }
}

impl Daemon {
    /// On a tokio runtime (the wall clock's task starts on it).
    pub fn new(broker: Broker) -> Daemon {
        Daemon {
            broker: RwLock::new(Arc::new(broker)),
            clock: WallClock::start(),
            slots: Mutex::new(HashMap::new()),
            // SAFETY: geteuid has no preconditions.
            uid: unsafe { libc::geteuid() },
            allow_gid: None,
            in_flight: Arc::default(),
            refresh_threads: Arc::new(tokio::sync::Semaphore::new(REFRESH_THREADS)),
        }
    }

    pub fn broker(&self) -> Arc<Broker> {
        self.broker
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_broker(&self, b: Arc<Broker>) {
        *self.broker.write().unwrap_or_else(|e| e.into_inner()) = b;
    }

    /// The slot of a configured account.
    pub fn slot(&self, name: &str) -> Result<Arc<Slot>> {
        if let Some(s) = lock(&self.slots).get(name) {
            return Ok(s.clone());
        }
        // Not configured: the config's own error lists the accounts there are.
        self.broker().account(name)?;
        Err(Error::software(format!("no slot for account {name}")))
    }

    /// Adds a slot for `name`; `None` when it has one already. The caller starts its
    /// refresher.
    pub fn add_slot(&self, name: &str) -> Option<Arc<Slot>> {
        let mut slots = lock(&self.slots);
        if slots.contains_key(name) {
            return None;
        }
        let slot = Arc::new(Slot::new(name));
        slots.insert(name.to_owned(), slot.clone());
        Some(slot)
    }

    /// Whether `slot` is the daemon's slot for its account (not one a reload removed).
    pub fn is_current(&self, slot: &Arc<Slot>) -> bool {
        lock(&self.slots)
            .get(&slot.name)
            .is_some_and(|s| Arc::ptr_eq(s, slot))
    }

    /// Keeps the slots for which `keep` says so; the others' refreshers are stopped.
    pub fn retain_slots(&self, mut keep: impl FnMut(&str, &Slot) -> bool) {
        lock(&self.slots).retain(|name, slot| {
            let kept = keep(name, slot);
            if !kept && let Some(t) = lock(&slot.refresher).take() {
                t.abort();
            }
            kept
        });
    }

    /// A record whose access token is good for `min_valid`, from memory when it can be;
    /// waits up to `wait` for a refresh in flight, a pending login or a backoff's end.
    pub async fn fresh_record(
        self: &Arc<Self>,
        account: &Account,
        min_valid: Duration,
        wait: Duration,
    ) -> Result<Served> {
        let slot = self.slot(&account.name)?;
        {
            let mut longest = lock(&slot.longest_min_valid);
            if min_valid > *longest {
                *longest = min_valid;
                drop(longest);
                // The refresher recomputes when the refresh is due.
                slot.bump();
            }
        }
        let deadline = Instant::now() + wait;
        let mut changes = slot.changed.subscribe();
        loop {
            changes.borrow_and_update();
            let clock = record::Now::current();
            let now = clock.wall;
            let decision = lock(&slot.state).decide(clock, min_valid, &account.name);
            match decision {
                Decision::Serve(record) => {
                    return Ok(Served {
                        record,
                        warning: None,
                    });
                }
                Decision::Load => self.load(&slot, account).await?,
                // On a task of its own: a caller that stops waiting does not end it.
                Decision::Refresh => {
                    self.spawn_refresh(&slot, account);
                }
                Decision::AwaitRefresh => {
                    // The caller's `--wait`, or the refresh's own `timeout`, whichever
                    // is later; the refresh goes on after either.
                    let bound = lock(&slot.refresh_bound).map_or(deadline, |b| b.max(deadline));
                    if Instant::now() >= bound {
                        return Err(still_refreshing(&self.broker(), account));
                    }
                    tokio::select! {
                        _ = changes.changed() => {}
                        _ = tokio::time::sleep_until(bound.into()) => {}
                    }
                }
                Decision::Blocked { error, until } => {
                    if Instant::now() >= deadline {
                        return Err(error);
                    }
                    let wake = until
                        .map(|u| Instant::now() + Duration::from_secs(u.saturating_sub(now)))
                        .map_or(deadline, |w| w.min(deadline));
                    tokio::select! {
                        _ = changes.changed() => {}
                        _ = tokio::time::sleep_until(wake.into()) => {}
                    }
                }
            }
        }
    }

    /// Reads the account's record from the store, unless the state has it already.
    pub async fn load(&self, slot: &Slot, account: &Account) -> Result<()> {
        if !lock(&slot.state).needs_load() {
            return Ok(());
        }
        let (b, a) = (self.broker(), account.clone());
        let rec = blocking(move || b.load(&a)).await?;
        lock(&slot.state).loaded(rec);
        slot.bump();
        Ok(())
    }

    /// Reads the records of the slots that have none yet in one go (`Broker::load_each`:
    /// one read of the file store, not one per account): the daemon's start. A slot
    /// that changed meanwhile is left to its own `load`, as is one whose read failed.
    pub async fn load_all(&self, slots: &[Arc<Slot>]) {
        let wanted: Vec<(Arc<Slot>, u64)> = slots
            .iter()
            .filter(|s| lock(&s.state).needs_load())
            .map(|s| (s.clone(), s.changed.generation()))
            .collect();
        let names: Vec<String> = wanted.iter().map(|(s, _)| s.name.clone()).collect();
        let b = self.broker();
        let loaded = blocking(move || {
            let accounts: Vec<(usize, &Account)> = names
                .iter()
                .enumerate()
                .filter_map(|(i, n)| Some((i, b.account(n).ok()?)))
                .filter(|(_, a)| !a.uses_app_password())
                .collect();
            let records = b.load_each(&accounts.iter().map(|(_, a)| *a).collect::<Vec<_>>());
            Ok(accounts
                .into_iter()
                .map(|(i, _)| i)
                .zip(records)
                .collect::<Vec<_>>())
        })
        .await
        .unwrap_or_default();
        for (i, rec) in loaded {
            let (slot, generation) = &wanted[i];
            let Ok(rec) = rec else { continue };
            let mut st = lock(&slot.state);
            if slot.changed.generation() == *generation && st.needs_load() {
                st.loaded(rec);
                drop(st);
                slot.bump();
            }
        }
    }

    /// One refresh through the Broker (store, file lock, token endpoint), unless the
    /// state allows none now (another one is in flight). It runs on a task of its own:
    /// if this future is dropped (the refresher aborted by a reload, a relay session
    /// ended), the refresh still ends and its outcome still reaches the state.
    pub async fn refresh(self: &Arc<Self>, slot: &Arc<Slot>, account: &Account) {
        if let Some(task) = self.spawn_refresh(slot, account) {
            let _ = task.await;
        }
    }

    /// `refresh` on a task of its own, begun before this returns (so the caller's next
    /// look at the state finds it in flight and waits for it).
    fn spawn_refresh(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        account: &Account,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let begun = self.begin_refresh(slot)?;
        let (d, s, a) = (self.clone(), slot.clone(), account.clone());
        Some(tokio::spawn(async move {
            d.finish_refresh(&s, &a, begun).await
        }))
    }

    /// The state becomes `Refreshing` (single flight), unless it allows no refresh now:
    /// the refresh's ticket and the access token it starts from.
    fn begin_refresh(&self, slot: &Slot) -> Option<(u64, Option<Secret>)> {
        let ticket = slot.tickets.fetch_add(1, Ordering::Relaxed) + 1;
        let seen = lock(&slot.state).begin_refresh(ticket)?;
        *lock(&slot.refresh_bound) = Some(Instant::now() + self.broker().config.timeout);
        slot.bump();
        Some((ticket, seen))
    }

    async fn finish_refresh(&self, slot: &Slot, account: &Account, begun: (u64, Option<Secret>)) {
        let (ticket, seen) = begun;
        // If this task is dropped before the outcome arrives (the runtime shutting
        // down), the state must not stay `Refreshing`.
        let mut guard = Unfinished {
            slot,
            ticket,
            armed: true,
        };
        let (b, a) = (self.broker(), account.clone());
        // A thread of its own, not the runtime's two blocking threads: a sent refresh
        // may wait minutes for its answer (`oauth::patience`), and loads, keyring
        // lookups and the other accounts' work must not queue behind it.
        let (tx, rx) = tokio::sync::oneshot::channel();
        // The semaphore is never closed.
        let permit = self.refresh_threads.clone().acquire_owned().await.ok();
        let running = self.in_flight.start();
        let spawned = std::thread::Builder::new()
            .name("refresh".into())
            .spawn(move || {
                let _held = (running, permit);
                let _ = tx.send(b.refresh_unless_replaced(&a, seen.as_ref()));
            });
        let outcome = match spawned {
            Ok(_) => rx.await.unwrap_or_else(|_| {
                Err(RefreshError::Failed(
                    FailureKind::Temporary,
                    Error::software("the refresh's thread ended without an outcome"),
                ))
            }),
            Err(e) => Err(RefreshError::Failed(
                FailureKind::Temporary,
                Error::temp(format!("cannot start a thread for the refresh: {e}")),
            )),
        };
        if let Ok(r) = &outcome
            && let Some(w) = &r.unsaved
        {
            say(&format!("{}: {w}", account.name));
        }
        let reason = outcome.as_ref().err().map(|e| e.error().message.clone());
        let effect = lock(&slot.state).finish_refresh(ticket, outcome, record::now(), jitter());
        guard.armed = false;
        slot.bump();
        if effect == Effect::NotifyNeedsLogin {
            let (b, a) = (self.broker(), account.clone());
            let reason = reason.unwrap_or_default();
            tokio::task::spawn_blocking(move || crate::notify::needs_login(&b.config, &a, &reason));
        }
    }

    /// A server refused `rejected` (the relay's upstream sign-in): refresh it unless it
    /// was replaced meanwhile, as `verify` does. The next request gets the new one.
    pub async fn renew_rejected(self: &Arc<Self>, account: &Account, rejected: &str) {
        let Ok(slot) = self.slot(&account.name) else {
            return;
        };
        let current = lock(&slot.state)
            .record()
            .and_then(|r| r.access_token.as_ref().map(|t| t.expose() == rejected));
        if current == Some(true) {
            self.refresh(&slot, account).await;
        }
    }

    /// Saves tokens the store refused before.
    pub async fn save(&self, slot: &Slot, account: &Account) {
        let Some(rec) = lock(&slot.state).record().cloned() else {
            return;
        };
        let obtained_at = rec.obtained_at;
        let (b, a) = (self.broker(), account.clone());
        let result = blocking(move || b.persist(&a, &rec)).await;
        {
            let mut st = lock(&slot.state);
            match result {
                Ok(()) => {
                    st.saved(obtained_at);
                    say(&format!(
                        "{}: the store took the tokens again",
                        account.name
                    ));
                }
                Err(e) => st.save_failed(obtained_at, e, record::now(), jitter()),
            }
        }
        slot.bump();
    }

    /// The rows of `mailtoken status`, from memory.
    pub async fn status(self: &Arc<Self>, account: Option<&str>) -> Result<Vec<Row>> {
        let broker = self.broker();
        let accounts: Vec<Account> = match account {
            Some(a) => vec![broker.account(a)?.clone()],
            None => broker.config.accounts.values().cloned().collect(),
        };
        let store = broker.store().describe();
        let mut rows = Vec::new();
        for a in &accounts {
            let mut row = if a.uses_app_password() {
                let a = a.clone();
                blocking(move || Ok(Row::password(&a))).await?
            } else {
                let slot = self.slot(&a.name)?;
                match self.load(&slot, a).await {
                    Ok(()) => {
                        Row::oauth(a, &lock(&slot.state), record::Now::current(), &store, None)
                    }
                    Err(e) => Row::unreadable(a, &e, &store),
                }
            };
            row.daemon = true;
            rows.push(row);
        }
        Ok(rows)
    }
}

/// Ends a refresh whose future was dropped before its outcome, as a temporary failure.
struct Unfinished<'a> {
    slot: &'a Slot,
    ticket: u64,
    armed: bool,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if self.armed {
            let e = Error::temp("the refresh was interrupted");
            lock(&self.slot.state).finish_refresh(
                self.ticket,
                Err(RefreshError::Failed(FailureKind::Temporary, e)),
                record::now(),
                jitter(),
            );
            self.slot.bump();
        }
    }
}

/// The daemon as the credential service's source: app passwords from the keyring on
/// every request (never kept in memory), tokens from the slots.
pub struct FromMemory<'a>(pub &'a Arc<Daemon>);

impl Source for FromMemory<'_> {
    async fn password(&self, account: &Account) -> Result<Secret> {
        let a = account.clone();
        blocking(move || crate::password::lookup(&a)).await
    }

    async fn token(
        &self,
        account: &Account,
        min_valid: Duration,
        wait: Duration,
    ) -> Result<Served> {
        self.0.fresh_record(account, min_valid, wait).await
    }
}

/// A line on the daemon's stderr (its log); one that cannot be written is dropped, not
/// a panic (`eprintln!` panics on EPIPE, and the daemon aborts on panics).
pub fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "mailtoken: {line}");
}

/// A caller's answer when the refresh it waited for has not ended after `timeout`
/// (mostly: its request waits for the provider's answer): the refresh goes on, since a
/// sent request's answer may hold the only copy of a rotated refresh token
/// (`oauth::ANSWER_PATIENCE`).
fn still_refreshing(broker: &Broker, account: &Account) -> Error {
    let timeout = broker.config.timeout;
    let url = account.oauth().map_or_else(
        |_| "the token endpoint".to_owned(),
        |o| o.token_url.to_string(),
    );
    Error::temp(format!(
        "refreshing the access token for {} has not ended within {}. The daemon waits on for the answer of {url} (up to {}) and keeps the new tokens when they come.",
        account.name,
        humantime::format_duration(timeout),
        humantime::format_duration(crate::oauth::patience(timeout)),
    ))
    .with_remedy(format!(
        "Try again in a moment (`mailtoken status {}` shows when the refresh is done), or wait longer with `--wait`.",
        account.name
    ))
}

/// Spreads the retries of many accounts and many users: a number in [0, 1).
pub fn jitter() -> f64 {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(n % 1_000_000) / 1_000_000.0
}

/// Runs blocking work (keyring D-Bus calls, file locks, the token request's own runtime)
/// off the daemon's event loop.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::software(format!("worker failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_change_is_never_lost_whether_it_comes_before_or_during_the_wait() {
        let c = Arc::new(Changes::default());
        let mut w = c.subscribe();
        // Made before the wait: seen at once.
        c.bump();
        tokio::time::timeout(Duration::from_secs(1), w.changed())
            .await
            .expect("a change made before the wait");
        // Seen, so the next wait waits...
        assert!(
            tokio::time::timeout(Duration::from_millis(50), w.changed())
                .await
                .is_err()
        );
        // ...until the next change, made while it waits.
        let c2 = c.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            c2.bump();
        });
        tokio::time::timeout(Duration::from_secs(1), w.changed())
            .await
            .expect("a change made during the wait");
        // borrow_and_update marks as seen what came meanwhile.
        c.bump();
        w.borrow_and_update();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), w.changed())
                .await
                .is_err()
        );
    }
}
