//! Load balancing: choosing a server of a backend. Pure: the caller passes the time
//! (milliseconds on a monotonic clock), the client address and a random number.
//!
//! A server is available when its active health check says healthy (servers start
//! healthy) and it is not passively ejected. When no server is available the choice is
//! `None` and the request fails with 503: fail closed, never a random unhealthy server.
//!
//! Algorithms, all weighted:
//! - round robin: a precomputed smooth weighted sequence (nginx's algorithm: weights
//!   5,1,1 give a,a,b,a,c,a,a rather than a,a,a,a,a,b,c) walked by an atomic counter;
//! - least connections: fewest in-flight requests per unit of weight, ties rotated;
//! - power of two choices: two random available servers, the less loaded wins;
//! - consistent hash: weighted rendezvous hashing of the client address, so removing a
//!   server only moves that server's clients.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::{Balance, PassiveEjection};

/// Live state of one server, shared by the balancer, the health checker and metrics.
/// It survives reloads when the backend keeps a server with the same address.
#[derive(Debug)]
pub struct ServerState {
    /// The address as written (for metrics and logs).
    pub label: String,
    healthy: AtomicBool,
    ejected_until_ms: AtomicU64,
    consecutive_failures: AtomicU32,
    /// Requests (HTTP) or connections (TCP) in flight.
    pub in_flight: AtomicU32,
    /// Times passive ejection took the server out.
    pub ejections: AtomicU64,
    /// Rise/fall counters of the active check.
    pub checks: Mutex<RiseFall>,
    hash_seed: u64,
}

impl ServerState {
    /// A healthy server.
    pub fn new(label: String) -> Self {
        let hash_seed = stable_hash(label.as_bytes());
        Self {
            label,
            healthy: AtomicBool::new(true),
            ejected_until_ms: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            in_flight: AtomicU32::new(0),
            ejections: AtomicU64::new(0),
            checks: Mutex::new(RiseFall::default()),
            hash_seed,
        }
    }

    /// What the active health check says.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Sets the active health state.
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    /// True when passively ejected at `now_ms`.
    pub fn is_ejected(&self, now_ms: u64) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) > now_ms
    }

    /// Healthy and not ejected.
    pub fn is_available(&self, now_ms: u64) -> bool {
        self.is_healthy() && !self.is_ejected(now_ms)
    }
}

/// Rise/fall hysteresis of an active health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RiseFall {
    /// Current verdict.
    pub healthy: bool,
    /// Consecutive results contradicting the verdict.
    pub streak: u32,
}

impl Default for RiseFall {
    fn default() -> Self {
        Self {
            healthy: true,
            streak: 0,
        }
    }
}

impl RiseFall {
    /// Records one check; returns the new verdict when it changes.
    pub fn observe(&mut self, ok: bool, rise: u32, fall: u32) -> Option<bool> {
        if ok == self.healthy {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if ok { rise } else { fall };
        if self.streak >= needed {
            self.healthy = ok;
            self.streak = 0;
            Some(ok)
        } else {
            None
        }
    }
}

/// Chooses servers of one backend.
#[derive(Debug)]
pub struct Balancer {
    algorithm: Balance,
    servers: Vec<Arc<ServerState>>,
    weights: Vec<u32>,
    sequence: Vec<u16>,
    counter: AtomicUsize,
    passive: PassiveEjection,
}

/// Longest precomputed round-robin sequence; larger weight sums are scaled down.
const MAX_SEQUENCE: u64 = 65_536;

impl Balancer {
    /// A balancer over `servers` with their `weights` (same length, at most 65 535).
    pub fn new(
        algorithm: Balance,
        servers: Vec<Arc<ServerState>>,
        weights: Vec<u32>,
        passive: PassiveEjection,
    ) -> Self {
        let sequence = smooth_sequence(&weights);
        Self {
            algorithm,
            servers,
            weights,
            sequence,
            counter: AtomicUsize::new(0),
            passive,
        }
    }

    /// The servers.
    pub fn servers(&self) -> &[Arc<ServerState>] {
        &self.servers
    }

    /// Picks an available server not in `exclude`. `random` should be uniformly
    /// random; `client` keys the consistent hash.
    pub fn pick(
        &self,
        now_ms: u64,
        client: Option<IpAddr>,
        random: u64,
        exclude: &[usize],
    ) -> Option<usize> {
        let ok = |i: usize| self.servers[i].is_available(now_ms) && !exclude.contains(&i);
        let n = self.servers.len();
        if n == 0 {
            return None;
        }
        match self.algorithm {
            Balance::RoundRobin => {
                // Slots of unavailable servers are consumed, not skipped locally, so
                // the remaining servers keep their relative weights.
                let len = self.sequence.len();
                (0..len)
                    .map(|_| {
                        let k = self.counter.fetch_add(1, Ordering::Relaxed);
                        usize::from(self.sequence[k % len])
                    })
                    .find(|&i| ok(i))
            }
            Balance::LeastConnections => {
                let start = self.counter.fetch_add(1, Ordering::Relaxed);
                let mut best: Option<(usize, u64)> = None;
                for k in 0..n {
                    let i = (start + k) % n;
                    if !ok(i) {
                        continue;
                    }
                    let load = self.load(i);
                    if best.is_none_or(|(_, b)| load < b) {
                        best = Some((i, load));
                    }
                }
                best.map(|(i, _)| i)
            }
            Balance::PowerOfTwo => {
                let available: Vec<usize> = (0..n).filter(|&i| ok(i)).collect();
                match available.len() {
                    0 => None,
                    1 => Some(available[0]),
                    m => {
                        let a = (random as u32 as usize) % m;
                        let mut b = ((random >> 32) as usize) % (m - 1);
                        if b >= a {
                            b += 1;
                        }
                        let (a, b) = (available[a], available[b]);
                        Some(if self.load(b) < self.load(a) { b } else { a })
                    }
                }
            }
            Balance::ConsistentHash => {
                let key = match client {
                    Some(IpAddr::V4(v4)) => stable_hash(&v4.octets()),
                    Some(IpAddr::V6(v6)) => stable_hash(&v6.octets()),
                    None => random,
                };
                let mut best: Option<(usize, f64)> = None;
                for i in (0..n).filter(|&i| ok(i)) {
                    let h = splitmix64(key ^ self.servers[i].hash_seed);
                    // A uniform value in (0, 1].
                    let u = ((h >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
                    let score = f64::from(self.weights[i]) / -u.ln().min(-f64::MIN_POSITIVE);
                    if best.is_none_or(|(_, s)| score > s) {
                        best = Some((i, score));
                    }
                }
                best.map(|(i, _)| i)
            }
        }
    }

    /// In-flight work scaled by weight (fixed point).
    fn load(&self, i: usize) -> u64 {
        let in_flight = u64::from(self.servers[i].in_flight.load(Ordering::Relaxed));
        (in_flight << 16) / u64::from(self.weights[i].max(1))
    }

    /// Records the outcome of a request to server `i` for passive ejection. Returns
    /// true when this failure ejected the server.
    pub fn report(&self, i: usize, ok: bool, now_ms: u64) -> bool {
        let Some(s) = self.servers.get(i) else {
            return false;
        };
        if ok {
            if s.consecutive_failures.load(Ordering::Relaxed) != 0 {
                s.consecutive_failures.store(0, Ordering::Relaxed);
            }
            return false;
        }
        let threshold = self.passive.consecutive_failures;
        if threshold == 0 {
            return false;
        }
        let failures = s.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= threshold {
            s.consecutive_failures.store(0, Ordering::Relaxed);
            let until = now_ms.saturating_add(self.passive.eject_for.as_millis() as u64);
            s.ejected_until_ms.store(until, Ordering::Relaxed);
            s.ejections.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        false
    }
}

/// Smooth weighted round robin, unrolled over one cycle.
fn smooth_sequence(weights: &[u32]) -> Vec<u16> {
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    let weights: Vec<i64> = if total > MAX_SEQUENCE {
        weights
            .iter()
            .map(|w| ((u64::from(*w) * MAX_SEQUENCE / total).max(1)) as i64)
            .collect()
    } else {
        weights.iter().map(|w| i64::from(*w)).collect()
    };
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..weights.len() {
            current[i] += weights[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u16);
    }
    out
}

/// A fixed, process-independent hash (FNV-1a then a mixer): consistent hashing must
/// give the same answer on every node and after restarts.
fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    splitmix64(h)
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn balancer(alg: Balance, weights: &[u32]) -> Balancer {
        let servers = (0..weights.len())
            .map(|i| Arc::new(ServerState::new(format!("10.0.0.{i}:80"))))
            .collect();
        Balancer::new(alg, servers, weights.to_vec(), PassiveEjection::default())
    }

    fn counts(b: &Balancer, n: usize, mut next: impl FnMut(u64) -> Option<usize>) -> Vec<usize> {
        let mut c = vec![0; b.servers().len()];
        for k in 0..n {
            if let Some(i) = next(k as u64) {
                c[i] += 1;
            }
        }
        c
    }

    #[test]
    fn smooth_round_robin_is_interleaved_and_weighted() {
        assert_eq!(smooth_sequence(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
        let b = balancer(Balance::RoundRobin, &[3, 1]);
        let c = counts(&b, 400, |_| b.pick(0, None, 0, &[]));
        assert_eq!(c, vec![300, 100]);
    }

    #[test]
    fn unavailable_servers_are_skipped_and_none_means_none() {
        let b = balancer(Balance::RoundRobin, &[1, 1, 1]);
        b.servers()[1].set_healthy(false);
        let c = counts(&b, 300, |_| b.pick(0, None, 0, &[]));
        assert_eq!(c, vec![150, 0, 150]);
        b.servers()[0].set_healthy(false);
        b.servers()[2].set_healthy(false);
        assert_eq!(b.pick(0, None, 0, &[]), None);
    }

    #[test]
    fn exclude_gives_another_server() {
        let b = balancer(Balance::RoundRobin, &[1, 1]);
        for _ in 0..10 {
            let first = b.pick(0, None, 0, &[]).unwrap();
            let second = b.pick(0, None, 0, &[first]).unwrap();
            assert_ne!(first, second);
            assert_eq!(b.pick(0, None, 0, &[first, second]), None);
        }
    }

    #[test]
    fn least_connections_prefers_idle_servers() {
        let b = balancer(Balance::LeastConnections, &[1, 1, 1]);
        b.servers()[0].in_flight.store(5, Ordering::Relaxed);
        b.servers()[2].in_flight.store(1, Ordering::Relaxed);
        assert_eq!(b.pick(0, None, 0, &[]), Some(1));
        // Equal load: ties rotate.
        let b = balancer(Balance::LeastConnections, &[1, 1]);
        let c = counts(&b, 100, |_| b.pick(0, None, 0, &[]));
        assert_eq!(c, vec![50, 50]);
    }

    #[test]
    fn power_of_two_avoids_the_busiest() {
        let b = balancer(Balance::PowerOfTwo, &[1, 1, 1]);
        b.servers()[0].in_flight.store(100, Ordering::Relaxed);
        let c = counts(&b, 3000, |k| b.pick(0, None, splitmix64(k), &[]));
        // Server 0 only wins when both draws are... never: it is always the busier one.
        assert_eq!(c[0], 0);
        assert!(c[1] > 1200 && c[2] > 1200, "{c:?}");
    }

    #[test]
    fn consistent_hash_is_sticky_and_moves_only_lost_clients() {
        let b = balancer(Balance::ConsistentHash, &[1, 1, 1, 1]);
        let clients: Vec<IpAddr> = (0..2000u32)
            .map(|i| IpAddr::V4((0x0a00_0000 + i).into()))
            .collect();
        let before: Vec<usize> = clients
            .iter()
            .map(|c| b.pick(0, Some(*c), 0, &[]).unwrap())
            .collect();
        let again: Vec<usize> = clients
            .iter()
            .map(|c| b.pick(0, Some(*c), 7, &[]).unwrap())
            .collect();
        assert_eq!(before, again);
        let mut per = [0usize; 4];
        for s in &before {
            per[*s] += 1;
        }
        assert!(per.iter().all(|n| *n > 350), "{per:?}");
        b.servers()[2].set_healthy(false);
        for (c, old) in clients.iter().zip(&before) {
            let new = b.pick(0, Some(*c), 0, &[]).unwrap();
            if *old != 2 {
                assert_eq!(new, *old);
            } else {
                assert_ne!(new, 2);
            }
        }
    }

    #[test]
    fn passive_ejection_and_return() {
        let servers = vec![
            Arc::new(ServerState::new("a:1".into())),
            Arc::new(ServerState::new("b:1".into())),
        ];
        let b = Balancer::new(
            Balance::RoundRobin,
            servers,
            vec![1, 1],
            PassiveEjection {
                consecutive_failures: 3,
                eject_for: Duration::from_secs(10),
            },
        );
        assert!(!b.report(0, false, 1000));
        assert!(!b.report(0, true, 1000)); // success resets
        assert!(!b.report(0, false, 1000));
        assert!(!b.report(0, false, 1000));
        assert!(b.report(0, false, 1000));
        assert!(b.servers()[0].is_ejected(5000));
        assert_eq!(counts(&b, 10, |_| b.pick(5000, None, 0, &[])), vec![0, 10]);
        assert!(!b.servers()[0].is_ejected(11_001));
        assert_eq!(b.servers()[0].ejections.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn rise_and_fall() {
        let mut s = RiseFall::default();
        assert_eq!(s.observe(false, 2, 3), None);
        assert_eq!(s.observe(false, 2, 3), None);
        assert_eq!(s.observe(false, 2, 3), Some(false));
        assert_eq!(s.observe(true, 2, 3), None);
        assert_eq!(s.observe(false, 2, 3), None); // streak broken
        assert_eq!(s.observe(true, 2, 3), None);
        assert_eq!(s.observe(true, 2, 3), Some(true));
    }

    proptest::proptest! {
        #[test]
        fn round_robin_matches_weights(weights in proptest::collection::vec(1u32..20, 1..8)) {
            let b = balancer(Balance::RoundRobin, &weights);
            let total: u32 = weights.iter().sum();
            let c = counts(&b, total as usize * 3, |_| b.pick(0, None, 0, &[]));
            for (i, w) in weights.iter().enumerate() {
                proptest::prop_assert_eq!(c[i], *w as usize * 3);
            }
        }
    }
}
