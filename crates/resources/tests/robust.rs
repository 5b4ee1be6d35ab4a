//! Untrusted input never panics the loader: random text, and random objects shaped like
//! the kinds Rampart reads (right field names, wrong or odd values), are either decoded
//! or refused with diagnostics.

use proptest::prelude::*;
use rampart_resources::{Source, decode_cluster, parse_source};
use serde_json::{Value, json};

const FIELDS: &[&str] = &[
    "metadata",
    "name",
    "namespace",
    "labels",
    "spec",
    "status",
    "podSelector",
    "namespaceSelector",
    "matchLabels",
    "matchExpressions",
    "key",
    "operator",
    "values",
    "ingress",
    "egress",
    "from",
    "to",
    "ports",
    "port",
    "endPort",
    "protocol",
    "ipBlock",
    "cidr",
    "except",
    "policyTypes",
    "containers",
    "containerPort",
    "podIP",
    "podIPs",
    "ip",
    "hostNetwork",
    "priority",
    "subject",
    "namespaces",
    "pods",
    "nodes",
    "networks",
    "action",
    "portNumber",
    "namedPort",
    "portRange",
    "start",
    "end",
    "addresses",
    "address",
    "type",
    "items",
    "initContainers",
    "restartPolicy",
    "domainNames",
];

const KINDS: &[(&str, &str)] = &[
    ("v1", "Namespace"),
    ("v1", "Pod"),
    ("v1", "Node"),
    ("v1", "List"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("policy.networking.k8s.io/v1alpha1", "AdminNetworkPolicy"),
    (
        "policy.networking.k8s.io/v1alpha1",
        "BaselineAdminNetworkPolicy",
    ),
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (0i64..70000).prop_map(|n| json!(n)),
        prop::sample::select(vec![
            "",
            "x",
            "TCP",
            "UDP",
            "SCTP",
            "In",
            "NotIn",
            "Exists",
            "Allow",
            "Deny",
            "Pass",
            "Ingress",
            "Egress",
            "10.0.0.0/8",
            "10.0.0.1",
            "::/0",
            "10.0.0.0/33",
            "0.0.0.0/0",
            "http",
            "a/b",
            "-",
            "Always",
        ])
        .prop_map(|s| json!(s)),
        "[ -~]{0,12}".prop_map(Value::String),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((prop::sample::select(FIELDS.to_vec()), inner), 0..6)
                .prop_map(|kv| Value::Object(
                    kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(text in "\\PC{0,200}") {
        let (docs, _) = parse_source(&Source::from_text("t", text));
        let _ = decode_cluster(&docs);
    }

    #[test]
    fn odd_objects_never_panic(kind in prop::sample::select(KINDS.to_vec()), body in value()) {
        let mut object = match body {
            Value::Object(m) => m,
            other => [("spec".to_owned(), other)].into_iter().collect(),
        };
        object.insert("apiVersion".into(), json!(kind.0));
        object.insert("kind".into(), json!(kind.1));
        let text = serde_json::to_string(&Value::Object(object)).unwrap_or_default();
        let (docs, _) = parse_source(&Source::from_text("t.json", text.clone()));
        let _ = decode_cluster(&docs);
        // The same object as YAML.
        let yaml = serde_yaml_ng::to_string(&serde_json::from_str::<Value>(&text).unwrap_or_default()).unwrap_or_default();
        let (docs, _) = parse_source(&Source::from_text("t.yaml", yaml));
        let _ = decode_cluster(&docs);
    }
}
