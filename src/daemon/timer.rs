//! Sleeping until a wall-clock time, correctly across suspend and clock changes, with no
//! polling: on Linux a CLOCK_REALTIME timerfd with an absolute deadline fires right
//! after resume if the deadline passed while the machine slept, and
//! TFD_TIMER_CANCEL_ON_SET wakes it when the clock is set. Tokio's own timers run on
//! CLOCK_MONOTONIC, which stands still during suspend: a token due to be refreshed
//! while the laptop slept would be refreshed late.

use std::time::Duration;

/// Returns at (or soon after) wall-clock second `at`, or early when the system clock
/// was changed (the caller recomputes its deadline either way).
pub async fn sleep_until_wall(at: u64) {
    #[cfg(target_os = "linux")]
    if let Ok(t) = linux::WallTimer::new(at) {
        t.wait().await;
        return;
    }
    fallback(at).await
}

/// Elsewhere: monotonic sleeps of at most 5 minutes, re-reading the wall clock after
/// each, so a suspend delays a refresh by at most that.
async fn fallback(at: u64) {
    loop {
        let now = crate::record::now();
        if now >= at {
            return;
        }
        tokio::time::sleep(Duration::from_secs((at - now).min(300))).await;
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use tokio::io::unix::AsyncFd;

    pub struct WallTimer {
        fd: AsyncFd<OwnedFd>,
    }

    impl WallTimer {
        pub fn new(at: u64) -> io::Result<Self> {
            // SAFETY: plain syscalls on a descriptor we own; arguments are valid.
            let raw = unsafe {
                libc::timerfd_create(libc::CLOCK_REALTIME, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC)
            };
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
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
                libc::timerfd_settime(fd.as_raw_fd(), flags, &spec, std::ptr::null_mut())
            };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: the OwnedFd is the descriptor it reports; nothing else owns it.
            let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
                .map_err(io::Error::from)?;
            Ok(WallTimer { fd })
        }

        /// Waits for expiry, or for a clock change (the read then fails with ECANCELED).
        pub async fn wait(self) {
            loop {
                let Ok(mut guard) = self.fd.readable().await else {
                    return;
                };
                let mut buf = [0u8; 8];
                let n = unsafe {
                    libc::read(self.fd.get_ref().as_raw_fd(), buf.as_mut_ptr().cast(), 8)
                };
                if n >= 0 {
                    return;
                }
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EAGAIN) => guard.clear_ready(),
                    _ => return, // ECANCELED: the clock was set
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_deadline_in_the_past_returns_at_once() {
        let t = std::time::Instant::now();
        sleep_until_wall(0).await;
        sleep_until_wall(crate::record::now() - 10).await;
        assert!(t.elapsed() < Duration::from_millis(100));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_deadline_two_seconds_ahead_is_honoured() {
        let at = crate::record::now() + 2;
        sleep_until_wall(at).await;
        assert!(crate::record::now() >= at);
    }
}
