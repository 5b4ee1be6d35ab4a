//! The time every decision is made at: nanoseconds on the caller's monotonic clock.

use std::time::Duration;

/// A point on the caller's monotonic clock, in nanoseconds from an origin the caller
/// chooses (usually the process start). Nothing in this crate reads a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(u64);

impl Time {
    /// The origin.
    pub const ZERO: Time = Time(0);

    /// `nanos` after the origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Time(nanos)
    }

    /// `millis` after the origin.
    pub const fn from_millis(millis: u64) -> Self {
        Time(millis.saturating_mul(1_000_000))
    }

    /// `secs` after the origin.
    pub const fn from_secs(secs: u64) -> Self {
        Time(secs.saturating_mul(1_000_000_000))
    }

    /// Nanoseconds after the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating at the end of time.
    pub fn saturating_add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(nanos(d)))
    }

    /// `self - d`, saturating at the origin.
    pub fn saturating_sub(self, d: Duration) -> Time {
        Time(self.0.saturating_sub(nanos(d)))
    }

    /// Time from `earlier` to `self`; zero when `earlier` is later.
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX` (584 years).
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Time::from_secs(5);
        assert_eq!(
            t.saturating_add(Duration::from_millis(1500)),
            Time::from_millis(6500)
        );
        assert_eq!(t.saturating_sub(Duration::from_secs(9)), Time::ZERO);
        assert_eq!(
            Time::from_nanos(u64::MAX).saturating_add(Duration::MAX),
            Time::from_nanos(u64::MAX)
        );
        assert_eq!(Time::ZERO.since(t), Duration::ZERO);
        assert_eq!(t.since(Time::from_secs(2)), Duration::from_secs(3));
    }
}
