//! Diagnostic for `scripts/bench`: the minimal client of benches/bench_client.c written
//! in Rust with std only (no mailtoken code, no serde, no clap). Its time over the C
//! client's is what the Rust runtime and a Rust binary's startup cost by themselves.
//!
//!   MAILTOKEN_SOCKET=PATH bench_std_client ACCOUNT

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::exit;

fn main() {
    let (Some(account), Some(path)) = (
        std::env::args().nth(1),
        std::env::var_os("MAILTOKEN_SOCKET"),
    ) else {
        eprintln!("usage: MAILTOKEN_SOCKET=PATH bench_std_client ACCOUNT");
        exit(64);
    };
    let request = format!(
        "{{\"v\":1,\"op\":\"token\",\"account\":\"{account}\",\"format\":\"raw\",\"min_valid\":300,\"for\":\"imap\",\"wait_ms\":0}}\n"
    );
    let mut line = String::new();
    let sent = UnixStream::connect(path).and_then(|mut s| {
        s.write_all(request.as_bytes())?;
        BufReader::new(&s).read_line(&mut line)
    });
    if let Err(e) = sent {
        eprintln!("bench_std_client: {e}");
        exit(69);
    }
    let key = "\"credential\":\"";
    let credential = line
        .find(key)
        .map(|i| &line[i + key.len()..])
        .and_then(|rest| rest.find('"').map(|end| &rest[..end]));
    match credential {
        Some(c) if line.contains("\"ok\":true") => {
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{c}").and_then(|()| out.flush()).is_err() {
                exit(74);
            }
        }
        _ => {
            eprintln!("bench_std_client: bad reply: {line}");
            exit(75);
        }
    }
}
