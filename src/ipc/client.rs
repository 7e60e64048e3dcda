//! The client side of the daemon socket, on the hot path of every `mailtoken token`:
//! std only (no config parse, no async runtime, no TLS), one connect, one line out, one
//! line in. When no daemon answers, the credential service does the work in-process.

use super::protocol::{Reply, Request, encode};
use crate::error::{Error, Result};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// `$MAILTOKEN_SOCKET`, else `$XDG_RUNTIME_DIR/mailtoken/socket`.
pub fn socket_path() -> PathBuf {
    match std::env::var_os("MAILTOKEN_SOCKET") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => crate::paths::runtime_dir().join("socket"),
    }
}

/// How long the client waits for a reply beyond the `--wait` it asked for: a reply may
/// have to wait for a refresh, which the token endpoint's timeout (30 s by default, at
/// most two requests) bounds.
const REPLY_SLACK: Duration = Duration::from_secs(70);

/// Sends `req` to the daemon. `Ok(None)`: no daemon listens (no socket, or a stale one),
/// so the caller does the work itself.
pub fn ask(req: &Request, wait: Duration) -> Result<Option<Reply>> {
    let path = socket_path();
    let stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
            return Ok(None);
        }
        Err(e) => {
            return Err(Error::io(format!(
                "cannot connect to the daemon at {}: {e}",
                path.display()
            ))
            .with_remedy(
                "Check the socket's permissions, or stop the daemon and run without it.",
            ));
        }
    };
    let timeout = wait + REPLY_SLACK;
    let io_err = |e: std::io::Error| {
        Error::temp(format!(
            "the daemon at {} did not answer: {e}",
            path.display()
        ))
        .with_remedy("Try again; if it keeps happening, restart `mailtoken serve`.")
    };
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(io_err)?;
    // A daemon that refuses us may answer and hang up before our request is written:
    // its reply, if any, says more than the broken pipe.
    let sent = (&stream).write_all(&encode(req));
    let mut line = zeroize::Zeroizing::new(Vec::with_capacity(512));
    let read = BufReader::new(&stream).read_until(b'\n', &mut line);
    if line.is_empty() {
        sent.and(read).map_err(io_err)?;
        return Err(io_err(std::io::Error::new(
            ErrorKind::UnexpectedEof,
            "it closed the connection",
        )));
    }
    serde_json::from_slice(&line)
        .map(Some)
        .map_err(|e| Error::software(format!("the daemon's reply is not valid: {e}")))
}

/// Tells a running daemon about a change made in this process (a login, a logout, a
/// refresh after a server refused a token); without a daemon there is nobody to tell.
pub fn tell(op: super::protocol::Op) {
    let _ = ask(
        &Request {
            v: super::protocol::VERSION,
            op,
        },
        Duration::ZERO,
    );
}
