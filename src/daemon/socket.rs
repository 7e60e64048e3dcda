//! The daemon's listening socket: a 0600 socket in a 0700 directory, one daemon per
//! socket (an exclusive lock held for the daemon's life, so a second one refuses to
//! start and a stale socket file from a crash is replaced), or the socket systemd
//! passes in (socket activation), and the readiness notice for `Type=notify`.

use crate::error::{Error, Result};
use std::fs::{self, File};
use std::io::{Read, Seek, Write};
use std::os::fd::FromRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub struct Socket {
    pub path: PathBuf,
    source: Source,
    _lock: Option<File>,
}

enum Source {
    Bound(std::os::unix::net::UnixListener),
    /// Passed by systemd: not ours to remove on exit.
    Activated(std::os::unix::net::UnixListener),
}

/// The listen queue: connections the kernel holds until the daemon accepts them. A
/// caller that arrives behind a full queue waits for all of it, and with std's
/// default (the system's maximum, 4,096) a flood of connections made a `token` call
/// wait 65 ms (docs/benchmarks.md, section 7); 128 is still twice the 64 clients of
/// the load benchmark, and a flood then waits in its own connect(2) instead.
const BACKLOG: libc::c_int = 128;

/// systemd passes sockets from descriptor 3 on (sd_listen_fds(3)).
const SD_LISTEN_FDS_START: i32 = 3;

impl Socket {
    pub fn open(path: &Path) -> Result<Socket> {
        if let Some(l) = activated()? {
            return Ok(Socket {
                path: path.to_owned(),
                source: Source::Activated(l),
                _lock: None,
            });
        }
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        private_dir(dir)?;
        let lock_path = PathBuf::from(format!("{}.lock", path.display()));
        let mut lock = crate::lock::open_lock_file(&lock_path)
            .map_err(|e| Error::io(format!("cannot open {}: {e}", lock_path.display())))?;
        if lock.try_lock().is_err() {
            let mut pid = String::new();
            let _ = lock.read_to_string(&mut pid);
            return Err(Error::unavailable(format!(
                "another mailtoken daemon{} is already serving {}",
                match pid.trim() {
                    "" => String::new(),
                    p => format!(" (pid {p})"),
                },
                path.display()
            ))
            .with_remedy(
                "Stop it first, or point MAILTOKEN_SOCKET elsewhere to run a second one.",
            ));
        }
        let _ = lock
            .set_len(0)
            .and_then(|()| lock.rewind())
            .and_then(|()| write!(lock, "{}", std::process::id()));
        // We hold the lock, so whatever socket file is there was left by a crash.
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::io(format!(
                    "cannot replace the stale socket {}: {e}",
                    path.display()
                )));
            }
        }
        let listener = std::os::unix::net::UnixListener::bind(path)
            .map_err(|e| Error::io(format!("cannot listen on {}: {e}", path.display())))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(format!("cannot make {} private: {e}", path.display())))?;
        Ok(Socket {
            path: path.to_owned(),
            source: Source::Bound(listener),
            _lock: Some(lock),
        })
    }

    pub fn listener(&self) -> Result<tokio::net::UnixListener> {
        let std = match &self.source {
            Source::Bound(l) | Source::Activated(l) => l.try_clone(),
        }
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| Error::io(format!("socket {}: {e}", self.path.display())))?;
        // Linux takes a second listen(2) as a new backlog for the listening socket.
        // SAFETY: listen on a descriptor the listener owns.
        unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&std), BACKLOG) };
        tokio::net::UnixListener::from_std(std)
            .map_err(|e| Error::io(format!("socket {}: {e}", self.path.display())))
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        if let Source::Bound(_) = self.source {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The directory holding the socket: created 0700, and refused when someone else owns
/// it or others can enter it (another user could then replace our socket).
fn private_dir(dir: &Path) -> Result<()> {
    crate::lock::create_private_dir(dir)
        .map_err(|e| Error::io(format!("cannot create {}: {e}", dir.display())))?;
    let meta = fs::metadata(dir).map_err(|e| Error::io(format!("{}: {e}", dir.display())))?;
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(Error::noperm(format!(
            "{} belongs to another user (uid {})",
            dir.display(),
            meta.uid()
        ))
        .with_remedy("Point MAILTOKEN_SOCKET at a directory of your own."));
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(format!("cannot make {} private: {e}", dir.display())))?;
    }
    Ok(())
}

/// The listening socket systemd passed (LISTEN_PID is us, LISTEN_FDS >= 1), if any.
fn activated() -> Result<Option<std::os::unix::net::UnixListener>> {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let n: i32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if !ours || n < 1 {
        return Ok(None);
    }
    let fd = SD_LISTEN_FDS_START;
    // Wrapping a descriptor that is not an open socket would hand its ownership to
    // whatever opens it next: check before trusting the environment.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(Error::config(
            "LISTEN_FDS says a socket was passed, but descriptor 3 is not one",
        )
        .with_remedy(
            "Start `mailtoken serve` from mailtoken.socket, or without LISTEN_PID/LISTEN_FDS.",
        ));
    }
    // SAFETY: descriptor 3 is an open socket passed to us (sd_listen_fds), owned by no one else.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    let l = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
    // Not passed on to children (notify_cmd, client_secret_cmd).
    for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // SAFETY: the daemon is still single-threaded here (before the runtime starts
        // its blocking pool threads).
        unsafe { std::env::remove_var(v) };
    }
    Ok(Some(l))
}

/// Tells systemd (Type=notify) that the socket is ready; a no-op elsewhere.
pub fn notify_ready() {
    let Some(addr) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = addr.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|a| sock.send_to_addr(b"READY=1", &a))
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = name;
            Ok(0)
        }
    } else {
        sock.send_to(b"READY=1", PathBuf::from(addr))
    };
    if let Err(e) = sent {
        super::accounts::say(&format!("could not notify systemd: {e}"));
    }
}
