//! `mailtoken-add`: `mailtoken add`, in an executable of its own. mailtoken-core hands
//! `add` to it by exec (as the front hands everything but `token` to mailtoken-core), so
//! that discovery's DNS resolver, XML reader and TOML editor are not linked into the
//! executable the daemon runs, whose idle memory they would grow (docs/benchmarks.md).
#![no_main]

use mailtoken::error::Error;
use mailtoken::startup;
use std::ffi::{c_char, c_int};

#[unsafe(no_mangle)]
extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    startup::prepare();
    // SAFETY: argc and argv are what the C runtime passed to main.
    let args = unsafe { startup::args(argc, argv) };
    let cli = startup::parse(args);
    let result = match mailtoken::add::from_cli(cli.command) {
        Some(opts) => mailtoken::add::run(opts),
        None => Err(Error::usage("mailtoken-add runs `mailtoken add` only")
            .with_remedy("Run mailtoken instead.")),
    };
    startup::exit(result)
}
