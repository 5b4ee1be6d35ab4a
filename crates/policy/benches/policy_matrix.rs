//! Benchmark of the policy engine on synthetic clusters: load, compile, whole matrices,
//! single verdicts, peak memory, and a naive pair-by-pair evaluation beside it.
//!
//! `cargo bench -p rampart-policy --bench policy_matrix` prints a Markdown report.
//! Environment: `RUNS` (default 5) timed repetitions, medians reported; `PODS`,
//! `NAMESPACES`, `POLICIES` override the large cluster (10,000 / 100 / 2,000).

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "benchmark program"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_model::{Probe, Protocol};
use rampart_policy::synth::{self, Params};
use rampart_policy::{Endpoint, Evaluator, FlowEnd, Index};
use rampart_resources::{ClusterInput, Document, Location, decode_cluster};

const PROBES: [Probe; 2] = [
    Probe {
        port: 8080,
        protocol: Protocol::Tcp,
    },
    Probe {
        port: 53,
        protocol: Protocol::Udp,
    },
];

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn load(params: &Params) -> (ClusterInput, Duration) {
    let source: Arc<str> = Arc::from("synthetic");
    let docs: Vec<Document> = synth::manifests(params)
        .into_iter()
        .enumerate()
        .map(|(i, value)| Document {
            location: Location {
                source: source.clone(),
                document: i + 1,
                line: 1,
                item: None,
            },
            api_version: value["apiVersion"].as_str().unwrap().to_owned(),
            kind: value["kind"].as_str().unwrap().to_owned(),
            value,
        })
        .collect();
    let t = Instant::now();
    let input = decode_cluster(&docs).unwrap();
    (input, t.elapsed())
}

struct Report {
    pods: usize,
    namespaces: usize,
    policies: usize,
    classes: usize,
    load: Duration,
    compile: Duration,
    class_matrices: Duration,
    pod_matrices: Duration,
    allowed_pairs: usize,
    verdict_ns: f64,
    naive_pair_ns: f64,
    naive_full: Option<Duration>,
    sampled: usize,
}

fn measure(params: Params, runs: usize, naive_samples: usize, naive_full: bool) -> Report {
    let (input, load_time) = load(&params);
    let cluster = &input.cluster;
    let policies = &input.policies;

    let mut compile = Vec::new();
    let mut class_m = Vec::new();
    let mut pod_m = Vec::new();
    let mut allowed_pairs = 0;
    let mut index = None;
    for _ in 0..runs {
        let t0 = Instant::now();
        let idx = Index::build(cluster, policies);
        let t1 = Instant::now();
        let classes: Vec<_> = PROBES.iter().map(|p| idx.class_matrix(*p)).collect();
        let t2 = Instant::now();
        let pods = idx.addressed_pods();
        let matrices: Vec<_> = classes.iter().map(|c| idx.pod_matrix(c, &pods)).collect();
        let t3 = Instant::now();
        allowed_pairs = matrices.iter().map(|m| m.allowed_pairs()).sum();
        compile.push(t1 - t0);
        class_m.push(t2 - t1);
        pod_m.push(t3 - t2);
        black_box(&matrices);
        index = Some(idx);
    }
    let index = index.unwrap();
    let n = index.pods();

    // Single verdicts between random pods.
    let mut rng = Rng(0x1234_5678);
    let pairs: Vec<(usize, usize)> = (0..1_000_000)
        .map(|_| (rng.below(n), rng.below(n)))
        .collect();
    let mut per_query = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let mut allowed = 0usize;
        for (i, &(a, b)) in pairs.iter().enumerate() {
            allowed += usize::from(index.allowed(FlowEnd::Pod(a), FlowEnd::Pod(b), PROBES[i & 1]));
        }
        black_box(allowed);
        per_query.push(t.elapsed());
    }
    let verdict_ns = median(per_query).as_nanos() as f64 / pairs.len() as f64;

    // The naive reference: every pair evaluated on its own, policies scanned each time.
    let reference = Evaluator::new(cluster, policies);
    let sample: Vec<(usize, usize)> = (0..naive_samples)
        .map(|_| (rng.below(n), rng.below(n)))
        .collect();
    let t = Instant::now();
    let mut disagreements = 0;
    for (i, &(a, b)) in sample.iter().enumerate() {
        let probe = PROBES[i & 1];
        let want = reference.allowed(
            &Endpoint::pod(&cluster.pods[a]),
            &Endpoint::pod(&cluster.pods[b]),
            probe,
        );
        if want != index.allowed(FlowEnd::Pod(a), FlowEnd::Pod(b), probe) {
            disagreements += 1;
        }
    }
    let naive_pair_ns = t.elapsed().as_nanos() as f64 / sample.len().max(1) as f64;
    assert_eq!(disagreements, 0, "index and reference disagree");

    let naive_full = naive_full.then(|| {
        let t = Instant::now();
        let mut allowed = 0usize;
        for probe in PROBES {
            for a in &cluster.pods {
                for b in &cluster.pods {
                    allowed +=
                        usize::from(reference.allowed(&Endpoint::pod(a), &Endpoint::pod(b), probe));
                }
            }
        }
        assert_eq!(allowed, allowed_pairs, "naive full matrix disagrees");
        t.elapsed()
    });

    Report {
        pods: cluster.pods.len(),
        namespaces: cluster.namespaces.len(),
        policies: policies.network_policies.len()
            + policies.admin_policies.len()
            + usize::from(policies.baseline.is_some()),
        classes: index.class_count(),
        load: load_time,
        compile: median(compile),
        class_matrices: median(class_m),
        pod_matrices: median(pod_m),
        allowed_pairs,
        verdict_ns,
        naive_pair_ns,
        naive_full,
        sampled: sample.len(),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let runs = env("RUNS", 5).max(1);
    let large = Params {
        namespaces: env("NAMESPACES", 100),
        pods: env("PODS", 10_000),
        policies: env("POLICIES", 2_000),
        ..Params::default()
    };
    let small = Params {
        namespaces: 100,
        pods: 1_000,
        policies: 200,
        ..Params::default()
    };

    let s = measure(small, runs, 20_000, true);
    let l = measure(large, runs, 20_000, false);
    let rss = peak_rss_mib();

    println!(
        "| cluster | pods | namespaces | policies | classes | decode + validate | compile | class matrices, 2 probes | pod-pair bitmaps, 2 probes | compile + matrices | allowed pairs |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, r) in [("small", &s), ("large", &l)] {
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.pods,
            r.namespaces,
            r.policies,
            r.classes,
            ms(r.load),
            ms(r.compile),
            ms(r.class_matrices),
            ms(r.pod_matrices),
            ms(r.compile + r.class_matrices + r.pod_matrices),
            r.allowed_pairs
        );
    }
    println!();
    println!(
        "| cluster | one verdict (index) | one pair, naive | naive full matrix, 2 probes | index compile + matrices | ratio |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, r) in [("small", &s), ("large", &l)] {
        let fast = r.compile + r.class_matrices + r.pod_matrices;
        let (naive, how) = match r.naive_full {
            Some(d) => (d, "measured"),
            None => (
                Duration::from_secs_f64(
                    r.naive_pair_ns * 1e-9 * (r.pods * r.pods * PROBES.len()) as f64,
                ),
                "extrapolated",
            ),
        };
        println!(
            "| {name} | {:.0} ns | {:.1} µs ({} sampled pairs) | {:.1} s ({how}) | {} | {:.0}x |",
            r.verdict_ns,
            r.naive_pair_ns / 1000.0,
            r.sampled,
            naive.as_secs_f64(),
            ms(fast),
            naive.as_secs_f64() / fast.as_secs_f64()
        );
    }
    println!();
    println!(
        "Peak resident memory of the whole run (both clusters, manifests included): {rss:.0} MiB. Medians of {runs} runs."
    );
}
