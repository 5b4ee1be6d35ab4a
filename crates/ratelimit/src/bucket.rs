//! The token bucket: `burst` tokens, refilled at the quota's sustained rate, one spent
//! per request. Tokens are counted in nanoseconds of refill so that the arithmetic is
//! exact; a bucket makes exactly the decisions [`Quota::check`] (GCRA) makes, with a
//! larger state (16 bytes against 8).

use crate::gcra::{Decision, Quota};
use crate::time::Time;

/// The bucket of one key. The default is a full bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BucketState {
    /// Missing credit in nanoseconds of refill (0: full), as of `at`.
    deficit: u64,
    at: u64,
}

/// Token-bucket semantics for a [`Quota`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    quota: Quota,
}

impl TokenBucket {
    /// A bucket holding `quota.burst()` tokens, refilled one per `quota.interval()`.
    pub fn new(quota: Quota) -> Self {
        Self { quota }
    }

    /// Takes one token at `now` if there is one.
    pub fn check(&self, state: &mut BucketState, now: Time) -> Decision {
        self.check_n(state, now, 1)
    }

    /// Takes `n` tokens at `now` if there are that many; otherwise takes none.
    pub fn check_n(&self, state: &mut BucketState, now: Time, n: u32) -> Decision {
        let now = now.as_nanos();
        let capacity = self.quota.span_nanos();
        let interval = self.quota.interval_nanos();
        // Refill since the last update (time never runs backwards here).
        let refilled = now.saturating_sub(state.at);
        let deficit = state.deficit.saturating_sub(refilled);
        let credit = capacity - deficit.min(capacity);
        let cost = interval.saturating_mul(u64::from(n));
        if cost > credit {
            return Decision::Deny {
                retry_after: std::time::Duration::from_nanos(cost - credit),
            };
        }
        state.deficit = deficit + cost;
        state.at = state.at.max(now);
        Decision::Allow {
            remaining: u32::try_from((credit - cost) / interval).unwrap_or(u32::MAX),
        }
    }

    /// Whole tokens in the bucket at `now`.
    pub fn tokens(&self, state: &BucketState, now: Time) -> u32 {
        let deficit = state
            .deficit
            .saturating_sub(now.as_nanos().saturating_sub(state.at));
        let credit = self.quota.span_nanos() - deficit.min(self.quota.span_nanos());
        u32::try_from(credit / self.quota.interval_nanos()).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn full_then_refills() {
        let b = TokenBucket::new(Quota::new(2, Duration::from_secs(1), 4).unwrap());
        let mut s = BucketState::default();
        let t = Time::from_secs(10);
        assert_eq!(b.tokens(&s, t), 4);
        for left in (0..4).rev() {
            assert_eq!(b.check(&mut s, t), Decision::Allow { remaining: left });
        }
        assert_eq!(
            b.check(&mut s, t),
            Decision::Deny {
                retry_after: Duration::from_millis(500)
            }
        );
        assert_eq!(b.tokens(&s, Time::from_secs(11)), 2);
        assert_eq!(b.tokens(&s, Time::from_secs(100)), 4);
    }
}
