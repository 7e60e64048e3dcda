//! One client connection: its peer checked, then request lines read (bounded in size
//! and time), each answered with exactly one reply line.

use super::accounts::{Daemon, FromMemory, lock};
use super::admission::Ticket;
use crate::credential::{self, Request};
use crate::error::{Error, Result};
use crate::ipc::protocol::{MAX_REQUEST, Op, Reply, encode, parse_request};
use crate::record;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// A request line must arrive whole within this time; an idle connection is closed.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The reader's buffer: a request is a line of about 150 bytes (a longer one is read
/// in several fills), and with up to a thousand clients at once tokio's 8 KiB default
/// would be 8 MiB.
const BUFFER: usize = 1024;

/// Serves one client until it hangs up, stays silent for [`READ_TIMEOUT`], or is told
/// to make room (`admission.rs`) while it is not being answered.
pub async fn serve(daemon: Arc<Daemon>, stream: UnixStream, mut ticket: Ticket) {
    let kick = ticket.kick.clone();
    // Nothing is allocated for a client before it writes.
    tokio::select! {
        r = stream.readable() => if r.is_err() { return },
        _ = tokio::time::sleep(READ_TIMEOUT) => return,
        _ = kick.kicked() => return,
    }
    let peer_ok = super::peer::allowed(&stream, daemon.uid, daemon.allow_gid);
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::with_capacity(BUFFER, read);
    if !peer_ok {
        // Take the request off the wire first, so the refusal is its reply rather than
        // a reset the client would see as a broken pipe; then hang up.
        let mut line = zeroize::Zeroizing::new(Vec::new());
        let _ = tokio::time::timeout(READ_TIMEOUT, read_line(&mut reader, &mut line)).await;
        let e = Error::noperm(match daemon.allow_gid {
            None => "permission denied: this daemon serves only its own user".to_owned(),
            Some(g) => format!(
                "permission denied: this daemon serves its own user and the group with gid {g}, and this process is in neither"
            ),
        });
        let _ = send(&mut write, &Reply::error(&e)).await;
        return;
    }
    loop {
        let mut line = zeroize::Zeroizing::new(Vec::new());
        let read = tokio::select! {
            r = tokio::time::timeout(READ_TIMEOUT, read_line(&mut reader, &mut line)) => Some(r),
            _ = kick.kicked() => None,
        };
        let Some(read) = read else {
            if line.is_empty() {
                return;
            }
            let e =
                Error::temp("the daemon closed this unfinished request to make room for others")
                    .with_remedy("Send the whole request line at once.");
            let _ = send(&mut write, &Reply::error(&e)).await;
            return;
        };
        let (reply, close) = match read {
            Err(_) if line.is_empty() => return,
            Err(_) => (
                Reply::error(&Error::usage(format!(
                    "incomplete request: no end of line within {}s",
                    READ_TIMEOUT.as_secs()
                ))),
                true,
            ),
            Ok(Err(e)) => (Reply::error(&e), true),
            Ok(Ok(false)) if line.is_empty() => return,
            Ok(Ok(whole)) => {
                ticket.busy();
                let reply = match parse_request(&line) {
                    Ok(req) => dispatch(&daemon, req.op).await,
                    Err(e) => Reply::error(&e),
                };
                (reply, !whole)
            }
        };
        if !send(&mut write, &reply).await || close {
            return;
        }
        ticket.waiting();
    }
}

/// Writes a reply; false when the client did not take it within [`READ_TIMEOUT`] (it
/// sends and never reads: its place must not be held for ever) or is gone.
async fn send(write: &mut (impl tokio::io::AsyncWrite + Unpin), reply: &Reply) -> bool {
    matches!(
        tokio::time::timeout(READ_TIMEOUT, write.write_all(&encode(reply))).await,
        Ok(Ok(()))
    )
}

async fn dispatch(daemon: &Arc<Daemon>, op: Op) -> Reply {
    let result = match op {
        Op::Token { .. } => match Request::from_op(op) {
            Some(req) => token(daemon, req).await,
            None => Err(Error::software("a token request without its fields")),
        },
        Op::Status { account } => daemon
            .status(account.as_deref())
            .await
            .and_then(|rows| serde_json::to_value(rows).map_err(|e| Error::software(e.to_string())))
            .map(Reply::data),
        Op::LoginStarted { account } => daemon.slot(&account).map(|slot| {
            lock(&slot.state).login_started(record::now());
            slot.bump();
            Reply::ok()
        }),
        Op::Reload { account } => daemon.slot(&account).map(|slot| {
            slot.forget();
            Reply::ok()
        }),
        Op::Ping => Ok(Reply::data(
            serde_json::json!({ "pid": std::process::id() }),
        )),
    };
    result.unwrap_or_else(|e| Reply::error(&e))
}

async fn token(daemon: &Arc<Daemon>, req: Request) -> Result<Reply> {
    let account = daemon.broker().account(&req.account)?.clone();
    let c = credential::answer(&FromMemory(daemon), &account, &req).await?;
    Ok(Reply::credential(c.secret.to_string(), c.expires_at))
}

/// Reads one line (without its newline) of at most [`MAX_REQUEST`] bytes. `Ok(true)`:
/// a full line; `Ok(false)`: end of stream (with whatever came before it).
async fn read_line(
    reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    line: &mut Vec<u8>,
) -> Result<bool> {
    loop {
        let buf = reader
            .fill_buf()
            .await
            .map_err(|e| Error::io(format!("reading the request: {e}")))?;
        if buf.is_empty() {
            return Ok(false);
        }
        let (chunk, found) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], true),
            None => (buf, false),
        };
        if line.len() + chunk.len() > MAX_REQUEST {
            return Err(Error::usage(format!(
                "request longer than {MAX_REQUEST} bytes"
            )));
        }
        line.extend_from_slice(chunk);
        let used = chunk.len() + usize::from(found);
        reader.consume(used);
        if found {
            return Ok(true);
        }
    }
}
