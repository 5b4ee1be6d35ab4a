//! Upstream conformance cases through the public CLI, as a user runs it:
//! `rampart policy matrix -f cluster.yaml -f policies.yaml --port P/PROTO... -o json`,
//! compared pair by pair (src != dst) with the expected matrices.
//!
//! Cases come from `tests/conformance/` in the repository and, when it exists, from
//! `../shared/conformance/` next to the repository.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Every `<suite>/<case>/step-<n>` directory, keyed by that relative path; cases next to
/// the repository take precedence over the repository's copy.
fn cases() -> BTreeMap<String, PathBuf> {
    let root = workspace();
    let mut out = BTreeMap::new();
    for base in [
        root.join("tests/conformance"),
        root.join("../shared/conformance"),
    ] {
        for suite in ["netpol", "anp"] {
            let Ok(cases) = std::fs::read_dir(base.join(suite)) else {
                continue;
            };
            for case in cases.flatten().filter(|c| c.path().is_dir()) {
                for step in std::fs::read_dir(case.path()).unwrap().flatten() {
                    if step.path().join("expected.json").is_file() {
                        let key = format!(
                            "{suite}/{}/{}",
                            case.file_name().to_string_lossy(),
                            step.file_name().to_string_lossy()
                        );
                        out.insert(key, step.path());
                    }
                }
            }
        }
    }
    out
}

fn check(dir: &Path) -> Result<usize, String> {
    let expected: Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let probes = expected["probes"].as_array().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rampart"));
    cmd.args(["policy", "matrix", "-o", "json", "-f"])
        .arg(dir.join("cluster.yaml"))
        .arg("-f")
        .arg(dir.join("policies.yaml"));
    for p in probes {
        cmd.arg("--port")
            .arg(format!("{}/{}", p["port"], p["protocol"].as_str().unwrap()));
    }
    let out = cmd.output().unwrap();
    if !out.status.success() {
        return Err(format!(
            "exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let got: Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("bad JSON: {e}"))?;
    let mut compared = 0;
    let mut wrong = Vec::new();
    for p in probes {
        let got_probe = got["probes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["port"] == p["port"] && g["protocol"] == p["protocol"])
            .ok_or_else(|| format!("probe {}/{} missing", p["port"], p["protocol"]))?;
        for (src, row) in p["allowed"].as_object().unwrap() {
            for (dst, want) in row.as_object().unwrap() {
                if src == dst {
                    continue;
                }
                compared += 1;
                let have = &got_probe["allowed"][src][dst];
                if have != want {
                    wrong.push(format!(
                        "{}/{} {src} -> {dst}: want {want}, got {have}",
                        p["port"], p["protocol"]
                    ));
                }
            }
        }
    }
    if wrong.is_empty() {
        Ok(compared)
    } else {
        Err(wrong.join("\n"))
    }
}

#[test]
fn every_conformance_case_matches() {
    let cases = cases();
    assert!(
        cases.len() >= 78,
        "expected the repository's conformance cases, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    let mut pairs = 0;
    for (name, dir) in &cases {
        match check(dir) {
            Ok(n) => pairs += n,
            Err(e) => failures.push(format!("{name}:\n{e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    assert!(pairs >= 4900, "only {pairs} pairs compared");
}
