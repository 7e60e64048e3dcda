//! `mailtoken status`: one row per account (kind, token state, expiry, last refresh,
//! last error, where the tokens are), built from the account's state by the daemon or
//! by this process alike, and its text for people or JSON for programs.

use crate::config::Account;
use crate::error::{Error, Result};
use crate::record::{Now, TokenRecord};
use crate::state::AccountState;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

#[derive(Serialize, Deserialize, Debug)]
pub struct Row {
    pub account: String,
    pub provider: Option<String>,
    pub user: String,
    /// oauth | app (client credentials or a service account) | password
    pub kind: String,
    /// none | valid | expired | needs_login | error; app passwords: none | stored | error
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
    pub expiry_assumed: bool,
    pub has_refresh_token: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logged_in_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refreshed_at: Option<u64>,
    /// The last failure and when it happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<u64>,
    /// Backing off after a failure: the next refresh is not sent before this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<u64>,
    /// The store refused the current tokens: what is wrong and where they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsaved: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub login_pending: bool,
    pub store: String,
    /// OAuth: Microsoft's tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// OAuth: the redirect URI a browser login uses, and what listens there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<String>,
    /// OAuth: where tokens are asked for...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// ...and how: `direct ...` or `the HTTP proxy URL (from SOURCE)`, never credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// The account's relays and who may use them; a relay without a login says so.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relays: Vec<String>,
    /// OAuth: whether `login --device` can be used, and if not, why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_login: Option<String>,
    /// Answered by the daemon (its memory), not read from the store by this process.
    #[serde(default)]
    pub daemon: bool,
}

impl Row {
    fn blank(a: &Account, kind: &str, store: &str) -> Row {
        Row {
            account: a.name.clone(),
            provider: a.provider.map(|p| p.name.to_owned()),
            user: a.user.clone(),
            kind: kind.to_owned(),
            state: "none".into(),
            expires_at: None,
            expires_in: None,
            expiry_assumed: false,
            has_refresh_token: false,
            logged_in_at: None,
            refreshed_at: None,
            last_error: None,
            last_error_at: None,
            next_attempt_at: None,
            unsaved: None,
            login_pending: false,
            store: store.to_owned(),
            tenant: None,
            relays: relays(a),
            token_endpoint: None,
            proxy: None,
            redirect: None,
            device_login: None,
            daemon: false,
        }
    }

    /// How this OAuth account logs in: tenant, redirect, device flow.
    fn login_ways(&mut self, a: &Account) {
        let Ok(o) = a.oauth() else { return };
        self.tenant = o.tenant.clone();
        self.token_endpoint = Some(o.token_url.to_string());
        self.proxy = Some(match crate::oauth::token_route(a) {
            Ok(r) => r.shown(),
            Err(e) => e.message,
        });
        if o.app_only() {
            return;
        }
        self.redirect = Some(o.redirect.describe());
        self.device_login = Some(
            match (a.provider.and_then(|p| p.no_device_flow), &o.device_url) {
                (Some(_), _) => format!(
                    "no: {} does not allow it for mail (see `mailtoken providers {}`)",
                    a.provider.map_or("the provider", |p| p.title),
                    a.provider.map_or("", |p| p.name)
                ),
                (None, Some(u)) => format!("yes, `mailtoken login {} --device` ({u})", a.name),
                (None, None) => "no device_url is set".to_owned(),
            },
        );
    }

    /// The row of an OAuth account in `state`; `rescued` is where this process found
    /// tokens the store did not take (the daemon's state says so itself).
    pub fn oauth(
        a: &Account,
        state: &AccountState,
        now: impl Into<Now>,
        store: &str,
        rescued: Option<&Path>,
    ) -> Row {
        let now = now.into();
        let kind = if a.app_only() { "app" } else { "oauth" };
        let mut row = Row::blank(a, kind, store);
        row.login_ways(a);
        if let Some(r) = state.record() {
            row.fill(r, &now);
        }
        if state.needs_login() {
            row.state = "needs_login".into();
        }
        if let Some(f) = state.failure() {
            row.last_error = Some(format!("{} ({})", f.error.message, time(f.at)));
            row.last_error_at = Some(f.at);
        }
        row.next_attempt_at = state.retry_at();
        row.login_pending = state.login_pending(now.wall);
        row.unsaved = match (state.unsaved(), rescued) {
            (Some(u), _) => Some(u.error.to_string()),
            (None, Some(p)) => Some(format!(
                "the store did not take the last refresh's tokens; they are kept in {} (mode 0600) until it does",
                p.display()
            )),
            (None, None) => None,
        };
        row
    }

    /// The row of an account whose store could not be read.
    pub fn unreadable(a: &Account, e: &Error, store: &str) -> Row {
        let mut row = Row::blank(a, "oauth", store);
        row.state = "error".into();
        row.last_error = Some(e.to_string());
        row
    }

    /// The row of an app-password account: whether the keyring holds its password,
    /// and under which attributes.
    pub fn password(a: &Account) -> Row {
        let found = crate::password::stored(a);
        let mut row = Row::blank(a, "password", &found.store);
        match found.stored {
            Ok(true) => row.state = "stored".into(),
            Ok(false) => {}
            Err(e) => {
                row.state = "error".into();
                row.last_error = Some(e.to_string());
            }
        }
        row
    }

    fn fill(&mut self, r: &TokenRecord, now: &Now) {
        self.state = match &r.access_token {
            // An app-only account before its first token.
            None if r.app_only && r.last_error.is_none() => "none",
            Some(_) if r.remaining(now.clone()) > 0 => "valid",
            _ => "expired",
        }
        .into();
        // On the clock as it reads now (it may have been set back since).
        self.expires_at = r.expires_at_on(now);
        self.expires_in = self.expires_at.map(|e| e as i64 - now.wall as i64);
        self.expiry_assumed = r.expiry_assumed;
        self.has_refresh_token = r.refresh_token.is_some();
        self.logged_in_at = (r.logged_in_at > 0).then_some(r.logged_in_at);
        self.refreshed_at = r.refreshed_at;
    }
}

/// `SMTP relay on 127.0.0.1:2587, login with the relay password`, or the warning for
/// one anyone on the machine may use.
fn relays(a: &Account) -> Vec<String> {
    let Some(r) = &a.relay else {
        return Vec::new();
    };
    [("SMTP", &r.smtp), ("IMAP", &r.imap), ("POP3", &r.pop)]
        .into_iter()
        .filter_map(|(p, l)| l.as_ref().map(|l| (p, l)))
        .map(|(p, l)| match &r.access {
            crate::relay::Access::Password => format!(
                "{p} on {l}, login {} with the relay password (`mailtoken relay-password {}`)",
                a.user, a.name
            ),
            crate::relay::Access::Users(uids) => format!(
                "{p} on {l}, without a login for the local users {uids:?} (and no one else)"
            ),
            crate::relay::Access::Anyone => format!(
                "{p} on {l}, WITHOUT a login: anyone on this machine can {} as {}",
                if p == "SMTP" {
                    "send"
                } else {
                    "read the mail of"
                },
                a.user
            ),
        })
        .collect()
}

/// The rows as `status` prints them: text for people, or JSON.
pub fn text(rows: &[Row], json: bool, config: Option<&Path>) -> Result<String> {
    Ok(if json {
        serde_json::to_string_pretty(rows).map_err(|e| Error::software(e.to_string()))? + "\n"
    } else if rows.is_empty() {
        match config {
            Some(p) => format!("No accounts in {}.\n", p.display()),
            None => "No accounts.\n".to_owned(),
        }
    } else {
        rows.iter().map(render).collect::<Vec<_>>().join("\n")
    })
}

fn time(t: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t)).to_string()
}

/// `  label:  value`, continuation lines indented under the value.
fn line(s: &mut String, label: &str, value: &str) {
    let label = format!("{label}:");
    s.push_str(&format!(
        "  {label:<14} {}\n",
        value.replace('\n', "\n                 ")
    ));
}

fn render(r: &Row) -> String {
    let mut s = format!(
        "{} ({}{})\n",
        r.account,
        r.user,
        r.provider
            .as_deref()
            .map(|p| format!(", {p}"))
            .unwrap_or_default()
    );
    let store = format!(
        "{}{}",
        r.store,
        if r.daemon {
            " (answered by the daemon)"
        } else {
            ""
        }
    );
    if r.kind == "password" {
        let pw = match r.state.as_str() {
            "stored" => "stored".to_owned(),
            "error" => "unknown (the keyring could not be read)".to_owned(),
            _ => format!("none; run `mailtoken set-password {}`", r.account),
        };
        line(&mut s, "app password", &pw);
        if let Some(e) = &r.last_error {
            line(&mut s, "last error", e);
        }
        line(&mut s, "store", &store);
        return s;
    }
    let app = r.kind == "app";
    let token = match (r.state.as_str(), r.expires_in) {
        ("none", _) if app => format!(
            "none yet; `mailtoken token {}` asks for one with the app's credentials",
            r.account
        ),
        ("none", _) => format!("none; run `mailtoken login {}`", r.account),
        ("error", _) => "unknown (the store could not be read)".to_owned(),
        (_, Some(left)) if left > 0 => format!(
            "valid for {} (until {}){}",
            humantime::format_duration(Duration::from_secs(left as u64)),
            time(r.expires_at.unwrap_or(0)),
            if r.expiry_assumed {
                ", expiry assumed: the provider sent no expires_in"
            } else {
                ""
            }
        ),
        _ => format!(
            "expired{}",
            if (r.has_refresh_token || app) && r.state != "needs_login" {
                "; the next `token` call refreshes it"
            } else {
                ""
            }
        ),
    };
    line(&mut s, "access token", &token);
    if app {
        line(
            &mut s,
            "grant",
            "app-only: each token is asked for with the app's own credentials, no login and no refresh token",
        );
    } else if r.state != "none" && r.state != "error" {
        line(
            &mut s,
            "refresh token",
            if r.has_refresh_token {
                "stored"
            } else {
                "none (the provider issued none; log in again when the access token expires)"
            },
        );
    }
    if let Some(t) = r.logged_in_at {
        line(&mut s, "logged in", &time(t));
    }
    if let Some(t) = r.refreshed_at {
        line(&mut s, "last refresh", &time(t));
    }
    if let Some(e) = &r.last_error {
        line(&mut s, "last error", e);
    }
    if let Some(t) = r.next_attempt_at {
        line(&mut s, "next attempt", &time(t));
    }
    if let Some(u) = &r.unsaved {
        line(&mut s, "not stored", u);
    }
    if r.login_pending {
        line(&mut s, "login", "in progress");
    }
    if r.state == "needs_login" {
        line(
            &mut s,
            "action",
            &format!("run `mailtoken login {}`", r.account),
        );
    }
    if let Some(t) = &r.tenant {
        line(&mut s, "tenant", t);
    }
    if let (Some(u), Some(p)) = (&r.token_endpoint, &r.proxy) {
        line(&mut s, "token requests", &format!("{u}, {p}"));
    }
    if let Some(u) = &r.redirect {
        line(&mut s, "redirect", u);
    }
    if let Some(d) = &r.device_login {
        line(&mut s, "device login", d);
    }
    for relay in &r.relays {
        line(&mut s, "relay", relay);
    }
    line(&mut s, "store", &store);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{FailureKind, LastError};
    use crate::secret::Secret;
    use crate::state::{RefreshError, Refreshed};

    fn account() -> Account {
        crate::config::test_account(crate::config::TEST_GOOGLE)
    }

    fn rec() -> TokenRecord {
        TokenRecord {
            access_token: Some(Secret::new("TOK")),
            refresh_token: Some(Secret::new("RT")),
            expires_at: Some(2000),
            obtained_at: 1000,
            ..Default::default()
        }
    }

    #[test]
    fn status_shows_assumed_expiry_and_needs_login() {
        let a = account();
        let mut r = rec();
        r.expiry_assumed = true;
        let row = Row::oauth(
            &a,
            &AccountState::from_record(Some(r.clone())),
            1500,
            "file x",
            None,
        );
        assert_eq!(row.state, "valid");
        assert!(render(&row).contains("expiry assumed"), "{}", render(&row));
        r.last_error = Some(LastError {
            at: 1600,
            kind: FailureKind::Rejected,
            message: "rejected".into(),
            remedy: None,
            failures: 1,
        });
        let row = Row::oauth(
            &a,
            &AccountState::from_record(Some(r)),
            1700,
            "file x",
            None,
        );
        assert_eq!(row.state, "needs_login");
        let text = render(&row);
        assert!(text.contains("run `mailtoken login a`"), "{text}");
        assert!(text.contains("rejected (1970-01-01T00:26:40Z)"), "{text}");
        let row = Row::oauth(&a, &AccountState::from_record(None), 1700, "file x", None);
        assert_eq!(row.state, "none");
    }

    #[test]
    fn the_last_error_keeps_the_time_it_happened() {
        let a = account();
        let mut s = AccountState::from_record(Some(rec()));
        s.begin_refresh(1);
        s.finish_refresh(
            1,
            Err(RefreshError::Failed(
                FailureKind::Temporary,
                Error::temp("HTTP 503"),
            )),
            1900,
            0.5,
        );
        // Asked much later, the row still says when the failure was.
        let row = Row::oauth(&a, &s, 5000, "file x", None);
        assert_eq!(row.last_error_at, Some(1900));
        assert_eq!(
            row.last_error.as_deref(),
            Some("HTTP 503 (1970-01-01T00:31:40Z)")
        );
        assert_eq!(row.next_attempt_at, Some(1905));
    }

    #[test]
    fn tokens_the_store_refused_are_shown_with_where_they_are() {
        let a = account();
        let mut s = AccountState::from_record(Some(rec()));
        s.begin_refresh(1);
        s.finish_refresh(
            1,
            Ok(Refreshed {
                record: rec(),
                unsaved: Some(Error::noperm("the keyring is locked").with_remedy("Unlock it.")),
            }),
            1000,
            0.5,
        );
        let text = render(&Row::oauth(&a, &s, 1001, "keyring", None));
        assert!(
            text.contains("not stored:    the keyring is locked"),
            "{text}"
        );
        let p = Path::new("/s/rescue/a.json");
        let row = Row::oauth(
            &a,
            &AccountState::from_record(Some(rec())),
            1001,
            "keyring",
            Some(p),
        );
        assert!(row.unsaved.unwrap().contains("/s/rescue/a.json"));
    }
}
