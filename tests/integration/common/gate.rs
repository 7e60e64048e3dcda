//! FAULT INJECTION: a TCP relay in front of a real server (the test authorization
//! server) that chooses when the server's answers are passed on. Every byte is the real
//! server's; the relay only holds them: until released (the moment between a provider's
//! answer and mailtoken's save, for a store that dies just then), or for a while (a
//! provider that answers slowly).

use super::authserver;
use super::mailtoken::{Client, account_toml};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    /// Each answer's first bytes wait this long before they are passed on.
    delay: Duration,
    /// Answers wait until [`Gate::release`].
    hold: bool,
    /// Answers that have arrived from the server and are waiting for the release.
    held: u32,
    /// Answers the server has begun to send, in all.
    answers: u32,
}

pub struct Gate {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl Gate {
    /// A relay on an ephemeral loopback port to `upstream` (`http://HOST:PORT`).
    pub fn start(upstream: &str) -> Gate {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("an http:// upstream")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let s = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let s = s.clone();
                std::thread::spawn(move || relay(client, server, s));
            }
        });
        Gate { url, state }
    }

    /// `account_toml(name, login, client)` (the real authorization server) with its
    /// token requests through this gate.
    pub fn account(&self, name: &str, login: &str, client: Client) -> String {
        let issuer = authserver::issuer();
        account_toml(name, login, client).replace(
            &format!("token_url = \"{issuer}/token\""),
            &format!("token_url = \"{}/token\"", self.url),
        )
    }

    pub fn set_delay(&self, delay: Duration) {
        self.state.0.lock().unwrap().delay = delay;
    }

    /// From now on answers wait for [`Gate::release`].
    pub fn hold(&self) {
        self.state.0.lock().unwrap().hold = true;
    }

    /// Passes on the held answers, and every later one at once.
    pub fn release(&self) {
        let (m, c) = &*self.state;
        m.lock().unwrap().hold = false;
        c.notify_all();
    }

    /// Waits until an answer is held (the server has answered; mailtoken has not seen
    /// it); false after `timeout`.
    pub fn wait_held(&self, timeout: Duration) -> bool {
        let (m, c) = &*self.state;
        let deadline = Instant::now() + timeout;
        let mut s = m.lock().unwrap();
        while s.held == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = c.wait_timeout(s, left).unwrap().0;
        }
        true
    }

    /// Answers the server has begun to send so far.
    pub fn answers(&self) -> u32 {
        self.state.0.lock().unwrap().answers
    }
}

fn relay(mut client: TcpStream, mut server: TcpStream, state: Arc<(Mutex<State>, Condvar)>) {
    // A new answer starts with the first bytes from the server after the client sent
    // something.
    let asked = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let a = asked.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            match c_read.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    a.store(true, std::sync::atomic::Ordering::SeqCst);
                    if s_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = s_write.shutdown(std::net::Shutdown::Write);
    });
    let mut buf = [0u8; 16384];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if asked.swap(false, std::sync::atomic::Ordering::SeqCst) {
            let (m, c) = &*state;
            let mut s = m.lock().unwrap();
            s.answers += 1;
            let delay = s.delay;
            if s.hold {
                s.held += 1;
                c.notify_all();
                while s.hold {
                    s = c.wait(s).unwrap();
                }
                s.held -= 1;
            }
            drop(s);
            std::thread::sleep(delay);
        }
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client.shutdown(std::net::Shutdown::Both);
}
