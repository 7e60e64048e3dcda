//! `mailtoken login`: the authorization code flow with PKCE for native apps (RFC 8252):
//! open the browser (or print the URL), receive the code on a loopback listener or from
//! a pasted URL, exchange it, and store the tokens. Or, with `--device`, the device
//! authorization grant (RFC 8628): show a code to enter on any other device, and wait.

use crate::broker::{Broker, missing_refresh_token_hint, runtime};
use crate::config::Account;
use crate::error::{Error, Result};
use crate::loopback::{self, Callback, LoopbackListener};
use crate::oauth::device::{self, Poll};
use crate::oauth::{OAuthClient, TokenGrant};
use crate::{qr, record};
use oauth2::PkceCodeChallenge;
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};
use url::Url;

pub struct LoginOptions {
    pub open_browser: bool,
    pub port: Option<u16>,
    pub paste: bool,
    pub device: bool,
    pub timeout: Duration,
}

pub fn login(broker: &Broker, account: &Account, opts: &LoginOptions) -> Result<()> {
    if opts.device {
        return login_device(broker, account);
    }
    let rt = runtime()?;
    let client = OAuthClient::new(account, broker.config.timeout)?;
    let o = account.login_oauth()?;
    let (callback, redirect_uri, verifier) = rt.block_on(async {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let redirect = &o.redirect;
        let port = opts.port.or(redirect.port);
        if opts.paste {
            // Nothing listens, so the port only has to be one the provider accepts: the
            // registered `https://localhost` as it is, or some free port for http.
            let port = match (port, redirect.https) {
                (Some(p), _) => Some(p),
                (None, true) => None,
                (None, false) => Some(free_port().await?),
            };
            let redirect_uri = redirect.uri(port)?;
            let (url, state) = client.authorize_url(&redirect_uri, challenge)?;
            eprintln!(
                "Open this URL in a browser on any machine and log in as {}:\n\n  {url}\n\n\
                 The browser then goes to {redirect_uri}... and shows an error page because nothing \
                 listens there: that is expected. Copy the whole address from the address bar and paste it here.",
                account.user
            );
            let cb = read_pasted(&redirect_uri, state.secret())?;
            Ok::<_, Error>((cb, redirect_uri, verifier))
        } else {
            let listener =
                LoopbackListener::bind(redirect, port.unwrap_or(0), opts.timeout).await?;
            let redirect_uri = listener.redirect_uri().to_owned();
            let (url, state) = client.authorize_url(&redirect_uri, challenge)?;
            eprintln!("To log in {} ({}), open this URL:\n\n  {url}\n", account.name, account.user);
            if let Some(fingerprint) = listener.fingerprint() {
                eprintln!(
                    "The browser comes back to {redirect_uri}, which the client's registration \
                     requires to be https. No authority can vouch for a certificate of localhost, so \
                     mailtoken made one for this login, and the browser will warn that the connection \
                     is not private. That is expected here: continue (Chromium: Advanced > Proceed to \
                     localhost; Firefox: Advanced > Accept the Risk). The certificate's SHA-256 \
                     fingerprint is\n\n  {fingerprint}\n"
                );
            }
            if opts.open_browser {
                match open::that_detached(url.as_str()) {
                    Ok(()) => eprintln!("(A browser window should have opened.)"),
                    Err(e) => eprintln!("(Could not start a browser: {e}. Open the URL by hand.)"),
                }
            }
            eprintln!("Waiting for the browser to come back to {redirect_uri} ...");
            let cb = listener.wait(state.secret().clone(), opts.timeout).await?;
            Ok((cb, redirect_uri, verifier))
        }
    })?;
    let code = match callback {
        Callback::Code(c) => c,
        Callback::Denied { error, description } => {
            return Err(denied(account, &error, description.as_deref()));
        }
    };
    // The token's life is counted from before it was asked for, as a refresh's is.
    let asked = record::Now::current();
    let grant = rt.block_on(client.exchange_code(code, verifier, &redirect_uri))?;
    store(broker, account, grant, asked)
}

/// Stores what a login obtained and says how it went.
fn store(broker: &Broker, account: &Account, grant: TokenGrant, asked: record::Now) -> Result<()> {
    let (rec, notes) = broker.save_login(account, grant, asked)?;
    let life = rec.remaining(record::now());
    eprintln!(
        "Logged in {} ({}). The access token is valid for {}{}; tokens are stored in the {}.",
        account.name,
        account.user,
        humantime::format_duration(Duration::from_secs(life)),
        if rec.expiry_assumed {
            " (assumed: the provider did not say)"
        } else {
            ""
        },
        broker.store().describe()
    );
    if !notes.got_refresh_token {
        if notes.kept_old_refresh_token {
            eprintln!(
                "Note: the provider sent no new refresh token; the one from the previous login is kept."
            );
        } else {
            eprintln!(
                "Warning: the provider issued no refresh token, so mailtoken cannot renew access by itself: \
                 when this access token expires you must log in again.{}",
                missing_refresh_token_hint(account)
            );
        }
    }
    Ok(())
}

/// `login --device` (RFC 8628): the codes, shown on stderr (and to `notify_cmd`), then
/// polling until the user has finished elsewhere. Nothing is stored until a token has
/// come, so a Ctrl-C at any point leaves the store as it was.
fn login_device(broker: &Broker, account: &Account) -> Result<()> {
    let name = &account.name;
    let o = account.login_oauth()?;
    // Before any request: a provider whose device flow cannot give mail access.
    if let Some(why) = account.provider.and_then(|p| p.no_device_flow) {
        return Err(Error::usage(format!("`--device` cannot log in {name}: {why}"))
            .with_remedy(format!(
                "On a machine without a browser, use the browser of another one: either forward the redirect port (`ssh -L 8765:127.0.0.1:8765 HOST`, then `mailtoken login {name} --no-browser --port 8765` on HOST and open the URL on your machine), or `mailtoken login {name} --paste` and paste back the address the browser ends on."
            )));
    }
    let Some(device_url) = &o.device_url else {
        return Err(Error::config(format!(
            "account {name} has no device_url: the device login needs the provider's device authorization endpoint"
        ))
        .with_remedy(format!(
            "Set device_url in [accounts.{name}] if the provider has one (RFC 8628), or log in through a browser: `--no-browser` prints the URL, `--paste` takes the address back from another machine."
        )));
    };
    let rt = runtime()?;
    let client = OAuthClient::new(account, broker.config.timeout)?;
    let auth = rt.block_on(client.device_authorization(device_url))?;
    let lifetime = Duration::from_secs(auth.expires_in);
    eprintln!(
        "To log in {name} ({}), open this page on any device (a phone will do):\n\n  {}\n\nand enter the code\n\n  {}\n",
        account.user, auth.verification_uri, auth.user_code
    );
    if let Some(complete) = &auth.verification_uri_complete
        && let Some(code) = qr::render(complete)
    {
        eprintln!(
            "Or scan this QR code, which opens {complete} with the code filled in:\n\n{code}"
        );
    }
    // A headless host's user may not see this terminal: tell them where they are.
    crate::notify::device_login_waiting(
        &broker.config,
        account,
        &auth.verification_uri,
        &auth.user_code,
        auth.verification_uri_complete.as_deref(),
    );
    eprintln!(
        "Waiting for the login (the code is valid for {}; Ctrl-C gives up) ...",
        humantime::format_duration(lifetime)
    );
    let deadline = Instant::now() + lifetime;
    let mut interval = Duration::from_secs(auth.interval.max(1));
    let mut said_unreachable = false;
    let grant = rt.block_on(async {
        loop {
            // RFC 8628 §3.5: wait the interval before each poll, the first included.
            tokio::time::sleep(interval).await;
            let asked = record::Now::current();
            let answer = client.poll_device(&auth).await?;
            interval = device::next_interval(interval, &answer);
            match answer {
                Poll::Granted(grant) => return Ok::<_, Error>((grant, asked)),
                Poll::Unreachable(e) if !said_unreachable => {
                    eprintln!("(The provider did not answer: {}. Still trying.)", e.message);
                    said_unreachable = true;
                }
                _ => {}
            }
            // The server says `expired_token` when the code has expired; this is for one
            // that cannot be reached by then.
            if Instant::now() > deadline + interval {
                return Err(Error::noperm(format!(
                    "the code {} expired before the login of {name} was finished",
                    auth.user_code
                ))
                .with_remedy(format!(
                    "Run `mailtoken login {name} --device` again, and enter the new code within {}.",
                    humantime::format_duration(lifetime)
                )));
            }
        }
    })?;
    store(broker, account, grant.0, grant.1)
}

fn denied(account: &Account, error: &str, description: Option<&str>) -> Error {
    let words = description.map(|d| format!(" ({d})")).unwrap_or_default();
    let remedy = match error {
        "access_denied" => format!("Run `mailtoken login {}` again and allow access in the browser.", account.name),
        "invalid_scope" | "unauthorized_client" | "unsupported_response_type" | "invalid_request" => {
            "Check client_id, scopes and auth_params in the config against the OAuth client registered at the provider.".into()
        }
        _ => format!("Run `mailtoken login {}` again; if it keeps failing, the provider's words above say why.", account.name),
    };
    Error::noperm(format!(
        "the provider refused the login of {}: {error}{words}",
        account.name
    ))
    .with_remedy(remedy)
}

/// A port that is free now, for the redirect URI of a pasted login (nothing listens).
async fn free_port() -> Result<u16> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Error::unavailable(format!("cannot pick a loopback port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::software(e.to_string()))
}

fn read_pasted(redirect_uri: &str, state: &str) -> Result<Callback> {
    eprint!("Paste the URL: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::data(format!("reading the pasted URL: {e}")))?;
    check_pasted(line.trim(), redirect_uri, state)
}

/// Validates a pasted redirect URL exactly as the listener validates a request.
pub fn check_pasted(pasted: &str, redirect_uri: &str, state: &str) -> Result<Callback> {
    if pasted.is_empty() {
        return Err(Error::data("nothing was pasted")
            .with_remedy("Run the login again and paste the address the browser was sent to."));
    }
    let url = Url::parse(pasted).map_err(|e| {
        Error::data(format!("the pasted text is not a URL ({e})")).with_remedy(format!(
            "Paste the whole address from the browser's address bar; it starts with {redirect_uri}"
        ))
    })?;
    let redirect_uri = Url::parse(redirect_uri)
        .map_err(|e| Error::software(format!("redirect URI {redirect_uri}: {e}")))?;
    let same_place = url.scheme() == redirect_uri.scheme()
        && url.host_str() == redirect_uri.host_str()
        && url.port_or_known_default() == redirect_uri.port_or_known_default()
        && url.path() == redirect_uri.path();
    if !same_place {
        return Err(Error::data(format!(
            "the pasted URL does not lead to {redirect_uri} (was the login URL pasted instead of the one the browser was sent to?)"
        )));
    }
    loopback::validate(url.query().unwrap_or(""), state).map_err(|r| {
        Error::data(format!("the pasted URL was refused: {}", r.explain()))
            .with_remedy("Paste the address from the browser window of this login.")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri() -> &'static str {
        "http://127.0.0.1:4321/"
    }

    #[test]
    fn pasted_url_with_the_right_state_gives_the_code() {
        let cb = check_pasted("http://127.0.0.1:4321/?code=C&state=S&iss=x", uri(), "S").unwrap();
        assert_eq!(cb, Callback::Code("C".into()));
    }

    #[test]
    fn pasted_garbage_wrong_place_and_wrong_state_are_bad_input() {
        for (text, needle) in [
            ("", "nothing was pasted"),
            ("not a url", "not a URL"),
            ("http://127.0.0.1:9999/?code=C&state=S", "does not lead to"),
            (
                "https://accounts.google.com/o/oauth2/v2/auth?state=S",
                "does not lead to",
            ),
            ("http://127.0.0.1:4321/?code=C&state=T", "does not match"),
        ] {
            let e = check_pasted(text, uri(), "S").unwrap_err();
            assert_eq!(e.code, crate::error::ExitCode::DataErr, "{text}");
            assert!(e.message.contains(needle), "{text}: {e}");
        }
    }
}
