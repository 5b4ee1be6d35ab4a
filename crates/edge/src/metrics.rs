//! Counters and histograms for the admin listener's `/metrics`, in the Prometheus text
//! format. Hot-path updates are relaxed atomic increments on handles resolved when a
//! config is applied, so a request never looks a metric up by name. Handles live as long
//! as the gateway, so counters keep counting across reloads.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::worker::PerWorker;

/// Upper bounds of the latency buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The status codes counted one by one (the index of a code's counter is its distance
/// from the start).
const STATUS_CODES: std::ops::Range<u16> = 100..600;

/// Metrics of one HTTP route, counted per worker thread (see [`crate::worker`]) and
/// added up when rendered.
#[derive(Debug)]
pub struct RouteMetrics {
    per_worker: PerWorker<RouteCounts>,
}

#[derive(Debug)]
struct RouteCounts {
    /// By status code, over [`STATUS_CODES`].
    statuses: Box<[AtomicU64]>,
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Default for RouteCounts {
    fn default() -> Self {
        Self {
            statuses: STATUS_CODES.map(|_| AtomicU64::new(0)).collect(),
            buckets: Default::default(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl RouteMetrics {
    /// Counters for `workers` worker threads.
    pub fn new(workers: usize) -> Self {
        Self {
            per_worker: PerWorker::new(workers, RouteCounts::default),
        }
    }

    /// Records one response: its status and the time to its headers.
    pub fn record(&self, status: u16, latency: Duration) {
        let c = self.per_worker.local();
        if let Some(n) = status
            .checked_sub(STATUS_CODES.start)
            .and_then(|i| c.statuses.get(usize::from(i)))
        {
            n.fetch_add(1, Ordering::Relaxed);
        }
        let secs = latency.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            c.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        c.count.fetch_add(1, Ordering::Relaxed);
        c.sum_micros
            .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
    }

    fn sum(&self, f: impl Fn(&RouteCounts) -> &AtomicU64) -> u64 {
        self.per_worker
            .iter()
            .map(|c| f(c).load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

/// Metrics of one listener.
#[derive(Debug, Default)]
pub struct ListenerMetrics {
    /// Open client connections.
    pub active_connections: AtomicI64,
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections closed at accept (limits, filters, PROXY header errors).
    pub refused: AtomicU64,
    /// Full TLS handshakes.
    pub handshakes_full: AtomicU64,
    /// Resumed TLS handshakes.
    pub handshakes_resumed: AtomicU64,
    /// Failed or timed-out TLS handshakes.
    pub handshakes_failed: AtomicU64,
    /// Connections passed through by SNI or port.
    pub passthrough: AtomicU64,
    /// Clients refused or cut by the gateway itself, by [`crate::hooks::Abuse::index`].
    pub rejections: [AtomicU64; crate::hooks::Abuse::ALL.len()],
}

/// Every metric of a gateway.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Worker threads that count requests (route counters keep one slot per worker).
    workers: usize,
    routes: Mutex<BTreeMap<(String, String), Arc<RouteMetrics>>>,
    listeners: Mutex<BTreeMap<String, Arc<ListenerMetrics>>>,
    /// Reloads applied.
    pub reloads_ok: AtomicU64,
    /// Reloads rejected (invalid config); the old config kept serving.
    pub reloads_failed: AtomicU64,
    /// Requests answered without a route (404).
    pub unrouted: AtomicU64,
}

impl Metrics {
    /// Metrics for a gateway with `workers` data-path worker threads.
    pub fn new(workers: usize) -> Self {
        Self {
            workers,
            ..Self::default()
        }
    }

    /// The handle for a route of a listener (created on first use).
    pub fn route(&self, listener: &str, route: &str) -> Arc<RouteMetrics> {
        let mut map = self
            .routes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry((listener.to_owned(), route.to_owned()))
            .or_insert_with(|| Arc::new(RouteMetrics::new(self.workers)))
            .clone()
    }

    /// The handle for a listener (created on first use).
    pub fn listener(&self, listener: &str) -> Arc<ListenerMetrics> {
        let mut map = self
            .listeners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(listener.to_owned()).or_default().clone()
    }

    /// Renders route and listener metrics.
    pub fn render(&self, out: &mut String) {
        let routes = self
            .routes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        out.push_str("# HELP rampart_edge_http_requests_total HTTP responses by listener, route and status.\n");
        out.push_str("# TYPE rampart_edge_http_requests_total counter\n");
        for ((l, r), m) in routes.iter() {
            for (i, code) in STATUS_CODES.enumerate() {
                let n = m.sum(|c| &c.statuses[i]);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "rampart_edge_http_requests_total{{listener=\"{l}\",route=\"{r}\",status=\"{code}\"}} {n}"
                    );
                }
            }
        }
        out.push_str(
            "# HELP rampart_edge_http_response_seconds Time from request to response headers.\n",
        );
        out.push_str("# TYPE rampart_edge_http_response_seconds histogram\n");
        for ((l, r), m) in routes.iter() {
            let mut cumulative = 0;
            for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
                cumulative += m.sum(|c| &c.buckets[i]);
                let _ = writeln!(
                    out,
                    "rampart_edge_http_response_seconds_bucket{{listener=\"{l}\",route=\"{r}\",le=\"{b}\"}} {cumulative}"
                );
            }
            let count = m.sum(|c| &c.count);
            let _ = writeln!(
                out,
                "rampart_edge_http_response_seconds_bucket{{listener=\"{l}\",route=\"{r}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "rampart_edge_http_response_seconds_sum{{listener=\"{l}\",route=\"{r}\"}} {}",
                m.sum(|c| &c.sum_micros) as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "rampart_edge_http_response_seconds_count{{listener=\"{l}\",route=\"{r}\"}} {count}"
            );
        }
        drop(routes);
        let listeners = self
            .listeners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let gauge = |out: &mut String,
                     name: &str,
                     help: &str,
                     kind: &str,
                     f: &dyn Fn(&ListenerMetrics) -> i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (l, m) in listeners.iter() {
                let _ = writeln!(out, "{name}{{listener=\"{l}\"}} {}", f(m));
            }
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as i64;
        gauge(
            out,
            "rampart_edge_active_connections",
            "Open client connections.",
            "gauge",
            &|m| m.active_connections.load(Ordering::Relaxed),
        );
        gauge(
            out,
            "rampart_edge_connections_total",
            "Client connections accepted.",
            "counter",
            &|m| load(&m.accepted),
        );
        gauge(
            out,
            "rampart_edge_connections_refused_total",
            "Client connections closed at accept (limits, filters, bad PROXY headers).",
            "counter",
            &|m| load(&m.refused),
        );
        gauge(
            out,
            "rampart_edge_passthrough_connections_total",
            "Connections forwarded as TCP (SNI or port routes).",
            "counter",
            &|m| load(&m.passthrough),
        );
        out.push_str("# HELP rampart_edge_tls_handshakes_total TLS handshakes by kind (full, resumed, failed).\n");
        out.push_str("# TYPE rampart_edge_tls_handshakes_total counter\n");
        for (l, m) in listeners.iter() {
            for (kind, v) in [
                ("full", &m.handshakes_full),
                ("resumed", &m.handshakes_resumed),
                ("failed", &m.handshakes_failed),
            ] {
                let _ = writeln!(
                    out,
                    "rampart_edge_tls_handshakes_total{{listener=\"{l}\",kind=\"{kind}\"}} {}",
                    v.load(Ordering::Relaxed)
                );
            }
        }
        out.push_str("# HELP rampart_edge_rejections_total Clients refused or cut by the gateway itself, by reason.\n");
        out.push_str("# TYPE rampart_edge_rejections_total counter\n");
        for (l, m) in listeners.iter() {
            for a in crate::hooks::Abuse::ALL {
                let _ = writeln!(
                    out,
                    "rampart_edge_rejections_total{{listener=\"{l}\",reason=\"{}\"}} {}",
                    a.as_str(),
                    m.rejections[a.index()].load(Ordering::Relaxed)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP rampart_edge_unrouted_requests_total Requests no route matched (404).\n# TYPE rampart_edge_unrouted_requests_total counter\nrampart_edge_unrouted_requests_total {}",
            self.unrouted.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP rampart_edge_reloads_total Configuration reloads by result.\n# TYPE rampart_edge_reloads_total counter\nrampart_edge_reloads_total{{result=\"ok\"}} {}\nrampart_edge_reloads_total{{result=\"rejected\"}} {}",
            self.reloads_ok.load(Ordering::Relaxed),
            self.reloads_failed.load(Ordering::Relaxed)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_cumulative_buckets() {
        let m = Metrics::default();
        let r = m.route("web", "api");
        r.record(200, Duration::from_micros(300));
        r.record(200, Duration::from_millis(3));
        r.record(503, Duration::from_secs(20));
        m.listener("web")
            .handshakes_full
            .fetch_add(2, Ordering::Relaxed);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains(
            "rampart_edge_http_requests_total{listener=\"web\",route=\"api\",status=\"200\"} 2"
        ));
        assert!(out.contains("status=\"503\"} 1"));
        assert!(out.contains("le=\"0.0005\"} 1\n"));
        assert!(out.contains("le=\"0.005\"} 2\n"));
        assert!(out.contains("le=\"10\"} 2\n"));
        assert!(out.contains("le=\"+Inf\"} 3\n"));
        assert!(
            out.contains("rampart_edge_tls_handshakes_total{listener=\"web\",kind=\"full\"} 2")
        );
        // The same handle comes back for the same route.
        assert!(Arc::ptr_eq(&r, &m.route("web", "api")));
    }
}
