//! Golden files: each `testdata/<case>/input.yaml` compiles (every layer that has
//! something to do; security groups for node `worker-1`) to exactly
//! `testdata/<case>/ruleset.nft` (text) and `ruleset.json` (the batch the agent applies).
//! Set `RAMPART_BLESS=1` to rewrite them after an intended change, and review the diff.
//!
//! When the test runs as root it also loads every batch into a network namespace of its
//! own with the real `nft`, so the JSON is known to be what nftables accepts (under CI,
//! which is root, this part is mandatory).

#![allow(
    clippy::unwrap_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test; skips are reported on stderr"
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rampart_firewall::{sg, talos};
use rampart_policy::ir::{self, Options};

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("input.yaml").is_file())
        .collect();
    out.sort();
    out
}

fn compare(path: &Path, got: &str) -> Option<String> {
    if std::env::var("RAMPART_BLESS").as_deref() == Ok("1") {
        std::fs::write(path, got).unwrap();
        return None;
    }
    let want = std::fs::read_to_string(path).unwrap_or_default();
    (want != got).then(|| {
        format!(
            "{} differs from the compiler's output (RAMPART_BLESS=1 rewrites it):\n{got}",
            path.display()
        )
    })
}

fn can_load() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    let nft = Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if root && nft {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "golden: cannot load rulesets into nftables under CI (root and nft needed)"
    );
    eprintln!("golden: not loading into nftables (needs root and nft)");
    false
}

/// Loads `batch` into a fresh network namespace with the real nft.
fn load(case: &str, batch: &str) -> Result<(), String> {
    let ns = format!("rgold{}{case}", std::process::id());
    let ns = &ns[..ns.len().min(30)];
    let ok = |c: &mut Command| c.status().is_ok_and(|s| s.success());
    if !ok(Command::new("ip").args(["netns", "add", ns])) {
        return Err(format!("cannot create netns {ns}"));
    }
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(batch.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let _ = Command::new("ip").args(["netns", "del", ns]).status();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn compiled_rulesets_match_golden_files() {
    let load_too = can_load();
    let mut problems = Vec::new();
    let cases = cases();
    assert!(cases.len() >= 2);
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let input = rampart_firewall::load_inputs(&[case
            .join("input.yaml")
            .to_string_lossy()
            .into_owned()])
        .unwrap();
        // Every layer that has something to do, as `rampart policy compile` prints them.
        let sg_table = sg::compile(
            &input.security_groups,
            &sg::Options {
                table: "rampart-sg".into(),
                node: Some("worker-1".into()),
                recheck_established: false,
            },
        );
        let host_table = talos::compile(input.host.as_ref(), &talos::Options::default());
        let pods = ir::compile(
            &input.cluster.cluster,
            &input.cluster.policies,
            &Options::default(),
        )
        .table;
        let mut tables = vec![sg_table, host_table];
        if !input.cluster.cluster.pods.is_empty() {
            tables.push(pods);
        }
        tables.retain(|t| !t.chains.is_empty());
        let stamp = format!("rampart golden {name}");
        let text: Vec<String> = tables
            .iter()
            .map(|t| rampart_nft::text(t, &stamp))
            .collect();
        let text = text.join("\n");
        let mut cmds = Vec::new();
        for (i, t) in tables.iter().enumerate() {
            let b = rampart_nft::replace_batch(t, &stamp);
            cmds.extend(
                b["nftables"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .skip(usize::from(i > 0))
                    .cloned(),
            );
        }
        let json =
            serde_json::to_string_pretty(&serde_json::json!({ "nftables": cmds })).unwrap() + "\n";
        problems.extend(compare(&case.join("ruleset.nft"), &text));
        problems.extend(compare(&case.join("ruleset.json"), &json));
        if load_too && let Err(e) = load(&name, &json) {
            problems.push(format!("{name}: nft refused the batch: {e}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
