//! `mailtoken`, the front executable. Mail programs run `mailtoken token ACCOUNT` on
//! every connection, and through the daemon that is one socket round trip, so the
//! process's own start-up is most of its cost. This small executable (no clap, no
//! async runtime, no TLS, no keyring code for the loader to map and relocate) answers
//! exactly that: the plain `token` form, when a daemon answers. Everything else (other
//! commands, `--help`, no daemon running) it hands to `mailtoken-core` beside it by
//! `exec`, the way git runs its `git-*` programs: same process, same arguments, same
//! pid (so systemd's socket activation and `Type=notify` see the same process).
//!
//! Measured against the alternatives (one big position-independent executable, with
//! and without packed relocations) in docs/benchmarks.md.
#![no_main]

use mailtoken::cli::quick_token;
use mailtoken::credential;
use mailtoken::error::Error;
use mailtoken::startup;
use std::ffi::{c_char, c_int};
use std::io::Write;

#[unsafe(no_mangle)]
extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    startup::prepare();
    // SAFETY: argc and argv are what the C runtime passed to main.
    let args = unsafe { startup::args(argc, argv) };
    if let Some(req) = quick_token(args.get(1..).unwrap_or_default()) {
        match credential::from_daemon(&req) {
            Ok(Some(c)) => {
                let mut out = std::io::stdout().lock();
                let written = out
                    .write_all(c.secret.as_bytes())
                    .and_then(|()| out.write_all(b"\n"))
                    .and_then(|()| out.flush());
                startup::exit(written.map_err(|e| Error::io(format!("writing to stdout: {e}"))))
            }
            Err(e) => startup::exit(Err(e)),
            // No daemon: the whole program does it in this process.
            Ok(None) => {}
        }
    }
    startup::exec_beside("mailtoken-core", &args)
}
