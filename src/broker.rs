//! The Broker: the one place where tokens are handed out, refreshed and stored. The
//! daemonless CLI uses it in-process; the daemon will hold one in memory. Its rules:
//! never hand out a token with less validity than asked, never refresh an account twice
//! at once (a per-account lock across processes), and store a rotated refresh token
//! before anyone sees the new access token.

use crate::config::{Account, Config};
use crate::error::{Error, Result};
use crate::lock;
use crate::oauth::{OAuthClient, TokenGrant};
use crate::record::{self, LastError, TokenRecord};
use crate::store::{self, TokenStore};
use std::time::Duration;

pub struct Broker {
    pub config: Config,
    store: Box<dyn TokenStore>,
    /// A one-line notice about the store choice (the file fallback), for people.
    pub store_notice: Option<String>,
}

impl Broker {
    pub fn open(config: Config) -> Result<Broker> {
        let opened = store::open(&config.store)?;
        Ok(Broker {
            config,
            store: opened.store,
            store_notice: opened.notice,
        })
    }

    pub fn store(&self) -> &dyn TokenStore {
        self.store.as_ref()
    }

    pub fn account(&self, name: &str) -> Result<&Account> {
        self.config.account(name)
    }

    pub fn load(&self, account: &Account) -> Result<Option<TokenRecord>> {
        self.store.load(&account.name)
    }

    /// How long to wait for another process's refresh or login save: longer than one
    /// token request can take, so a waiter never gives up on a refresh that will succeed.
    fn lock_timeout(&self) -> Duration {
        self.config.timeout * 2 + Duration::from_secs(5)
    }

    /// A record whose access token stays valid for `min_valid` (or half its lifetime),
    /// refreshing first if needed.
    pub fn access_token(&self, account: &Account, min_valid: Duration) -> Result<TokenRecord> {
        let rec = self
            .load(account)?
            .ok_or_else(|| not_logged_in(account, &*self.store))?;
        if rec.usable_access_token(record::now(), min_valid).is_some() {
            return Ok(rec);
        }
        if rec.refresh_token.is_none() {
            return Err(no_refresh_token(account));
        }
        let _guard = lock::acquire(&account.name, self.lock_timeout())?;
        // Whoever held the lock before us may have refreshed already.
        let rec = self
            .load(account)?
            .ok_or_else(|| not_logged_in(account, &*self.store))?;
        if rec.usable_access_token(record::now(), min_valid).is_some() {
            return Ok(rec);
        }
        self.refresh_locked(account, rec)
    }

    /// Refreshes now (the daemon's refresh-ahead), unless another process stored a newer
    /// access token than the one obtained at `seen_obtained_at` meanwhile.
    pub fn refresh_unless_newer(
        &self,
        account: &Account,
        seen_obtained_at: u64,
    ) -> Result<TokenRecord> {
        let _guard = lock::acquire(&account.name, self.lock_timeout())?;
        let rec = self
            .load(account)?
            .ok_or_else(|| not_logged_in(account, &*self.store))?;
        if rec.obtained_at > seen_obtained_at && rec.access_token.is_some() && !rec.needs_login() {
            return Ok(rec);
        }
        self.refresh_locked(account, rec)
    }

    /// Refreshes `rec` (the caller holds the account lock) and stores the result.
    fn refresh_locked(&self, account: &Account, mut rec: TokenRecord) -> Result<TokenRecord> {
        let Some(rt) = rec.refresh_token.clone() else {
            return Err(no_refresh_token(account));
        };
        let result = runtime()?.block_on(async {
            let client = OAuthClient::new(account, self.config.timeout)?;
            client.refresh(&rt).await
        });
        match result {
            Ok(grant) => {
                apply_grant(&mut rec, grant, false);
                rec.refreshed_at = Some(record::now());
                rec.last_error = None;
                // Stored before it is printed: a rotated refresh token must never exist
                // only in a pipe to a mail program.
                self.store.save(&account.name, &rec)?;
                Ok(rec)
            }
            Err(e) => {
                let kind = if e.code == crate::error::ExitCode::NoPerm {
                    "invalid_grant"
                } else {
                    "temporary"
                };
                rec.last_error = Some(LastError {
                    at: record::now(),
                    kind: kind.into(),
                    message: e.message.clone(),
                });
                // Best effort: the refresh error is what the user needs to see, and the
                // stored tokens are untouched but for this note.
                let _ = self.store.save(&account.name, &rec);
                Err(e)
            }
        }
    }

    /// Stores what a login obtained, keeping a previous refresh token when the provider
    /// sent none this time (Google does so when consent was not prompted).
    pub fn save_login(
        &self,
        account: &Account,
        grant: TokenGrant,
    ) -> Result<(TokenRecord, LoginNotes)> {
        let _guard = lock::acquire(&account.name, self.lock_timeout())?;
        let old = self.load(account).ok().flatten();
        let got_refresh_token = grant.refresh_token.is_some();
        let mut rec = TokenRecord::default();
        let requested = account.oauth()?.scopes.clone();
        apply_grant(&mut rec, grant, true);
        if rec.scopes.is_empty() {
            rec.scopes = requested;
        }
        let mut kept_old_refresh_token = false;
        if rec.refresh_token.is_none()
            && let Some(old_rt) = old.and_then(|o| o.refresh_token)
        {
            rec.refresh_token = Some(old_rt);
            kept_old_refresh_token = true;
        }
        rec.logged_in_at = record::now();
        self.store.save(&account.name, &rec)?;
        Ok((
            rec,
            LoginNotes {
                got_refresh_token,
                kept_old_refresh_token,
            },
        ))
    }

    /// Revokes the refresh token at the provider (when it has an endpoint) and forgets
    /// the account. Returns whether anything was stored, and a revocation warning.
    pub fn logout(&self, account: &Account) -> Result<(bool, Option<Error>)> {
        let _guard = lock::acquire(&account.name, self.lock_timeout())?;
        let Some(rec) = self.load(account)? else {
            return Ok((false, None));
        };
        let mut warning = None;
        if account.oauth()?.revoke_url.is_some() {
            let target = match (&rec.refresh_token, &rec.access_token) {
                (Some(rt), _) => Some((rt.clone(), "refresh_token")),
                (None, Some(at)) => Some((at.clone(), "access_token")),
                _ => None,
            };
            if let Some((token, hint)) = target {
                let r = runtime()?.block_on(async {
                    OAuthClient::new(account, self.config.timeout)?
                        .revoke(&token, hint)
                        .await
                });
                warning = r.err();
            }
        }
        let existed = self.store.delete(&account.name)?;
        Ok((existed, warning))
    }
}

pub struct LoginNotes {
    pub got_refresh_token: bool,
    pub kept_old_refresh_token: bool,
}

fn apply_grant(rec: &mut TokenRecord, grant: TokenGrant, login: bool) {
    let now = record::now();
    rec.set_access_token(grant.access_token, grant.expires_in, now);
    // Rotation (Microsoft, oidc-provider's public clients): the new refresh token
    // replaces the old one, which is now dead.
    if let Some(rt) = grant.refresh_token {
        rec.refresh_token = Some(rt);
    } else if login {
        rec.refresh_token = None;
    }
    if let Some(s) = grant.scopes {
        rec.scopes = s;
    }
}

/// A current-thread runtime: the network is needed only on refresh and login, and a
/// mail program's password command must not pay for more threads than it uses.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::software(format!("cannot start the async runtime: {e}")))
}

fn not_logged_in(account: &Account, store: &dyn TokenStore) -> Error {
    Error::noperm(format!(
        "no token for {} in the {} yet",
        account.name,
        store.describe()
    ))
    .with_remedy(format!(
        "Run `mailtoken login {}` once to log in.",
        account.name
    ))
}

fn no_refresh_token(account: &Account) -> Error {
    Error::noperm(format!(
        "the access token for {} has expired, and the provider gave no refresh token at login, so it cannot be renewed",
        account.name
    ))
    .with_remedy(format!(
        "Run `mailtoken login {}`.{}",
        account.name,
        missing_refresh_token_hint(account)
    ))
}

/// What makes the provider issue a refresh token, for a login that got none.
pub fn missing_refresh_token_hint(account: &Account) -> String {
    let Ok(o) = account.oauth() else {
        return String::new();
    };
    let has = |k: &str, v: &str| o.auth_params.iter().any(|(pk, pv)| pk == k && pv == v);
    if account.provider.is_some_and(|p| p.name == "google") {
        if has("access_type", "offline") && has("prompt", "consent") {
            " Google sends a refresh token only with access_type=offline and prompt=consent, which mailtoken sends; check that auth_params does not override them.".into()
        } else {
            " Google sends a refresh token only with access_type=offline and prompt=consent: remove the auth_params that override them.".into()
        }
    } else if !o.scopes.iter().any(|s| s == "offline_access") {
        " Most providers issue a refresh token only for the `offline_access` scope: add it to `scopes`.".into()
    } else {
        String::new()
    }
}
