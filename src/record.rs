//! What mailtoken keeps per account, and the pure decisions taken on it: is the cached
//! access token good enough to hand out, or must it be refreshed first?
//!
//! Times are seconds since the Unix epoch (wall clock): records are shared between
//! processes and survive reboots, so a monotonic clock cannot be used for them alone.
//! But the wall clock can be set (NTP stepping it, `date -s`, a wrong clock corrected
//! after boot): set back an hour, it would make a token that dies in seconds look good
//! for an hour more. So a record also notes where on the boot clock its access token
//! was obtained ([`BootStamp`]), and the validity rules take the shorter of the two
//! clocks' answers ([`TokenRecord::clock_setback`]).

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
    /// Where on the boot clock the access token was obtained (absent in records of
    /// earlier versions, and where there is no boot clock: the wall clock alone rules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub obtained_boot: Option<BootStamp>,
}

/// A moment on this machine's boot clock: the boot's id and the time since it began,
/// counting suspend (Linux: `/proc/sys/kernel/random/boot_id` and `CLOCK_BOOTTIME`).
/// Nothing can set this clock, and unlike `CLOCK_MONOTONIC` it goes on while the
/// machine sleeps, so between two stamps of one boot it measures the time that really
/// passed, which is what a token's `expires_in` counts.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BootStamp {
    pub boot: String,
    pub ms: u64,
}

/// "Now" for the validity rules: the wall clock, and the boot clock where there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Now {
    pub wall: u64,
    pub boot: Option<BootStamp>,
}

/// A wall-clock second alone (records' times, the tests' clocks).
impl From<u64> for Now {
    fn from(wall: u64) -> Now {
        Now { wall, boot: None }
    }
}

impl Now {
    /// Both clocks, read now.
    pub fn current() -> Now {
        Now {
            wall: now(),
            boot: boot_stamp(),
        }
    }
}

/// The boot clock now; `None` where it cannot be read.
#[cfg(target_os = "linux")]
fn boot_stamp() -> Option<BootStamp> {
    // A process lives within one boot: the id is read once.
    static BOOT_ID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let boot = BOOT_ID
        .get_or_init(|| {
            std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .clone()?;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return None;
    }
    let ms = u64::try_from(ts.tv_sec).ok()?.checked_mul(1000)?
        + u64::try_from(ts.tv_nsec).ok()? / 1_000_000;
    Some(BootStamp { boot, ms })
}

#[cfg(not(target_os = "linux"))]
fn boot_stamp() -> Option<BootStamp> {
    None
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

    /// Seconds by which the wall clock has been set back since the access token was
    /// obtained: how much more time the boot clock says has passed than the wall clock
    /// does. 0 when it was not set back (a clock set forward makes tokens look older,
    /// which costs a refresh, never an expired token), and when the boot clock cannot
    /// tell: no stamp (an earlier version's record), another boot, no boot clock here.
    ///
    /// The boot clock's time is rounded up and the wall clock's seconds are whole
    /// (`obtained_at` rounded down), so a record may lose up to a second this way: never
    /// the other way round.
    pub fn clock_setback(&self, now: &Now) -> u64 {
        let (Some(then), Some(at)) = (&self.obtained_boot, &now.boot) else {
            return 0;
        };
        if then.boot != at.boot || at.ms < then.ms {
            return 0;
        }
        let passed = (at.ms - then.ms).div_ceil(1000);
        let wall_passed = i128::from(now.wall) - i128::from(self.obtained_at);
        u64::try_from(i128::from(passed) - wall_passed).unwrap_or(0)
    }

    /// When the access token stops working, on the wall clock as it reads at `now`.
    pub fn expires_at_on(&self, now: &Now) -> Option<u64> {
        let back = self.clock_setback(now);
        self.expires_at.map(|e| e.saturating_sub(back))
    }

    /// When the access token was obtained, on the wall clock as it reads at `now`.
    pub fn obtained_at_on(&self, now: &Now) -> u64 {
        self.obtained_at.saturating_sub(self.clock_setback(now))
    }

    /// Seconds the access token has left at `now` (0 when expired or unknown).
    pub fn remaining(&self, now: impl Into<Now>) -> u64 {
        let now = now.into();
        self.expires_at_on(&now)
            .map_or(0, |e| e.saturating_sub(now.wall))
    }

    /// The access token, if it stays valid for what `min_valid` asks at `now`.
    pub fn usable_access_token(&self, now: impl Into<Now>, min_valid: Duration) -> Option<&Secret> {
        let now = now.into();
        let token = self.access_token.as_ref()?;
        let need = required_validity(min_valid, self.lifetime());
        // A token with an unknown expiry is never trusted: a refresh sets one.
        let expires_at = self.expires_at_on(&now)?;
        (expires_at > now.wall && expires_at - now.wall >= need.as_secs().max(1)).then_some(token)
    }

    /// Records a fresh access token from a token response; `now` is when it was asked
    /// for (or, at the latest, received).
    pub fn set_access_token(
        &mut self,
        token: Secret,
        expires_in: Option<Duration>,
        now: impl Into<Now>,
    ) {
        let now = now.into();
        let (lifetime, assumed) = match expires_in {
            Some(d) => (d, false),
            None => (ASSUMED_LIFETIME, true),
        };
        self.access_token = Some(token);
        self.obtained_at = now.wall;
        self.obtained_boot = now.boot;
        self.expires_at = Some(now.wall + lifetime.as_secs());
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

    fn at(wall: u64, ms: u64) -> Now {
        Now {
            wall,
            boot: Some(BootStamp {
                boot: "boot-a".into(),
                ms,
            }),
        }
    }

    /// A 6-second token obtained at wall second 10 000, 50 s into the boot.
    fn short() -> TokenRecord {
        let mut r = TokenRecord::default();
        r.set_access_token(
            Secret::new("at"),
            Some(Duration::from_secs(6)),
            at(10_000, 50_000),
        );
        r
    }

    #[test]
    fn a_clock_set_back_an_hour_does_not_lengthen_a_token_s_life() {
        let r = short();
        // Two seconds later the wall clock is set back an hour: by the wall clock
        // alone the token would have 3604 s left.
        let later = at(10_002 - 3600, 52_000);
        assert_eq!(r.clock_setback(&later), 3600);
        assert_eq!(r.remaining(later.clone()), 4);
        assert_eq!(r.expires_at_on(&later), Some(10_006 - 3600));
        assert_eq!(r.obtained_at_on(&later), 10_000 - 3600);
        assert!(r.usable_access_token(later, Duration::ZERO).is_some());
        // Seven seconds after it was obtained it is dead, whatever the wall clock says.
        let dead = at(10_007 - 3600, 57_000);
        assert_eq!(r.remaining(dead.clone()), 0);
        assert!(r.usable_access_token(dead, Duration::ZERO).is_none());
    }

    #[test]
    fn a_clock_set_forward_only_makes_a_token_look_older() {
        let r = short();
        let later = at(10_002 + 3600, 52_000);
        assert_eq!(r.clock_setback(&later), 0);
        assert_eq!(r.remaining(later.clone()), 0);
        assert!(r.usable_access_token(later, Duration::ZERO).is_none());
    }

    #[test]
    fn without_a_stamp_of_the_same_boot_the_wall_clock_alone_rules() {
        let r = short();
        // Another boot: its clock started again from zero.
        let rebooted = Now {
            wall: 10_002 - 3600,
            boot: Some(BootStamp {
                boot: "boot-b".into(),
                ms: 2_000,
            }),
        };
        assert_eq!(r.clock_setback(&rebooted), 0);
        assert_eq!(r.remaining(rebooted), 3604);
        // No boot clock here, or a record written before stamps existed.
        assert_eq!(r.clock_setback(&Now::from(10_002 - 3600)), 0);
        let mut old = r.clone();
        old.obtained_boot = None;
        assert_eq!(old.clock_setback(&at(10_002 - 3600, 52_000)), 0);
        // A boot clock behind the stamp cannot be of the same boot's clock: ignored.
        assert_eq!(r.clock_setback(&at(9_000, 49_000)), 0);
    }

    #[test]
    fn an_unset_clock_costs_at_most_a_second_of_rounding() {
        let r = short();
        // 1.5 s later: the boot clock's 2 s against the wall clock's whole 1 or 2 s.
        assert_eq!(r.clock_setback(&at(10_001, 51_500)), 1);
        assert_eq!(r.clock_setback(&at(10_002, 51_500)), 0);
        assert_eq!(r.clock_setback(&at(10_003, 53_000)), 0);
    }

    #[test]
    fn the_boot_stamp_is_stored_only_when_known_and_read_back() {
        let v = serde_json::to_value(short()).unwrap();
        assert_eq!(
            v["obtained_boot"],
            serde_json::json!({"boot": "boot-a", "ms": 50_000})
        );
        assert_eq!(serde_json::from_value::<TokenRecord>(v).unwrap(), short());
        let mut r = TokenRecord::default();
        r.set_access_token(Secret::new("at"), None, 100);
        let v = serde_json::to_value(&r).unwrap();
        assert!(v.get("obtained_boot").is_none(), "{v}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_machine_has_a_boot_clock_that_goes_forward() {
        let a = Now::current().boot.expect("CLOCK_BOOTTIME and the boot id");
        std::thread::sleep(Duration::from_millis(20));
        let b = Now::current().boot.unwrap();
        assert_eq!(a.boot, b.boot);
        assert!(b.ms >= a.ms + 20, "{a:?} {b:?}");
    }

    #[test]
    fn old_records_with_unknown_fields_still_parse() {
        let r: TokenRecord =
            serde_json::from_str(r#"{"refresh_token":"rt","obtained_at":5,"future":1}"#).unwrap();
        assert_eq!(r.refresh_token.unwrap().expose(), "rt");
    }
}
