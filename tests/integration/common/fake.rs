//! A FAKE token endpoint, for faults a real authorization server will not produce on
//! demand (a 503, a hang, an HTML page, a body without a token). Every request is
//! answered the same way after `delay`, and counted.

use super::mailtoken::{Env, rt};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub struct FakeEndpoint {
    pub url: String,
    count: Arc<AtomicU32>,
}

impl FakeEndpoint {
    /// Requests received so far.
    pub fn requests(&self) -> u32 {
        self.count.load(Ordering::SeqCst)
    }
}

/// Serves POST /token on an ephemeral loopback port until the test process ends.
pub fn token_endpoint(
    status: u16,
    content_type: &'static str,
    body: &'static str,
    delay: Duration,
) -> FakeEndpoint {
    let count = Arc::new(AtomicU32::new(0));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let c = count.clone();
    std::thread::spawn(move || {
        rt().block_on(async move {
            let app = axum::Router::new().route(
                "/token",
                axum::routing::post(move || {
                    let c = c.clone();
                    async move {
                        c.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(delay).await;
                        (
                            axum::http::StatusCode::from_u16(status).unwrap(),
                            [(axum::http::header::CONTENT_TYPE, content_type)],
                            body,
                        )
                    }
                }),
            );
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app).await.unwrap();
        })
    });
    FakeEndpoint {
        url: format!("http://{addr}/token"),
        count,
    }
}

/// The refresh token [`seeded`] stores; it must survive every fault.
pub const RT: &str = "stored-refresh-token-must-survive";

/// A world with one account `f` whose access token has expired and whose refresh token
/// is stored, its token endpoint at `token_url` (usually a [`token_endpoint`]).
pub fn seeded(token_url: &str, timeout: &str) -> Env {
    let env = Env::new(
        &format!("timeout = \"{timeout}\"\n[store]\nkind = \"file\"\n"),
        &format!(
            "[accounts.f]\nuser = \"f@example.test\"\nauth_url = \"http://127.0.0.1:9/auth\"\n\
             token_url = \"{token_url}\"\nclient_id = \"c\"\nscopes = [\"mail\"]\n"
        ),
    );
    std::fs::create_dir_all(env.tokens_path().parent().unwrap()).unwrap();
    std::fs::write(
        env.tokens_path(),
        format!(
            r#"{{"version":1,"accounts":{{"f":{{"refresh_token":"{RT}","access_token":"old","obtained_at":1000,"expires_at":4600,"logged_in_at":1000}}}}}}"#
        ),
    )
    .unwrap();
    env
}

/// A FAKE token endpoint for an outage that ends: 503 while [`Outage::set_down`] says
/// so, then a fresh token (`{"access_token":"fresh-N",...}`) for each request; every
/// request's arrival time is kept.
pub struct Outage {
    pub url: String,
    down: Arc<std::sync::atomic::AtomicBool>,
    arrivals: Arc<std::sync::Mutex<Vec<std::time::Instant>>>,
}

impl Outage {
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// When each request arrived, in order.
    pub fn arrivals(&self) -> Vec<std::time::Instant> {
        self.arrivals.lock().unwrap().clone()
    }
}

pub fn outage_endpoint() -> Outage {
    let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let arrivals = Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (d, a) = (down.clone(), arrivals.clone());
    std::thread::spawn(move || {
        rt().block_on(async move {
            let app = axum::Router::new().route(
                "/token",
                axum::routing::post(move || {
                    let (d, a) = (d.clone(), a.clone());
                    async move {
                        let n = {
                            let mut a = a.lock().unwrap();
                            a.push(std::time::Instant::now());
                            a.len()
                        };
                        let json = axum::http::header::HeaderValue::from_static("application/json");
                        if d.load(Ordering::SeqCst) {
                            return (
                                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                                [(axum::http::header::CONTENT_TYPE, json)],
                                r#"{"error":"temporarily_unavailable"}"#.to_owned(),
                            );
                        }
                        (
                            axum::http::StatusCode::OK,
                            [(axum::http::header::CONTENT_TYPE, json)],
                            format!(
                                r#"{{"access_token":"fresh-{n}","token_type":"Bearer","expires_in":3600}}"#
                            ),
                        )
                    }
                }),
            );
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app).await.unwrap();
        })
    });
    Outage {
        url: format!("http://{addr}/token"),
        down,
        arrivals,
    }
}

/// A FAKE HTTPS token endpoint (the test mail server's certificate, so `ca_file` is
/// the test CA) that answers every request with `body` (200, JSON): for a request that
/// must reach an https endpoint, such as one through a proxy's CONNECT tunnel.
pub fn https_token_endpoint(body: &'static str) -> FakeEndpoint {
    use std::io::{BufRead, BufReader, Read, Write};
    let config = super::mailserver::mailserver().server_tls_config();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicU32::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let (config, c) = (config.clone(), c.clone());
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut reader = BufReader::new(&mut tls);
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut request_body = vec![0; length];
                if reader.read_exact(&mut request_body).is_err() {
                    return;
                }
                c.fetch_add(1, Ordering::SeqCst);
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(reply.as_bytes());
                let _ = tls.flush();
            });
        }
    });
    FakeEndpoint {
        url: format!("https://{addr}/token"),
        count,
    }
}

/// A FAKE HTTP proxy that refuses every request (403), as a proxy does that may not
/// open a tunnel to that host or port; its URL.
pub fn refusing_proxy() -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut tcp in listener.incoming().flatten() {
            let mut reader = BufReader::new(tcp.try_clone().unwrap());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let _ = tcp.write_all(
                b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    format!("http://{addr}")
}
