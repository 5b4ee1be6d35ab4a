//! `rampart gate authorize`: the JSON answer, exit statuses and located errors.

#![expect(
    clippy::unwrap_used,
    reason = "test code: an unexpected error is a test failure"
)]

use std::path::Path;
use std::process::Command;

fn rampart(args: &[&str]) -> (i32, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.code().unwrap(),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/gate/rbac.yaml")
        .display()
        .to_string()
}

#[test]
fn answers_in_the_documented_shape() {
    let rbac = example();
    let (code, json, _) = rampart(&[
        "gate",
        "authorize",
        "-f",
        &rbac,
        "--user",
        "zitadel:alice",
        "--group",
        "zitadel:team-a-dev",
        "--method",
        "GET",
        "--path",
        "/api/v1/namespaces/team-a/pods?watch=true&fieldSelector=metadata.name%3Dweb",
        "-o",
        "json",
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        json,
        serde_json::json!({
            "allowed": true,
            "reason": "RBAC: allowed by RoleBinding \"developers/team-a\" of ClusterRole \"developer\" to Group \"zitadel:team-a-dev\"",
            "request": {"isResourceRequest": true, "verb": "watch", "apiGroup": "", "apiVersion": "v1",
                        "namespace": "team-a", "resource": "pods", "subresource": "", "name": "web",
                        "path": "/api/v1/namespaces/team-a/pods"}
        })
    );
    // The keys come in the documented order.
    let out = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args([
            "gate",
            "authorize",
            "-f",
            &rbac,
            "--user",
            "u",
            "--verb",
            "get",
            "--non-resource-path",
            "/healthz",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(r#"{"allowed":false,"reason":"User \"u\" cannot get path \"/healthz\""#),
        "{text}"
    );
    assert!(text.contains(r#""request":{"isResourceRequest":false,"verb":"get","apiGroup":"","apiVersion":"","namespace":"","resource":"","subresource":"","name":"","path":"/healthz"}}"#), "{text}");
}

#[test]
fn denials_exit_zero_unless_asked() {
    let rbac = example();
    let args = [
        "gate",
        "authorize",
        "-f",
        &rbac,
        "--user",
        "zitadel:alice",
        "--group",
        "zitadel:team-a-dev",
        "--verb",
        "delete",
        "--resource",
        "pods",
        "--namespace",
        "team-a",
        "--name",
        "web",
        "-o",
        "json",
    ];
    let (code, json, _) = rampart(&args);
    assert_eq!(code, 0);
    assert_eq!(json["allowed"], false);
    assert_eq!(
        json["reason"],
        "User \"zitadel:alice\" cannot delete resource \"pods\" in API group \"\" in the namespace \"team-a\": no RBAC rule allows it"
    );
    let mut failing = args.to_vec();
    failing.push("--fail-on-deny");
    assert_eq!(rampart(&failing).0, 1);
    // Subresources need their own rules; exec is granted, attach is not.
    let (_, json, _) = rampart(&[
        "gate",
        "authorize",
        "-f",
        &rbac,
        "--user",
        "zitadel:alice",
        "--group",
        "zitadel:team-a-dev",
        "--method",
        "POST",
        "--path",
        "/api/v1/namespaces/team-a/pods/web/attach",
        "-o",
        "json",
    ]);
    assert_eq!(json["allowed"], false);
    assert_eq!(json["request"]["subresource"], "attach");
}

#[test]
fn invalid_manifests_exit_two_with_located_errors() {
    let dir = std::env::temp_dir().join(format!("rampart-authorize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r}\nrules:\n- {apiGroups: [\"\"], resources: [pods]}\n- {verbs: [get], apiGroups: [\"\"], resources: [pods], nonResourceURLs: [/x]}\n",
    )
    .unwrap();
    let (code, _, err) = rampart(&[
        "gate",
        "authorize",
        "-f",
        bad.to_str().unwrap(),
        "--user",
        "u",
        "--verb",
        "get",
        "--resource",
        "pods",
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("bad.yaml: document 1 (line 1): ClusterRole r: rules[0].verbs: required"),
        "{err}"
    );
    assert!(err.contains("ClusterRole r: rules[1].nonResourceURLs: rules cannot apply to both regular resources and non-resource URLs"), "{err}");
    let (code, _, err) = rampart(&[
        "gate",
        "authorize",
        "-f",
        &example(),
        "--user",
        "u",
        "--method",
        "GET",
        "--path",
        "/api/v1/watch",
    ]);
    assert_eq!(code, 2, "{err}");
}
