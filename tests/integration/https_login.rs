//! Logins for a client registered with `redirect_uri = "https://localhost"` only (like
//! Thunderbird's public Microsoft registration), against the real authorization server
//! with a client so registered, which it matches on any port as Microsoft does. The
//! test's browser trusts no certificate authority: it accepts the one certificate whose
//! fingerprint mailtoken printed, as a person clicking through the warning would.

use crate::common;

use common::authserver::{Browser, Decision};
use common::mailtoken::*;
use common::pinned;
use std::process::Child;
use url::Url;

/// What the login printed before it waits for the browser.
struct Started {
    child: Child,
    url: String,
    fingerprint: String,
    text: String,
    rest: std::thread::JoinHandle<String>,
}

fn start(env: &Env, args: &[&str]) -> Started {
    let mut child = env.spawn_login(args);
    let (text, rest) = read_stderr_until(&mut child, |l| l.starts_with("Waiting for the browser"));
    let url = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("http"))
        .expect("an authorization URL")
        .to_owned();
    let fingerprint = text
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 95 && l.split(':').all(|b| b.len() == 2))
        .expect("the certificate's fingerprint")
        .to_owned();
    Started {
        child,
        url,
        fingerprint,
        text,
        rest,
    }
}

/// The redirect URI the authorization request carries, as sent.
fn sent_redirect(auth_url: &str) -> String {
    Url::parse(auth_url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned())
        .expect("a redirect_uri parameter")
}

#[test]
fn an_https_localhost_login_arrives_at_the_tls_listener_with_a_certificate_of_its_own() {
    let login = unique_login("https");
    let env = Env::with_file_store(&account_toml("ms", &login, Client::NativeHttps));
    let s = start(&env, &["ms", "--no-browser", "--timeout", "60s"]);
    assert!(
        s.text
            .contains("the browser will warn that the connection is not private"),
        "{}",
        s.text
    );
    let redirect = rt()
        .block_on(Browser::new().authorize(&s.url, &login, Decision::Approve))
        .unwrap();
    let port = redirect.port().expect("the listener's port");
    // As registered (no `/` added), with the listener's port.
    assert_eq!(sent_redirect(&s.url), format!("https://localhost:{port}"));
    assert_eq!(
        (redirect.scheme(), redirect.host_str()),
        ("https", Some("localhost"))
    );

    rt().block_on(async {
        // A browser that trusts only the usual authorities gets no page at all.
        assert!(
            reqwest::Client::new()
                .get(redirect.as_str())
                .send()
                .await
                .is_err()
        );
        let browser = pinned::client(&s.fingerprint);
        let mut forged = redirect.clone();
        forged.set_query(Some("code=forged&state=not-ours"));
        let r = browser.get(forged).send().await.unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.text().await.unwrap().contains("Refused"));
        let r = browser.get(redirect.as_str()).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("mailtoken received the authorization")
        );
    });
    let o = finish(s.child, s.rest);
    assert_exit(&o, 0);
    let t = stdout(&env.run(&["token", "ms"]));
    assert_eq!(introspect(t.trim())["active"], true);
}

#[test]
fn an_https_localhost_login_listens_on_the_port_given() {
    let login = unique_login("httpsport");
    let env = Env::with_file_store(&account_toml("mp", &login, Client::NativeHttps));
    let port = free_port();
    let p = port.to_string();
    let s = start(
        &env,
        &["mp", "--no-browser", "--port", &p, "--timeout", "60s"],
    );
    assert_eq!(sent_redirect(&s.url), format!("https://localhost:{port}"));
    let redirect = rt()
        .block_on(Browser::new().authorize(&s.url, &login, Decision::Approve))
        .unwrap();
    assert_eq!(redirect.port(), Some(port));
    let r = rt()
        .block_on(pinned::client(&s.fingerprint).get(redirect.as_str()).send())
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_exit(&finish(s.child, s.rest), 0);
}

#[test]
fn an_https_localhost_paste_login_takes_the_address_the_browser_could_not_open() {
    let login = unique_login("httpspaste");
    let env = Env::with_file_store(&account_toml("pp", &login, Client::NativeHttps));
    let (mut child, url, rest) = env.start_login(&["pp", "--paste", "--timeout", "60s"]);
    // Nothing listens, so the redirect is the registered one exactly.
    assert_eq!(sent_redirect(&url), "https://localhost");
    let redirect = rt()
        .block_on(Browser::new().authorize(&url, &login, Decision::Approve))
        .unwrap();
    assert!(
        redirect.as_str().starts_with("https://localhost/?code="),
        "{redirect}"
    );
    write_stdin(&mut child, &format!("{redirect}\n"));
    let o = finish(child, rest);
    assert_exit(&o, 0);
    let t = stdout(&env.run(&["token", "pp"]));
    assert_eq!(introspect(t.trim())["active"], true);
}

#[test]
fn an_https_localhost_paste_with_the_wrong_state_is_refused_and_stores_nothing() {
    let login = unique_login("httpspastebad");
    let env = Env::with_file_store(&account_toml("pb", &login, Client::NativeHttps));
    let (mut child, url, rest) = env.start_login(&["pb", "--paste", "--timeout", "60s"]);
    let mut redirect = rt()
        .block_on(Browser::new().authorize(&url, &login, Decision::Approve))
        .unwrap();
    let code = redirect
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    redirect.set_query(Some(&format!("code={code}&state=not-ours")));
    write_stdin(&mut child, &format!("{redirect}\n"));
    let o = finish(child, rest);
    assert_exit(&o, 65);
    assert!(stderr(&o).contains("does not match"), "{}", stderr(&o));
    assert!(!env.tokens_path().exists() || env.stored("pb").is_null());
}
