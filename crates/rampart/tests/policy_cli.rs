//! `rampart policy` as a user runs it: inputs from files, directories and stdin, exit
//! statuses, output formats.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/cluster")
}

fn rampart(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn bad_manifests_exit_2_with_every_error() {
    let bad = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.0/8, except: [12.0.0.0/8]}\n  - ports:\n    - {port: 80, endPort: 79}\n";
    let out = rampart(&["policy", "matrix", "-f", "-", "-o", "json"], Some(bad));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("<stdin>: document 1 (line 1): NetworkPolicy x/p: spec.ingress[0].from[0].ipBlock.except[0]"), "{err}");
    assert!(err.contains("spec.ingress[1].ports[0].endPort"), "{err}");
    assert!(err.contains("2 errors"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn unreadable_and_unparsable_inputs_exit_2() {
    let out = rampart(&["policy", "lint", "-f", "/nonexistent/cluster.yaml"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/cluster.yaml: cannot read"));
    let out = rampart(&["policy", "lint", "-f", "-"], Some("kind: [unclosed\n"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("<stdin>: document 1 (line 1): invalid YAML"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn kubectl_json_list_from_stdin_and_skipped_kinds() {
    let list = r#"{"apiVersion":"v1","kind":"List","items":[
      {"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","namespace":"x","labels":{"app":"a"}},"spec":{"containers":[{"name":"c","ports":[{"containerPort":80,"protocol":"TCP"}]}]},"status":{"podIP":"10.0.0.1","podIPs":[{"ip":"10.0.0.1"}]}},
      {"apiVersion":"v1","kind":"Pod","metadata":{"name":"b","namespace":"x"},"status":{"podIP":"10.0.0.2"}},
      {"apiVersion":"v1","kind":"Service","metadata":{"name":"svc","namespace":"x"}},
      {"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"deny","namespace":"x"},"spec":{"podSelector":{"matchLabels":{"app":"a"}}}}
    ]}"#;
    let out = rampart(
        &["policy", "matrix", "-f", "-", "-o", "json", "--verbose"],
        Some(list),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    // No --port: every declared (port, protocol), here 80/TCP.
    assert_eq!(m["probes"].as_array().unwrap().len(), 1);
    assert_eq!(m["probes"][0]["port"], 80);
    assert_eq!(m["probes"][0]["allowed"]["x/b"]["x/a"], false);
    assert_eq!(m["probes"][0]["allowed"]["x/a"]["x/b"], true);
    assert_eq!(m["probes"][0]["allowed"]["x/a"]["x/a"], true);
    let err = text(&out.stderr);
    assert!(
        err.contains("skipped: <stdin>: document 1 (line 1): items[2]: v1 Service svc"),
        "{err}"
    );
    assert!(err.contains("Namespace x: not declared"), "{err}");
}

#[test]
fn examples_directory_and_table() {
    let dir = examples();
    let out = rampart(
        &[
            "policy",
            "matrix",
            "-f",
            dir.to_str().unwrap(),
            "--port",
            "8080/TCP",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.starts_with("8080/TCP: "), "{table}");
    assert!(table.contains("shop/web-0"), "{table}");
}

#[test]
fn explain_names_the_deciding_rule() {
    let dir = examples();
    let out = rampart(
        &[
            "policy",
            "explain",
            "-f",
            dir.to_str().unwrap(),
            "--from",
            "blog/wordpress-0",
            "--to",
            "shop/web-0",
            "--port",
            "8080/TCP",
            "-o",
            "json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["allowed"], false);
    assert_eq!(e["ingress"]["decidedBy"], "adminNetworkPolicy");
    // The platform policy (priority 10) has no matching rule; isolate-shop (20) denies.
    assert_eq!(e["ingress"]["admin"][0]["policy"], "platform");
    assert_eq!(e["ingress"]["admin"][0]["matched"], Value::Null);
    assert_eq!(e["ingress"]["admin"][1]["policy"], "isolate-shop");
    assert_eq!(e["ingress"]["admin"][1]["priority"], 20);
    assert_eq!(
        e["ingress"]["admin"][1]["matched"]["name"],
        "deny-other-tenants"
    );
    assert_eq!(e["ingress"]["admin"][1]["matched"]["action"], "Deny");

    let out = rampart(
        &[
            "policy",
            "explain",
            "-f",
            dir.to_str().unwrap(),
            "--from",
            "ingress/controller-0",
            "--to",
            "shop/web-0",
            "--port",
            "8080/TCP",
        ],
        None,
    );
    let t = text(&out.stdout);
    assert!(
        t.starts_with(
            "ingress/controller-0 (10.244.3.20) -> shop/web-0 (10.244.1.10) on 8080/TCP: ALLOWED"
        ),
        "{t}"
    );
    assert!(
        t.contains("allowed by NetworkPolicy shop/web spec.ingress[0].from[0] ports[0]"),
        "{t}"
    );

    // An outside address, and an unknown pod.
    let out = rampart(
        &[
            "policy",
            "explain",
            "-f",
            dir.to_str().unwrap(),
            "--from",
            "203.0.113.9",
            "--to",
            "shop/db-0",
            "--port",
            "5432",
        ],
        None,
    );
    assert!(
        text(&out.stdout).contains("DENIED"),
        "{}",
        text(&out.stdout)
    );
    let out = rampart(
        &[
            "policy",
            "explain",
            "-f",
            dir.to_str().unwrap(),
            "--from",
            "shop/nope",
            "--to",
            "shop/db-0",
            "--port",
            "5432",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no such pod"));
}

#[test]
fn lint_findings_and_fail_on() {
    let dir = examples();
    let d = dir.to_str().unwrap();
    let out = rampart(&["policy", "lint", "-f", d, "-o", "json"], None);
    assert_eq!(out.status.code(), Some(0), "no errors in the example");
    let l: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = l["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"L101"), "{ids:?}");
    assert!(l["summary"]["warning"].as_u64().unwrap() >= 1);
    let out = rampart(&["policy", "lint", "-f", d, "--fail-on", "warning"], None);
    assert_eq!(out.status.code(), Some(1));

    let policies = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: covered, namespace: x}\nspec:\n  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.0/24, except: [10.0.0.0/25, 10.0.0.128/25]}\n  - from:\n    - ipBlock: {cidr: 0.0.0.0/0}\n    ports:\n    - {port: web}\n  egress:\n  - {}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: again, namespace: x}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x}\nstatus: {podIP: 10.0.0.1}\n";
    let out = rampart(&["policy", "lint", "-f", "-", "-o", "json"], Some(policies));
    assert_eq!(
        out.status.code(),
        Some(1),
        "L302 is an error: {}",
        text(&out.stdout)
    );
    let l: Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_id = |id: &str| -> Vec<Value> {
        l["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["id"] == id)
            .cloned()
            .collect()
    };
    assert_eq!(by_id("L302")[0]["path"], "spec.ingress[0].from[0].ipBlock");
    assert_eq!(by_id("L302")[0]["location"], "<stdin>: document 1 (line 1)");
    assert_eq!(by_id("L401")[0]["path"], "spec.ingress[1].from[0].ipBlock");
    assert_eq!(by_id("L301")[0]["path"], "spec.ingress[1].ports[0]");
    assert_eq!(by_id("L402")[0]["path"], "spec.egress[0]");
    assert_eq!(by_id("L501")[0]["object"], "NetworkPolicy x/again");
    // Default deny for ingress; egress is open to everything (`egress: [{}]`).
    assert!(by_id("L101").is_empty());
    assert_eq!(by_id("L102").len(), 1);
}
