//! The `mailtoken` binary: parse the command line, run the command, and turn errors
//! into a message on stderr and a sysexits exit status.

use clap::Parser;
use mailtoken::cli::Cli;
use mailtoken::error::ExitCode;
use std::process::exit;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
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
    };
    if let Err(e) = mailtoken::commands::run(cli) {
        eprintln!("mailtoken: {}", e.message);
        if let Some(r) = &e.remedy {
            eprintln!("{r}");
        }
        exit(e.code as i32);
    }
}
