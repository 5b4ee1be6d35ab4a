//! Per-key counters in the spirit of HAProxy's stick tables, in a [`BoundedLru`].
//!
//! For each key (a source address or prefix): connections open now (`conn_cur`), and
//! over sliding periods the rates of connections (`conn_rate`), TLS handshakes
//! (`handshake_rate`), HTTP requests (`http_req_rate`), HTTP errors (`http_err_rate`)
//! and offences (`offence_rate`, weighted), plus how many times the key was banned.
//! A key with open connections is pinned (never evicted, never expired); the others go
//! least recently seen first when the table is full, or after `expire` without being
//! seen.

use std::hash::Hash;
use std::time::Duration;

use crate::lru::{BoundedLru, Full};
use crate::time::Time;
use crate::window::{Period, RateCounter};

/// The sliding periods of a table's rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periods {
    /// Of `conn_rate`.
    pub conn: Period,
    /// Of `handshake_rate`.
    pub handshake: Period,
    /// Of `http_req_rate`.
    pub http_req: Period,
    /// Of `http_err_rate`.
    pub http_err: Period,
    /// Of `offence_rate`.
    pub offence: Period,
}

/// The counters of one key (72 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    conn_cur: u32,
    bans: u32,
    conn_rate: RateCounter,
    handshake_rate: RateCounter,
    http_req_rate: RateCounter,
    http_err_rate: RateCounter,
    offence_rate: RateCounter,
}

/// What a key's counters read at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Connections open now.
    pub conn_cur: u32,
    /// Connections (attempts included) over the conn period.
    pub conn_rate: u32,
    /// TLS handshakes (attempts) over the handshake period.
    pub handshake_rate: u32,
    /// HTTP requests over the request period.
    pub http_req_rate: u32,
    /// HTTP errors over the error period.
    pub http_err_rate: u32,
    /// Offence weight over the offence period.
    pub offence_rate: u32,
    /// Times the key was banned while it was tracked.
    pub bans: u32,
}

impl Counters {
    fn snapshot(&self, p: &Periods, now: Time) -> Snapshot {
        Snapshot {
            conn_cur: self.conn_cur,
            conn_rate: self.conn_rate.rate(p.conn, now),
            handshake_rate: self.handshake_rate.rate(p.handshake, now),
            http_req_rate: self.http_req_rate.rate(p.http_req, now),
            http_err_rate: self.http_err_rate.rate(p.http_err, now),
            offence_rate: self.offence_rate.rate(p.offence, now),
            bans: self.bans,
        }
    }
}

/// A new connection, as [`StickTable::connection`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionAttempt {
    /// Whether the connection will do a TLS handshake here (counted in
    /// `handshake_rate`).
    pub handshake: bool,
}

/// Per-key counters with a hard bound on the number of keys.
#[derive(Debug)]
pub struct StickTable<K> {
    map: BoundedLru<K, Counters>,
    periods: Periods,
    evicted: u64,
}

impl<K: Hash + Eq + Clone> StickTable<K> {
    /// A table of at most `capacity` keys.
    pub fn new(capacity: usize, periods: Periods) -> Self {
        Self {
            map: BoundedLru::new(capacity),
            periods,
            evicted: 0,
        }
    }

    /// Keys tracked.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The most keys tracked.
    pub fn capacity(&self) -> usize {
        self.map.capacity()
    }

    /// Keys evicted to make room so far.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// The periods.
    pub fn periods(&self) -> &Periods {
        &self.periods
    }

    /// Changes the periods (counters keep their counts; rates read with the new
    /// periods from now on).
    pub fn set_periods(&mut self, periods: Periods) {
        self.periods = periods;
    }

    fn entry(&mut self, key: K, now: Time) -> Result<&mut Counters, Full> {
        let a = self.map.get_or_insert_with(key, now, Counters::default)?;
        if a.evicted.is_some() {
            self.evicted += 1;
        }
        Ok(a.value)
    }

    /// A new connection from `key`: counts it in `conn_rate` (and `handshake_rate`),
    /// then asks `decide` with the counters as they read now (the attempt included,
    /// `conn_cur` not yet). When `decide` says yes, `conn_cur` goes up and the key is
    /// pinned until [`Self::close`]. Returns the decision; `Err(Full)` when the key is
    /// new and the table is full of pinned keys.
    pub fn connection(
        &mut self,
        key: &K,
        now: Time,
        attempt: ConnectionAttempt,
        decide: impl FnOnce(&Snapshot) -> bool,
    ) -> Result<bool, Full> {
        let p = self.periods;
        let c = self.entry(key.clone(), now)?;
        c.conn_rate.add(p.conn, now, 1);
        if attempt.handshake {
            c.handshake_rate.add(p.handshake, now, 1);
        }
        let admit = decide(&c.snapshot(&p, now));
        if admit {
            c.conn_cur = c.conn_cur.saturating_add(1);
            if c.conn_cur == 1 {
                self.map.set_pinned(key, true, now);
            }
        }
        Ok(admit)
    }

    /// A connection from `key` closed.
    pub fn close(&mut self, key: &K, now: Time) {
        let Some(c) = self.map.get_mut(key, now) else {
            return;
        };
        c.conn_cur = c.conn_cur.saturating_sub(1);
        if c.conn_cur == 0 {
            self.map.set_pinned(key, false, now);
        }
    }

    /// An HTTP request from `key`; the counters after it.
    pub fn request(&mut self, key: &K, now: Time) -> Result<Snapshot, Full> {
        let p = self.periods;
        let c = self.entry(key.clone(), now)?;
        c.http_req_rate.add(p.http_req, now, 1);
        Ok(c.snapshot(&p, now))
    }

    /// An HTTP error caused by `key` (a 4xx answer); the counters after it.
    pub fn error(&mut self, key: &K, now: Time) -> Result<Snapshot, Full> {
        let p = self.periods;
        let c = self.entry(key.clone(), now)?;
        c.http_err_rate.add(p.http_err, now, 1);
        Ok(c.snapshot(&p, now))
    }

    /// An offence of `weight` by `key`; the counters after it.
    pub fn offence(&mut self, key: &K, now: Time, weight: u32) -> Result<Snapshot, Full> {
        let p = self.periods;
        let c = self.entry(key.clone(), now)?;
        c.offence_rate.add(p.offence, now, weight);
        Ok(c.snapshot(&p, now))
    }

    /// Records that `key` was banned: its offence count starts over and its ban count
    /// goes up. Returns the new ban count (1 for a first ban).
    pub fn banned(&mut self, key: &K, now: Time) -> u32 {
        match self.map.get_mut(key, now) {
            Some(c) => {
                c.offence_rate = RateCounter::default();
                c.bans = c.bans.saturating_add(1);
                c.bans
            }
            None => 1,
        }
    }

    /// The counters of `key` at `now`, without marking it seen.
    pub fn get(&self, key: &K, now: Time) -> Option<Snapshot> {
        self.map.get(key).map(|c| c.snapshot(&self.periods, now))
    }

    /// Forgets keys without open connections not seen for `idle`, at most `max` of
    /// them; returns how many.
    pub fn expire(&mut self, now: Time, idle: Duration, max: usize) -> usize {
        self.map.expire(now.saturating_sub(idle), max, |_, _| {})
    }

    /// Every key with its counters at `now` and when it was last seen.
    pub fn iter(&self, now: Time) -> impl Iterator<Item = (&K, Snapshot, Time)> + '_ {
        let p = self.periods;
        self.map
            .iter()
            .map(move |(k, c, seen, _)| (k, c.snapshot(&p, now), seen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn periods() -> Periods {
        let s10 = Period::new(Duration::from_secs(10)).unwrap();
        Periods {
            conn: s10,
            handshake: s10,
            http_req: s10,
            http_err: s10,
            offence: Period::new(Duration::from_secs(60)).unwrap(),
        }
    }

    const TLS: ConnectionAttempt = ConnectionAttempt { handshake: true };

    #[test]
    fn counts_connections_and_rates() {
        let mut t: StickTable<u32> = StickTable::new(10, periods());
        let now = Time::from_secs(100);
        for i in 0..3 {
            let ok = t
                .connection(&7, now, TLS, |s| {
                    assert_eq!(s.conn_cur, i);
                    assert_eq!(s.conn_rate, i + 1);
                    s.conn_cur < 2
                })
                .unwrap();
            assert_eq!(ok, i < 2);
        }
        let s = t.get(&7, now).unwrap();
        assert_eq!((s.conn_cur, s.conn_rate, s.handshake_rate), (2, 3, 3));
        t.request(&7, now).unwrap();
        t.error(&7, now).unwrap();
        assert_eq!(t.offence(&7, now, 5).unwrap().offence_rate, 5);
        assert_eq!(t.banned(&7, now), 1);
        assert_eq!(t.get(&7, now).unwrap().offence_rate, 0);
        t.close(&7, now);
        t.close(&7, now);
        t.close(&7, now); // extra closes never underflow
        assert_eq!(t.get(&7, now).unwrap().conn_cur, 0);
        assert_eq!(
            t.expire(Time::from_secs(1000), Duration::from_secs(60), 100),
            1
        );
        assert!(t.is_empty());
    }

    #[test]
    fn sources_with_open_connections_are_never_evicted() {
        let mut t: StickTable<u32> = StickTable::new(2, periods());
        let now = Time::from_secs(1);
        assert!(t.connection(&1, now, TLS, |_| true).unwrap());
        // A flood of other sources cycles through the one free place.
        for k in 100..200 {
            t.request(&k, now).unwrap();
        }
        assert_eq!(t.get(&1, now).unwrap().conn_cur, 1);
        assert_eq!(t.evicted(), 99);
        assert!(t.connection(&2, now, TLS, |_| true).unwrap());
        // Full of pinned keys: new keys are refused, not tracked.
        assert_eq!(t.request(&3, now), Err(Full));
    }

    proptest! {
        /// However many distinct keys arrive, the table never holds more than its
        /// capacity, and conn_cur of every key equals opens minus closes.
        #[test]
        fn bounded_and_exact(cap in 1usize..50, events in proptest::collection::vec((0u32..500, 0u8..4), 0..2000)) {
            let mut t: StickTable<u32> = StickTable::new(cap, periods());
            let mut open: std::collections::HashMap<u32, u32> = Default::default();
            for (i, (k, what)) in events.into_iter().enumerate() {
                let now = Time::from_millis(i as u64);
                match what {
                    0 => {
                        let pinned = open.values().filter(|n| **n > 0).count();
                        match t.connection(&k, now, TLS, |_| true) {
                            Ok(true) => *open.entry(k).or_default() += 1,
                            Ok(false) => unreachable!(),
                            Err(Full) => prop_assert!(pinned >= cap && !open.contains_key(&k)),
                        }
                    }
                    1 => {
                        if let Some(n) = open.get_mut(&k) && *n > 0 {
                            *n -= 1;
                            t.close(&k, now);
                        }
                    }
                    2 => { let _ = t.request(&k, now); }
                    _ => { let _ = t.offence(&k, now, 1); }
                }
                open.retain(|_, n| *n > 0);
                prop_assert!(t.len() <= cap);
                for (k, n) in &open {
                    prop_assert_eq!(t.get(k, now).map(|s| s.conn_cur), Some(*n));
                }
            }
        }
    }
}
