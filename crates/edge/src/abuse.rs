//! Reporting the clients the gateway refuses or cuts on its own: a counter per listener
//! and reason (`rampart_edge_rejections_total`), the [`AbuseObserver`] hook, and a log
//! line, itself rate-limited so that an attack cannot flood the logs (at most
//! [`LOG_BURST`] lines per second; the number left out is logged with the next line).
//!
//! [`AbuseObserver`]: crate::hooks::AbuseObserver

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Shared;
use crate::hooks::Abuse;
use crate::metrics::ListenerMetrics;

/// Log lines about rejections allowed per second, across the gateway.
pub const LOG_BURST: u64 = 10;

/// A once-per-second budget for log lines.
#[derive(Debug, Default)]
pub struct LogLimiter {
    /// Second (on the monotonic clock) and lines used in it, packed: second << 16 | used.
    state: AtomicU64,
    suppressed: AtomicU64,
}

impl LogLimiter {
    /// True when a line may be logged now; `Some(n)` then carries how many were left
    /// out since the last logged line.
    pub fn admit(&self, now_ms: u64) -> Option<u64> {
        let second = now_ms / 1000;
        let mut cur = self.state.load(Ordering::Relaxed);
        loop {
            let (s, used) = (cur >> 16, cur & 0xffff);
            let next = if s == second {
                if used >= LOG_BURST {
                    self.suppressed.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                (second << 16) | (used + 1)
            } else {
                (second << 16) | 1
            };
            match self
                .state
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(self.suppressed.swap(0, Ordering::Relaxed)),
                Err(c) => cur = c,
            }
        }
    }
}

/// Counts, tells the observer and (rate-limited) logs one rejection.
pub fn report(
    shared: &Shared,
    metrics: &ListenerMetrics,
    listener: &str,
    peer: SocketAddr,
    abuse: Abuse,
    detail: &str,
) {
    metrics.rejections[abuse.index()].fetch_add(1, Ordering::Relaxed);
    if let Some(observer) = &shared.hooks.abuse {
        observer.observed(listener, peer, abuse);
    }
    if let Some(suppressed) = shared.rejection_log.admit(crate::io::now_ms()) {
        tracing::info!(
            listener,
            peer = %peer,
            reason = abuse.as_str(),
            detail,
            suppressed,
            "client refused"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_bounded_per_second() {
        let l = LogLimiter::default();
        let admitted = (0..100).filter(|_| l.admit(5_000).is_some()).count();
        assert_eq!(admitted as u64, LOG_BURST);
        // The next second says how many were left out.
        assert_eq!(l.admit(6_001), Some(100 - LOG_BURST));
        assert_eq!(l.admit(6_002), Some(0));
    }
}
