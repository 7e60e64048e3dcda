//! Sleeping until a wall-clock time, correctly across suspend and clock changes, with no
//! polling: on Linux a CLOCK_REALTIME timerfd with an absolute deadline fires right
//! after resume if the deadline passed while the machine slept, and
//! TFD_TIMER_CANCEL_ON_SET wakes it when the clock is set. Tokio's own timers run on
//! CLOCK_MONOTONIC, which stands still during suspend: a token due to be refreshed
//! while the laptop slept would be refreshed late.
//!
//! One timer for the whole daemon ([`WallClock`]), armed for the earliest sleeper, not
//! one timerfd per account: with 1,000 accounts those were 1,000 descriptors of a soft
//! limit that is often 1,024, and a registration each in the event loop
//! (docs/benchmarks.md, section 8).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::sync::Notify;

/// The daemon's wall clock: [`WallClock::sleep_until`] futures, and the one task that
/// wakes them. Made on the runtime that polls them; its task ends when it is dropped.
pub struct WallClock {
    shared: Arc<Shared>,
    driver: tokio::task::JoinHandle<()>,
}

struct Shared {
    state: Mutex<State>,
    /// A sleeper earlier than the armed deadline came.
    rearm: Notify,
}

#[derive(Default)]
struct State {
    /// (deadline, sleeper's id) → its waker; the first key is the deadline armed.
    sleepers: BTreeMap<(u64, u64), Waker>,
    next_id: u64,
    /// How many clock changes the timer saw: a sleeper from before one returns.
    epoch: u64,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl WallClock {
    /// Starts the clock's task on the current tokio runtime.
    pub fn start() -> WallClock {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            rearm: Notify::new(),
        });
        let driver = tokio::spawn(drive(shared.clone()));
        WallClock { shared, driver }
    }

    /// Returns at (or soon after) wall-clock second `at`, or early when the system
    /// clock was changed (the caller recomputes its deadline either way).
    pub fn sleep_until(&self, at: u64) -> Sleep {
        Sleep {
            shared: self.shared.clone(),
            at,
            id: None,
            epoch: lock(&self.shared.state).epoch,
        }
    }
}

impl Drop for WallClock {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// A sleeper: registered with the clock while it waits.
pub struct Sleep {
    shared: Arc<Shared>,
    at: u64,
    id: Option<u64>,
    epoch: u64,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let mut st = lock(&this.shared.state);
        if crate::record::now() >= this.at || st.epoch != this.epoch {
            if let Some(id) = this.id.take() {
                st.sleepers.remove(&(this.at, id));
            }
            return Poll::Ready(());
        }
        let id = *this.id.get_or_insert_with(|| {
            st.next_id += 1;
            st.next_id
        });
        let first = st.sleepers.first_key_value().map(|(k, _)| *k);
        st.sleepers.insert((this.at, id), cx.waker().clone());
        drop(st);
        if first.is_none_or(|f| (this.at, id) < f) {
            this.shared.rearm.notify_one();
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            lock(&self.shared.state).sleepers.remove(&(self.at, id));
        }
    }
}

/// What woke the timer.
#[derive(Debug, PartialEq, Eq)]
enum Fired {
    /// The deadline passed.
    Due,
    /// The system clock was set: every deadline may have moved.
    ClockSet,
}

async fn drive(shared: Arc<Shared>) {
    #[cfg(target_os = "linux")]
    let timer = linux::WallTimer::new().ok();
    #[cfg(not(target_os = "linux"))]
    let timer: Option<()> = None;
    loop {
        let rearmed = shared.rearm.notified();
        tokio::pin!(rearmed);
        rearmed.as_mut().enable();
        let earliest = lock(&shared.state)
            .sleepers
            .first_key_value()
            .map(|(k, _)| k.0);
        let fired = match (earliest, &timer) {
            (None, _) => {
                rearmed.await;
                continue;
            }
            #[cfg(target_os = "linux")]
            (Some(at), Some(t)) => match t.set(at) {
                Ok(()) => tokio::select! {
                    f = t.wait() => f,
                    _ = &mut rearmed => continue,
                },
                Err(_) => tokio::select! {
                    f = fallback(at) => f,
                    _ = &mut rearmed => continue,
                },
            },
            (Some(at), _) => tokio::select! {
                f = fallback(at) => f,
                _ = &mut rearmed => continue,
            },
        };
        let woken = {
            let mut st = lock(&shared.state);
            if fired == Fired::ClockSet {
                st.epoch += 1;
                std::mem::take(&mut st.sleepers)
            } else {
                let later = st.sleepers.split_off(&(crate::record::now() + 1, 0));
                std::mem::replace(&mut st.sleepers, later)
            }
        };
        for w in woken.into_values() {
            w.wake();
        }
    }
}

/// Without a timerfd: monotonic sleeps of at most 5 minutes, re-reading the wall clock
/// after each, so a suspend delays a refresh by at most that.
async fn fallback(at: u64) -> Fired {
    loop {
        let now = crate::record::now();
        if now >= at {
            return Fired::Due;
        }
        tokio::time::sleep(Duration::from_secs((at - now).min(300))).await;
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use super::Fired;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use tokio::io::unix::AsyncFd;

    pub struct WallTimer {
        fd: AsyncFd<OwnedFd>,
    }

    impl WallTimer {
        pub fn new() -> io::Result<Self> {
            // SAFETY: plain syscalls on a descriptor we own; arguments are valid.
            let raw = unsafe {
                libc::timerfd_create(libc::CLOCK_REALTIME, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC)
            };
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            // SAFETY: the OwnedFd is the descriptor it reports; nothing else owns it.
            let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
                .map_err(io::Error::from)?;
            Ok(WallTimer { fd })
        }

        /// Arms the timer for wall-clock second `at` (absolute), replacing any deadline.
        pub fn set(&self, at: u64) -> io::Result<()> {
            let spec = libc::itimerspec {
                it_interval: libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                // A zero it_value would disarm the timer: a deadline in the past is
                // set to one nanosecond after the epoch instead, which fires at once.
                it_value: libc::timespec {
                    tv_sec: at as libc::time_t,
                    tv_nsec: if at == 0 { 1 } else { 0 },
                },
            };
            let flags = libc::TFD_TIMER_ABSTIME | libc::TFD_TIMER_CANCEL_ON_SET;
            let rc = unsafe {
                libc::timerfd_settime(
                    self.fd.get_ref().as_raw_fd(),
                    flags,
                    &spec,
                    std::ptr::null_mut(),
                )
            };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }

        /// Waits for expiry, or for a clock change (the read then fails with ECANCELED).
        pub async fn wait(&self) -> Fired {
            loop {
                let Ok(mut guard) = self.fd.readable().await else {
                    return Fired::ClockSet;
                };
                let mut buf = [0u8; 8];
                let n = unsafe {
                    libc::read(self.fd.get_ref().as_raw_fd(), buf.as_mut_ptr().cast(), 8)
                };
                if n >= 0 {
                    return Fired::Due;
                }
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EAGAIN) => guard.clear_ready(),
                    // ECANCELED: the clock was set.
                    _ => return Fired::ClockSet,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test(flavor = "current_thread")]
    async fn a_deadline_in_the_past_returns_at_once() {
        let clock = WallClock::start();
        let t = Instant::now();
        clock.sleep_until(0).await;
        clock.sleep_until(crate::record::now() - 10).await;
        assert!(t.elapsed() < Duration::from_millis(100));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_deadline_two_seconds_ahead_is_honoured() {
        let clock = WallClock::start();
        let at = crate::record::now() + 2;
        clock.sleep_until(at).await;
        assert!(crate::record::now() >= at);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn one_timer_wakes_many_sleepers_each_at_its_own_deadline() {
        let clock = Arc::new(WallClock::start());
        let now = crate::record::now();
        // Registered latest first, so that each new one moves the armed deadline.
        let tasks: Vec<_> = [3u64, 2, 1, 1]
            .into_iter()
            .map(|d| {
                let clock = clock.clone();
                tokio::spawn(async move {
                    clock.sleep_until(now + d).await;
                    (d, crate::record::now())
                })
            })
            .collect();
        // A sleeper given up does not hold the others back.
        let dropped = clock.sleep_until(now + 1);
        drop(tokio::time::timeout(Duration::from_millis(10), dropped).await);
        for t in tasks {
            let (d, woke) = t.await.unwrap();
            assert!(woke >= now + d, "the {d} s sleeper woke at +{}", woke - now);
            assert!(
                woke <= now + d + 1,
                "the {d} s sleeper woke late: +{}",
                woke - now
            );
        }
        assert!(lock(&clock.shared.state).sleepers.is_empty());
    }
}
