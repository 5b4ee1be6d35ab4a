//! The protection layer's clock: monotonic nanoseconds for decisions, mapped to wall
//! time for people and exports.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rampart_ratelimit::Time;

/// A monotonic clock with its origin's wall time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
    wall_origin: SystemTime,
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            wall_origin: SystemTime::now(),
        }
    }

    /// Now.
    pub fn now(&self) -> Time {
        Time::from_nanos(u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    /// Seconds since the Unix epoch at `t`.
    pub fn unix_secs(&self, t: Time) -> u64 {
        let since = (self.wall_origin + std::time::Duration::from_nanos(t.as_nanos()))
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        since.as_secs()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

pub use rampart_model::time::rfc3339;

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_800_000_000), "2027-01-15T08:00:00Z");
    }
}
