//! Bad manifests are refused with every error at once, each naming its file, document,
//! object and field path, in the API server's terms.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use rampart_resources::{Source, decode_cluster, parse_sources};

fn errors_of(text: &str) -> Vec<String> {
    let (docs, parse_errors) = parse_sources(&[Source::from_text("bad.yaml", text)]);
    let mut out: Vec<String> = parse_errors.iter().map(ToString::to_string).collect();
    if let Err(e) = decode_cluster(&docs) {
        out.extend(e.iter().map(ToString::to_string));
    }
    out
}

fn netpol(spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: x}}\nspec:\n{spec}"
    )
}

#[track_caller]
fn assert_one(text: &str, expected: &str) {
    let errors = errors_of(text);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    assert!(
        errors[0].contains(expected),
        "{:?} does not contain {expected:?}",
        errors[0]
    );
    assert!(
        errors[0].starts_with("bad.yaml: document 1 (line 1): "),
        "{}",
        errors[0]
    );
}

#[test]
fn bad_cidr() {
    assert_one(
        &netpol("  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0/8}\n"),
        "NetworkPolicy x/p: spec.ingress[0].from[0].ipBlock.cidr: Invalid value: \"10.0.0/8\"",
    );
    assert_one(
        &netpol("  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.0/33}\n"),
        "spec.ingress[0].from[0].ipBlock.cidr: Invalid value: \"10.0.0.0/33\": prefix length",
    );
}

#[test]
fn except_outside_cidr() {
    assert_one(
        &netpol("  egress:\n  - to:\n    - ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}\n"),
        "spec.egress[0].to[0].ipBlock.except[0]: Invalid value: \"11.0.0.0/16\": must be a strict subset of `cidr`",
    );
    // Equal to the cidr is not a strict subset either.
    assert_one(
        &netpol("  egress:\n  - to:\n    - ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/8]}\n"),
        "must be a strict subset of `cidr`",
    );
}

#[test]
fn end_port_rules() {
    assert_one(
        &netpol("  ingress:\n  - ports:\n    - {port: 90, endPort: 80}\n"),
        "spec.ingress[0].ports[0].endPort: Invalid value: 90: must be greater than or equal to `port`",
    );
    assert_one(
        &netpol("  ingress:\n  - ports:\n    - {port: http, endPort: 80}\n"),
        "spec.ingress[0].ports[0].endPort: Invalid value: 80: may not be specified when `port` is non-numeric",
    );
    assert_one(
        &netpol("  ingress:\n  - ports:\n    - {endPort: 80}\n"),
        "may not be specified when `port` is not specified",
    );
    assert_one(
        &netpol("  ingress:\n  - ports:\n    - {port: 0}\n"),
        "spec.ingress[0].ports[0].port: Invalid value: 0",
    );
    assert_one(
        &netpol("  ingress:\n  - ports:\n    - {port: \"80\"}\n"),
        "must contain at least one letter",
    );
    assert_one(
        &netpol("  ingress:\n  - ports:\n    - {port: 80, protocol: ICMP}\n"),
        "spec.ingress[0].ports[0].protocol: Unsupported value: \"ICMP\"",
    );
}

#[test]
fn bad_selectors() {
    assert_one(
        &netpol(
            "  podSelector:\n    matchExpressions:\n    - {key: app, operator: Equals, values: [a]}\n",
        ),
        "spec.podSelector.matchExpressions[0].operator: Invalid value: \"Equals\": not a valid selector operator",
    );
    assert_one(
        &netpol("  podSelector:\n    matchExpressions:\n    - {key: app, operator: In}\n"),
        "spec.podSelector.matchExpressions[0].values: Required value",
    );
    assert_one(
        &netpol(
            "  podSelector:\n    matchExpressions:\n    - {key: app, operator: Exists, values: [a]}\n",
        ),
        "spec.podSelector.matchExpressions[0].values: Forbidden",
    );
    assert_one(
        &netpol("  podSelector:\n    matchLabels: {app: \"bad value\"}\n"),
        "spec.podSelector.matchLabels[\"app\"]: Invalid value: \"bad value\"",
    );
    assert_one(
        &netpol("  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {\"-bad\": x}}\n"),
        "spec.ingress[0].from[0].namespaceSelector.matchLabels[\"-bad\"]: Invalid value: \"-bad\"",
    );
}

#[test]
fn peers() {
    assert_one(
        &netpol("  ingress:\n  - from:\n    - {}\n"),
        "spec.ingress[0].from[0]: Required value: must specify a peer",
    );
    assert_one(
        &netpol(
            "  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.0/8}\n      podSelector: {}\n",
        ),
        "spec.ingress[0].from[0]: Forbidden: may not specify both ipBlock and another peer",
    );
    assert_one(
        &netpol("  ingress:\n  - to: []\n"),
        "spec.ingress[0].to: unknown field \"to\"",
    );
    // A typo is an error, never a policy that silently selects every pod.
    assert_one(
        &netpol("  podselector: {matchLabels: {app: a}}\n"),
        "unknown field `podselector`",
    );
    assert_one(
        &netpol("  policyTypes: [Inbound]\n"),
        "spec.policyTypes[0]: Unsupported value: \"Inbound\"",
    );
}

#[test]
fn every_error_at_once_with_locations() {
    let text = format!(
        "{}\n---\n{}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: Bad_Name, namespace: x}}\nspec:\n  containers:\n  - ports:\n    - {{containerPort: 70000, name: http}}\n    - {{containerPort: 80, name: http}}\n",
        netpol(
            "  ingress:\n  - from:\n    - ipBlock: {cidr: nope}\n  - ports:\n    - {port: -1}\n"
        ),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: q, namespace: x}\nspec:\n  egress:\n  - to:\n    - {}",
    );
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 6, "{errors:#?}");
    assert!(
        errors[0].starts_with(
            "bad.yaml: document 1 (line 1): NetworkPolicy x/p: spec.ingress[0].from[0].ipBlock.cidr"
        ),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].contains("spec.ingress[1].ports[0].port: Invalid value: -1"),
        "{}",
        errors[1]
    );
    assert!(
        errors[2]
            .starts_with("bad.yaml: document 2 (line 12): NetworkPolicy x/q: spec.egress[0].to[0]"),
        "{}",
        errors[2]
    );
    assert!(
        errors[3].starts_with("bad.yaml: document 3 (line 20): Pod x/Bad_Name: metadata.name"),
        "{}",
        errors[3]
    );
    assert!(
        errors[4].contains("spec.containers[0].ports[0].containerPort: Invalid value: 70000"),
        "{}",
        errors[4]
    );
    assert!(
        errors[5].contains("spec.containers[0].ports[1].name: Duplicate value: \"http\""),
        "{}",
        errors[5]
    );
}

#[test]
fn duplicates_and_versions() {
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n";
    let errors = errors_of(&format!("{ns}---\n{ns}"));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].contains("document 2")
            && errors[0].contains("metadata.name: Duplicate value: \"x\""),
        "{}",
        errors[0]
    );
    let errors = errors_of(
        "apiVersion: extensions/v1beta1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {}\n",
    );
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].contains("apiVersion: Unsupported value: \"extensions/v1beta1\""),
        "{}",
        errors[0]
    );
}

#[test]
fn admin_policies() {
    let anp = |spec: &str| {
        format!(
            "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {{name: a}}\nspec:\n{spec}"
        )
    };
    assert_one(
        &anp("  priority: 1001\n  subject: {namespaces: {}}\n"),
        "spec.priority: Invalid value: 1001",
    );
    assert_one(&anp("  priority: 1\n"), "spec.subject: Required value");
    assert_one(
        &anp(
            "  priority: 1\n  subject: {namespaces: {}, pods: {namespaceSelector: {}, podSelector: {}}}\n",
        ),
        "spec.subject: Invalid value: must specify exactly one of `namespaces` or `pods`",
    );
    assert_one(
        &anp(
            "  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n  - action: Block\n    from: [{namespaces: {}}]\n",
        ),
        "spec.ingress[0].action: Unsupported value: \"Block\"",
    );
    assert_one(
        &anp(
            "  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n  - action: Allow\n    from: [{networks: [10.0.0.0/8]}]\n",
        ),
        "spec.ingress[0].from[0].networks: unknown field \"networks\"",
    );
    assert_one(
        &anp(
            "  priority: 1\n  subject: {namespaces: {}}\n  egress:\n  - action: Allow\n    to: [{networks: [10.0.0.0/8]}]\n    ports: [{namedPort: http}]\n",
        ),
        "networks/nodes/domainNames peer cannot be set with namedPorts",
    );
    let banp = "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: BaselineAdminNetworkPolicy\nmetadata: {name: other}\nspec:\n  subject: {namespaces: {}}\n  ingress:\n  - action: Pass\n    from: [{namespaces: {}}]\n";
    let errors = errors_of(banp);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(
        errors[0].contains("metadata.name: Invalid value: \"other\""),
        "{}",
        errors[0]
    );
    assert!(errors[1].contains("spec.ingress[0].action: Unsupported value: \"Pass\": supported values: \"Allow\", \"Deny\""), "{}", errors[1]);
}

#[test]
fn defaulting() {
    let text = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  egress:\n  - ports: [{port: 53, protocol: UDP}, {port: 80}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a}\nstatus: {podIP: 10.0.0.1}\n";
    let (docs, e) = parse_sources(&[Source::from_text("ok.yaml", text)]);
    assert!(e.is_empty());
    let input = decode_cluster(&docs).unwrap();
    let np = &input.policies.network_policies[0];
    assert_eq!(np.namespace, "default");
    // policyTypes: Ingress always, Egress because there are egress rules.
    assert_eq!(np.ingress.as_deref(), Some(&[][..]));
    assert_eq!(np.egress.as_ref().map(Vec::len), Some(1));
    let ports = &np.egress.as_ref().unwrap()[0].ports;
    assert_eq!(ports[1].protocol, rampart_model::Protocol::Tcp);
    // The pod's namespace was not declared: it exists with its name label, and a warning.
    assert_eq!(input.warnings.len(), 1);
    assert_eq!(
        input.cluster.namespaces["default"].labels["kubernetes.io/metadata.name"],
        "default"
    );
}
