//! The kernel datapath agrees with upstream Kubernetes: every NetworkPolicy and
//! AdminNetworkPolicy conformance case goes through `rampart lab probe` (network
//! namespaces, nftables, real TCP/UDP/SCTP probes), and the observed matrix must equal
//! the expected one on every judged pair of different pods. Needs root; under CI it
//! fails when it cannot run.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;

/// Every `step-*` directory of every case under `dir`.
fn steps(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(cases) = std::fs::read_dir(dir) else {
        return out;
    };
    for case in cases.flatten() {
        let Ok(steps) = std::fs::read_dir(case.path()) else {
            continue;
        };
        for step in steps.flatten() {
            if step.path().join("expected.json").is_file() {
                out.push(step.path());
            }
        }
    }
    out.sort();
    out
}

/// Runs one step through the CLI; returns the mismatches in words.
fn run_step(step: &Path) -> Vec<String> {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(step.join("expected.json")).unwrap())
            .unwrap();
    let probes = expected["probes"].as_array().unwrap();
    let mut cmd = support::rampart();
    cmd.args(["lab", "probe", "-o", "json", "--timeout-ms", "1000"])
        .arg("-f")
        .arg(step.join("cluster.yaml"))
        .arg("-f")
        .arg(step.join("policies.yaml"));
    for p in probes {
        cmd.arg("--port")
            .arg(format!("{}/{}", p["port"], p["protocol"].as_str().unwrap()));
    }
    let out = cmd.output().unwrap();
    let name = step.display();
    if !out.status.success() {
        return vec![format!(
            "{name}: rampart lab probe failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )];
    }
    let observed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut problems = Vec::new();
    for want in probes {
        let got = observed["probes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["port"] == want["port"] && p["protocol"] == want["protocol"]);
        let Some(got) = got else {
            problems.push(format!(
                "{name}: no observed matrix for {}/{}",
                want["port"], want["protocol"]
            ));
            continue;
        };
        for (src, row) in want["allowed"].as_object().unwrap() {
            for (dst, allowed) in row.as_object().unwrap() {
                if src == dst {
                    continue;
                }
                let seen = &got["allowed"][src][dst];
                if seen != allowed {
                    problems.push(format!(
                        "{name}: {src} -> {dst} on {}/{}: expected {allowed}, observed {seen}",
                        want["port"],
                        want["protocol"].as_str().unwrap_or("?")
                    ));
                }
            }
        }
    }
    problems
}

#[test]
fn lab_agrees_with_conformance_cases() {
    if !support::privileged("lab_agrees_with_conformance_cases") {
        return;
    }
    let dir = support::conformance_dir()
        .expect("conformance cases (shared/conformance or tests/conformance)");
    let mut all = steps(&dir.join("netpol"));
    let netpol = all.len();
    all.extend(steps(&dir.join("anp")));
    assert!(
        netpol >= 40,
        "expected the NetworkPolicy cases under {}",
        dir.display()
    );
    assert!(
        all.len() > netpol,
        "expected the AdminNetworkPolicy cases under {}",
        dir.display()
    );

    let next = Mutex::new(all.iter());
    let problems = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                loop {
                    let Some(step) = next.lock().unwrap().next() else {
                        break;
                    };
                    let found = run_step(step);
                    problems.lock().unwrap().extend(found);
                }
            });
        }
    });
    let problems = problems.into_inner().unwrap();
    assert!(
        problems.is_empty(),
        "{} mismatches in {} steps:\n{}",
        problems.len(),
        all.len(),
        problems.join("\n")
    );
}

/// Dual-stack pods, a host-network pod, every protocol and tier: `rampart lab probe -o
/// json` prints exactly what `rampart policy matrix -o json` prints, byte for byte
/// (the diagonal included: a pod's traffic to itself never leaves its namespace).
#[test]
fn lab_prints_the_analysers_json_byte_for_byte() {
    if !support::privileged("lab_prints_the_analysers_json_byte_for_byte") {
        return;
    }
    let file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lab-dual-stack.yaml");
    let ports = ["80/TCP", "81/TCP", "53/UDP", "7/SCTP"];
    let run = |cmd: &[&str]| {
        let mut c = support::rampart();
        c.args(cmd).arg("-f").arg(&file).args(["-o", "json"]);
        for p in ports {
            c.args(["--port", p]);
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let analysed = run(&["policy", "matrix"]);
    let observed = run(&["lab", "probe", "--timeout-ms", "800"]);
    assert_eq!(observed, analysed);
    // Not a trivial matrix: some pairs are denied, some allowed, in each protocol.
    let v: Value = serde_json::from_str(&observed).unwrap();
    for p in v["probes"].as_array().unwrap() {
        let cells: Vec<bool> = p["allowed"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|row| {
                row.as_object()
                    .unwrap()
                    .values()
                    .map(|b| b.as_bool().unwrap())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(cells.contains(&true) && cells.contains(&false), "{p}");
    }
}

/// With `--allow-from-node` (the agent's default), the node and its host-network pods
/// reach isolated pods; without it they are judged like any address, as the analyser does.
#[test]
fn the_node_reaches_its_pods_when_allowed() {
    if !support::privileged("the_node_reaches_its_pods_when_allowed") {
        return;
    }
    let file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lab-dual-stack.yaml");
    let probe = |extra: &[&str]| -> Value {
        let out = support::rampart()
            .args([
                "lab",
                "probe",
                "-o",
                "json",
                "--timeout-ms",
                "800",
                "--port",
                "80/TCP",
                "-f",
            ])
            .arg(&file)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let judged = probe(&[]);
    let allowed = probe(&["--allow-from-node"]);
    let cell =
        |v: &Value, src: &str, dst: &str| v["probes"][0]["allowed"][src][dst].as_bool().unwrap();
    assert!(
        !cell(&judged, "dev/agent", "shop/web"),
        "the web pod is isolated"
    );
    assert!(
        cell(&allowed, "dev/agent", "shop/web"),
        "the node reaches its pods"
    );
    // Pods are judged as before.
    assert_eq!(
        cell(&judged, "dev/tool", "shop/db"),
        cell(&allowed, "dev/tool", "shop/db")
    );
    assert_eq!(
        cell(&judged, "shop/db", "shop/web"),
        cell(&allowed, "shop/db", "shop/web")
    );
}
