//! `mailtoken login --device` (RFC 8628) against the real authorization server, which
//! implements the device flow: the codes and the QR code on stderr, approval, refusal,
//! expiry, `token --wait` answered by the daemon once the login completes, and
//! `notify_cmd` told the code. `slow_down`, which the real server does not send on
//! demand, comes from a FAKE endpoint below.

use crate::common;

use common::authserver::{self, Browser, Decision};
use common::mailtoken::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What `login --device` printed up to its "Waiting" line.
struct Shown {
    user_code: String,
    complete: Option<String>,
    qr: Vec<String>,
    text: String,
}

/// Starts `mailtoken login ACCOUNT --device` and reads its stderr until it waits; the
/// rest of stderr is gathered by the returned thread.
fn start_device_login(env: &Env, account: &str) -> (Child, Shown, std::thread::JoinHandle<String>) {
    let mut child = env
        .cmd()
        .args(["login", account, "--device"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0 && Instant::now() < deadline,
            "login --device stopped before waiting:\n{text}"
        );
        text.push_str(&line);
        if line.starts_with("Waiting for the login") {
            break;
        }
    }
    let lines: Vec<&str> = text.lines().collect();
    let after = |label: &str| {
        let i = lines.iter().position(|l| l.starts_with(label))?;
        lines[i + 1..]
            .iter()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_owned())
    };
    let user_code = after("and enter the code").expect("a user code");
    let complete = lines
        .iter()
        .find_map(|l| l.strip_prefix("Or scan this QR code, which opens "))
        .map(|l| l.split_whitespace().next().unwrap().to_owned());
    let qr = lines
        .iter()
        .filter(|l| l.chars().count() > 20 && l.chars().all(|c| "█▀▄ ".contains(c)))
        .map(|l| l.to_string())
        .collect();
    let rest = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut reader, &mut s);
        s
    });
    (
        child,
        Shown {
            user_code,
            complete,
            qr,
            text,
        },
        rest,
    )
}

/// Reads back a QR code drawn as `qrencode -t UTF8` draws one: light modules as blocks
/// (two rows a character), dark ones blank.
fn decode_qr(lines: &[String]) -> String {
    let rows: Vec<Vec<char>> = lines.iter().map(|l| l.chars().collect()).collect();
    let (w, h) = (rows[0].len(), rows.len() * 2);
    let light = |x: usize, y: usize| {
        let (top, bottom) = match rows[y / 2][x] {
            '█' => (true, true),
            '▀' => (true, false),
            '▄' => (false, true),
            _ => (false, false),
        };
        if y.is_multiple_of(2) { top } else { bottom }
    };
    const SCALE: usize = 4;
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w * SCALE, h * SCALE, |x, y| {
        if light(x / SCALE, y / SCALE) { 255 } else { 0 }
    });
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in:\n{}", lines.join("\n"));
    grids[0].decode().expect("the QR code decodes").1
}

fn device_world(client: Client, head: &str) -> (Env, String) {
    let login = unique_login("device");
    let env = Env::new(
        &format!("timeout = \"10s\"\n{head}[store]\nkind = \"file\"\n"),
        &account_toml("d", &login, client),
    );
    (env, login)
}

#[test]
fn a_device_login_shows_the_code_and_a_qr_code_and_stores_the_tokens() {
    let (env, login) = device_world(Client::Native, "");
    let (child, shown, rest) = start_device_login(&env, "d");
    let complete = shown.complete.clone().expect("verification_uri_complete");
    assert!(complete.contains(&shown.user_code), "{}", shown.text);
    assert!(!shown.qr.is_empty(), "no QR code:\n{}", shown.text);
    assert_eq!(decode_qr(&shown.qr), complete, "{}", shown.text);
    assert!(
        shown
            .text
            .contains(&format!("{}/device", authserver::issuer())),
        "{}",
        shown.text
    );
    rt().block_on(Browser::new().device_authorize(&complete, &login, Decision::Approve))
        .unwrap();
    let o = finish(child, rest);
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("Logged in d"), "{}", stderr(&o));
    let token = env.run(&["token", "d"]);
    assert_exit(&token, 0);
    let info = rt().block_on(authserver::introspect(stdout(&token).trim()));
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(stats(&login, "device_grants"), 1);
    assert!(env.stored("d")["refresh_token"].is_string());
}

#[test]
fn a_declined_device_login_says_so_and_stores_nothing() {
    let (env, login) = device_world(Client::Native, "");
    let (child, shown, rest) = start_device_login(&env, "d");
    rt().block_on(Browser::new().device_authorize(
        shown.complete.as_deref().unwrap(),
        &login,
        Decision::Deny,
    ))
    .unwrap();
    let o = finish(child, rest);
    assert_exit(&o, 77);
    let e = stderr(&o);
    assert!(e.contains("was declined (access_denied"), "{e}");
    assert!(e.contains("mailtoken login d --device` again"), "{e}");
    assert!(!env.tokens_path().exists(), "nothing stored");
}

#[test]
fn an_expired_code_ends_the_device_login_with_a_clear_error() {
    let (env, _login) = device_world(Client::NativeDeviceShort, "");
    let start = Instant::now();
    let (child, shown, rest) = start_device_login(&env, "d");
    // Nobody enters the code; the server's codes for this client live 8 s.
    let o = finish(child, rest);
    assert_exit(&o, 77);
    let e = stderr(&o);
    assert!(
        e.contains(&format!("the code {} expired", shown.user_code)),
        "{e}"
    );
    assert!(e.contains("expired_token"), "the server said it: {e}");
    assert!(start.elapsed() < Duration::from_secs(30));
    assert!(!env.tokens_path().exists());
}

#[test]
fn the_daemon_answers_token_wait_once_a_device_login_completes_and_notify_cmd_has_the_code() {
    let notes = tempfile::tempdir().unwrap();
    let notes = notes.path().join("notes");
    let (env, login) = device_world(
        Client::Native,
        &format!(
            "notify_cmd = 'printf \"%s|%s|%s\\n\" \"$MAILTOKEN_ACCOUNT\" \"$MAILTOKEN_USER_CODE\" \"$MAILTOKEN_VERIFICATION_URI\" >> {}'\n",
            notes.display()
        ),
    );
    let _daemon = env.serve();
    let (child, shown, rest) = start_device_login(&env, "d");
    // The hook ran before the login started waiting.
    let note = std::fs::read_to_string(&notes).unwrap();
    assert_eq!(
        note.trim(),
        format!("d|{}|{}/device", shown.user_code, authserver::issuer())
    );
    let waiter = env
        .cmd()
        .args(["token", "d", "--wait", "60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    rt().block_on(Browser::new().device_authorize(
        shown.complete.as_deref().unwrap(),
        &login,
        Decision::Approve,
    ))
    .unwrap();
    assert_exit(&finish(child, rest), 0);
    let o = waiter.wait_with_output().unwrap();
    assert_exit(&o, 0);
    let info = rt().block_on(authserver::introspect(stdout(&o).trim()));
    assert_eq!(info["active"], true, "{info}");
}

#[test]
fn google_refuses_the_device_login_before_any_request_and_says_what_to_do() {
    let env = Env::with_file_store(
        "[accounts.g]\nprovider = \"google\"\nuser = \"g@gmail.com\"\nclient_id = \"i\"\nclient_secret = \"s\"\n",
    );
    let o = env.run(&["login", "g", "--device"]);
    assert_exit(&o, 64);
    let e = stderr(&o);
    assert!(e.contains("does not grant the Gmail scope"), "{e}");
    assert!(e.contains("ssh -L") && e.contains("--paste"), "{e}");
}

#[test]
fn an_account_without_a_device_endpoint_is_told_so() {
    let env = Env::with_file_store(
        "[accounts.x]\nuser = \"x@example.org\"\nauth_url = \"https://id.example.org/a\"\n\
         token_url = \"https://id.example.org/t\"\nscopes = [\"mail\"]\nclient_id = \"c\"\n",
    );
    let o = env.run(&["login", "x", "--device"]);
    assert_exit(&o, 78);
    assert!(stderr(&o).contains("has no device_url"), "{}", stderr(&o));
}

/// A FAKE device endpoint and token endpoint: the real server does not send
/// `slow_down` on demand. The token endpoint answers `slow_down`, then
/// `authorization_pending`, then a token; every request's arrival is kept.
/// Which endpoint got a request, and when.
type Arrivals = Arc<Mutex<Vec<(String, Instant)>>>;

fn slow_down_endpoints() -> (String, Arrivals) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (s, b) = (seen.clone(), base.clone());
    std::thread::spawn(move || {
        rt().block_on(async move {
            let json = || [(axum::http::header::CONTENT_TYPE, "application/json")];
            let s2 = s.clone();
            let app = axum::Router::new()
                .route(
                    "/device",
                    axum::routing::post(move || {
                        let (s, b) = (s.clone(), b.clone());
                        async move {
                            s.lock().unwrap().push(("device".to_owned(), Instant::now()));
                            (
                                json(),
                                format!(
                                    r#"{{"device_code":"dc","user_code":"SLOW-DOWN","verification_uri":"{b}/verify","expires_in":120,"interval":1}}"#
                                ),
                            )
                        }
                    }),
                )
                .route(
                    "/token",
                    axum::routing::post(move || {
                        let s = s2.clone();
                        async move {
                            let n = {
                                let mut s = s.lock().unwrap();
                                s.push(("token".to_owned(), Instant::now()));
                                s.len() - 1
                            };
                            let (status, body) = match n {
                                1 => (400, r#"{"error":"slow_down"}"#),
                                2 => (400, r#"{"error":"authorization_pending"}"#),
                                _ => (
                                    200,
                                    r#"{"access_token":"device-token","token_type":"Bearer","expires_in":3600,"refresh_token":"device-rt"}"#,
                                ),
                            };
                            (axum::http::StatusCode::from_u16(status).unwrap(), json(), body)
                        }
                    }),
                );
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app).await.unwrap();
        })
    });
    (base, seen)
}

#[test]
fn slow_down_makes_every_later_poll_five_seconds_later() {
    let (base, seen) = slow_down_endpoints();
    let env = Env::with_file_store(&format!(
        "[accounts.s]\nuser = \"s@example.test\"\nauth_url = \"{base}/auth\"\ntoken_url = \"{base}/token\"\n\
         device_url = \"{base}/device\"\nscopes = [\"mail\", \"offline_access\"]\nclient_id = \"c\"\n"
    ));
    let o = env.run(&["login", "s", "--device"]);
    assert_exit(&o, 0);
    let seen = seen.lock().unwrap().clone();
    let kinds: Vec<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["device", "token", "token", "token"]);
    let gap = |i: usize| seen[i].1 - seen[i - 1].1;
    // The interval (1 s) before the first poll; then 1 + 5 s after slow_down, and as
    // long again after authorization_pending (the new interval is kept).
    assert!(gap(1) >= Duration::from_secs(1), "{:?}", gap(1));
    assert!(gap(2) >= Duration::from_secs(6), "{:?}", gap(2));
    assert!(gap(3) >= Duration::from_secs(6), "{:?}", gap(3));
    assert!(gap(3) < Duration::from_secs(9), "{:?}", gap(3));
    assert_eq!(env.stored("s")["access_token"], "device-token");
    assert_eq!(env.stored("s")["refresh_token"], "device-rt");
}
