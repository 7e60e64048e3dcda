//! A person's login in a real browser: headless Chromium (Debian's), driven over
//! WebDriver, goes through the test authorization server's own sign-in and consent
//! pages and lands on the page mailtoken serves, whose words are checked. Once over
//! the plain loopback redirect, once over `https://localhost`, where Chromium's
//! `--ignore-certificate-errors` stands for the click through the warning.

use crate::common;

use common::chromium::Chromium;
use common::mailtoken::*;

/// Signs in as `login` and allows access, in the pages the login URL leads to; returns
/// the address the browser ended on, once it starts with `lands_on`, and the page's
/// heading and text there.
async fn sign_in_and_allow(
    browser: &Chromium,
    url: &str,
    login: &str,
    lands_on: &str,
) -> (String, String, String) {
    browser.open(url).await;
    browser
        .type_into("form#login input[name=login]", login)
        .await;
    browser.click("form#login button[type=submit]").await;
    browser.click("form#approve button[type=submit]").await;
    let at = browser.wait_for_url(lands_on).await;
    (at, browser.text("h1").await, browser.text("body").await)
}

/// A login of a fresh account of `client` in Chromium, which ends on mailtoken's page
/// at the login's `redirect_uri` (its scheme and host being `lands_on`); then the stored
/// token works.
fn login_in_chromium(tag: &str, client: Client, https: bool, lands_on: &str) {
    let login = unique_login(tag);
    let env = Env::with_file_store(&account_toml("c", &login, client));
    let (child, url, rest) = env.start_login(&["c", "--no-browser", "--timeout", "90s"]);
    // The listener's own address, port and all: the test server's pages are on
    // 127.0.0.1 too, and a prefix without the port would match them before the
    // redirect has happened.
    let redirect = url::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    assert!(redirect.starts_with(lands_on), "{redirect}");
    let (at, title, text) = rt().block_on(async {
        let browser = Chromium::start(https).await;
        sign_in_and_allow(&browser, &url, &login, &redirect).await
    });
    assert!(at.contains("code="), "{at}");
    assert_eq!(title, "Logged in");
    assert!(
        text.contains("mailtoken received the authorization. You can close this tab."),
        "{text}"
    );
    assert_exit(&finish(child, rest), 0);
    let t = stdout(&env.run(&["token", "c"]));
    assert_eq!(introspect(t.trim())["active"], true);
}

#[test]
fn chromium_logs_in_over_the_loopback_redirect_and_lands_on_mailtokens_page() {
    login_in_chromium("chromium", Client::Native, false, "http://127.0.0.1:");
}

#[test]
fn chromium_logs_in_over_https_localhost_past_the_certificate_warning() {
    login_in_chromium(
        "chromiumtls",
        Client::NativeHttps,
        true,
        "https://localhost",
    );
}
