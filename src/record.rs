//! What mailtoken keeps per account, and the pure decisions taken on it: is the cached
//! access token good enough to hand out, or must it be refreshed first?
//!
//! Times are seconds since the Unix epoch (wall clock): records are shared between
//! processes and survive reboots, so a monotonic clock cannot be used for them.

use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Lifetime assumed for an access token whose response carried no `expires_in`
/// (legal by RFC 6749 §5.1). Short on purpose: refreshing a little too often is cheap,
/// handing out a dead token is not. Google and Microsoft tokens live 3600 s and do say so.
pub const ASSUMED_LIFETIME: Duration = Duration::from_secs(600);

/// Default `--min-valid`: an IMAP session authenticated with OAuth lives about as long
/// as its token, so a client must get one that is not about to die.
pub const DEFAULT_MIN_VALID: Duration = Duration::from_secs(300);

/// The stored state of one account. Field names are part of the file store's format.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TokenRecord {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<Secret>,
    /// When the access token stops working, if known or assumed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// True when the provider gave no `expires_in` and [`ASSUMED_LIFETIME`] was used.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub expiry_assumed: bool,
    /// When the current access token was obtained; with `expires_at` it gives the lifetime.
    pub obtained_at: u64,
    /// Scopes granted, as the token endpoint reported them (or as requested).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// When the user last logged in (the refresh token's birth, unless rotated since).
    pub logged_in_at: u64,
    /// When the last successful refresh happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refreshed_at: Option<u64>,
    /// The last refresh failure, cleared by the next success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
    /// The access token comes from the app's own credentials (client credentials, a
    /// service account): it is renewed by asking again, with no refresh token.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub app_only: bool,
}

impl TokenRecord {
    /// Whether a new access token can be had without a person: by the refresh token,
    /// or by the app's own credentials.
    pub fn renewable(&self) -> bool {
        self.refresh_token.is_some() || self.app_only
    }
}

/// The last failed refresh, as the store keeps it between processes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LastError {
    pub at: u64,
    pub kind: FailureKind,
    pub message: String,
    /// What to do about it, when there is something.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
    /// Consecutive failures of this kind up to `at`, for the backoff.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub failures: u32,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// Why a refresh failed, as far as what happens next is concerned. Decided where the
/// failure is met (the token endpoint's answer, the store, the lock), never from an
/// exit code or the words of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The provider rejected the refresh token (`invalid_grant`): only a login helps.
    Rejected,
    /// The access token expired and there is no refresh token: only a login helps.
    NoRefreshToken,
    /// May pass by itself: the network, a 5xx, a timeout, the lock held too long.
    Temporary,
    /// The settings are wrong (client id or secret, token URL): fix the config.
    Config,
    /// The store could not be read or written (a locked keyring, a full disk).
    Store,
}

impl FailureKind {
    /// The name in the stored record; `invalid_grant` and `temporary` are what
    /// earlier versions wrote.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Rejected => "invalid_grant",
            FailureKind::NoRefreshToken => "no_refresh_token",
            FailureKind::Temporary => "temporary",
            FailureKind::Config => "config",
            FailureKind::Store => "store",
        }
    }

    /// Whether only a new login can end it.
    pub fn needs_login(self) -> bool {
        matches!(self, FailureKind::Rejected | FailureKind::NoRefreshToken)
    }
}

impl Serialize for FailureKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// A kind this version does not know (written by a newer one) reads as temporary: it
/// is retried, never taken for a rejected grant.
impl<'de> Deserialize<'de> for FailureKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok([
            FailureKind::Rejected,
            FailureKind::NoRefreshToken,
            FailureKind::Config,
            FailureKind::Store,
        ]
        .into_iter()
        .find(|k| k.name() == s)
        .unwrap_or(FailureKind::Temporary))
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// How much validity a handed-out token must still have: `min_valid`, or half the
/// token's lifetime when that is shorter, so that a provider with 60-second tokens is
/// not asked for a new one on every call (DESIGN.md, `--min-valid`).
pub fn required_validity(min_valid: Duration, lifetime: Option<Duration>) -> Duration {
    match lifetime {
        Some(l) if l / 2 < min_valid => l / 2,
        _ => min_valid,
    }
}

impl TokenRecord {
    /// The access token's full lifetime, when its expiry is known.
    pub fn lifetime(&self) -> Option<Duration> {
        self.expires_at
            .map(|e| Duration::from_secs(e.saturating_sub(self.obtained_at)))
    }

    /// Seconds the access token has left at `now` (0 when expired or unknown).
    pub fn remaining(&self, now: u64) -> u64 {
        self.expires_at.map_or(0, |e| e.saturating_sub(now))
    }

    /// The access token, if it stays valid for what `min_valid` asks at `now`.
    pub fn usable_access_token(&self, now: u64, min_valid: Duration) -> Option<&Secret> {
        let token = self.access_token.as_ref()?;
        let need = required_validity(min_valid, self.lifetime());
        // A token with an unknown expiry is never trusted: a refresh sets one.
        let expires_at = self.expires_at?;
        (expires_at > now && expires_at - now >= need.as_secs().max(1)).then_some(token)
    }

    /// Records a fresh access token from a token response.
    pub fn set_access_token(&mut self, token: Secret, expires_in: Option<Duration>, now: u64) {
        let (lifetime, assumed) = match expires_in {
            Some(d) => (d, false),
            None => (ASSUMED_LIFETIME, true),
        };
        self.access_token = Some(token);
        self.obtained_at = now;
        self.expires_at = Some(now + lifetime.as_secs());
        self.expiry_assumed = assumed;
    }

    pub fn needs_login(&self) -> bool {
        self.last_error
            .as_ref()
            .is_some_and(|e| e.kind.needs_login())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(obtained: u64, expires: u64) -> TokenRecord {
        TokenRecord {
            access_token: Some(Secret::new("at")),
            obtained_at: obtained,
            expires_at: Some(expires),
            ..Default::default()
        }
    }

    #[test]
    fn required_validity_is_min_valid_for_long_tokens() {
        let five = Duration::from_secs(300);
        assert_eq!(
            required_validity(five, Some(Duration::from_secs(3600))),
            five
        );
        assert_eq!(required_validity(five, None), five);
    }

    #[test]
    fn required_validity_is_half_the_lifetime_for_short_tokens() {
        let five = Duration::from_secs(300);
        assert_eq!(
            required_validity(five, Some(Duration::from_secs(60))),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn a_token_with_enough_life_is_usable() {
        let r = rec(1000, 4600);
        assert!(r.usable_access_token(1000, DEFAULT_MIN_VALID).is_some());
        assert!(r.usable_access_token(4300, DEFAULT_MIN_VALID).is_some());
        assert!(r.usable_access_token(4301, DEFAULT_MIN_VALID).is_none());
        assert!(r.usable_access_token(5000, DEFAULT_MIN_VALID).is_none());
    }

    #[test]
    fn a_short_lived_token_is_usable_for_its_first_half() {
        let r = rec(1000, 1060);
        assert!(r.usable_access_token(1030, DEFAULT_MIN_VALID).is_some());
        assert!(r.usable_access_token(1031, DEFAULT_MIN_VALID).is_none());
    }

    #[test]
    fn a_token_without_expiry_or_value_is_not_usable() {
        let mut r = rec(1000, 4600);
        r.expires_at = None;
        assert!(r.usable_access_token(1000, DEFAULT_MIN_VALID).is_none());
        let mut r = rec(1000, 4600);
        r.access_token = None;
        assert!(r.usable_access_token(1000, DEFAULT_MIN_VALID).is_none());
    }

    #[test]
    fn a_missing_expires_in_assumes_a_short_lifetime() {
        let mut r = TokenRecord::default();
        r.set_access_token(Secret::new("x"), None, 100);
        assert!(r.expiry_assumed);
        assert_eq!(r.expires_at, Some(100 + ASSUMED_LIFETIME.as_secs()));
        r.set_access_token(Secret::new("y"), Some(Duration::from_secs(3599)), 200);
        assert!(!r.expiry_assumed);
        assert_eq!(r.expires_at, Some(3799));
    }

    #[test]
    fn min_valid_zero_still_refuses_an_expired_token() {
        let r = rec(1000, 2000);
        assert!(r.usable_access_token(2000, Duration::ZERO).is_none());
        assert!(r.usable_access_token(1999, Duration::ZERO).is_some());
    }

    #[test]
    fn failure_kinds_keep_their_stored_names() {
        let e: LastError =
            serde_json::from_str(r#"{"at":5,"kind":"invalid_grant","message":"m"}"#).unwrap();
        assert_eq!(
            (e.kind, e.failures, &e.remedy),
            (FailureKind::Rejected, 1, &None)
        );
        assert!(e.kind.needs_login());
        let back = serde_json::to_value(&e).unwrap();
        assert_eq!(
            back,
            serde_json::json!({"at":5,"kind":"invalid_grant","message":"m"})
        );
        let e: LastError =
            serde_json::from_str(r#"{"at":5,"kind":"from-the-future","message":"m","failures":3}"#)
                .unwrap();
        assert_eq!((e.kind, e.failures), (FailureKind::Temporary, 3));
        assert!(!e.kind.needs_login());
    }

    #[test]
    fn old_records_with_unknown_fields_still_parse() {
        let r: TokenRecord =
            serde_json::from_str(r#"{"refresh_token":"rt","obtained_at":5,"future":1}"#).unwrap();
        assert_eq!(r.refresh_token.unwrap().expose(), "rt");
    }
}
