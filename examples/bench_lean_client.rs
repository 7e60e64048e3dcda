//! Diagnostic for `scripts/bench`: `mailtoken token ACCOUNT` on the daemon path minus the
//! command line: the same `Request`, sent by the crate's own `daemon::client::ask`
//! (serde_json both ways), printed the same way, but no clap and none of the rest of
//! the binary. Its time over bench_std_client's is the protocol code's; the full
//! binary's time over this one's is clap's and the big binary's.
//!
//!   bench_lean_client ACCOUNT

use mailtoken::format::Format;
use mailtoken::ipc::client;
use mailtoken::ipc::protocol::{Op, Request, VERSION};
use mailtoken::server::Proto;
use std::io::Write;
use std::time::Duration;

fn main() {
    let Some(account) = std::env::args().nth(1) else {
        eprintln!("usage: bench_lean_client ACCOUNT");
        std::process::exit(64);
    };
    let req = Request {
        v: VERSION,
        op: Op::Token {
            account,
            format: Format::Raw,
            min_valid: 300,
            for_proto: Some(Proto::Imap),
            wait_ms: 0,
        },
    };
    match client::ask(&req, Duration::ZERO) {
        Ok(Some(reply)) if reply.ok && reply.credential.is_some() => {
            let mut out = std::io::stdout().lock();
            let c = reply.credential.unwrap_or_default();
            if out
                .write_all(c.as_bytes())
                .and_then(|()| out.write_all(b"\n"))
                .and_then(|()| out.flush())
                .is_err()
            {
                std::process::exit(74);
            }
        }
        Ok(Some(reply)) => {
            let e = reply.into_error();
            eprintln!("bench_lean_client: {}", e.message);
            std::process::exit(e.code as i32);
        }
        Ok(None) => {
            eprintln!("bench_lean_client: no daemon");
            std::process::exit(69);
        }
        Err(e) => {
            eprintln!("bench_lean_client: {}", e.message);
            std::process::exit(e.code as i32);
        }
    }
}
