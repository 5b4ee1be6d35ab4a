//! `rampart policy compile` and the agent's configuration, through the CLI, without root.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn compile_prints_every_layer_of_the_example() {
    let out = support::rampart()
        .args([
            "policy",
            "compile",
            "--backend",
            "nft",
            "-o",
            "json",
            "--node",
            "worker-1",
            "-f",
        ])
        .arg(root().join("examples/agent/resources"))
        .arg("-f")
        .arg(root().join("examples/cluster"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let batch: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tables: Vec<&str> = batch["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.pointer("/add/table/name").and_then(|n| n.as_str()))
        .collect();
    for t in ["rampart-sg", "rampart-host", "rampart-pods"] {
        assert!(tables.contains(&t), "{t} missing: {tables:?}");
    }
    // Text: the worker's port is dispatched on its interface, the group is a set.
    let text = support::rampart()
        .args([
            "policy", "compile", "--layer", "sg", "--node", "worker-1", "-f",
        ])
        .arg(root().join("examples/agent/resources"))
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("\"eth0\" : jump port-worker-1-ingress"),
        "{text}"
    );
    assert!(
        text.contains("ip saddr @group-k8s-control-plane-4 meta l4proto tcp th dport 10250 accept"),
        "{text}"
    );
}

#[test]
fn invalid_inputs_exit_2_with_located_errors() {
    let mut child = support::rampart()
        .args(["policy", "compile", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"apiVersion: rampart.dev/v1alpha1\nkind: SecurityGroup\nmetadata: {name: g}\nspec:\n  rules: [{direction: up}]\n---\napiVersion: v1alpha1\nkind: NetworkRuleConfig\nname: r\nportSelector: {ports: [], protocol: tcp}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("<stdin>: document 1 (line 1): SecurityGroup g: spec.rules[0].direction"),
        "{err}"
    );
    assert!(
        err.contains("<stdin>: document 2 (line 7): NetworkRuleConfig"),
        "{err}"
    );
    assert!(
        err.contains("portSelector.ports: portSelector.ports is required"),
        "{err}"
    );
}

#[test]
fn agent_configuration_is_validated() {
    let dir = std::env::temp_dir().join(format!("rampart-agent-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("agent.yaml");
    std::fs::write(
        &config,
        "apiVersion: rampart.dev/v1alpha1\nkind: AgentConfig\nmetadata: {name: n}\nspec:\n  resources: []\n  revokedConnections: sometimes\n  bogus: 1\n  pods: {allPods: yes}\n",
    )
    .unwrap();
    let out = support::rampart()
        .args(["agent", "--config"])
        .arg(&config)
        .arg("status")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "spec.nodeName: required",
        "spec.resources: required",
        "spec.revokedConnections: must be flush, cut or keep",
        "spec.bogus: unknown field",
        "spec.pods.allPods: must be true or false",
    ] {
        assert!(err.contains(want), "missing {want:?} in {err}");
    }
}
