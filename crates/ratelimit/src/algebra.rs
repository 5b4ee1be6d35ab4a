//! Property tests across the algorithms: GCRA and the token bucket agree, quotas
//! hold over every window, and sliding counters stay within their bounds.

use std::time::Duration;

use proptest::prelude::*;

use crate::{BucketState, GcraState, Period, Quota, RateCounter, Time, TokenBucket};

fn quota() -> impl Strategy<Value = Quota> {
    (1u32..50, 1u64..5_000, 1u32..20)
        .prop_map(|(count, ms, burst)| Quota::new(count, Duration::from_millis(ms), burst).unwrap())
}

/// Non-decreasing times with costs.
fn arrivals() -> impl Strategy<Value = Vec<(u64, u32)>> {
    proptest::collection::vec((0u64..400_000_000, 1u32..4), 0..200).prop_map(|v| {
        let mut t = 0;
        v.into_iter()
            .map(|(dt, n)| {
                // Mostly bursts (dt 0), sometimes gaps.
                t += if dt % 3 == 0 { 0 } else { dt };
                (t, n)
            })
            .collect()
    })
}

proptest! {
    /// GCRA and the token bucket make the same decision, with the same `remaining`
    /// and `retry_after`, on every sequence.
    #[test]
    fn gcra_and_token_bucket_agree(q in quota(), seq in arrivals()) {
        let bucket = TokenBucket::new(q);
        let (mut g, mut b) = (GcraState::default(), BucketState::default());
        for (t, n) in seq {
            let now = Time::from_nanos(t);
            prop_assert_eq!(q.check_n(&mut g, now, n), bucket.check_n(&mut b, now, n));
        }
    }

    /// Over any window of length W, at most burst + W / interval requests pass.
    #[test]
    fn never_more_than_burst_plus_rate(q in quota(), seq in arrivals()) {
        let mut g = GcraState::default();
        let mut passed = Vec::new();
        for (t, _) in seq {
            if q.check(&mut g, Time::from_nanos(t)).is_allowed() {
                passed.push(t);
            }
        }
        let interval = q.interval().as_nanos() as u64;
        for (i, start) in passed.iter().enumerate() {
            for (j, end) in passed.iter().enumerate().skip(i) {
                let in_window = (j - i + 1) as u64;
                let allowed = u64::from(q.burst()) + (end - start) / interval;
                prop_assert!(in_window <= allowed, "{in_window} in {}ns > {allowed}", end - start);
            }
        }
    }

    /// A client that paces itself at the sustained rate is never refused, and a
    /// refused request retried exactly at its `retry_after` passes.
    #[test]
    fn pacing_passes_and_retry_after_is_exact(q in quota(), start in 0u64..1_000_000_000, n in 1usize..100) {
        let mut g = GcraState::default();
        let interval = q.interval().as_nanos() as u64;
        for i in 0..n as u64 {
            prop_assert!(q.check(&mut g, Time::from_nanos(start + i * interval)).is_allowed());
        }
        // Exhaust the burst at one instant, then retry when told.
        let now = Time::from_nanos(start + n as u64 * interval);
        let mut denied = None;
        for _ in 0..=q.burst() {
            if let crate::Decision::Deny { retry_after } = q.check(&mut g, now) {
                denied = Some(retry_after);
                break;
            }
        }
        let retry = denied.expect("a burst + 1 requests at one instant is refused");
        prop_assert!(!q.check(&mut g, now.saturating_add(retry).saturating_sub(Duration::from_nanos(1))).is_allowed());
        prop_assert!(q.check(&mut g, now.saturating_add(retry)).is_allowed());
    }

    /// The sliding estimate lies between the events of the current aligned period and
    /// those of the current and previous periods.
    #[test]
    fn sliding_counter_bounds(period_ms in 1u64..1000, events in proptest::collection::vec((0u64..3_000_000_000, 1u32..5), 0..100), probe in 0u64..4_000_000_000) {
        let period = Period::new(Duration::from_millis(period_ms)).unwrap();
        let p = period.duration().as_nanos() as u64;
        let mut events = events;
        events.sort();
        let mut c = RateCounter::default();
        let probe = probe.max(events.last().map_or(0, |e| e.0));
        for (t, n) in &events {
            c.add(period, Time::from_nanos(*t), *n);
        }
        let cur_start = probe / p * p;
        let prev_start = cur_start.saturating_sub(p);
        let in_cur: u32 = events.iter().filter(|e| e.0 >= cur_start).map(|e| e.1).sum();
        let in_both: u32 = events.iter().filter(|e| e.0 >= prev_start && cur_start >= p || e.0 >= cur_start).map(|e| e.1).sum();
        let r = c.rate(period, Time::from_nanos(probe));
        prop_assert!(in_cur <= r && r <= in_both, "{in_cur} <= {r} <= {in_both}");
    }
}
