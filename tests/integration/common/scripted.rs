//! A FAKE IMAP or SMTP server that replays a provider's transcript, for replies the
//! real servers of the test harness will not give (Office 365's and Gmail's refusals).
//! The replies are the providers' own words, as they appear in the providers'
//! documentation and in public bug reports; the host names and IDs in them are made up.
//! It speaks implicit TLS with the test mail server's certificate (so `ca_file` is the
//! test CA), and replays the whole script on every connection: `verify` may connect
//! twice (once more with a refreshed token).

use super::mailserver::mailserver;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// One exchange: what the client's line must start with (case-insensitive), and the
/// lines answered; `{tag}` in an answer is the tag of the client's last tagged line.
pub struct Exchange {
    pub expect: &'static str,
    pub reply: &'static [&'static str],
    /// Hang up after the reply, as a server that ends the session does.
    pub close: bool,
}

/// Expect a line starting with `expect`, answer `reply`.
pub const fn says(expect: &'static str, reply: &'static [&'static str]) -> Exchange {
    Exchange {
        expect,
        reply,
        close: false,
    }
}

/// Expect, answer, and hang up.
pub const fn says_and_hangs_up(expect: &'static str, reply: &'static [&'static str]) -> Exchange {
    Exchange {
        expect,
        reply,
        close: true,
    }
}

/// SMTP's message after DATA: every line up to the lone `.` is taken as one.
pub const MESSAGE: &str = "\u{0}message";

pub struct Scripted {
    pub port: u16,
    /// Every line the clients sent, connection after connection.
    heard: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    pub fn heard(&self) -> Vec<String> {
        self.heard.lock().unwrap().clone()
    }
}

/// Serves `greeting` and then `script` to each connection, until the test ends.
pub fn serve(greeting: &'static [&'static str], script: &'static [Exchange]) -> Scripted {
    let m = mailserver();
    let config = m.server_tls_config();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let log = heard.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let (config, log) = (config.clone(), log.clone());
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let _ = replay(&mut tls, greeting, script, &log);
            });
        }
    });
    Scripted { port, heard }
}

fn replay(
    tls: &mut rustls::StreamOwned<rustls::ServerConnection, std::net::TcpStream>,
    greeting: &[&str],
    script: &[Exchange],
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let send = |tls: &mut rustls::StreamOwned<_, _>, lines: &[&str], tag: &str| {
        let mut out = String::new();
        for l in lines {
            out.push_str(&l.replace("{tag}", tag));
            out.push_str("\r\n");
        }
        tls.write_all(out.as_bytes())?;
        tls.flush()
    };
    send(tls, greeting, "")?;
    let mut tag = String::new();
    for step in script {
        let mut reader = BufReader::new(&mut *tls);
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if step.expect == MESSAGE {
            // The message, up to its lone dot.
            while line.trim_end_matches(['\r', '\n']) != "." {
                line.clear();
                if reader.read_line(&mut line)? == 0 {
                    return Ok(());
                }
            }
            log.lock().unwrap().push("<message>".into());
        } else {
            let line = line.trim_end_matches(['\r', '\n']).to_owned();
            log.lock().unwrap().push(line.clone());
            let first = line.split(' ').next().unwrap_or_default();
            if first.starts_with('A')
                && first[1..].chars().all(|c| c.is_ascii_digit())
                && !first[1..].is_empty()
            {
                tag = first.to_owned();
            }
            let command = match line.split_once(' ') {
                Some((t, rest)) if t == tag => rest,
                _ => line.as_str(),
            };
            if !command
                .to_ascii_uppercase()
                .starts_with(&step.expect.to_ascii_uppercase())
            {
                let complaint = format!("FAKE: expected `{}`, got `{line}`", step.expect);
                log.lock().unwrap().push(complaint.clone());
                send(tls, &[&format!("{tag} BAD {complaint}")], &tag)?;
                return Ok(());
            }
        }
        drop(reader);
        send(tls, step.reply, &tag)?;
        if step.close {
            tls.conn.send_close_notify();
            let _ = tls.flush();
            return Ok(());
        }
    }
    Ok(())
}
