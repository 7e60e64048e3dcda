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

use mailtoken::cli::{Command, quick_serve, quick_token};
use mailtoken::startup;
use std::ffi::{c_char, c_int};

#[unsafe(no_mangle)]
extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    startup::prepare();
    // SAFETY: argc and argv are what the C runtime passed to main.
    let args = unsafe { startup::args(argc, argv) };
    // The plain `token ACCOUNT [OPTIONS]` form is parsed without clap, whose parser
    // costs more to build than the rest of the call (`cli::quick_token`).
    let rest = args.get(1..).unwrap_or_default();
    // A refresh handed over by a daemonless `token` (src/worker.rs).
    if rest.first().is_some_and(|a| a == mailtoken::worker::ARG) {
        startup::exit(mailtoken::worker::serve(&rest[1..]));
    }
    // The daemon's plain `serve`, too: clap's parser would fault in pages that then
    // stay resident for as long as the daemon runs.
    if let Some(group) = quick_serve(rest) {
        startup::exit(mailtoken::daemon::serve(group.as_deref()));
    }
    let result = match quick_token(rest) {
        Some(req) => mailtoken::commands::token(req),
        None => {
            let cli = startup::parse(args.clone());
            // `add` is its own executable (src/add_main.rs): discovery's DNS, XML and
            // TOML-editing code stays out of this one, which the daemon runs.
            if matches!(cli.command, Command::Add { .. }) {
                startup::exec_beside("mailtoken-add", &args);
            }
            mailtoken::commands::run(cli)
        }
    };
    startup::exit(result)
}
