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

impl std::os::fd::AsRawFd for AccountLock {
    /// The locked file's descriptor: the lock is handed to a refresh worker on it
    /// (`worker.rs`).
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self._file.as_raw_fd()
    }
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

/// Creates `dir` and missing parents with mode 0700. An existing directory that is
/// mailtoken's own (the state or runtime directory, or one inside them) and ours is
/// made 0700 when it is open to others (made by hand, or by an older `mkdir -p`), as
/// gpg and ssh insist of theirs; any other directory (a custom `[store] path`'s parent,
/// a home directory) is left as it is.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    create_private_dir_within(dir, &[paths::state_dir(), paths::runtime_dir()])
}

/// [`create_private_dir`] with mailtoken's own directories spelled out.
fn create_private_dir_within(dir: &Path, own: &[PathBuf]) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    #[cfg(unix)]
    for own in own {
        if let Ok(inside) = dir.strip_prefix(own) {
            let mut d = own.clone();
            tighten(&d);
            for part in inside.components() {
                d.push(part);
                tighten(&d);
            }
        }
    }
    Ok(())
}

/// `dir` to 0700 if it is ours and group or others may enter it. Best effort: a
/// directory that cannot be changed (a read-only mount) is used as it is.
#[cfg(unix)]
fn tighten(dir: &Path) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return;
    };
    // SAFETY: geteuid(2) has no memory effects and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.is_dir() && meta.uid() == me && meta.mode() & 0o077 != 0 {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    }
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

    #[cfg(unix)]
    #[test]
    fn only_mailtoken_s_own_open_directories_are_tightened() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let open = |p: &Path| {
            fs::create_dir_all(p).unwrap();
            fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
        };
        let dir = tempfile::tempdir().unwrap();
        // Someone else's directory, e.g. a custom `[store] path`'s parent: left alone.
        let other = dir.path().join("mail");
        open(&other);
        create_private_dir_within(&other.join("new"), &[dir.path().join("state/mailtoken")])
            .unwrap();
        assert_eq!(mode(&other), 0o755);
        assert_eq!(mode(&other.join("new")), 0o700);
        // The state directory and the one inside it: made 0700.
        let own = dir.path().join("state/mailtoken");
        open(&dir.path().join("state"));
        open(&own);
        open(&own.join("locks"));
        create_private_dir_within(&own.join("locks"), std::slice::from_ref(&own)).unwrap();
        assert_eq!(mode(&own), 0o700);
        assert_eq!(mode(&own.join("locks")), 0o700);
        // Its parent is not mailtoken's: left alone.
        assert_eq!(mode(&dir.path().join("state")), 0o755);
    }

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
