//! Decoding (every error located, all at once), OpenStack import, and the compiled
//! semantics checked with the ruleset's packet evaluator.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_arguments,
    reason = "test code: a failed unwrap is a failed test; packet helpers spell out a packet"
)]

use std::net::IpAddr;

use rampart_firewall::{Inputs, decode_inputs, load, sg, talos};
use rampart_resources::{Diagnostics, Source};
use rampart_ruleset::{Hook, Packet, Table, TableVerdict};

fn inputs(files: &[(&str, &str)]) -> Result<Inputs, Diagnostics> {
    let sources: Vec<Source> = files
        .iter()
        .map(|(n, t)| Source::from_text(n, *t))
        .collect();
    let (docs, errors) = load::parse(&sources);
    assert!(errors.is_empty(), "{errors}");
    decode_inputs(&docs)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pass(
    table: &Table,
    hook: Hook,
    iif: Option<&str>,
    oif: Option<&str>,
    src: &str,
    dst: &str,
    proto: u8,
    port: u16,
) -> bool {
    let mut p = Packet::new_flow(ip(src), ip(dst), proto, port);
    p.iif = iif.map(str::to_owned);
    p.oif = oif.map(str::to_owned);
    table.evaluate(hook, &p) == TableVerdict::Accept
}

#[test]
fn neutron_rule_errors_are_all_reported_with_their_paths() {
    let text = r#"apiVersion: rampart.dev/v1alpha1
kind: SecurityGroup
metadata: {name: bad}
spec:
  rules:
  - {direction: inbound, protocol: tcp}
  - {direction: ingress, port_range_min: 80}
  - {direction: ingress, protocol: tcp, port_range_min: 90, port_range_max: 80}
  - {direction: ingress, ethertype: IPv6, remote_ip_prefix: 10.0.0.0/8}
  - {direction: ingress, remote_ip_prefix: 10.0.0.0/8, remote_group_id: bad}
  - {direction: egress, remote_group_id: nowhere}
  - {direction: egress, protocol: bogus}
  - {direction: egress, portRangeMin: 1}
"#;
    let err = inputs(&[("sg.yaml", text)]).unwrap_err().to_string();
    for want in [
        "sg.yaml: document 1 (line 1): SecurityGroup bad: spec.rules[0].direction: must be \"ingress\" or \"egress\"",
        "spec.rules[1].port_range_min: ports are only for tcp",
        "spec.rules[2].port_range_max: must not be below port_range_min (90)",
        "spec.rules[3].remote_ip_prefix: 10.0.0.0/8 does not match the rule's ethertype",
        "spec.rules[4].remote_ip_prefix: only one of remote_ip_prefix",
        "spec.rules[5].remote_group_id: no security group \"nowhere\"",
        "spec.rules[6].protocol: unknown protocol \"bogus\"",
        "spec.rules[7].portRangeMin: unknown field",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

#[test]
fn openstack_output_imports_as_is() {
    let group = r#"{"id": "0c1d", "name": "default", "description": "Default security group",
      "project_id": "p", "stateful": true, "tags": [],
      "rules": [
        {"id": "a", "direction": "egress", "ethertype": "IPv4", "protocol": null, "port_range_max": null, "port_range_min": null, "remote_ip_prefix": null, "remote_group_id": null},
        {"id": "b", "direction": "ingress", "ethertype": "IPv4", "protocol": null, "remote_group_id": "0c1d"},
        {"id": "c", "direction": "ingress", "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "192.0.2.0/24"}
      ]}"#;
    let port = r#"{"port": {"id": "p1", "name": "node-a", "binding_host_id": "node-a",
      "fixed_ips": [{"subnet_id": "s", "ip_address": "10.0.0.5"}],
      "allowed_address_pairs": [{"ip_address": "10.244.5.0/24", "mac_address": "fa:16:3e:00:00:01"}],
      "security_group_ids": ["0c1d"], "port_security_enabled": true}}"#;
    let peer = r#"[{"id": "p2", "name": "node-b", "fixed_ips": [{"ip_address": "10.0.0.6"}], "security_group_ids": ["0c1d"]}]"#;
    let inputs = inputs(&[("g.json", group), ("a.json", port), ("b.json", peer)]).unwrap();
    let sgs = &inputs.security_groups;
    assert_eq!(sgs.groups.len(), 1);
    assert_eq!(
        sgs.groups[0].rules.len(),
        3,
        "imported rules only, no defaults added"
    );
    assert_eq!(sgs.ports.len(), 2);
    let table = sg::compile(
        sgs,
        &sg::Options {
            table: "t".into(),
            node: Some("node-a".into()),
            recheck_established: false,
        },
    );
    // node-a has no interface named: every interface but lo.
    let from = |src: &str, port: u16| {
        pass(
            &table,
            Hook::Prerouting,
            Some("eth0"),
            None,
            src,
            "10.0.0.5",
            6,
            port,
        )
    };
    assert!(
        from("10.0.0.6", 8080),
        "members of the group reach every port"
    );
    assert!(from("192.0.2.7", 22));
    assert!(!from("192.0.2.7", 23));
    assert!(!from("198.51.100.1", 22));
    assert!(pass(
        &table,
        Hook::Prerouting,
        Some("lo"),
        None,
        "198.51.100.1",
        "10.0.0.5",
        6,
        1
    ));
    // Egress: IPv4 anywhere, from the port's own addresses (pairs included) only.
    assert!(pass(
        &table,
        Hook::Postrouting,
        None,
        Some("eth0"),
        "10.244.5.9",
        "203.0.113.1",
        6,
        443
    ));
    assert!(!pass(
        &table,
        Hook::Postrouting,
        None,
        Some("eth0"),
        "10.9.9.9",
        "203.0.113.1",
        6,
        443
    ));
}

#[test]
fn openstack_errors_name_the_file_and_item() {
    let bad = r#"[{"name": "x", "rules": [{"direction": "sideways"}]}]"#;
    let err = inputs(&[("groups.json", bad)]).unwrap_err().to_string();
    assert!(
        err.contains("groups.json: document 1 (line 1): items[0]: SecurityGroup"),
        "{err}"
    );
    assert!(err.contains("rules[0].direction"), "{err}");
}

#[test]
fn groups_on_a_port_are_a_union_and_statefulness_cannot_mix() {
    let text = r#"apiVersion: rampart.dev/v1alpha1
kind: SecurityGroup
metadata: {name: ssh}
spec:
  rules: [{direction: ingress, protocol: tcp, port_range_min: 22}]
---
apiVersion: rampart.dev/v1alpha1
kind: SecurityGroup
metadata: {name: web}
spec:
  defaultEgressRules: false
  rules: [{direction: ingress, protocol: tcp, port_range_min: 443, port_range_max: 443, remote_ip_prefix: 0.0.0.0/0}]
---
apiVersion: rampart.dev/v1alpha1
kind: Port
metadata: {name: p}
spec: {node: n, interface: eth0, fixedIPs: [10.1.0.1], securityGroups: [ssh, web]}
"#;
    let i = inputs(&[("a.yaml", text)]).unwrap();
    let t = sg::compile(
        &i.security_groups,
        &sg::Options {
            table: "t".into(),
            node: Some("n".into()),
            recheck_established: false,
        },
    );
    let to = |port: u16| {
        pass(
            &t,
            Hook::Prerouting,
            Some("eth0"),
            None,
            "192.0.2.1",
            "10.1.0.1",
            6,
            port,
        )
    };
    assert!(to(22) && to(443) && !to(80));
    assert!(
        pass(
            &t,
            Hook::Prerouting,
            Some("eth1"),
            None,
            "192.0.2.1",
            "10.1.0.1",
            6,
            80
        ),
        "other interfaces are not this port"
    );

    let mixed = text.replace(
        "defaultEgressRules: false",
        "defaultEgressRules: false\n  stateful: false",
    );
    let err = inputs(&[("a.yaml", &mixed)]).unwrap_err().to_string();
    assert!(
        err.contains("cannot have both stateful and stateless"),
        "{err}"
    );
}

#[test]
fn talos_documents_are_validated_like_talos() {
    let text = r#"apiVersion: v1alpha1
kind: NetworkDefaultActionConfig
ingress: deny
---
apiVersion: v1alpha1
kind: NetworkDefaultActionConfig
ingress: block
---
apiVersion: v1alpha1
kind: NetworkRuleConfig
name: r
portSelector:
  ports: [80, "79-81", "90-85", http]
  protocol: sctp
ingress:
  - subnet: 10.0.0.0/33
  - except: 10.0.0.1/32
---
apiVersion: v1alpha1
kind: NetworkRuleConfig
name: r
portSelector: {ports: [1], protocol: udp}
extra: true
"#;
    let err = inputs(&[("talos.yaml", text)]).unwrap_err().to_string();
    for want in [
        "ingress: must be \"accept\" or \"block\", not \"deny\"",
        "a second NetworkDefaultActionConfig",
        "portSelector.protocol: must be tcp, udp, icmp or icmpv6",
        "portSelector.ports[2]: invalid port range: 90-85",
        "portSelector.ports[3]: invalid port range: \"http\"",
        "overlaps with",
        "ingress[0].subnet: invalid subnet",
        "ingress[1].subnet: required",
        "extra: unknown field",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

#[test]
fn talos_semantics() {
    let rules = r#"---
apiVersion: v1alpha1
kind: NetworkRuleConfig
name: apid
portSelector: {ports: [50000], protocol: tcp}
ingress: [{subnet: 10.0.0.0/8, except: 10.9.0.0/16}]
"#;
    let compile = |mode: &str| {
        let text = format!(
            "apiVersion: v1alpha1\nkind: NetworkDefaultActionConfig\ningress: {mode}\n{rules}"
        );
        let i = inputs(&[("t.yaml", &text)]).unwrap();
        talos::compile(i.host.as_ref(), &talos::Options::default())
    };
    let input = |t: &Table, iif: &str, src: &str, proto: u8, port: u16| {
        let mut p = Packet::new_flow(ip(src), ip("192.0.2.10"), proto, port);
        p.iif = Some(iif.to_owned());
        p.dst_local = true;
        t.evaluate(Hook::Input, &p) == TableVerdict::Accept
            && t.evaluate(Hook::Prerouting, &p) == TableVerdict::Accept
    };
    let block = compile("block");
    assert!(input(&block, "eth0", "10.1.2.3", 6, 50000));
    assert!(!input(&block, "eth0", "10.9.2.3", 6, 50000), "except");
    assert!(!input(&block, "eth0", "10.1.2.3", 6, 22));
    assert!(input(&block, "lo", "10.9.2.3", 6, 22), "trusted interface");
    assert!(
        input(&block, "eth0", "203.0.113.1", 1, 0),
        "ICMP is accepted (rate-limited)"
    );
    let accept = compile("accept");
    assert!(input(&accept, "eth0", "203.0.113.1", 6, 22));
    assert!(!input(&accept, "eth0", "203.0.113.1", 6, 50000));
    assert!(input(&accept, "eth0", "10.1.2.3", 6, 50000));
    // Accept mode without rules: nothing at all.
    let i = inputs(&[(
        "t.yaml",
        "apiVersion: v1alpha1\nkind: NetworkDefaultActionConfig\ningress: accept\n",
    )])
    .unwrap();
    assert!(
        talos::compile(i.host.as_ref(), &talos::Options::default())
            .chains
            .is_empty()
    );
}

mod fuzz {
    //! Inputs are a trust boundary: whatever a document holds, decoding and compiling
    //! return a value or located errors, never a panic.

    use proptest::prelude::*;
    use rampart_resources::{Document, Location};
    use serde_json::{Map, Value, json};

    const KEYS: [&str; 24] = [
        "direction",
        "ethertype",
        "protocol",
        "port_range_min",
        "port_range_max",
        "remote_ip_prefix",
        "remote_group_id",
        "remote_address_group_id",
        "rules",
        "security_group_rules",
        "name",
        "id",
        "stateful",
        "fixed_ips",
        "ip_address",
        "allowed_address_pairs",
        "security_group_ids",
        "ingress",
        "portSelector",
        "ports",
        "subnet",
        "except",
        "spec",
        "addresses",
    ];

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            (0u32..70000).prop_map(|n| json!(n)),
            prop::sample::select(vec![
                "ingress",
                "egress",
                "IPv4",
                "IPv6",
                "tcp",
                "icmp",
                "icmpv6",
                "any",
                "0",
                "300",
                "10.0.0.0/8",
                "::/0",
                "10.1.2.3",
                "1-2",
                "65535-1",
                "block",
                "accept",
                "g",
                "",
                "80",
                "x/y/z",
                "fe80::1/200",
            ])
            .prop_map(|s| json!(s)),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((prop::sample::select(KEYS.to_vec()), inner), 0..6).prop_map(
                    |kv| {
                        Value::Object(
                            kv.into_iter()
                                .map(|(k, v)| (k.to_owned(), v))
                                .collect::<Map<_, _>>(),
                        )
                    }
                ),
            ]
        })
    }

    fn document() -> impl Strategy<Value = Document> {
        (
            prop::sample::select(vec![
                ("rampart.dev/v1alpha1", "SecurityGroup"),
                ("rampart.dev/v1alpha1", "Port"),
                ("rampart.dev/v1alpha1", "AddressGroup"),
                ("openstack", "SecurityGroup"),
                ("openstack", "Port"),
                ("openstack", "AddressGroup"),
                ("v1alpha1", "NetworkRuleConfig"),
                ("v1alpha1", "NetworkDefaultActionConfig"),
            ]),
            value(),
            prop::option::of("[a-z]{1,3}"),
        )
            .prop_map(|((api, kind), mut v, name)| {
                if let (Value::Object(m), Some(n)) = (&mut v, name) {
                    m.insert("metadata".into(), json!({"name": n}));
                }
                Document {
                    location: Location {
                        source: "fuzz".into(),
                        document: 1,
                        line: 1,
                        item: None,
                    },
                    api_version: api.to_owned(),
                    kind: kind.to_owned(),
                    value: v,
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

        #[test]
        fn decoding_never_panics(docs in prop::collection::vec(document(), 1..5)) {
            if let Ok(inputs) = rampart_firewall::decode_inputs(&docs) {
                let _ = rampart_firewall::sg::compile(&inputs.security_groups, &rampart_firewall::sg::Options {
                    table: "t".into(), node: None, recheck_established: false,
                });
                let _ = rampart_firewall::talos::compile(inputs.host.as_ref(), &rampart_firewall::talos::Options::default());
            }
        }
    }
}
