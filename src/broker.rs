//! The Broker: an account's tokens in the store, refreshed under the per-account lock.
//! The daemonless path hands tokens out through it, and the daemon refreshes and saves
//! through it, so the refresh exists once. Its rules:
//! - never hand out a token with less validity than asked (the decision is the state
//!   machine's, `state.rs`, fed with the stored record);
//! - never refresh an account twice at once: a refresh runs under the account's file
//!   lock, and whoever gets the lock second finds the first one's result in the store;
//! - a rotated refresh token is kept before anyone sees the new access token: in the
//!   store, or, when the store refuses it, in the rescue record (`store/rescue.rs`).

use crate::config::{Account, Config};
use crate::error::{Error, Result};
use crate::lock;
use crate::oauth::{OAuthClient, TokenError, TokenGrant};
use crate::record::{self, FailureKind, Now, TokenRecord};
use crate::secret::Secret;
use crate::state::{AccountState, Decision, Failure, RefreshError, RefreshOutcome, Refreshed};
use crate::store::rescue::Rescue;
use crate::store::{self, TokenStore};
use std::time::Duration;

pub struct Broker {
    pub config: Config,
    store: Box<dyn TokenStore>,
    rescue: Rescue,
    /// A one-line notice about the store choice (the file fallback), for people.
    pub store_notice: Option<String>,
    /// Refreshes run in a worker started from this executable (`worker.rs`), which
    /// outlives a caller that stops waiting; `None`: here (the daemon).
    worker: Option<std::path::PathBuf>,
    /// Whether a sent refresh waits `oauth::patience` for its answer (the daemon, the
    /// refresh worker: each outlives its callers' timeout), or only `timeout`.
    patient: bool,
    /// Called once a refresh's token request is over (answered or failed), before
    /// the outcome is stored (the worker tells its caller so).
    answered: Option<fn()>,
}

/// A token handed out, and what the user should know about the store when it did not
/// take the tokens (they are kept elsewhere; nothing is lost).
pub struct Served {
    pub record: TokenRecord,
    pub warning: Option<Error>,
}

impl Broker {
    pub fn open(config: Config) -> Result<Broker> {
        let opened = store::open(&config.store)?;
        Ok(Broker {
            config,
            store: opened.store,
            rescue: Rescue::new(),
            store_notice: opened.notice,
            worker: None,
            patient: false,
            answered: None,
        })
    }

    pub fn store(&self) -> &dyn TokenStore {
        self.store.as_ref()
    }

    pub fn account(&self, name: &str) -> Result<&Account> {
        self.config.account(name)
    }

    /// The account's record: the stored one, or a rescued one that is newer (the
    /// store refused the last refresh's tokens). A store that cannot be read now does
    /// not hide a rescued record.
    pub fn load(&self, account: &Account) -> Result<Option<TokenRecord>> {
        // The rescued record first: a process whose save the store takes removes it
        // after, so a store read second has that save if the rescue read missed it.
        let rescued = self.rescue.load(&account.name);
        self.merge(account, self.store.load(&account.name), rescued)
    }

    /// `load` for several accounts, with one read of a store that can do it in one
    /// (`TokenStore::load_each`): the daemon's start.
    pub fn load_each(&self, accounts: &[&Account]) -> Vec<Result<Option<TokenRecord>>> {
        let rescued: Vec<_> = accounts.iter().map(|a| self.rescue.load(&a.name)).collect();
        let names: Vec<&str> = accounts.iter().map(|a| a.name.as_str()).collect();
        let stored = self.store.load_each(&names);
        accounts
            .iter()
            .zip(stored)
            .zip(rescued)
            .map(|((a, s), r)| self.merge(a, s, r))
            .collect()
    }

    /// The stored record (or the store's error) with the rescued one, as `load` says.
    fn merge(
        &self,
        account: &Account,
        stored: Result<Option<TokenRecord>>,
        rescued: Option<(TokenRecord, std::path::PathBuf)>,
    ) -> Result<Option<TokenRecord>> {
        let stored = match stored {
            Ok(s) => s,
            Err(e) => return rescued.map(|(r, _)| Some(r)).ok_or(e),
        };
        // Every write the store takes removes the rescued record, so one that is still
        // there is the newer one; a stored record obtained later wins all the same (the
        // rescued one was left behind by a removal that failed).
        let record = match (stored, rescued) {
            (Some(s), Some((r, _))) if r.obtained_at < s.obtained_at => Some(s),
            (_, Some((r, _))) => Some(r),
            (s, None) => s,
        };
        // An app-only account is never "not logged in": with nothing stored yet, its
        // first token is one request away.
        Ok(match record {
            None if account.app_only() => Some(TokenRecord {
                app_only: true,
                ..TokenRecord::default()
            }),
            r => r,
        })
    }

    /// Where the account's tokens are when the store does not have them.
    pub fn rescued_at(&self, account: &Account) -> Option<std::path::PathBuf> {
        let (r, path) = self.rescue.load(&account.name)?;
        match self.store.load(&account.name) {
            Ok(Some(s)) if r.obtained_at < s.obtained_at => None,
            _ => Some(path),
        }
    }

    /// From now on, refreshes (`access_token`'s, `refresh_unless_replaced`'s) run in a
    /// worker started from `exe` (mailtoken-core: `worker::serve`), which waits for a
    /// sent request's answer after this process has had to give up on it.
    pub fn refresh_in_worker(&mut self, exe: std::path::PathBuf) {
        self.worker = Some(exe);
    }

    /// From now on a sent refresh waits `oauth::patience` for its answer, since its
    /// caller is not held meanwhile (the daemon's callers give up on their own; the
    /// worker has none to hold).
    pub fn wait_for_answers(&mut self) {
        self.patient = true;
    }

    /// `f` is called whenever a refresh's token request is over, before the outcome is
    /// stored.
    pub fn on_answer(&mut self, f: fn()) {
        self.answered = Some(f);
    }

    /// How long to wait for another process's refresh or login save: longer than one
    /// token request can take (a sent refresh may wait `oauth::patience` for its
    /// answer), so a waiter never gives up on a refresh that will succeed.
    fn lock_timeout(&self) -> Duration {
        crate::oauth::patience(self.config.timeout) + self.config.timeout + Duration::from_secs(5)
    }

    /// The daemonless path: a record whose access token stays valid for `min_valid`
    /// (or half its lifetime), refreshing first when the account's state allows it.
    pub fn access_token(&self, account: &Account, min_valid: Duration) -> Result<Served> {
        let state = AccountState::from_record(self.load(account)?);
        if let Some(record) = self.decide(account, &state, min_valid)? {
            return Ok(Served::from(record));
        }
        // A caller is answered within `timeout` (and a second): a refresh in another
        // process that waits longer for its answer (`oauth::patience`) keeps it by
        // itself, and this caller is told to try again.
        let guard = lock::acquire(&account.name, self.config.timeout + Duration::from_secs(1))?;
        // Whoever held the lock before us may have refreshed already, or failed (then
        // its failure's backoff applies to us too).
        let record = self.load(account)?;
        let state = AccountState::from_record(record.clone());
        if let Some(record) = self.decide(account, &state, min_valid)? {
            return Ok(Served::from(record));
        }
        let record = record
            .ok_or_else(|| Error::software("a refresh was decided with no record to refresh"))?;
        self.refresh_here_or_in_worker(account, record, &guard)
            .map(Served::from)
            .map_err(RefreshError::into_error)
    }

    /// `Some(record)` to serve, `None` to refresh, or the error that blocks both.
    fn decide(
        &self,
        account: &Account,
        state: &AccountState,
        min_valid: Duration,
    ) -> Result<Option<TokenRecord>> {
        if matches!(state, AccountState::NoToken) {
            return Err(not_logged_in(account, &*self.store));
        }
        match state.decide(Now::current(), min_valid, &account.name) {
            Decision::Serve(r) => Ok(Some(r)),
            Decision::Blocked { error, .. } => Err(error),
            // A stored record is never `Refreshing` (the file lock is that state here).
            Decision::Refresh | Decision::AwaitRefresh | Decision::Load => Ok(None),
        }
    }

    /// One refresh under the account lock (the daemon's, and `verify`'s after a server
    /// refused a token), unless the stored access token is no longer `seen`: then
    /// another process has refreshed meanwhile, and its record is the answer.
    pub fn refresh_unless_replaced(
        &self,
        account: &Account,
        seen: Option<&Secret>,
    ) -> RefreshOutcome {
        let guard = lock::acquire(&account.name, self.lock_timeout())
            .map_err(|e| RefreshError::Failed(FailureKind::Temporary, e))?;
        let record = self
            .load(account)
            .map_err(|e| RefreshError::Failed(FailureKind::Store, e))?
            .ok_or_else(|| RefreshError::NotLoggedIn(not_logged_in(account, &*self.store)))?;
        if let Some(f) = record.last_error.as_ref().filter(|e| e.kind.needs_login()) {
            // Another process was told the grant is dead: asking again cannot help.
            return Err(RefreshError::Failed(
                f.kind,
                Failure::from_last_error(f).error,
            ));
        }
        if record.access_token.is_some() && record.access_token.as_ref() != seen {
            return Ok(Refreshed {
                record,
                unsaved: None,
            });
        }
        self.refresh_here_or_in_worker(account, record, &guard)
    }

    /// `refresh_locked`, in a worker when this Broker hands refreshes to one (and one
    /// can be started), else here.
    fn refresh_here_or_in_worker(
        &self,
        account: &Account,
        record: TokenRecord,
        guard: &lock::AccountLock,
    ) -> RefreshOutcome {
        let timeout = self.config.timeout;
        self.worker
            .as_deref()
            .and_then(|exe| {
                let store = self.store.describe();
                crate::worker::refresh(exe, &account.name, &record, guard, timeout, &store)
            })
            .unwrap_or_else(|| self.refresh_locked(account, record))
    }

    /// Refreshes `rec` (the caller holds the account lock) and keeps the result.
    pub(crate) fn refresh_locked(&self, account: &Account, mut rec: TokenRecord) -> RefreshOutcome {
        let app_only = account.app_only();
        // An app-only account asks with its own credentials even if an old record of a
        // person's login still holds a refresh token.
        let rt = match rec.refresh_token.clone() {
            _ if app_only => None,
            Some(rt) => Some(rt),
            None => {
                return Err(RefreshError::Failed(
                    FailureKind::NoRefreshToken,
                    no_refresh_token(account),
                ));
            }
        };
        // The token's life is counted from before it was asked for: it cannot have
        // begun earlier, so the record never credits it with more than it has.
        let asked = Now::current();
        let result = runtime()
            .map_err(|error| TokenError {
                kind: FailureKind::Temporary,
                error,
            })
            .and_then(|rt_| {
                rt_.block_on(async {
                    let timeout = self.config.timeout;
                    // A sent refresh waits long for its answer, which may hold the only
                    // copy of a rotated refresh token; an app-only request spends
                    // nothing, and is simply asked again.
                    let client = match rt {
                        Some(_) if self.patient => OAuthClient::refreshing(account, timeout),
                        _ => OAuthClient::new(account, timeout),
                    }
                    .map_err(|error| {
                        // The client secret command failed, or ca_file is unreadable.
                        TokenError {
                            kind: FailureKind::Config,
                            error,
                        }
                    })?;
                    match &rt {
                        Some(rt) => client.refresh(rt).await,
                        // The app's own credentials: nothing to refresh, a new one is
                        // simply asked for.
                        None => client.app_token().await,
                    }
                })
            });
        let now = record::now();
        if let Some(f) = self.answered {
            f();
        }
        match result {
            Ok(grant) => {
                apply_grant(&mut rec, grant, false, asked);
                rec.app_only = app_only;
                rec.refreshed_at = Some(now);
                rec.last_error = None;
                // Kept before it is handed out: a rotated refresh token must never exist
                // only in a pipe to a mail program.
                let unsaved = self.keep(account, &rec).err();
                Ok(Refreshed {
                    record: rec,
                    unsaved,
                })
            }
            Err(TokenError { kind, error }) => {
                let failures = rec
                    .last_error
                    .as_ref()
                    .filter(|e| e.kind == kind)
                    .map_or(0, |e| e.failures)
                    .saturating_add(1);
                rec.last_error =
                    Some(Failure::new(kind, error.clone(), now, failures).to_last_error());
                // Best effort, and never into the rescue record: the refresh error is
                // what the user needs to see, and the tokens are the ones kept already.
                if self.store.save(&account.name, &rec).is_ok() {
                    self.rescue.remove(&account.name);
                }
                Err(RefreshError::Failed(kind, error))
            }
        }
    }

    /// Saves `rec` in the store; when the store refuses, in the rescue record. The
    /// error says what is wrong with the store, where the tokens are, and what to do.
    fn keep(&self, account: &Account, rec: &TokenRecord) -> Result<()> {
        let refused = match self.store.save(&account.name, rec) {
            Ok(()) => {
                self.rescue.remove(&account.name);
                return Ok(());
            }
            Err(e) => e,
        };
        let kept = match self.rescue.save(&account.name, rec) {
            Ok(path) => format!(
                "They are kept in {} (mode 0600) until the {} takes them: nothing is lost, and there is no need to log in again.",
                path.display(),
                self.store.describe()
            ),
            Err(e) => format!(
                "They could not be kept elsewhere either ({}): until the store works again they live only in this process.",
                e.message
            ),
        };
        let mut error = Error::new(
            refused.code,
            format!(
                "the new tokens of {} could not be saved in the {}: {}",
                account.name,
                self.store.describe(),
                refused.message
            ),
        );
        error.remedy = Some(match refused.remedy {
            Some(r) => format!("{kept}\n{r}"),
            None => kept,
        });
        Err(error)
    }

    /// Saves tokens that the store refused before (the daemon's retry), unless the
    /// store has newer ones by now.
    pub fn persist(&self, account: &Account, rec: &TokenRecord) -> Result<()> {
        let _guard = lock::acquire(&account.name, self.lock_timeout())?;
        if let Ok(Some(stored)) = self.store.load(&account.name)
            && (stored.access_token == rec.access_token || stored.obtained_at > rec.obtained_at)
        {
            self.rescue.remove(&account.name);
            return Ok(());
        }
        self.keep(account, rec)
    }

    /// Stores what a login obtained (asked for at `asked`: its life is counted from
    /// then), keeping a previous refresh token when the provider sent none this time
    /// (Google does so when consent was not prompted).
    pub fn save_login(
        &self,
        account: &Account,
        grant: TokenGrant,
        asked: Now,
    ) -> Result<(TokenRecord, LoginNotes)> {
        let _guard = lock::acquire(&account.name, self.lock_timeout())?;
        let old = self.load(account).ok().flatten();
        let got_refresh_token = grant.refresh_token.is_some();
        let mut rec = TokenRecord::default();
        let requested = account.oauth()?.scopes.clone();
        apply_grant(&mut rec, grant, true, asked);
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
        // A login supersedes whatever a refresh had to keep aside.
        self.rescue.remove(&account.name);
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
        self.rescue.remove(&account.name);
        Ok((existed, warning))
    }
}

impl From<TokenRecord> for Served {
    fn from(record: TokenRecord) -> Served {
        Served {
            record,
            warning: None,
        }
    }
}

impl From<Refreshed> for Served {
    fn from(r: Refreshed) -> Served {
        Served {
            record: r.record,
            warning: r.unsaved,
        }
    }
}

pub struct LoginNotes {
    pub got_refresh_token: bool,
    pub kept_old_refresh_token: bool,
}

fn apply_grant(rec: &mut TokenRecord, grant: TokenGrant, login: bool, now: Now) {
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
