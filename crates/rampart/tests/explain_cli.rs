//! `rampart explain`: one flow across the layers, on the bundled examples (a cluster with
//! tenants and an admin tier, security groups of an OpenStack cluster, a Talos host
//! firewall in block mode).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn explain(from: &str, to: &str, port: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .arg("explain")
        .arg("-f")
        .arg(root().join("examples/cluster"))
        .arg("-f")
        .arg(root().join("examples/agent/resources"))
        .args(["--from", from, "--to", to, "--port", port])
        .args(extra)
        .output()
        .unwrap()
}

fn json(from: &str, to: &str, port: &str) -> Value {
    let out = explain(from, to, port, &["-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn check<'a>(e: &'a Value, layer: &str, direction: &str) -> &'a Value {
    e["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["layer"] == layer && c["direction"] == direction)
        .unwrap_or_else(|| panic!("no {layer} {direction} check in {e:#}"))
}

#[test]
fn cross_tenant_pod_traffic_stops_at_the_perimeter_first() {
    let e = json("blog/wordpress-0", "shop/web-0", "8080/TCP");
    assert_eq!(e["allowed"], false);
    assert_eq!(
        e["deniedBy"],
        "perimeter ingress at port worker-1 (node worker-1)"
    );
    // The path order: source pod, source port, destination port, destination pod.
    let order: Vec<String> = e["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["layer"].as_str().unwrap(),
                c["direction"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            "segmentation egress",
            "perimeter egress",
            "perimeter ingress",
            "segmentation ingress"
        ]
    );
    let egress = check(&e, "perimeter", "egress");
    assert_eq!(egress["allowed"], true);
    assert_eq!(
        egress["rules"][0],
        "SecurityGroup k8s-worker default egress rule: egress IPv4 any protocol to anywhere"
    );
    assert_eq!(check(&e, "perimeter", "ingress")["allowed"], false);
    let seg = check(&e, "segmentation", "ingress");
    assert_eq!(seg["allowed"], false);
    assert!(seg["rules"][0].as_str().unwrap().contains("AdminNetworkPolicy isolate-shop (priority 20) spec.ingress[1] \"deny-other-tenants\": Deny"), "{seg:#}");
    assert_eq!(e["notApplicable"][0]["layer"], "host");
}

#[test]
fn api_server_from_outside_is_stopped_by_the_host_firewall() {
    let e = json("203.0.113.5", "10.0.0.11", "6443/TCP");
    assert_eq!(e["allowed"], false);
    assert_eq!(e["deniedBy"], "host ingress at node cp-1");
    let sg = check(&e, "perimeter", "ingress");
    assert_eq!(sg["allowed"], true);
    assert_eq!(
        sg["rules"][0],
        "SecurityGroup k8s-control-plane spec.rules[0]: ingress IPv4 tcp 6443 from 0.0.0.0/0"
    );
    assert_eq!(
        check(&e, "host", "ingress")["summary"],
        "default action block: no rule allows the port"
    );
    assert_eq!(e["notApplicable"][0]["layer"], "segmentation");
}

#[test]
fn kubelet_from_the_control_plane_passes_every_layer() {
    let e = json("10.0.0.11", "10.0.0.21", "10250/TCP");
    assert_eq!(e["allowed"], true);
    assert_eq!(e["deniedBy"], Value::Null);
    assert_eq!(
        check(&e, "perimeter", "ingress")["rules"][0],
        "SecurityGroup k8s-worker spec.rules[0]: ingress IPv4 tcp 10250 from group k8s-control-plane"
    );
    assert_eq!(
        check(&e, "host", "ingress")["rules"][0],
        "NetworkRuleConfig kubelet-and-apid (default action block)"
    );
    // From a worker instead: not in the control-plane group.
    let e = json("10.0.0.22", "10.0.0.21", "10250/TCP");
    assert_eq!(
        e["deniedBy"],
        "perimeter ingress at port worker-1 (node worker-1)"
    );
}

#[test]
fn same_node_traffic_does_not_cross_the_port() {
    let e = json("shop/web-0", "shop/api-0", "8081/TCP");
    assert_eq!(e["allowed"], true, "{e:#}");
    let reasons: Vec<&str> = e["notApplicable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.contains(&"both ends are behind port worker-1: the traffic does not cross it"),
        "{reasons:?}"
    );
    assert!(
        check(&e, "segmentation", "egress")["rules"][0]
            .as_str()
            .unwrap()
            .starts_with("NetworkPolicy shop/web spec.egress[0].to[0] ports[0]")
    );
}

#[test]
fn text_output_and_exit_statuses() {
    let out = explain("blog/wordpress-0", "shop/web-0", "8080/TCP", &[]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("blog/wordpress-0 (10.244.2.10) -> shop/web-0 (10.244.1.10) on 8080/TCP: DENIED by perimeter ingress at port worker-1 (node worker-1)"),
        "{text}"
    );
    assert!(
        text.contains("  host: not applicable: the destination is a pod, not a node's own address"),
        "{text}"
    );
    let out = explain(
        "blog/wordpress-0",
        "shop/web-0",
        "8080/TCP",
        &["--fail-on-deny"],
    );
    assert_eq!(out.status.code(), Some(1));
    let out = explain("shop/nope", "shop/web-0", "8080/TCP", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--from \"shop/nope\": no such pod"));
}
