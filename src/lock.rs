//! The per-account lock: many processes asking at once for the same expired account cause
//! exactly one refresh, because refreshes, logins and logouts run under this lock.
//!
//! It is an exclusive OS file lock (`flock` on Unix) on `STATE/locks/ACCOUNT.lock`, so the
//! kernel drops it when its holder dies: a crash never leaves a stale lock behind.

use crate::error::{Error, Result};
use crate::paths;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// Holds the account's lock until dropped (closing the file releases it).
#[derive(Debug)]
pub struct AccountLock {
    _file: File,
    path: PathBuf,
}

impl AccountLock {
    /// The lock file, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Locks `ACCOUNT` in `paths::state_dir()/locks`, waiting at most `timeout`.
pub fn acquire(account: &str, timeout: Duration) -> Result<AccountLock> {
    acquire_in(&paths::state_dir().join("locks"), account, timeout)
}

/// Locks `ACCOUNT` in `dir` (created with mode 0700 as needed), waiting at most `timeout`.
pub fn acquire_in(dir: &Path, account: &str, timeout: Duration) -> Result<AccountLock> {
    // Account names are validated by the config; this only keeps a bad one inside `dir`.
    if account.is_empty() || account.contains(['/', '\\', '\0']) {
        return Err(Error::usage(format!("invalid account name {account:?}")));
    }
    create_private_dir(dir).map_err(|e| {
        Error::io(format!(
            "cannot create the lock directory {}: {e}",
            dir.display()
        ))
    })?;
    let path = dir.join(format!("{account}.lock"));
    let file = open_lock_file(&path)
        .or_else(|e| match e.raw_os_error() {
            // A read-only file system (a rescue boot, a disk the kernel remounted
            // read-only after errors): flock(2) needs no write access, so the lock file
            // that is there still serves, and every process still agrees on it.
            Some(libc::EROFS) => File::open(&path).map_err(|_| e),
            _ => Err(e),
        })
        .map_err(|e| Error::io(format!("cannot open the lock file {}: {e}", path.display())))?;
    let lock_error = |e: io::Error| Error::io(format!("cannot lock {}: {e}", path.display()));

    // Fast path: nobody holds it, so no thread is needed.
    match file.try_lock() {
        Ok(()) => return Ok(AccountLock { _file: file, path }),
        Err(fs::TryLockError::WouldBlock) => {}
        Err(fs::TryLockError::Error(e)) => return Err(lock_error(e)),
    }

    // `File::lock` cannot time out, so it blocks in a helper thread while we wait on a
    // channel. On timeout the thread keeps the file: if it gets the lock later, its send
    // fails, the file is dropped and the lock released at once.
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name(format!("lock {account}"))
        .spawn(move || {
            let result = file.lock().map(|()| file);
            let _ = tx.send(result);
        })
        .map_err(|e| {
            Error::io(format!(
                "cannot start a thread to wait for {}: {e}",
                path.display()
            ))
        })?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(file)) => Ok(AccountLock { _file: file, path }),
        Ok(Err(e)) => Err(lock_error(e)),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(Error::temp(format!(
            "another mailtoken process has held the lock for {account} for {} (a refresh or login in progress); try again",
            humantime::format_duration(timeout)
        ))),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(Error::software(format!(
            "the thread waiting for {} died",
            path.display()
        ))),
    }
}

/// Creates `dir` and missing parents with mode 0700; an existing directory is left as is.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

pub(crate) fn open_lock_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExitCode;
    use std::time::Instant;

    #[test]
    fn a_second_acquire_waits_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire_in(dir.path(), "alice", Duration::from_secs(5)).unwrap();
        let start = Instant::now();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(first);
        });
        let second = acquire_in(dir.path(), "alice", Duration::from_secs(10)).unwrap();
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(250),
            "did not wait: {waited:?}"
        );
        assert!(
            waited < Duration::from_secs(5),
            "waited too long: {waited:?}"
        );
        releaser.join().unwrap();
        assert_eq!(second.path(), dir.path().join("alice.lock"));
    }

    #[test]
    fn different_accounts_do_not_block_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let _a = acquire_in(dir.path(), "alice", Duration::from_secs(1)).unwrap();
        let _b = acquire_in(dir.path(), "bob", Duration::from_millis(10)).unwrap();
    }

    #[test]
    fn the_wait_times_out_with_a_temporary_failure() {
        let dir = tempfile::tempdir().unwrap();
        let _held = acquire_in(dir.path(), "alice", Duration::from_secs(1)).unwrap();
        let start = Instant::now();
        let err = acquire_in(dir.path(), "alice", Duration::from_millis(200)).unwrap_err();
        let waited = start.elapsed();
        assert_eq!(err.code, ExitCode::TempFail);
        assert!(
            err.message.contains("lock for alice for 200ms"),
            "{}",
            err.message
        );
        assert!(
            waited >= Duration::from_millis(200) && waited < Duration::from_secs(3),
            "{waited:?}"
        );
    }

    #[test]
    fn the_lock_is_free_again_after_a_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let held = acquire_in(dir.path(), "alice", Duration::from_secs(1)).unwrap();
        acquire_in(dir.path(), "alice", Duration::from_millis(50)).unwrap_err();
        drop(held);
        // The timed-out waiter's thread may grab the lock briefly before dropping it.
        acquire_in(dir.path(), "alice", Duration::from_secs(5)).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn the_lock_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let locks = dir.path().join("state/locks");
        let _l = acquire_in(&locks, "alice", Duration::from_secs(1)).unwrap();
        let mode = fs::metadata(&locks).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
