//! Event rates over a sliding period, in 12 bytes per counter.
//!
//! Time is cut into aligned periods; a counter keeps the events of the current period
//! and of the previous one, and estimates the events of the last `period` as the
//! current count plus the previous count weighted by how much of the previous period
//! the sliding window still covers (HAProxy's `freq_ctr` does the same). The estimate
//! is never below the events of the current period and never above those of the
//! current and previous periods together; with evenly spread events it is exact.

use std::time::Duration;

use crate::time::{Time, nanos};

/// The length of a sliding window (at least one millisecond).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Period(u64);

impl Period {
    /// A window of `d`; `None` below one millisecond.
    pub fn new(d: Duration) -> Option<Self> {
        let n = nanos(d);
        (n >= 1_000_000).then_some(Period(n))
    }

    /// The window's length.
    pub fn duration(&self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// The aligned period `now` falls in, modulo 2³².
    fn epoch(&self, now: Time) -> u32 {
        (now.as_nanos() / self.0) as u32
    }
}

/// Events over a sliding [`Period`]. The default has seen nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateCounter {
    cur: u32,
    prev: u32,
    /// The aligned period `cur` counts, modulo 2³² (a counter left alone for exactly
    /// 2³² periods would be misread; tables expire entries long before).
    epoch: u32,
}

impl RateCounter {
    fn rotate(&mut self, period: Period, now: Time) {
        let e = period.epoch(now);
        match e.wrapping_sub(self.epoch) {
            0 => {}
            1 => {
                self.prev = self.cur;
                self.cur = 0;
            }
            _ => {
                self.prev = 0;
                self.cur = 0;
            }
        }
        self.epoch = e;
    }

    /// Records `n` events at `now`. Times must not run backwards.
    pub fn add(&mut self, period: Period, now: Time, n: u32) {
        self.rotate(period, now);
        self.cur = self.cur.saturating_add(n);
    }

    /// The estimated events of the last `period` before `now`.
    pub fn rate(&self, period: Period, now: Time) -> u32 {
        let (cur, prev) = match period.epoch(now).wrapping_sub(self.epoch) {
            0 => (self.cur, self.prev),
            1 => (0, self.cur),
            _ => (0, 0),
        };
        let elapsed = now.as_nanos() % period.0;
        let weighted = u128::from(prev) * u128::from(period.0 - elapsed) / u128::from(period.0);
        // weighted <= prev, so this fits.
        cur.saturating_add(weighted as u32)
    }

    /// True when the counter reads zero at `now` and forever after (without new events).
    pub fn is_idle(&self, period: Period, now: Time) -> bool {
        self.rate(period, now) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slides() {
        let p = Period::new(Duration::from_secs(10)).unwrap();
        let mut c = RateCounter::default();
        for s in 0..10 {
            c.add(p, Time::from_secs(100 + s), 3);
        }
        assert_eq!(c.rate(p, Time::from_millis(109_999)), 30);
        // Half-way into the next period: half of the previous still counts.
        assert_eq!(c.rate(p, Time::from_secs(115)), 15);
        c.add(p, Time::from_secs(115), 4);
        assert_eq!(c.rate(p, Time::from_secs(115)), 19);
        assert_eq!(c.rate(p, Time::from_secs(125)), 2);
        assert_eq!(c.rate(p, Time::from_secs(130)), 0);
        assert!(Period::new(Duration::from_micros(10)).is_none());
    }
}
