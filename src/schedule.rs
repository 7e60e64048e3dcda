//! When an account's token is refreshed ahead of expiry, and how retries after a
//! transient failure are spaced: pure decisions on wall-clock seconds, kept apart from
//! timers and I/O so they can be tested exhaustively (`state.rs` applies them).

use crate::record::{Now, TokenRecord, required_validity};
use std::time::Duration;

/// The refresh happens at the latest this long before expiry, even if nobody asked for a
/// minimum validity: clocks drift and requests take time in flight.
pub const MARGIN: Duration = Duration::from_secs(60);

/// Transient failures are retried after 5 s, 10 s, 20 s ... at most 5 minutes apart.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// How long before expiry the refresh of `rec` is due: the longest validity asked for
/// (capped at half the lifetime, as for `--min-valid`), at least [`MARGIN`], but never
/// more than half the token's lifetime, so that a token living shorter than the margin
/// is refreshed once per half-life rather than in a loop.
pub fn lead(rec: &TokenRecord, longest_min_valid: Duration) -> Duration {
    let lifetime = rec.lifetime();
    let wanted = required_validity(longest_min_valid, lifetime).max(MARGIN);
    match lifetime {
        Some(l) => wanted.min(l / 2),
        None => wanted,
    }
}

/// The wall-clock second (on the wall clock as it reads at `now`: it may have been set
/// back since the token was obtained) at which `rec` should be refreshed, or `None`
/// when there is nothing to refresh (no refresh token nor app credentials, or no known
/// expiry).
pub fn refresh_at(rec: &TokenRecord, longest_min_valid: Duration, now: &Now) -> Option<u64> {
    if !rec.renewable() {
        return None;
    }
    let expires_at = rec.expires_at_on(now)?;
    Some(expires_at.saturating_sub(lead(rec, longest_min_valid).as_secs()))
}

/// Delay before retry number `failures` (1-based) of a transiently failed refresh, with
/// `jitter` in [0, 1) spreading retries of many accounts and many users: ±20%.
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let d = exp.min(BACKOFF_CAP);
    d.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn rec(obtained: u64, lifetime: u64) -> TokenRecord {
        TokenRecord {
            refresh_token: Some(Secret::new("rt")),
            access_token: Some(Secret::new("at")),
            obtained_at: obtained,
            expires_at: Some(obtained + lifetime),
            ..Default::default()
        }
    }

    const FIVE_MIN: Duration = Duration::from_secs(300);

    /// The wall clock alone: the boot clock's part is `record.rs`'s and `state.rs`'s.
    fn wall() -> Now {
        Now::from(0)
    }

    #[test]
    fn an_hour_token_is_refreshed_five_minutes_before_expiry() {
        assert_eq!(
            refresh_at(&rec(1000, 3600), FIVE_MIN, &wall()),
            Some(1000 + 3600 - 300)
        );
    }

    #[test]
    fn a_longer_min_valid_moves_the_refresh_earlier_but_not_before_half_life() {
        assert_eq!(
            refresh_at(&rec(0, 3600), Duration::from_secs(1200), &wall()),
            Some(2400)
        );
        assert_eq!(
            refresh_at(&rec(0, 3600), Duration::from_secs(7200), &wall()),
            Some(1800)
        );
    }

    #[test]
    fn nobody_asking_still_refreshes_a_margin_before_expiry() {
        assert_eq!(
            refresh_at(&rec(0, 3600), Duration::ZERO, &wall()),
            Some(3600 - 60)
        );
    }

    #[test]
    fn a_token_shorter_than_the_margin_is_refreshed_at_half_life_not_in_a_loop() {
        // 30 s tokens: the margin (60 s) would put the refresh before the token was
        // even issued, and every refresh would be due at once again.
        let r = rec(1000, 30);
        assert_eq!(refresh_at(&r, FIVE_MIN, &wall()), Some(1015));
        for lifetime in 1..200 {
            let r = rec(5000, lifetime);
            let at = refresh_at(&r, FIVE_MIN, &wall()).unwrap();
            assert!(
                at > 5000 || lifetime < 2,
                "lifetime {lifetime}: refresh at {at} is not after issue"
            );
        }
    }

    #[test]
    fn an_app_only_record_is_scheduled_without_a_refresh_token() {
        let mut r = rec(1000, 3600);
        r.refresh_token = None;
        r.app_only = true;
        assert_eq!(refresh_at(&r, FIVE_MIN, &wall()), Some(1000 + 3600 - 300));
    }

    #[test]
    fn no_refresh_token_or_no_expiry_means_no_schedule() {
        let mut r = rec(0, 3600);
        r.refresh_token = None;
        assert_eq!(refresh_at(&r, FIVE_MIN, &wall()), None);
        let mut r = rec(0, 3600);
        r.expires_at = None;
        assert_eq!(refresh_at(&r, FIVE_MIN, &wall()), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        assert_eq!(backoff(1, 0.5), Duration::from_secs(5));
        assert_eq!(backoff(2, 0.5), Duration::from_secs(10));
        assert_eq!(backoff(3, 0.5), Duration::from_secs(20));
        assert_eq!(backoff(30, 0.5), BACKOFF_CAP);
        assert_eq!(backoff(1, 0.0), Duration::from_secs(4));
        assert_eq!(backoff(1, 0.999_999).as_secs(), 5);
        assert!(backoff(100, 1.0) <= BACKOFF_CAP.mul_f64(1.2));
    }
}
