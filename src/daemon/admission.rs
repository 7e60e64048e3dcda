//! How many clients the daemon's socket holds at once, and which one goes when it is
//! full. A mail program connects, asks, and hangs up within milliseconds; what fills
//! the daemon is something else: a client that connects and never writes, or writes
//! a byte a second. Each connection costs a descriptor, and the soft limit on those is
//! often 1,024, so without a bound a few hundred idle connections a second (within the
//! 5 s a request line may take) would leave none for the next caller, or for the store.
//!
//! The rule, as nginx drains its idle keep-alive connections when it runs out
//! (`ngx_drain_connections`): at most [`limit`] connections; when a new one comes and
//! there is no room, the connection that has been waiting longest for its request line
//! is closed (idle or half-written: nothing is being answered on it), so a caller that
//! writes its request at once is always served. Connections being answered are never
//! closed; when all of them are, the next waits in the kernel's listen queue until one
//! ends.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// Descriptors kept for everything but the socket's clients: the store and its lock
/// files, token requests, store commands' pipes, the relays' listeners.
const RESERVED_FDS: u64 = 128;

/// At most this many clients at once, however high the descriptor limit.
const MOST: usize = 1024;

/// The connection cap for a soft descriptor limit of `nofile`.
pub fn limit(nofile: u64) -> usize {
    (nofile.saturating_sub(RESERVED_FDS) as usize).clamp(16, MOST)
}

/// The soft RLIMIT_NOFILE of this process.
pub fn nofile() -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } != 0 {
        return 1024;
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is 32 bits on some targets
    let soft = l.rlim_cur as u64;
    soft
}

/// The daemon's clients: which are waiting for a request line, in the order they began
/// to wait.
pub struct Admission {
    inner: Mutex<Inner>,
    /// A connection ended: room for one waiting to be accepted.
    room: Notify,
    /// The last open connection ended.
    quiet: Notify,
}

/// How long without clients before their memory is given back.
const QUIET: std::time::Duration = std::time::Duration::from_secs(1);

struct Inner {
    limit: usize,
    next: u64,
    /// Every connection, by id: the flag that tells it to go.
    open: BTreeMap<u64, Arc<Kick>>,
    /// (since, id) of those waiting for a request line; the first waited longest.
    waiting: BTreeSet<(u64, u64)>,
    /// Told to close and not gone yet.
    leaving: usize,
}

/// Tells one connection to close.
#[derive(Default)]
pub struct Kick {
    kicked: AtomicBool,
    notify: Notify,
}

impl Kick {
    fn kick(&self) {
        self.kicked.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }

    /// Returns once this connection was told to close.
    pub async fn kicked(&self) {
        while !self.kicked.load(Ordering::SeqCst) {
            self.notify.notified().await;
        }
    }
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One admitted connection; dropping it frees its place.
pub struct Ticket {
    admission: Arc<Admission>,
    id: u64,
    since: Option<u64>,
    pub kick: Arc<Kick>,
}

impl Admission {
    /// Gives the allocator's free pages back (`release_free_memory`) each time the
    /// daemon has had no client for [`QUIET`] after having some: what a burst of
    /// clients allocated is freed when they go, but glibc keeps it until told. Waits
    /// without a timer while nothing happens, so an idle daemon never wakes for it.
    pub async fn trim_when_quiet(self: Arc<Self>) {
        loop {
            self.quiet.notified().await;
            loop {
                tokio::select! {
                    _ = self.quiet.notified() => {}
                    _ = tokio::time::sleep(QUIET) => break,
                }
            }
            super::release_free_memory();
        }
    }

    pub fn new(limit: usize) -> Arc<Admission> {
        Arc::new(Admission {
            inner: Mutex::new(Inner {
                limit,
                next: 0,
                open: BTreeMap::new(),
                waiting: BTreeSet::new(),
                leaving: 0,
            }),
            room: Notify::new(),
            quiet: Notify::new(),
        })
    }

    /// Waits until a connection may be accepted: there is room, or a connection that
    /// waits for its request line can be closed for the new one ([`Admission::admit`]
    /// closes it once the new one is there, not before: nobody is closed for a client
    /// that never comes). While every connection is being answered, new ones wait in
    /// the listen queue.
    pub async fn room(&self) {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if self.make_room() {
                return;
            }
            room.await;
        }
    }

    /// Whether one more may come in now: there is room, or one that waits can be
    /// closed for it (and none is on its way out already).
    fn make_room(&self) -> bool {
        let st = lock(&self.inner);
        // Kicked ones still count until they have gone: a descriptor is freed then.
        st.open.len() < st.limit || (st.leaving == 0 && !st.waiting.is_empty())
    }

    /// Registers an accepted connection, waiting for its request line. When that is
    /// one more than the limit, the one that has waited longest for its request line
    /// is told to go (it leaves when its task sees the kick); the limit leaves room
    /// for the one extra descriptor meanwhile.
    pub fn admit(self: &Arc<Self>) -> Ticket {
        let mut st = lock(&self.inner);
        st.next += 1;
        let id = st.next;
        let kick = Arc::new(Kick::default());
        st.open.insert(id, kick.clone());
        if st.open.len() > st.limit
            && let Some((_, oldest)) = st.waiting.pop_first()
            && let Some(k) = st.open.get(&oldest).cloned()
        {
            k.kick();
            st.leaving += 1;
        }
        st.waiting.insert((id, id));
        Ticket {
            admission: self.clone(),
            id,
            since: Some(id),
            kick,
        }
    }
}

impl Ticket {
    /// A whole request line came: this connection is being answered. If it was told
    /// to go just as its request came, it is answered after all, and no longer counts
    /// as leaving (else no other could be closed for new ones until it ends).
    pub fn busy(&mut self) {
        let mut st = lock(&self.admission.inner);
        if let Some(since) = self.since.take() {
            st.waiting.remove(&(since, self.id));
        }
        if self.kick.kicked.swap(false, Ordering::SeqCst) {
            st.leaving -= 1;
        }
    }

    /// The answer is written: waiting for the next request line.
    pub fn waiting(&mut self) {
        let mut st = lock(&self.admission.inner);
        if let Some(since) = self.since.take() {
            st.waiting.remove(&(since, self.id));
        }
        st.next += 1;
        let since = st.next;
        st.waiting.insert((since, self.id));
        self.since = Some(since);
        drop(st);
        // It can be closed for a new one now.
        self.admission.room.notify_one();
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let last = {
            let mut st = lock(&self.admission.inner);
            if let Some(since) = self.since {
                st.waiting.remove(&(since, self.id));
            }
            st.open.remove(&self.id);
            if self.kick.kicked.load(Ordering::SeqCst) {
                st.leaving -= 1;
            }
            st.open.is_empty()
        };
        self.admission.room.notify_one();
        if last {
            // No client left: the allocator may give back what they used, once no
            // other comes for a while (`trim_when_quiet`).
            self.admission.quiet.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_follows_the_descriptor_limit_within_bounds() {
        assert_eq!(limit(1024), 896);
        assert_eq!(limit(100), 16);
        assert_eq!(limit(1 << 20), MOST);
    }

    fn kicked(t: &Ticket) -> bool {
        t.kick.kicked.load(Ordering::SeqCst)
    }

    #[test]
    fn when_full_a_new_connection_closes_the_one_waiting_longest_and_busy_ones_never() {
        let a = Admission::new(3);
        let mut first = a.admit();
        let second = a.admit();
        let third = a.admit();
        first.busy();
        // Full, but nobody is closed before a new one has come.
        assert!(a.make_room());
        assert!(!kicked(&first) && !kicked(&second) && !kicked(&third));
        // The new one closes the second, which waited longest; the first is answered.
        let fourth = a.admit();
        assert!(!kicked(&first) && kicked(&second) && !kicked(&third) && !kicked(&fourth));
        // No room until it has gone.
        assert!(!a.make_room());
        drop(second);
        assert!(a.make_room());
        let _fifth = a.admit();
        assert!(kicked(&third) && !kicked(&first) && !kicked(&fourth));
    }

    #[test]
    fn a_connection_that_finished_a_request_waits_again_as_the_youngest() {
        let a = Admission::new(2);
        let mut first = a.admit();
        let second = a.admit();
        first.busy();
        first.waiting();
        let third = a.admit();
        assert!(kicked(&second) && !kicked(&first) && !kicked(&third));
    }

    #[test]
    fn with_every_connection_busy_nobody_is_closed_and_no_room_is_made() {
        let a = Admission::new(2);
        let mut t: Vec<Ticket> = (0..2).map(|_| a.admit()).collect();
        for x in &mut t {
            x.busy();
        }
        assert!(!a.make_room());
        assert!(t.iter().all(|x| !kicked(x)));
        t.pop();
        assert!(a.make_room());
    }

    #[test]
    fn the_only_waiting_one_is_not_closed_for_itself() {
        let a = Admission::new(1);
        let mut busy = a.admit();
        busy.busy();
        // Over the limit by one: nobody else waits, so nobody is closed.
        let new = a.admit();
        assert!(!kicked(&busy) && !kicked(&new));
        // The next one closes it, never the busy one.
        assert!(a.make_room());
        let next = a.admit();
        assert!(kicked(&new) && !kicked(&busy) && !kicked(&next));
        assert!(!a.make_room());
    }

    #[test]
    fn a_kicked_connection_whose_request_came_is_answered_and_frees_the_way() {
        let a = Admission::new(2);
        let mut first = a.admit();
        let _second = a.admit();
        let third = a.admit();
        assert!(kicked(&first));
        // Its request line came as it was told to go: it is answered after all, and
        // another may be closed for the next new one.
        first.busy();
        assert!(!kicked(&first));
        assert!(a.make_room());
        let _fourth = a.admit();
        assert!(!kicked(&first) && !kicked(&third));
    }
}
