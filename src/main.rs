//! `mailtoken-core`, the whole program: parse the command line, run the command, and
//! turn errors into a message on stderr and a sysexits exit status. Users run it as
//! `mailtoken`, the front executable (src/front.rs), which answers `token` through the
//! daemon by itself and hands every other command line to this one.
//!
//! `no_main`: std's own start-up asks glibc for the main thread's stack bounds to set
//! up its guard page report, which parses `/proc/self/maps` and costs as much as the
//! rest of a `token` call through the daemon (docs/benchmarks.md). Without it a stack
//! overflow in the main thread is a plain SIGSEGV. The rest of what std's start-up
//! does is in `startup::prepare`.
#![no_main]

use clap::Parser;
use mailtoken::cli::{Cli, quick_token};
use mailtoken::error::ExitCode;
use mailtoken::startup;
use std::ffi::{OsString, c_char, c_int};

#[unsafe(no_mangle)]
extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    startup::prepare();
    // SAFETY: argc and argv are what the C runtime passed to main.
    let args = unsafe { startup::args(argc, argv) };
    // The plain `token ACCOUNT [OPTIONS]` form is parsed without clap, whose parser
    // costs more to build than the rest of the call (`cli::quick_token`).
    let result = match quick_token(args.get(1..).unwrap_or_default()) {
        Some(req) => mailtoken::commands::token(req),
        None => mailtoken::commands::run(parse(args)),
    };
    startup::exit(result)
}

fn parse(args: Vec<OsString>) -> Cli {
    match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not errors; anything else is a usage error (64),
            // not clap's default 2, which mail programs would not recognise.
            std::process::exit(if e.use_stderr() {
                ExitCode::Usage as i32
            } else {
                0
            });
        }
    }
}
