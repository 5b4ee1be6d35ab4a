//! Quotas and the generic cell rate algorithm (GCRA).
//!
//! A [`Quota`] is a sustained rate (`count` per `period`) with a burst: from rest, up
//! to `burst` requests pass at once, then one every `period / count`. GCRA keeps one
//! number per key, the theoretical arrival time (TAT) of the next request at the
//! sustained rate; a request passes when it would not push the TAT more than
//! `burst × interval` ahead of now. A denied request changes nothing, so a client that
//! keeps hammering does not lock itself out for longer than the quota says, and the
//! `retry_after` of a denial is exact: retried then, with nothing else in between, the
//! same request passes.
//!
//! [`crate::TokenBucket`] makes the same decisions with a different state (the property
//! tests check that they agree on every sequence).

use std::time::Duration;

use crate::time::{Time, nanos};

/// Longest `burst × interval` a quota may span (about 146 years), so that arithmetic
/// on times never overflows.
const MAX_SPAN: u64 = 1 << 62;

/// A rate with a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    /// Nanoseconds between two requests at the sustained rate.
    interval: u64,
    /// Requests that may pass at once from rest.
    burst: u32,
}

/// Why a quota is impossible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// `count` is zero.
    #[error("the count must be at least 1")]
    ZeroCount,
    /// The period is zero or shorter than `count` nanoseconds.
    #[error("the period must be at least one nanosecond per request")]
    PeriodTooShort,
    /// The burst is zero.
    #[error("the burst must be at least 1")]
    ZeroBurst,
    /// `burst × period / count` is longer than a century.
    #[error("burst × period / count is too long")]
    TooLong,
}

impl Quota {
    /// `count` requests per `period` sustained, `burst` at once from rest.
    pub fn new(count: u32, period: Duration, burst: u32) -> Result<Self, QuotaError> {
        if count == 0 {
            return Err(QuotaError::ZeroCount);
        }
        if burst == 0 {
            return Err(QuotaError::ZeroBurst);
        }
        let interval = nanos(period) / u64::from(count);
        if interval == 0 {
            return Err(QuotaError::PeriodTooShort);
        }
        match interval.checked_mul(u64::from(burst)) {
            Some(span) if span <= MAX_SPAN => Ok(Self { interval, burst }),
            _ => Err(QuotaError::TooLong),
        }
    }

    /// `n` per second with a burst of `n`.
    pub fn per_second(n: u32) -> Result<Self, QuotaError> {
        Self::new(n, Duration::from_secs(1), n)
    }

    /// Time between two requests at the sustained rate.
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval)
    }

    /// Requests that may pass at once from rest.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    pub(crate) fn interval_nanos(&self) -> u64 {
        self.interval
    }

    /// `burst × interval` in nanoseconds: how far ahead of now the TAT may run.
    pub(crate) fn span_nanos(&self) -> u64 {
        self.interval * u64::from(self.burst)
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The request passes; `remaining` more could pass right now.
    Allow {
        /// Requests that could still pass at this instant.
        remaining: u32,
    },
    /// The request is refused and the state is unchanged. Retried after `retry_after`
    /// with nothing else in between, it passes (a cost above the burst never does).
    Deny {
        /// Time until the request would pass.
        retry_after: Duration,
    },
}

impl Decision {
    /// True for [`Decision::Allow`].
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

/// GCRA state of one key: 8 bytes. The default is a key at rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GcraState {
    tat: u64,
}

impl Quota {
    /// Checks one request of cost 1 at `now`, updating `state` when it passes.
    pub fn check(&self, state: &mut GcraState, now: Time) -> Decision {
        self.check_n(state, now, 1)
    }

    /// Checks a request of cost `n` (it weighs as `n` requests).
    pub fn check_n(&self, state: &mut GcraState, now: Time, n: u32) -> Decision {
        let now = now.as_nanos();
        let cost = self.interval.saturating_mul(u64::from(n));
        let new_tat = state.tat.max(now).saturating_add(cost);
        let ahead = new_tat - now;
        let span = self.span_nanos();
        if ahead > span {
            return Decision::Deny {
                retry_after: Duration::from_nanos(ahead - span),
            };
        }
        state.tat = new_tat;
        Decision::Allow {
            remaining: u32::try_from((span - ahead) / self.interval).unwrap_or(u32::MAX),
        }
    }

    /// True when `state` is back at rest at `now` (a full burst would pass): such a
    /// state carries no information and can be dropped.
    pub fn at_rest(&self, state: &GcraState, now: Time) -> bool {
        state.tat <= now.as_nanos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Time {
        Time::from_millis(n)
    }

    #[test]
    fn burst_then_sustained_rate() {
        // 10/s, burst 3.
        let q = Quota::new(10, Duration::from_secs(1), 3).unwrap();
        let mut s = GcraState::default();
        let t0 = ms(1000);
        assert_eq!(q.check(&mut s, t0), Decision::Allow { remaining: 2 });
        assert_eq!(q.check(&mut s, t0), Decision::Allow { remaining: 1 });
        assert_eq!(q.check(&mut s, t0), Decision::Allow { remaining: 0 });
        assert_eq!(
            q.check(&mut s, t0),
            Decision::Deny {
                retry_after: Duration::from_millis(100)
            }
        );
        // Exactly when told, it passes.
        assert!(q.check(&mut s, ms(1100)).is_allowed());
        assert!(!q.check(&mut s, ms(1150)).is_allowed());
        // After a rest, the whole burst is back.
        assert_eq!(q.check(&mut s, ms(5000)), Decision::Allow { remaining: 2 });
    }

    #[test]
    fn costs_above_the_burst_never_pass() {
        let q = Quota::new(1, Duration::from_secs(1), 2).unwrap();
        let mut s = GcraState::default();
        assert!(!q.check_n(&mut s, ms(0), 3).is_allowed());
        assert!(q.check_n(&mut s, ms(0), 2).is_allowed());
    }

    #[test]
    fn bad_quotas() {
        assert_eq!(
            Quota::new(0, Duration::from_secs(1), 1),
            Err(QuotaError::ZeroCount)
        );
        assert_eq!(
            Quota::new(1, Duration::from_secs(1), 0),
            Err(QuotaError::ZeroBurst)
        );
        assert_eq!(
            Quota::new(10, Duration::from_nanos(5), 1),
            Err(QuotaError::PeriodTooShort)
        );
        assert_eq!(
            Quota::new(1, Duration::from_secs(86_400 * 365 * 100), 1_000_000),
            Err(QuotaError::TooLong)
        );
    }
}
