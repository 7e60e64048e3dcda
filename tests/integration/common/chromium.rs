//! A real browser for the tests: Debian's headless Chromium, driven over the W3C
//! WebDriver protocol by the one chromedriver `scripts/test` starts
//! (`MAILTOKEN_TEST_CHROMEDRIVER`). Each session gets its own empty profile and the
//! flags that keep Chromium off the (closed) network (../shared/docs/real-stack.md).

use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// WebDriver's name for "this JSON object is an element reference" (W3C WebDriver §12.1).
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub fn chromedriver() -> String {
    match std::env::var("MAILTOKEN_TEST_CHROMEDRIVER") {
        Ok(v) if !v.trim().is_empty() => v.trim().trim_end_matches('/').to_owned(),
        _ => panic!(
            "MAILTOKEN_TEST_CHROMEDRIVER is not set: run scripts/test, which installs Chromium \
             and starts chromedriver (by hand: chromedriver --port=9515 & \
             MAILTOKEN_TEST_CHROMEDRIVER=http://127.0.0.1:9515 cargo test)"
        ),
    }
}

/// One browser window with a profile of its own; closed when dropped.
pub struct Chromium {
    http: reqwest::Client,
    session: String,
    _profile: tempfile::TempDir,
}

impl Chromium {
    /// Starts Chromium. `ignore_certificate_errors` is the click through the warning
    /// for mailtoken's own `https://localhost` certificate; nothing else is trusted.
    pub async fn start(ignore_certificate_errors: bool) -> Chromium {
        let profile = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        if ignore_certificate_errors {
            args.push("--ignore-certificate-errors".to_owned());
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args },
        }}});
        let v = call(
            &http,
            reqwest::Method::POST,
            &format!("{}/session", chromedriver()),
            Some(caps),
        )
        .await;
        let session = v["sessionId"]
            .as_str()
            .expect("a WebDriver session")
            .to_owned();
        let c = Chromium {
            http,
            session,
            _profile: profile,
        };
        // Finding an element waits up to this long for it to appear.
        c.post("timeouts", json!({ "implicit": 15000 })).await;
        c
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}/{path}", chromedriver(), self.session)
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        call(
            &self.http,
            reqwest::Method::POST,
            &self.url(path),
            Some(body),
        )
        .await
    }

    async fn get(&self, path: &str) -> Value {
        call(&self.http, reqwest::Method::GET, &self.url(path), None).await
    }

    /// Opens `url` and waits for the page to load.
    pub async fn open(&self, url: &str) {
        self.post("url", json!({ "url": url })).await;
    }

    /// The element `css` selects, waiting for it to appear.
    pub async fn find(&self, css: &str) -> String {
        let v = self
            .post("element", json!({ "using": "css selector", "value": css }))
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.post(&format!("element/{e}/value"), json!({ "text": text }))
            .await;
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.post(&format!("element/{e}/click"), json!({})).await;
    }

    pub async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.get(&format!("element/{e}/text"))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn current_url(&self) -> String {
        self.get("url")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits (at most 30 s) until the address starts with `prefix`; returns it.
    pub async fn wait_for_url(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now = self.current_url().await;
            if now.starts_with(prefix) {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "the browser never reached {prefix}; it is at {now}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let url = format!("{}/session/{}", chromedriver(), self.session);
        // Close the window from a thread of its own: drop may run inside a runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let _ = rt.block_on(reqwest::Client::new().delete(url).send());
        })
        .join();
    }
}

/// One WebDriver command; the reply's `value` (W3C WebDriver §6.6), or a panic with
/// WebDriver's error.
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> Value {
    let mut req = http.request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("chromedriver at {url}: {e}"));
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(
        status.is_success(),
        "WebDriver {url} answered {status}: {}",
        v["value"]
    );
    v["value"].clone()
}
