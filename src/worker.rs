//! The daemonless refresh, in a process of its own that outlives its caller.
//!
//! A mail program waits for `mailtoken token` to exit, so the process it started must
//! end within `timeout`. A refresh sent to the provider, though, must be waited for
//! past that: a provider that got the request carries it out whether or not its answer
//! arrives, and one that rotates refresh tokens (RFC 9700 §4.14.2) has then spent the
//! stored one, so the answer holds the only copy of the new one (docs/reliability.md,
//! "The window no client can close"). So `mailtoken token`, having decided under the
//! account lock that a refresh is due, hands the refresh to `mailtoken-core
//! --refresh-worker ACCOUNT` and waits for it up to `timeout`; the worker waits for the
//! answer up to `oauth::patience` and stores it, whether or not anyone still waits.
//!
//! The hand-over:
//! - fd 3 is the account lock, inherited: one open file description, so the flock
//!   stays held until both processes have closed it (flock(2)), and nobody refreshes
//!   meanwhile. The worker checks that it holds it before anything else.
//! - stdin carries the record to refresh, as JSON (its refresh token never appears in
//!   argv or the environment), and stdout lines back: `"ready"` once it holds the lock
//!   and has read the record, the config and the store, before anything is sent (a
//!   worker that ends before that has done nothing, and the caller refreshes by
//!   itself); `"answered"` once the token request is over (so that a caller that gives
//!   up can say whether the provider or the store is what it waited for); then the
//!   outcome (`Outcome`).
//! - stderr is an anonymous file (memfd_create(2)), which the caller copies to its own
//!   stderr when the outcome comes or it gives up (a warning about a key file's mode
//!   reaches the user as from the caller itself); a pipe would hold up a caller that
//!   reads stderr until EOF, and fail the worker's later writes. The worker is a
//!   session of its own (setsid(2)): a hangup of the caller's terminal does not stop
//!   it.
//!
//! A worker that cannot be started leaves the refresh to the calling process, as before.

use crate::broker::Broker;
use crate::config::Config;
use crate::error::{Error, ExitCode, Result};
use crate::record::{FailureKind, TokenRecord};
use crate::state::{RefreshError, RefreshOutcome, Refreshed};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The first argument that makes mailtoken-core a refresh worker.
pub const ARG: &str = "--refresh-worker";

/// The descriptor the account lock is handed over on.
const LOCK_FD: i32 = 3;

/// The worker's line once it is about to send the request: nothing was sent before.
const READY: &[u8] = b"\"ready\"";

/// The worker's line once the token request is over (answered, or failed), before the
/// store has the outcome.
const ANSWERED: &[u8] = b"\"answered\"";

/// The worker's answer, one JSON line on its stdout.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Refreshed {
        record: Box<TokenRecord>,
        #[serde(default)]
        unsaved: Option<Said>,
    },
    NotLoggedIn(Said),
    Failed {
        kind: FailureKind,
        error: Said,
    },
}

/// An [`Error`] on the wire.
#[derive(Serialize, Deserialize)]
struct Said {
    code: i32,
    message: String,
    #[serde(default)]
    remedy: Option<String>,
}

impl From<&Error> for Said {
    fn from(e: &Error) -> Said {
        Said {
            code: e.code as i32,
            message: e.message.clone(),
            remedy: e.remedy.clone(),
        }
    }
}

impl From<Said> for Error {
    fn from(s: Said) -> Error {
        let mut e = Error::new(ExitCode::from_code(s.code), s.message);
        e.remedy = s.remedy;
        e
    }
}

impl From<&RefreshOutcome> for Outcome {
    fn from(o: &RefreshOutcome) -> Outcome {
        match o {
            Ok(r) => Outcome::Refreshed {
                record: Box::new(r.record.clone()),
                unsaved: r.unsaved.as_ref().map(Said::from),
            },
            Err(RefreshError::NotLoggedIn(e)) => Outcome::NotLoggedIn(e.into()),
            Err(RefreshError::Failed(kind, e)) => Outcome::Failed {
                kind: *kind,
                error: e.into(),
            },
        }
    }
}

impl From<Outcome> for RefreshOutcome {
    fn from(o: Outcome) -> RefreshOutcome {
        match o {
            Outcome::Refreshed { record, unsaved } => Ok(Refreshed {
                record: *record,
                unsaved: unsaved.map(Error::from),
            }),
            Outcome::NotLoggedIn(e) => Err(RefreshError::NotLoggedIn(e.into())),
            Outcome::Failed { kind, error } => Err(RefreshError::Failed(kind, error.into())),
        }
    }
}

/// Refreshes `record` of `account` in a worker started from `exe`, the account lock
/// `lock` handed over; waits for its outcome up to `timeout`. `None` when no worker
/// could be started (the caller refreshes by itself then).
pub fn refresh(
    exe: &Path,
    account: &str,
    record: &TokenRecord,
    lock: &crate::lock::AccountLock,
    timeout: Duration,
    store: &str,
) -> Option<RefreshOutcome> {
    let input = zeroize::Zeroizing::new(serde_json::to_vec(record).ok()?);
    let lock_fd = lock.as_raw_fd();
    let said = said_file();
    let mut cmd = Command::new(exe);
    cmd.arg(ARG)
        .arg(account)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(
            said.as_ref()
                .and_then(|f| f.try_clone().ok())
                .map_or_else(Stdio::null, Stdio::from),
        );
    // SAFETY: between fork and exec only async-signal-safe calls (dup2, fcntl, setsid),
    // on descriptors this process owns; no allocation.
    unsafe {
        cmd.pre_exec(move || {
            if lock_fd == LOCK_FD {
                // dup2 onto itself keeps FD_CLOEXEC: clear it.
                if libc::fcntl(LOCK_FD, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(lock_fd, LOCK_FD) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = cmd.spawn().ok()?;
    let sent = child
        .stdin
        .take()
        .map(|mut w| w.write_all(&input))
        .is_some_and(|r| r.is_ok());
    let out = child.stdout.take()?;
    if !sent {
        // It died at once; its stdout tells nothing either.
        let _ = child.wait();
        return None;
    }
    // A connection the worker cannot make fails within `timeout` there; a second more
    // covers its start.
    let deadline = started + timeout + Duration::from_secs(1);
    let pid = child.id();
    let mut lines = Lines::new(out);
    // Before "ready" nothing has been sent: a worker that ends then (a config it cannot
    // read, an older mailtoken-core) leaves the refresh to this process, and one that
    // stalls then is stopped.
    match lines.next_until(deadline) {
        Ok(Some(line)) if line == READY => {}
        Ok(_) => {
            let _ = child.wait();
            pass_on(said.as_ref());
            return None;
        }
        Err(()) => {
            let _ = child.kill();
            let _ = child.wait();
            pass_on(said.as_ref());
            return Some(Err(RefreshError::Failed(
                FailureKind::Temporary,
                Error::temp(format!(
                    "refreshing the access token for {account}: the refresh worker did not get ready within {} (nothing was sent)",
                    humantime::format_duration(timeout)
                )),
            )));
        }
    }
    let mut answered = false;
    let answer = loop {
        match lines.next_until(deadline) {
            Ok(Some(line)) if line == ANSWERED => answered = true,
            other => break other,
        }
    };
    pass_on(said.as_ref());
    match answer {
        Ok(Some(line)) => {
            let _ = child.wait();
            let line = zeroize::Zeroizing::new(line);
            match serde_json::from_slice::<Outcome>(&line) {
                Ok(o) => Some(o.into()),
                // Not serde's words: they may quote a value, and values here are tokens.
                Err(e) => Some(Err(RefreshError::Failed(
                    FailureKind::Temporary,
                    Error::software(format!(
                        "the refresh worker gave an answer that cannot be read ({})",
                        crate::store::json_error(&e)
                    )),
                ))),
            }
        }
        Ok(None) => {
            let status = child.wait().ok();
            Some(Err(RefreshError::Failed(
                FailureKind::Temporary,
                Error::temp(format!(
                    "the refresh worker ended without an answer ({})",
                    status.map_or_else(|| "status unknown".to_owned(), |s| s.to_string())
                )),
            )))
        }
        Err(()) if answered => Some(Err(RefreshError::Failed(
            FailureKind::Temporary,
            still_saving(account, timeout, pid, store),
        ))),
        Err(()) => Some(Err(RefreshError::Failed(
            FailureKind::Temporary,
            still_waiting(account, timeout, pid),
        ))),
    }
}

/// The file the worker's stderr goes to: anonymous, in memory.
fn said_file() -> Option<std::fs::File> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a NUL-terminated name; the descriptor returned is owned from here on.
        let fd =
            unsafe { libc::memfd_create(c"mailtoken-refresh-worker".as_ptr(), libc::MFD_CLOEXEC) };
        // SAFETY: a new descriptor of our own, when not -1.
        (fd >= 0).then(|| unsafe { std::fs::File::from(OwnedFd::from_raw_fd(fd)) })
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// Copies what the worker wrote to its stderr so far (when it had a file) to ours.
fn pass_on(said: Option<&std::fs::File>) {
    use std::os::unix::fs::FileExt;
    let Some(said) = said else {
        return;
    };
    let mut buf = vec![0u8; 16384];
    let mut at = 0;
    while let Ok(n) = said.read_at(&mut buf, at) {
        if n == 0 {
            break;
        }
        let _ = std::io::stderr().write_all(&buf[..n]);
        at += n as u64;
    }
}

/// The caller's answer when the worker has had no answer from the provider within
/// `timeout`: it goes on waiting, and keeps what comes.
fn still_waiting(account: &str, timeout: Duration, pid: u32) -> Error {
    Error::temp(format!(
        "refreshing the access token for {account}: the token endpoint has not answered within {}. The refresh goes on in process {pid}, which waits for the answer (up to {}) and stores the new tokens when it comes.",
        humantime::format_duration(timeout),
        humantime::format_duration(crate::oauth::patience(timeout)),
    ))
    .with_remedy(format!(
        "Try again in a moment (`mailtoken status {account}` shows when the refresh is done); check the network if this goes on."
    ))
}

/// The caller's answer when the token request is over but the store has not taken
/// its outcome within `timeout` (an unlock prompt, a store command waiting): the worker
/// goes on, and `[store] timeout` bounds it.
fn still_saving(account: &str, timeout: Duration, pid: u32, store: &str) -> Error {
    Error::temp(format!(
        "refreshing the access token for {account}: the token request is over, but the {store} has not taken its outcome within {}. Process {pid} goes on: it keeps any new tokens in the store, or in a rescue record when the store refuses them.",
        humantime::format_duration(timeout),
    ))
    .with_remedy(
        "See whether the store waits for you (an unlock prompt, a passphrase); `timeout` in [store] bounds how long it may take.",
    )
}

/// The worker's stdout, line by line.
struct Lines {
    out: std::process::ChildStdout,
    buf: Vec<u8>,
}

impl Lines {
    fn new(out: std::process::ChildStdout) -> Lines {
        Lines {
            out,
            buf: Vec::new(),
        }
    }

    /// The next line without its newline (at EOF the unterminated rest, or `None`
    /// when nothing is left), giving up (`Err`) at `deadline`.
    fn next_until(&mut self, deadline: Instant) -> std::result::Result<Option<Vec<u8>>, ()> {
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                return Ok(Some(line));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(());
            }
            let mut pfd = libc::pollfd {
                fd: self.out.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
            // SAFETY: one valid pollfd, for the duration of the call.
            let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
            if ready < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(());
            }
            if ready == 0 {
                continue;
            }
            match self.out.read(&mut chunk) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(0) | Err(_) if self.buf.is_empty() => return Ok(None),
                Ok(0) | Err(_) => return Ok(Some(std::mem::take(&mut self.buf))),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// `mailtoken-core --refresh-worker ACCOUNT`: the worker's side. Its answer goes to
/// stdout; a caller that has gone by then loses nothing, since the outcome is in the
/// store already.
pub fn serve(args: &[std::ffi::OsString]) -> Result<()> {
    let [account] = args else {
        return Err(worker_only());
    };
    let account = account.to_str().ok_or_else(worker_only)?;
    // SAFETY: fd 3 is only read here, and owned from now on (the hand-over gives it);
    // its validity is checked first.
    let lock = unsafe {
        if libc::fcntl(LOCK_FD, libc::F_GETFD) == -1 {
            return Err(worker_only());
        }
        std::fs::File::from(OwnedFd::from_raw_fd(LOCK_FD))
    };
    // Held through the very open file description the caller locked: this succeeds
    // only if that lock is held, and never waits.
    lock.try_lock().map_err(|_| worker_only())?;
    // Not for the processes this one starts (a client secret command, a store command):
    // one that lingers (an agent it forks) would hold the account's lock for good.
    // SAFETY: fcntl on the descriptor owned above.
    if unsafe { libc::fcntl(lock.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } == -1 {
        return Err(Error::io(format!(
            "cannot keep the account lock to this process: {}",
            std::io::Error::last_os_error()
        )));
    }
    let mut input = zeroize::Zeroizing::new(Vec::new());
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| Error::io(format!("reading the record to refresh: {e}")))?;
    let record: TokenRecord = serde_json::from_slice(&input).map_err(|e| {
        Error::data(format!(
            "the record to refresh cannot be read ({})",
            crate::store::json_error(&e)
        ))
    })?;
    let config = Config::load_default()?;
    let mut broker = Broker::open(config)?;
    broker.on_answer(tell_answered);
    broker.wait_for_answers();
    let account = broker.account(account)?.clone();
    tell(READY);
    let outcome = broker.refresh_locked(&account, record);
    // After the store has the outcome: the caller may have gone (EPIPE, ignored).
    let mut line = zeroize::Zeroizing::new(
        serde_json::to_vec(&Outcome::from(&outcome))
            .map_err(|e| Error::software(format!("the refresh's outcome: {e}")))?,
    );
    line.push(b'\n');
    let _ = std::io::stdout().write_all(&line);
    let _ = std::io::stdout().flush();
    drop(lock);
    Ok(())
}

/// The token request is over: the caller learns that what is left is the save.
fn tell_answered() {
    tell(ANSWERED);
}

/// One line to the caller (gone, perhaps: EPIPE is ignored).
fn tell(what: &[u8]) {
    let mut line = what.to_vec();
    line.push(b'\n');
    let _ = std::io::stdout().write_all(&line);
    let _ = std::io::stdout().flush();
}

fn worker_only() -> Error {
    Error::usage(format!(
        "`{ARG}` is how mailtoken hands a refresh to a process of its own; it is not run by hand"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn record() -> TokenRecord {
        TokenRecord {
            access_token: Some(Secret::new("at")),
            refresh_token: Some(Secret::new("rt")),
            ..TokenRecord::default()
        }
    }

    fn round_trip(o: &RefreshOutcome) -> RefreshOutcome {
        let line = serde_json::to_vec(&Outcome::from(o)).unwrap();
        assert!(!line.contains(&b'\n'), "one line");
        serde_json::from_slice::<Outcome>(&line).unwrap().into()
    }

    /// `refresh` against a stand-in worker: a shell script playing the worker's side of
    /// the hand-over (the real one is driven by tests/integration/slow_provider.rs).
    fn against(script: &str, timeout: Duration) -> Option<RefreshOutcome> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("worker");
        std::fs::write(&exe, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let lock = crate::lock::acquire_in(dir.path(), "a", Duration::from_secs(1)).unwrap();
        refresh(&exe, "a", &record(), &lock, timeout, "file x")
    }

    fn outcome_line() -> String {
        let o: RefreshOutcome = Ok(Refreshed {
            record: record(),
            unsaved: None,
        });
        String::from_utf8(serde_json::to_vec(&Outcome::from(&o)).unwrap()).unwrap()
    }

    #[test]
    fn a_worker_that_ends_before_it_is_ready_leaves_the_refresh_to_the_caller() {
        assert!(against("exit 78", Duration::from_secs(5)).is_none());
        assert!(against("cat >/dev/null", Duration::from_secs(5)).is_none());
    }

    #[test]
    fn a_worker_that_does_not_get_ready_in_time_is_stopped_and_nothing_was_sent() {
        let t = Instant::now();
        let Some(Err(RefreshError::Failed(FailureKind::Temporary, e))) =
            against("exec sleep 30", Duration::from_millis(200))
        else {
            panic!("not a temporary failure");
        };
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(e.message.contains("nothing was sent"), "{}", e.message);
    }

    #[test]
    fn the_outcome_after_ready_and_answered_is_the_callers() {
        let script = format!(
            "cat >/dev/null; echo '\"ready\"'; echo '\"answered\"'; echo '{}'",
            outcome_line()
        );
        let back = against(&script, Duration::from_secs(5)).unwrap().unwrap();
        assert_eq!(back.record, record());
    }

    #[test]
    fn a_caller_that_gives_up_names_the_provider_or_the_store_as_what_it_waited_for() {
        let Some(Err(RefreshError::Failed(_, e))) = against(
            "cat >/dev/null; echo '\"ready\"'; exec sleep 30",
            Duration::from_millis(200),
        ) else {
            panic!("not a failure");
        };
        assert!(
            e.message.contains("the token endpoint has not answered"),
            "{}",
            e.message
        );
        assert!(e.message.contains("goes on in process"), "{}", e.message);
        let Some(Err(RefreshError::Failed(_, e))) = against(
            "cat >/dev/null; echo '\"ready\"'; echo '\"answered\"'; exec sleep 30",
            Duration::from_millis(200),
        ) else {
            panic!("not a failure");
        };
        assert!(
            e.message.contains("the file x has not taken its outcome"),
            "{}",
            e.message
        );
    }

    #[test]
    fn the_lock_reaches_the_worker_on_fd_3_and_stays_held_after_the_caller_gives_up() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("worker");
        // The stand-in says it is ready only if fd 3 is open, then holds it for 2 s.
        std::fs::write(
            &exe,
            "#!/bin/sh\ncat >/dev/null\n[ -e /proc/self/fd/3 ] || exit 1\necho '\"ready\"'\nexec sleep 2\n",
        )
        .unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let lock = crate::lock::acquire_in(dir.path(), "a", Duration::from_secs(1)).unwrap();
        let r = refresh(
            &exe,
            "a",
            &record(),
            &lock,
            Duration::from_millis(300),
            "file x",
        );
        assert!(
            matches!(&r, Some(Err(RefreshError::Failed(_, e))) if e.message.contains("goes on")),
            "fd 3 was not handed over"
        );
        drop(lock);
        // The caller's descriptor is closed; the worker's keeps the lock.
        assert!(crate::lock::acquire_in(dir.path(), "a", Duration::from_millis(200)).is_err());
        // Once it has ended, the lock is free.
        assert!(crate::lock::acquire_in(dir.path(), "a", Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn a_refreshed_outcome_crosses_with_its_record_and_the_stores_refusal() {
        let o: RefreshOutcome = Ok(Refreshed {
            record: record(),
            unsaved: Some(Error::io("disk full").with_remedy("free some space")),
        });
        let back = round_trip(&o).unwrap();
        assert_eq!(back.record, record());
        let e = back.unsaved.unwrap();
        assert_eq!(e.code, ExitCode::IoErr);
        assert_eq!(e.message, "disk full");
        assert_eq!(e.remedy.as_deref(), Some("free some space"));
    }

    #[test]
    fn a_failure_crosses_with_its_kind_exit_code_and_remedy() {
        for (kind, e) in [
            (
                FailureKind::Rejected,
                Error::noperm("invalid_grant").with_remedy("log in"),
            ),
            (FailureKind::Temporary, Error::temp("503")),
            (FailureKind::Config, Error::config("bad client id")),
        ] {
            let Err(RefreshError::Failed(k, back)) =
                round_trip(&Err(RefreshError::Failed(kind, e.clone())))
            else {
                panic!("not a failure");
            };
            assert_eq!(k, kind);
            assert_eq!(
                (back.code, back.message, back.remedy),
                (e.code, e.message, e.remedy)
            );
        }
        let Err(RefreshError::NotLoggedIn(e)) =
            round_trip(&Err(RefreshError::NotLoggedIn(Error::noperm("no token"))))
        else {
            panic!("not NotLoggedIn");
        };
        assert_eq!(e.code, ExitCode::NoPerm);
    }
}
