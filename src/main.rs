//! The `mailtoken` binary: parse the command line, run the command, and turn errors
//! into a message on stderr and a sysexits exit status.
//!
//! `mailtoken token` runs on every connection a mail program makes, and through the
//! daemon the work itself is one socket round trip, so process start-up is most of its
//! cost. Two things keep that short (measured in docs/benchmarks.md):
//! - `no_main`: std's own start-up asks glibc for the main thread's stack bounds to
//!   set up its guard page report, which parses `/proc/self/maps` and costs as much as
//!   the rest of the call. Without it, a stack overflow in the main thread is a plain
//!   SIGSEGV. The other two things std's start-up does are done here: standard file
//!   descriptors that are closed get `/dev/null` (so that a socket never becomes fd 1),
//!   and SIGPIPE is ignored (so that a closed pipe is an error we report, not a death).
//!   Arguments still come from std (`std::env::args_os`, filled in before `main` on
//!   glibc), and every exit goes through `std::process::exit`, which flushes stdout.
//! - The plain `token ACCOUNT [OPTIONS]` form is parsed without clap
//!   (`cli::quick_token`); everything else goes through clap.
#![no_main]

use clap::Parser;
use mailtoken::cli::{Cli, quick_token};
use mailtoken::error::{ExitCode, Result};
use std::ffi::{c_char, c_int};
use std::process::exit;

#[unsafe(no_mangle)]
extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    standard_fds();
    // SAFETY: setting a signal's disposition to SIG_IGN, before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let result = match quick_token(&args) {
        Some(t) => mailtoken::commands::token(t),
        None => parse_and_run(),
    };
    exit(match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("mailtoken: {}", e.message);
            if let Some(r) = &e.remedy {
                eprintln!("{r}");
            }
            e.code as i32
        }
    })
}

fn parse_and_run() -> Result<()> {
    match Cli::try_parse() {
        Ok(cli) => mailtoken::commands::run(cli),
        Err(e) => {
            let _ = e.print();
            // --help and --version are not errors; anything else is a usage error (64),
            // not clap's default 2, which mail programs would not recognise.
            exit(if e.use_stderr() {
                ExitCode::Usage as i32
            } else {
                0
            });
        }
    }
}

/// Opens `/dev/null` on whichever of fds 0, 1 and 2 is closed, as std's start-up does:
/// otherwise the next file or socket opened takes its number, and a credential printed
/// on "stdout" could go into the daemon's socket.
fn standard_fds() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: polling three valid pollfd structs without waiting; opening a C string.
    unsafe {
        if libc::poll(fds.as_mut_ptr(), 3, 0) < 0 {
            return;
        }
        for p in fds {
            if p.revents & libc::POLLNVAL != 0
                && libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) != p.fd
            {
                libc::abort();
            }
        }
    }
}
