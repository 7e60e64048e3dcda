//! Each account's state as one explicit machine, shared by the daemon (which keeps it in
//! memory between requests) and the daemonless CLI (which rebuilds it from the stored
//! record on every call): what may be handed out now, whether a refresh may be sent,
//! when the next one is due, and what a refresh's outcome changes.
//!
//! Pure: the clocks ([`Now`]: wall-clock seconds, and the boot clock that shows when the
//! wall clock was set back) and the jitter come in as arguments, nothing here does I/O,
//! so every transition is tested below the way `schedule.rs` is.
//!
//! ```text
//!   Unloaded ──loaded──► NoToken ──login──► (store) ──loaded──► Active ◄──────────┐
//!                           │                                     │ refresh due    │ refreshed
//!                       login_started                             ▼                │
//!                           ▼                                 Refreshing ──────────┤
//!                      LoginPending                    rejected │   │ temporary    │
//!                                                               ▼   ▼              │
//!                                                      NeedsLogin  BackingOff ─────┘
//!                                                                  (retry_at, or a probe)
//! ```

use crate::error::{Error, ExitCode};
use crate::record::{FailureKind, LastError, Now, TokenRecord};
use crate::schedule;
use crate::secret::Secret;
use std::time::Duration;

/// While the access token cannot serve a caller and the last refresh failed for a
/// reason that may pass, a caller may still cause one request ("a probe") this many
/// seconds after the last one, however long the backoff has grown: when a provider
/// comes back after an outage, callers get a token within this time (plus the request)
/// instead of waiting out a backoff of up to [`schedule::BACKOFF_CAP`]. One account
/// then sends at most one request per 5 s, whatever the number of callers (one at a
/// time: a probe is a refresh, and only one refresh per account is in flight).
pub const PROBE_INTERVAL: u64 = 5;

/// How long a login announced by `mailtoken login` counts as pending for `--wait`: as
/// long as `login --timeout` allows by default.
pub const LOGIN_PENDING: u64 = 600;

/// A failed refresh, with the words for people and the time it happened.
#[derive(Clone, Debug)]
pub struct Failure {
    pub at: u64,
    pub kind: FailureKind,
    pub error: Error,
    /// Consecutive failures up to this one (1 for the first), for the backoff.
    pub failures: u32,
}

impl Failure {
    pub fn new(kind: FailureKind, error: Error, at: u64, failures: u32) -> Failure {
        Failure {
            at,
            kind,
            error,
            failures,
        }
    }

    /// As the store keeps it.
    pub fn to_last_error(&self) -> LastError {
        LastError {
            at: self.at,
            kind: self.kind,
            message: self.error.message.clone(),
            remedy: self.error.remedy.clone(),
            failures: self.failures,
        }
    }

    /// From the store: the exit code follows from the kind.
    pub fn from_last_error(e: &LastError) -> Failure {
        let code = match e.kind {
            FailureKind::Rejected | FailureKind::NoRefreshToken => ExitCode::NoPerm,
            FailureKind::Temporary => ExitCode::TempFail,
            FailureKind::Config => ExitCode::Config,
            FailureKind::Store => ExitCode::IoErr,
        };
        let mut error = Error::new(code, e.message.clone());
        error.remedy = e.remedy.clone();
        Failure::new(e.kind, error, e.at, e.failures.max(1))
    }
}

/// The store refused to keep the current tokens (a locked keyring, a full disk): they
/// are in the rescue file or only in this process, and saving is tried again.
#[derive(Clone, Debug)]
pub struct Unsaved {
    pub error: Error,
    pub failures: u32,
    pub retry_at: u64,
}

/// Tokens held for an account, and whether the store has them.
#[derive(Clone, Debug)]
pub struct Held {
    pub record: TokenRecord,
    pub unsaved: Option<Unsaved>,
}

impl Held {
    fn new(record: TokenRecord) -> Held {
        Held {
            record,
            unsaved: None,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub enum AccountState {
    /// Not read from the store yet (the daemon before its first request for the
    /// account, and after a reload).
    #[default]
    Unloaded,
    /// Nothing stored: only a login helps.
    NoToken,
    /// Tokens to hand out, refreshed when due.
    Active(Held),
    /// One refresh is in flight (the `ticket` names it). Its tokens are still handed
    /// out to callers they satisfy; the others wait for the outcome.
    Refreshing {
        held: Held,
        ticket: u64,
        /// The failure before this attempt, when it is a retry.
        previous: Option<Failure>,
    },
    /// The last refresh failed for a reason that may pass. The next attempt is at
    /// `retry_at`, or earlier as a probe by a caller the tokens cannot serve.
    BackingOff {
        held: Held,
        failure: Failure,
        retry_at: u64,
    },
    /// Only a new login helps: the refresh token was rejected, or there is none and
    /// the access token has expired. Nothing is sent to the provider.
    NeedsLogin {
        record: Option<TokenRecord>,
        failure: Failure,
    },
    /// A login was announced (`mailtoken login` tells the daemon): `token --wait`
    /// waits for it until `until`. Entered only from states a login can end.
    LoginPending {
        until: u64,
        before: Box<AccountState>,
    },
}

/// What a caller who needs a token valid for `min_valid` may do now.
#[derive(Debug)]
pub enum Decision {
    /// Read the store first (then decide again).
    Load,
    /// Hand out this record's access token.
    Serve(TokenRecord),
    /// Send a refresh: call [`AccountState::begin_refresh`] first, so it is the only one.
    Refresh,
    /// A refresh is in flight: its outcome decides (it is bounded by the request's
    /// timeout, so a caller waits for it even without `--wait`, as it would for its own).
    AwaitRefresh,
    /// Nothing to hand out now: fail with `error`, or wait (for `--wait`) for a change,
    /// or until `until` when time alone changes the decision.
    Blocked { error: Error, until: Option<u64> },
}

/// What the refresher should do next, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    Refresh,
    /// Save the held tokens again (the store refused them last time).
    Save,
}

/// A successful refresh.
#[derive(Clone, Debug)]
pub struct Refreshed {
    pub record: TokenRecord,
    /// The store refused the new tokens; where they are kept instead and how to fix
    /// the store. Nothing is lost, and the user need not log in.
    pub unsaved: Option<Error>,
}

/// Why a refresh gave no new tokens.
#[derive(Clone, Debug)]
pub enum RefreshError {
    /// Nothing is stored for the account (a logout, meanwhile).
    NotLoggedIn(Error),
    /// Tried (or not even sent, for [`FailureKind::NoRefreshToken`]) and failed.
    Failed(FailureKind, Error),
}

impl RefreshError {
    pub fn error(&self) -> &Error {
        match self {
            RefreshError::NotLoggedIn(e) | RefreshError::Failed(_, e) => e,
        }
    }

    pub fn into_error(self) -> Error {
        match self {
            RefreshError::NotLoggedIn(e) | RefreshError::Failed(_, e) => e,
        }
    }

    /// Whether only a login can get a token now.
    pub fn needs_login(&self) -> bool {
        match self {
            RefreshError::NotLoggedIn(_) => true,
            RefreshError::Failed(kind, _) => kind.needs_login(),
        }
    }
}

pub type RefreshOutcome = Result<Refreshed, RefreshError>;

/// What a transition asks of its caller besides the new state.
#[derive(Debug, PartialEq, Eq)]
pub enum Effect {
    None,
    /// The account has just come to need a login: tell the user, once.
    NotifyNeedsLogin,
}

impl AccountState {
    /// The state a stored record implies.
    pub fn from_record(record: Option<TokenRecord>) -> AccountState {
        let Some(record) = record else {
            return AccountState::NoToken;
        };
        let Some(failure) = record.last_error.as_ref().map(Failure::from_last_error) else {
            return AccountState::Active(Held::new(record));
        };
        if failure.kind.needs_login() {
            return AccountState::NeedsLogin {
                record: Some(record),
                failure,
            };
        }
        // Another process's failure: the same backoff (its middle, lacking the jitter
        // it was drawn with), and the same probe rule.
        let retry_at = failure.at + backoff_secs(failure.failures, 0.5);
        AccountState::BackingOff {
            held: Held::new(record),
            failure,
            retry_at,
        }
    }

    /// The record the state holds, if any.
    pub fn record(&self) -> Option<&TokenRecord> {
        match self {
            AccountState::Active(h)
            | AccountState::Refreshing { held: h, .. }
            | AccountState::BackingOff { held: h, .. } => Some(&h.record),
            AccountState::NeedsLogin { record, .. } => record.as_ref(),
            AccountState::LoginPending { before, .. } => before.record(),
            AccountState::Unloaded | AccountState::NoToken => None,
        }
    }

    fn held(&self) -> Option<&Held> {
        match self {
            AccountState::Active(h)
            | AccountState::Refreshing { held: h, .. }
            | AccountState::BackingOff { held: h, .. } => Some(h),
            _ => None,
        }
    }

    fn held_mut(&mut self) -> Option<&mut Held> {
        match self {
            AccountState::Active(h)
            | AccountState::Refreshing { held: h, .. }
            | AccountState::BackingOff { held: h, .. } => Some(h),
            _ => None,
        }
    }

    /// The last failure, for `status` and for the words of a refusal.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            AccountState::BackingOff { failure, .. } | AccountState::NeedsLogin { failure, .. } => {
                Some(failure)
            }
            AccountState::Refreshing { previous, .. } => previous.as_ref(),
            AccountState::LoginPending { before, .. } => before.failure(),
            _ => None,
        }
    }

    /// Why the store does not hold the current tokens, if it does not.
    pub fn unsaved(&self) -> Option<&Unsaved> {
        self.held().and_then(|h| h.unsaved.as_ref())
    }

    /// When the next refresh may be sent without a caller's probe (backing off).
    pub fn retry_at(&self) -> Option<u64> {
        match self {
            AccountState::BackingOff { retry_at, .. } => Some(*retry_at),
            _ => None,
        }
    }

    /// Whether the store must be read before anything can be decided.
    pub fn needs_load(&self) -> bool {
        match self {
            AccountState::Unloaded => true,
            AccountState::LoginPending { before, .. } => before.needs_load(),
            _ => false,
        }
    }

    pub fn login_pending(&self, now: u64) -> bool {
        matches!(self, AccountState::LoginPending { until, .. } if *until > now)
    }

    pub fn needs_login(&self) -> bool {
        match self {
            AccountState::NeedsLogin { .. } => true,
            AccountState::LoginPending { before, .. } => before.needs_login(),
            _ => false,
        }
    }

    /// The one place that decides what a caller gets (see [`Decision`]); `account`
    /// names it in the words of a refusal.
    pub fn decide(&self, now: impl Into<Now>, min_valid: Duration, account: &str) -> Decision {
        self.decide_on(&now.into(), min_valid, account)
    }

    fn decide_on(&self, clock: &Now, min_valid: Duration, account: &str) -> Decision {
        let now = clock.wall;
        let usable = |h: &Held| {
            h.record
                .usable_access_token(clock.clone(), min_valid)
                .is_some()
        };
        match self {
            AccountState::Unloaded => Decision::Load,
            AccountState::NoToken => Decision::Blocked {
                error: Error::noperm(format!("no token for {account} yet"))
                    .with_remedy(format!("Run `mailtoken login {account}` once to log in.")),
                until: None,
            },
            AccountState::NeedsLogin { failure, .. } => Decision::Blocked {
                error: failure.error.clone(),
                until: None,
            },
            AccountState::LoginPending { until, before } => {
                if *until <= now {
                    return before.decide_on(clock, min_valid, account);
                }
                match before.decide_on(clock, min_valid, account) {
                    Decision::Blocked { mut error, .. } => {
                        error
                            .message
                            .push_str(" (a login is in progress: `--wait` waits for it)");
                        Decision::Blocked {
                            error,
                            until: Some(*until),
                        }
                    }
                    other => other,
                }
            }
            AccountState::Active(h) if usable(h) => Decision::Serve(h.record.clone()),
            AccountState::Active(_) => Decision::Refresh,
            AccountState::Refreshing { held, .. } if usable(held) => {
                Decision::Serve(held.record.clone())
            }
            AccountState::Refreshing { .. } => Decision::AwaitRefresh,
            AccountState::BackingOff { held, .. } if usable(held) => {
                Decision::Serve(held.record.clone())
            }
            AccountState::BackingOff {
                failure, retry_at, ..
            } => {
                let next = due(*retry_at, now).min(failure.at + PROBE_INTERVAL);
                if now >= next {
                    return Decision::Refresh;
                }
                let mut error = failure.error.clone();
                error
                    .message
                    .push_str(&format!(" (next attempt in {}s)", next - now));
                Decision::Blocked {
                    error,
                    until: Some(next),
                }
            }
        }
    }

    /// A refresh named `ticket` starts: the state becomes [`AccountState::Refreshing`],
    /// so nobody else starts one. Returns the access token it starts from (a refresh is
    /// skipped when the store holds another one by then), or `None` when the state
    /// allows no refresh.
    pub fn begin_refresh(&mut self, ticket: u64) -> Option<Option<Secret>> {
        let (held, previous) = match std::mem::take(self) {
            AccountState::Active(held) => (held, None),
            AccountState::BackingOff { held, failure, .. } => (held, Some(failure)),
            other => {
                *self = other;
                return None;
            }
        };
        let seen = held.record.access_token.clone();
        *self = AccountState::Refreshing {
            held,
            ticket,
            previous,
        };
        Some(seen)
    }

    /// The refresh `ticket` ended with `outcome` at `now`. An outcome for a refresh the
    /// state no longer waits for (a reload came in between) changes nothing: the
    /// store has it, and the next load reads it.
    pub fn finish_refresh(
        &mut self,
        ticket: u64,
        outcome: RefreshOutcome,
        now: u64,
        jitter: f64,
    ) -> Effect {
        let AccountState::Refreshing { ticket: t, .. } = self else {
            return Effect::None;
        };
        if *t != ticket {
            return Effect::None;
        }
        let AccountState::Refreshing { held, previous, .. } = std::mem::take(self) else {
            unreachable!("matched above");
        };
        let (next, effect) = match outcome {
            Ok(Refreshed { record, unsaved }) => (
                AccountState::Active(Held {
                    record,
                    unsaved: unsaved.map(|error| Unsaved {
                        error,
                        failures: 1,
                        retry_at: now + backoff_secs(1, jitter),
                    }),
                }),
                Effect::None,
            ),
            Err(RefreshError::NotLoggedIn(_)) => (AccountState::NoToken, Effect::None),
            Err(RefreshError::Failed(kind, error)) if kind.needs_login() => (
                AccountState::NeedsLogin {
                    record: Some(held.record),
                    failure: Failure::new(kind, error, now, 1),
                },
                Effect::NotifyNeedsLogin,
            ),
            Err(RefreshError::Failed(kind, error)) => {
                let failures = previous.map_or(0, |p| p.failures).saturating_add(1);
                (
                    AccountState::BackingOff {
                        held,
                        failure: Failure::new(kind, error, now, failures),
                        retry_at: now + backoff_secs(failures, jitter),
                    },
                    Effect::None,
                )
            }
        };
        *self = next;
        effect
    }

    /// The held tokens obtained at `obtained_at` may be unsaved still: a refresh
    /// since then replaced them (and said itself whether the store took those).
    fn unsaved_of(&mut self, obtained_at: u64) -> Option<&mut Held> {
        self.held_mut()
            .filter(|h| h.record.obtained_at == obtained_at)
    }

    /// The store took the tokens obtained at `obtained_at` (a retried save).
    pub fn saved(&mut self, obtained_at: u64) {
        if let Some(h) = self.unsaved_of(obtained_at) {
            h.unsaved = None;
        }
    }

    /// A retried save of the tokens obtained at `obtained_at` failed again.
    pub fn save_failed(&mut self, obtained_at: u64, error: Error, now: u64, jitter: f64) {
        if let Some(u) = self
            .unsaved_of(obtained_at)
            .and_then(|h| h.unsaved.as_mut())
        {
            u.failures = u.failures.saturating_add(1);
            u.retry_at = now + backoff_secs(u.failures, jitter);
            u.error = error;
        }
    }

    /// The record was read from the store.
    pub fn loaded(&mut self, record: Option<TokenRecord>) {
        match self {
            AccountState::Unloaded => *self = AccountState::from_record(record),
            AccountState::LoginPending { before, .. }
                if matches!(**before, AccountState::Unloaded) =>
            {
                let new = AccountState::from_record(record);
                if matches!(new, AccountState::NoToken | AccountState::NeedsLogin { .. }) {
                    **before = new;
                } else {
                    // The login it waited for is done.
                    *self = new;
                }
            }
            _ => {}
        }
    }

    /// A login has started elsewhere and may take until `now + LOGIN_PENDING`.
    pub fn login_started(&mut self, now: u64) {
        match self {
            AccountState::Unloaded | AccountState::NoToken | AccountState::NeedsLogin { .. } => {
                let before = Box::new(std::mem::take(self));
                *self = AccountState::LoginPending {
                    until: now + LOGIN_PENDING,
                    before,
                };
            }
            AccountState::LoginPending { until, .. } => *until = now + LOGIN_PENDING,
            // Tokens are being handed out; the login will replace them when it is done.
            _ => {}
        }
    }

    /// What the refresher should do next and when (a second on the wall clock as it
    /// reads at `now`), given the longest `--min-valid` asked for; `None` while only a
    /// request or a login can change anything.
    pub fn next_job(&self, longest_min_valid: Duration, now: impl Into<Now>) -> Option<(u64, Job)> {
        let now = now.into();
        let (held, refresh) = match self {
            // Never within a second of the token's issue: a provider that sends
            // `expires_in: 0` gets one refresh a second, not a loop.
            AccountState::Active(h) => (
                h,
                schedule::refresh_at(&h.record, longest_min_valid, &now)
                    .map(|at| at.max(h.record.obtained_at_on(&now) + 1)),
            ),
            AccountState::BackingOff { held, retry_at, .. } => {
                (held, Some(due(*retry_at, now.wall)))
            }
            _ => return None,
        };
        let save = held.unsaved.as_ref().map(|u| due(u.retry_at, now.wall));
        match (refresh, save) {
            // A refresh saves too: when both are due, refresh.
            (Some(r), Some(s)) if s < r => Some((s, Job::Save)),
            (Some(r), _) => Some((r, Job::Refresh)),
            (None, Some(s)) => Some((s, Job::Save)),
            (None, None) => None,
        }
    }
}

/// A retry planned for `at`, as it stands at `now`: a retry is never planned further
/// ahead than the longest backoff, so one that is, was planned before the wall clock
/// was set back, and is due now (the backoff's times are wall-clock seconds, kept in
/// the store between processes; a clock set back an hour must not hold an account's
/// requests back for an hour). The one request this lets through comes at most once per
/// setting of the clock.
fn due(at: u64, now: u64) -> u64 {
    let longest = schedule::BACKOFF_CAP
        .mul_f64(1.2)
        .as_secs()
        .max(PROBE_INTERVAL);
    if at > now.saturating_add(longest) {
        now
    } else {
        at
    }
}

/// Seconds of backoff before retry number `failures`: never less than the probe
/// interval, so that no two requests for one account are closer than that.
fn backoff_secs(failures: u32, jitter: f64) -> u64 {
    schedule::backoff(failures, jitter)
        .as_secs()
        .max(PROBE_INTERVAL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::BootStamp;

    const FIVE_MIN: Duration = Duration::from_secs(300);

    fn record(obtained: u64, lifetime: u64) -> TokenRecord {
        TokenRecord {
            refresh_token: Some(Secret::new("rt")),
            access_token: Some(Secret::new(format!("at-{obtained}"))),
            obtained_at: obtained,
            expires_at: Some(obtained + lifetime),
            logged_in_at: 1,
            ..Default::default()
        }
    }

    fn temporary() -> RefreshOutcome {
        Err(RefreshError::Failed(
            FailureKind::Temporary,
            Error::temp("HTTP 503"),
        ))
    }

    fn refreshed(at: u64) -> RefreshOutcome {
        Ok(Refreshed {
            record: record(at, 3600),
            unsaved: None,
        })
    }

    fn served(d: Decision) -> Option<String> {
        match d {
            Decision::Serve(r) => Some(r.access_token.unwrap().expose().to_owned()),
            _ => None,
        }
    }

    #[test]
    fn a_stored_record_gives_the_state_it_implies() {
        assert!(matches!(
            AccountState::from_record(None),
            AccountState::NoToken
        ));
        assert!(matches!(
            AccountState::from_record(Some(record(1000, 3600))),
            AccountState::Active(_)
        ));
        let mut r = record(1000, 3600);
        r.last_error = Some(LastError {
            at: 1500,
            kind: FailureKind::Rejected,
            message: "rejected".into(),
            remedy: Some("log in".into()),
            failures: 1,
        });
        let s = AccountState::from_record(Some(r.clone()));
        assert!(s.needs_login());
        let f = s.failure().unwrap();
        assert_eq!((f.at, f.error.code), (1500, ExitCode::NoPerm));
        assert_eq!(f.error.remedy.as_deref(), Some("log in"));
        r.last_error.as_mut().unwrap().kind = FailureKind::Temporary;
        r.last_error.as_mut().unwrap().failures = 2;
        let s = AccountState::from_record(Some(r));
        assert_eq!(s.retry_at(), Some(1500 + 10));
    }

    #[test]
    fn a_valid_token_is_served_and_an_expiring_one_refreshed() {
        let s = AccountState::from_record(Some(record(1000, 3600)));
        assert_eq!(
            served(s.decide(2000, FIVE_MIN, "a")).as_deref(),
            Some("at-1000")
        );
        assert!(matches!(s.decide(4400, FIVE_MIN, "a"), Decision::Refresh));
        assert!(matches!(
            AccountState::Unloaded.decide(0, FIVE_MIN, "a"),
            Decision::Load
        ));
    }

    #[test]
    fn only_one_refresh_starts_and_waiters_get_its_result() {
        let mut s = AccountState::from_record(Some(record(1000, 3600)));
        assert_eq!(s.begin_refresh(1).unwrap().unwrap().expose(), "at-1000");
        // A second caller finds a refresh in flight and may not start another.
        assert!(s.begin_refresh(2).is_none());
        assert!(matches!(
            s.decide(4400, FIVE_MIN, "a"),
            Decision::AwaitRefresh
        ));
        // A caller the old token still satisfies is served meanwhile.
        assert_eq!(
            served(s.decide(4400, Duration::from_secs(60), "a")).as_deref(),
            Some("at-1000")
        );
        assert_eq!(
            s.finish_refresh(1, refreshed(4400), 4400, 0.5),
            Effect::None
        );
        assert_eq!(
            served(s.decide(4400, FIVE_MIN, "a")).as_deref(),
            Some("at-4400")
        );
    }

    #[test]
    fn an_outcome_for_a_forgotten_refresh_changes_nothing() {
        let mut s = AccountState::from_record(Some(record(1000, 3600)));
        s.begin_refresh(7);
        assert_eq!(s.finish_refresh(8, temporary(), 4400, 0.5), Effect::None);
        assert!(matches!(s, AccountState::Refreshing { ticket: 7, .. }));
        s = AccountState::Unloaded;
        assert_eq!(
            s.finish_refresh(7, refreshed(4400), 4400, 0.5),
            Effect::None
        );
        assert!(matches!(s, AccountState::Unloaded));
    }

    #[test]
    fn a_rejected_grant_needs_a_login_and_notifies_once() {
        let mut s = AccountState::from_record(Some(record(1000, 3600)));
        s.begin_refresh(1);
        let rejected = Err(RefreshError::Failed(
            FailureKind::Rejected,
            Error::noperm("invalid_grant"),
        ));
        assert_eq!(
            s.finish_refresh(1, rejected, 4400, 0.5),
            Effect::NotifyNeedsLogin
        );
        assert!(s.needs_login());
        assert_eq!(s.failure().unwrap().at, 4400);
        // Nothing more is sent: no refresh can start, and no job is scheduled.
        assert!(s.begin_refresh(2).is_none());
        assert!(s.next_job(FIVE_MIN, 4400).is_none());
        match s.decide(5000, FIVE_MIN, "a") {
            Decision::Blocked { error, until } => {
                assert_eq!((error.code, until), (ExitCode::NoPerm, None));
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn a_temporary_failure_backs_off_and_keeps_the_time_it_happened() {
        let mut s = AccountState::from_record(Some(record(1000, 3600)));
        s.begin_refresh(1);
        assert_eq!(s.finish_refresh(1, temporary(), 4400, 0.5), Effect::None);
        assert_eq!(s.retry_at(), Some(4405));
        assert_eq!(s.failure().unwrap().at, 4400);
        assert_eq!(s.next_job(FIVE_MIN, 4400), Some((4405, Job::Refresh)));
        // The still-valid token serves a caller it satisfies; another is told when.
        assert!(served(s.decide(4401, Duration::from_secs(60), "a")).is_some());
        match s.decide(4401, FIVE_MIN, "a") {
            Decision::Blocked { error, until } => {
                assert_eq!(until, Some(4405));
                assert!(error.message.ends_with("(next attempt in 4s)"), "{error}");
            }
            d => panic!("{d:?}"),
        }
        // Consecutive failures double the wait.
        s.begin_refresh(2);
        s.finish_refresh(2, temporary(), 4405, 0.5);
        assert_eq!(s.retry_at(), Some(4415));
        assert_eq!(s.failure().unwrap().failures, 2);
    }

    #[test]
    fn a_caller_may_probe_every_few_seconds_however_long_the_backoff() {
        let mut s = AccountState::from_record(Some(record(1000, 3600)));
        for n in 1..=8 {
            s.begin_refresh(n).unwrap();
            s.finish_refresh(n, temporary(), 10_000, 0.5);
        }
        // Eight failures: the backoff is capped at 5 minutes.
        assert_eq!(s.retry_at(), Some(10_300));
        assert!(matches!(
            s.decide(10_004, FIVE_MIN, "a"),
            Decision::Blocked {
                until: Some(10_005),
                ..
            }
        ));
        assert!(matches!(s.decide(10_005, FIVE_MIN, "a"), Decision::Refresh));
    }

    /// The bound and the recovery, simulated: the provider is down for `outage`
    /// seconds while the token is expired and a caller asks every second (each starting
    /// a refresh when allowed, as the daemon's requests do), and the refresher
    /// follows its schedule.
    #[test]
    fn after_an_outage_a_caller_gets_a_token_within_the_probe_interval() {
        for outage in [30, 60, 301, 3600] {
            let start = 10_000;
            let mut s = AccountState::from_record(Some(record(start - 4000, 3600)));
            let (mut requests, mut ticket, mut first_served) = (Vec::new(), 0, None);
            for now in start..start + outage + 60 {
                let refresher_due = s.next_job(FIVE_MIN, now).is_some_and(|(at, _)| at <= now);
                let caller_may = matches!(s.decide(now, FIVE_MIN, "a"), Decision::Refresh);
                if refresher_due || caller_may {
                    ticket += 1;
                    s.begin_refresh(ticket).unwrap();
                    requests.push(now);
                    let outcome = if now < start + outage {
                        temporary()
                    } else {
                        refreshed(now)
                    };
                    s.finish_refresh(ticket, outcome, now, 0.5);
                }
                if first_served.is_none()
                    && matches!(s.decide(now, FIVE_MIN, "a"), Decision::Serve(_))
                {
                    first_served = Some(now);
                }
            }
            let recovered = first_served.unwrap() - (start + outage);
            assert!(recovered <= PROBE_INTERVAL, "outage {outage}: {recovered}s");
            // Never two requests closer than the probe interval.
            for w in requests.windows(2) {
                assert!(w[1] - w[0] >= PROBE_INTERVAL, "{requests:?}");
            }
            let bound = outage / PROBE_INTERVAL + 2;
            assert!(
                requests.len() as u64 <= bound,
                "{} > {bound}",
                requests.len()
            );
        }
    }

    #[test]
    fn without_callers_the_refresher_alone_follows_the_backoff() {
        let mut s = AccountState::from_record(Some(record(1000, 3600)));
        let mut at = 4400;
        let mut gaps = Vec::new();
        for n in 1..=5 {
            s.begin_refresh(n).unwrap();
            s.finish_refresh(n, temporary(), at, 0.5);
            let (next, job) = s.next_job(FIVE_MIN, at).unwrap();
            assert_eq!(job, Job::Refresh);
            gaps.push(next - at);
            at = next;
        }
        assert_eq!(gaps, [5, 10, 20, 40, 80]);
    }

    #[test]
    fn a_store_that_refuses_the_new_tokens_keeps_them_and_retries_the_save() {
        let mut s = AccountState::from_record(Some(record(1000, 3600)));
        s.begin_refresh(1);
        let outcome = Ok(Refreshed {
            record: record(4400, 3600),
            unsaved: Some(Error::noperm("the keyring is locked")),
        });
        // Not a rejected grant: no login asked for, nobody notified.
        assert_eq!(s.finish_refresh(1, outcome, 4400, 0.5), Effect::None);
        assert!(!s.needs_login());
        assert_eq!(
            served(s.decide(4401, FIVE_MIN, "a")).as_deref(),
            Some("at-4400")
        );
        assert_eq!(s.next_job(FIVE_MIN, 4400), Some((4405, Job::Save)));
        s.save_failed(4400, Error::noperm("still locked"), 4405, 0.5);
        assert_eq!(s.next_job(FIVE_MIN, 4405), Some((4415, Job::Save)));
        assert_eq!(s.unsaved().unwrap().error.message, "still locked");
        // The outcome of a save of older tokens does not touch newer ones.
        s.saved(1000);
        assert!(s.unsaved().is_some());
        s.saved(4400);
        assert!(s.unsaved().is_none());
        assert_eq!(
            s.next_job(FIVE_MIN, 4405),
            Some((4400 + 3600 - 300, Job::Refresh))
        );
    }

    /// `record(obtained, lifetime)` stamped on the boot clock, `ms` into the boot.
    fn stamped(obtained: u64, lifetime: u64, ms: u64) -> TokenRecord {
        let mut r = record(obtained, lifetime);
        r.obtained_boot = Some(BootStamp {
            boot: "b".into(),
            ms,
        });
        r
    }

    fn clock(wall: u64, ms: u64) -> Now {
        Now {
            wall,
            boot: Some(BootStamp {
                boot: "b".into(),
                ms,
            }),
        }
    }

    #[test]
    fn after_the_clock_is_set_back_a_short_token_is_refreshed_when_due_not_an_hour_late() {
        // A 6-second token, then the wall clock set back an hour one second later.
        let s = AccountState::from_record(Some(stamped(10_000, 6, 0)));
        let back = |secs: u64| clock(10_000 + secs - 3600, secs * 1000);
        // Half its life is the most a caller's min_valid may ask of it.
        assert!(served(s.decide(back(1), FIVE_MIN, "a")).is_some());
        assert!(matches!(
            s.decide(back(4), FIVE_MIN, "a"),
            Decision::Refresh
        ));
        assert!(matches!(
            s.decide(back(7), Duration::ZERO, "a"),
            Decision::Refresh
        ));
        // The refresher's deadline is on the clock as it now reads: half-life, 3 s in.
        assert_eq!(
            s.next_job(FIVE_MIN, back(1)),
            Some((10_003 - 3600, Job::Refresh))
        );
    }

    #[test]
    fn a_backoff_planned_before_the_clock_was_set_back_does_not_hold_requests_for_an_hour() {
        // A token that the clock set back does not bring back to life (it expires at
        // 1000, before the new "now").
        let mut s = AccountState::from_record(Some(record(0, 1000)));
        s.begin_refresh(1);
        s.finish_refresh(1, temporary(), 4600, 0.5);
        assert_eq!(s.retry_at(), Some(4605));
        // The clock goes back an hour: the probe is allowed now, and the refresher's
        // retry is due now, not in an hour.
        let now = 4601 - 3600;
        assert!(matches!(s.decide(now, FIVE_MIN, "a"), Decision::Refresh));
        assert_eq!(s.next_job(FIVE_MIN, now), Some((now, Job::Refresh)));
        // Its failure, recorded on the clock as set, then spaces requests again.
        s.begin_refresh(2);
        s.finish_refresh(2, temporary(), now, 0.5);
        assert!(matches!(
            s.decide(now + 1, FIVE_MIN, "a"),
            Decision::Blocked { .. }
        ));
        assert_eq!(
            s.next_job(FIVE_MIN, now + 1),
            Some((now + 10, Job::Refresh))
        );
    }

    #[test]
    fn a_pending_login_makes_waiters_wait_and_ends_with_the_login() {
        let mut s = AccountState::from_record(None);
        s.login_started(100);
        assert!(s.login_pending(101));
        match s.decide(101, FIVE_MIN, "a") {
            Decision::Blocked { error, until } => {
                assert_eq!(until, Some(100 + LOGIN_PENDING));
                assert!(error.message.contains("a login is in progress"), "{error}");
            }
            d => panic!("{d:?}"),
        }
        // After the pending time, the state before it speaks again.
        assert!(matches!(
            s.decide(100 + LOGIN_PENDING, FIVE_MIN, "a"),
            Decision::Blocked { until: None, .. }
        ));
        // An account handing out tokens is not blocked by a login started elsewhere.
        let mut a = AccountState::from_record(Some(record(1000, 3600)));
        a.login_started(1100);
        assert!(served(a.decide(1100, FIVE_MIN, "a")).is_some());
        // A login announced before the first load survives the load, unless the
        // store already holds its result.
        let mut u = AccountState::Unloaded;
        u.login_started(100);
        assert!(matches!(u.decide(101, FIVE_MIN, "a"), Decision::Load));
        u.loaded(None);
        assert!(u.login_pending(101));
        let mut u = AccountState::Unloaded;
        u.login_started(100);
        u.loaded(Some(record(100, 3600)));
        assert!(matches!(u, AccountState::Active(_)));
    }

    #[test]
    fn failures_keep_their_words_for_the_store() {
        let f = Failure::new(
            FailureKind::Config,
            Error::config("invalid_client").with_remedy("check client_id"),
            77,
            3,
        );
        let back = Failure::from_last_error(&f.to_last_error());
        assert_eq!(back.error.code, ExitCode::Config);
        assert_eq!(back.error.to_string(), f.error.to_string());
        assert_eq!((back.at, back.failures), (77, 3));
    }
}
