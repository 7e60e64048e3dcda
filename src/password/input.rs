//! Reading an app password: typed (or pasted) at the terminal with echo off, or the
//! first line of stdin when that is not a terminal (`pass show x | mailtoken
//! set-password a`).
//!
//! While echo is off, the signals that end or stop a process from the terminal are
//! caught: the handler puts the terminal back first (tcsetattr is async-signal-safe),
//! then lets the signal do what it would have done. So Ctrl-C, a closed terminal or a
//! `kill` never leave the shell without echo. Ctrl-Z stops the process with echo back
//! on; after `fg` the prompt comes again. This runs before mailtoken starts any thread
//! (the keyring is opened afterwards), so the signals arrive on this one.

use crate::error::{Error, Result};
use crate::secret::Secret;
use std::cell::UnsafeCell;
use std::ffi::c_int;
use std::io::{self, IsTerminal, Read, Write};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicI32, Ordering};
use zeroize::Zeroizing;

/// Longer than any password; more input than this is not one.
const MAX_LEN: usize = 4096;

/// The password from the terminal (after `prompt` on stderr) or from stdin.
pub fn read_password(prompt: &str) -> Result<Secret> {
    let bytes = if io::stdin().is_terminal() {
        read_hidden(libc::STDIN_FILENO, prompt)
            .map_err(|e| Error::io(format!("reading the password from the terminal: {e}")))?
    } else {
        read_stdin_line()?
    };
    first_line(&bytes)
}

/// The password in what was read: the first line, without its line ending. Empty is an
/// error (an empty pipe, Enter or Ctrl-D at the prompt), and so is anything that is not
/// UTF-8 text.
pub fn first_line(bytes: &[u8]) -> Result<Secret> {
    let line = match bytes.iter().position(|&b| b == b'\n') {
        Some(i) => &bytes[..i],
        None => bytes,
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err(Error::data("no password given (the first line was empty)").with_remedy(
            "Type or paste the app password at the prompt, or pipe it in: `pass show mail/app | mailtoken set-password ACCOUNT`.",
        ));
    }
    if line.len() > MAX_LEN {
        return Err(Error::data(format!(
            "the first line is longer than {MAX_LEN} bytes: that is not a password"
        )));
    }
    let text =
        std::str::from_utf8(line).map_err(|_| Error::data("the password is not UTF-8 text"))?;
    Ok(Secret::new(text))
}

/// Stdin up to its first newline (or its end), and not much more.
fn read_stdin_line() -> Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::with_capacity(128));
    let mut byte = Zeroizing::new([0u8; 1]);
    let mut stdin = io::stdin().lock();
    // One byte at a time through std's buffer: stops at the newline, so what follows
    // the first line is never read into memory.
    while buf.len() <= MAX_LEN {
        match stdin.read(&mut *byte) {
            Ok(0) => break,
            Ok(_) => {
                buf.push(byte[0]);
                if byte[0] == b'\n' {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(format!("reading the password from stdin: {e}"))),
        }
    }
    Ok(buf)
}

// ---- the terminal ----

/// The terminal whose settings the signal handler restores (-1: none), and those
/// settings. Written before the handlers are installed, read only by them.
static TTY_FD: AtomicI32 = AtomicI32::new(-1);
static SAVED: SavedTermios = SavedTermios(UnsafeCell::new(MaybeUninit::uninit()));

struct SavedTermios(UnsafeCell<MaybeUninit<libc::termios>>);
// SAFETY: written only while TTY_FD is -1 (no handler reads it), read only after
// TTY_FD was set (SeqCst) and never written while it is set.
unsafe impl Sync for SavedTermios {}

/// The last signal caught while echo was off (0: none).
static CAUGHT: AtomicI32 = AtomicI32::new(0);

/// Signals that end or stop a process from the terminal or from outside.
const SIGNALS: [c_int; 7] = [
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGTSTP,
    libc::SIGTTIN,
    libc::SIGTTOU,
];

extern "C" fn on_signal(sig: c_int) {
    // Only async-signal-safe calls here: tcsetattr, write, signal, raise.
    let fd = TTY_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: SAVED holds the settings read before TTY_FD was set.
        unsafe {
            libc::tcsetattr(fd, libc::TCSANOW, (*SAVED.0.get()).as_ptr());
            // The Enter that would have ended the line never came: end it for the shell.
            libc::write(libc::STDERR_FILENO, b"\n".as_ptr().cast(), 1);
        }
    }
    CAUGHT.store(sig, Ordering::SeqCst);
    // Delivered as soon as this handler returns, with the default action: the process
    // ends (or stops, for the three job-control signals; then the prompt comes again).
    // SAFETY: plain libc calls with a valid signal number.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// Echo off on `fd` and the handlers in place, until dropped.
struct EchoOff {
    fd: c_int,
    old_actions: Vec<(c_int, libc::sigaction)>,
}

impl EchoOff {
    fn new(fd: c_int) -> io::Result<EchoOff> {
        let mut saved = MaybeUninit::<libc::termios>::uninit();
        // SAFETY: tcgetattr fills the struct on success.
        if unsafe { libc::tcgetattr(fd, saved.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: initialized by the successful tcgetattr.
        let saved = unsafe { saved.assume_init() };
        // SAFETY: no handler is installed (TTY_FD is -1), so nothing reads SAVED now.
        unsafe { (*SAVED.0.get()).write(saved) };
        TTY_FD.store(fd, Ordering::SeqCst);
        let mut guard = EchoOff {
            fd,
            old_actions: Vec::new(),
        };
        for sig in SIGNALS {
            // SAFETY: sigaction with zeroed structs, a valid handler and signal number.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                    continue;
                }
                // Left alone when ignored (nohup, a background job's SIGTTOU policy):
                // whoever started us wants it ignored.
                if old.sa_sigaction == libc::SIG_IGN {
                    continue;
                }
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = on_signal as extern "C" fn(c_int) as libc::sighandler_t;
                libc::sigemptyset(&mut new.sa_mask);
                // No SA_RESTART: the read below returns EINTR after a stop and continue.
                new.sa_flags = 0;
                if libc::sigaction(sig, &new, std::ptr::null_mut()) == 0 {
                    guard.old_actions.push((sig, old));
                }
            }
        }
        let mut quiet = saved;
        quiet.c_lflag &= !(libc::ECHO | libc::ECHOE | libc::ECHOK | libc::ECHONL);
        // TCSAFLUSH: what was typed before the prompt (and echoed) is not taken. A job
        // in the background is stopped here (SIGTTOU) and retries once continued.
        // SAFETY: a valid fd and termios struct.
        while unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &quiet) } != 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(guard)
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        TTY_FD.store(-1, Ordering::SeqCst);
        // SAFETY: SAVED was written in `new`; handlers no longer read it.
        unsafe {
            libc::tcsetattr(self.fd, libc::TCSANOW, (*SAVED.0.get()).as_ptr());
            for (sig, old) in &self.old_actions {
                libc::sigaction(*sig, old, std::ptr::null_mut());
            }
        }
    }
}

/// One line from the terminal on `fd`, typed with echo off after `prompt`.
fn read_hidden(fd: c_int, prompt: &str) -> io::Result<Zeroizing<Vec<u8>>> {
    loop {
        CAUGHT.store(0, Ordering::SeqCst);
        let echo_off = EchoOff::new(fd)?;
        let mut err = io::stderr().lock();
        let _ = err.write_all(prompt.as_bytes()).and_then(|()| err.flush());
        drop(err);
        let line = read_line(fd);
        drop(echo_off);
        match line {
            Ok(Some(bytes)) => {
                // The Enter was not echoed either.
                eprintln!();
                return Ok(bytes);
            }
            // Stopped (Ctrl-Z) and continued: echo is on again, so set it up anew.
            Ok(None) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Reads up to a newline or the end. `Ok(None)`: a signal interrupted it (the process
/// was stopped and has been continued).
fn read_line(fd: c_int) -> io::Result<Option<Zeroizing<Vec<u8>>>> {
    let mut line = Zeroizing::new(Vec::with_capacity(128));
    let mut chunk = Zeroizing::new([0u8; 256]);
    loop {
        if CAUGHT.load(Ordering::SeqCst) != 0 {
            return Ok(None);
        }
        // SAFETY: reading into a buffer of the given length.
        let n = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let n = n as usize;
        if n == 0 {
            return Ok(Some(line));
        }
        line.extend_from_slice(&chunk[..n]);
        if chunk[..n].contains(&b'\n') || line.len() > MAX_LEN {
            return Ok(Some(line));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExitCode;

    #[test]
    fn the_first_line_without_its_ending() {
        assert_eq!(first_line(b"abcd efgh\n").unwrap().expose(), "abcd efgh");
        assert_eq!(first_line(b"pw\r\nsecond\n").unwrap().expose(), "pw");
        assert_eq!(first_line(b"no-newline").unwrap().expose(), "no-newline");
        assert_eq!(
            first_line(b" spaces kept \n").unwrap().expose(),
            " spaces kept "
        );
    }

    #[test]
    fn empty_or_binary_input_is_a_data_error() {
        for input in [&b""[..], b"\n", b"\r\n", b"\nsecond line\n"] {
            let e = first_line(input).unwrap_err();
            assert_eq!(e.code, ExitCode::DataErr, "{input:?}");
            assert!(e.message.contains("no password given"), "{}", e.message);
        }
        let e = first_line(b"\xff\xfe\n").unwrap_err();
        assert_eq!(e.code, ExitCode::DataErr);
        assert!(!e.to_string().contains('\u{fffd}'));
        let long = vec![b'a'; MAX_LEN + 1];
        assert_eq!(first_line(&long).unwrap_err().code, ExitCode::DataErr);
    }
}
