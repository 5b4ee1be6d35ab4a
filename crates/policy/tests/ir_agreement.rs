//! The kernel program compiled from the policies (`ir`) agrees with the reference
//! evaluator on random clusters: every pair of pods, pods and outside addresses, every
//! probe, run through the compiled table the way netfilter runs a packet.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;
use rampart_model::{
    Action, AdminNetworkPolicy, AdminPeer, AdminPort, AdminRule, BaselineAdminNetworkPolicy, Cidr,
    Cluster, ContainerPort, IpBlock, LabelSelector, Labels, Namespace, NamespaceMatch,
    NetworkPolicy, Node, Peer, Peers, Pod, PolicyPort, PolicySet, PortName, PortRange, PortSpec,
    Probe, Protocol, Requirement, Rule, Subject,
};
use rampart_policy::ir::{self, LocalPods, Options};
use rampart_policy::{Endpoint, Evaluator};
use rampart_ruleset::{Hook, Packet, Table, TableVerdict};

const KEYS: [&str; 2] = ["a", "b"];
const VALUES: [&str; 2] = ["x", "y"];
const NAMES: [&str; 2] = ["http", "dns"];
const PROBES: [Probe; 5] = [
    Probe {
        port: 80,
        protocol: Protocol::Tcp,
    },
    Probe {
        port: 81,
        protocol: Protocol::Tcp,
    },
    Probe {
        port: 53,
        protocol: Protocol::Udp,
    },
    Probe {
        port: 80,
        protocol: Protocol::Udp,
    },
    Probe {
        port: 80,
        protocol: Protocol::Sctp,
    },
];

fn labels() -> impl Strategy<Value = Labels> {
    proptest::collection::btree_map(
        prop::sample::select(KEYS.to_vec()).prop_map(str::to_owned),
        prop::sample::select(VALUES.to_vec()).prop_map(str::to_owned),
        0..3,
    )
}

fn requirement() -> impl Strategy<Value = Requirement> {
    let key = prop::sample::select(KEYS.to_vec()).prop_map(str::to_owned);
    let values = proptest::collection::btree_set(
        prop::sample::select(VALUES.to_vec()).prop_map(str::to_owned),
        1..3,
    );
    prop_oneof![
        (key.clone(), values.clone()).prop_map(|(k, v)| Requirement::In(k, v)),
        (key.clone(), values).prop_map(|(k, v)| Requirement::NotIn(k, v)),
        key.clone().prop_map(Requirement::Exists),
        key.prop_map(Requirement::DoesNotExist),
    ]
}

fn selector() -> impl Strategy<Value = LabelSelector> {
    proptest::collection::vec(requirement(), 0..3).prop_map(LabelSelector::new)
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop::sample::select(Protocol::ALL.to_vec())
}

fn port_name() -> impl Strategy<Value = PortName> {
    prop::sample::select(NAMES.to_vec()).prop_map(|n| PortName::new(n).unwrap())
}

fn cidr() -> impl Strategy<Value = Cidr> {
    // Around the pod and node addresses used below.
    (
        prop::sample::select(vec![
            [10u8, 0, 0, 0],
            [10, 0, 1, 0],
            [10, 0, 1, 4],
            [172, 16, 0, 0],
            [0, 0, 0, 0],
        ]),
        0u8..=32,
    )
        .prop_map(|(a, p)| {
            Cidr::new(
                IpAddr::V4(Ipv4Addr::from(a)),
                p.max(if a == [0, 0, 0, 0] { 0 } else { 8 }),
            )
            .unwrap()
        })
}

fn ip_block() -> impl Strategy<Value = IpBlock> {
    (cidr(), proptest::collection::vec(0u8..8, 0..2)).prop_map(|(c, bits)| {
        // Exceptions strictly inside the block, as validation guarantees.
        let except = bits
            .into_iter()
            .filter_map(|b| {
                let prefix = (c.prefix() + 1 + b).min(32);
                (prefix > c.prefix()).then(|| Cidr::new(c.addr(), prefix).unwrap())
            })
            .collect();
        IpBlock::new(c, except)
    })
}

fn policy_port() -> impl Strategy<Value = PolicyPort> {
    let spec = prop_oneof![
        Just(PortSpec::Any),
        prop::sample::select(vec![53u16, 80, 81])
            .prop_map(|p| PortSpec::Range(PortRange::single(p).unwrap())),
        Just(PortSpec::Range(PortRange::new(80, 81).unwrap())),
        port_name().prop_map(PortSpec::Named),
    ];
    (protocol(), spec).prop_map(|(protocol, port)| PolicyPort { protocol, port })
}

fn peer() -> impl Strategy<Value = Peer> {
    prop_oneof![
        (selector(), prop::option::of(selector())).prop_map(|(pods, ns)| Peer::Pods {
            namespaces: ns.map_or(NamespaceMatch::Own, NamespaceMatch::Selector),
            pods,
        }),
        ip_block().prop_map(Peer::IpBlock),
    ]
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        prop_oneof![1 => Just(Peers::Any), 3 => proptest::collection::vec(peer(), 1..3).prop_map(Peers::List)],
        proptest::collection::vec(policy_port(), 0..3),
    )
        .prop_map(|(peers, ports)| Rule { peers, ports })
}

fn network_policy(i: usize) -> impl Strategy<Value = NetworkPolicy> {
    (
        0usize..3,
        selector(),
        prop::option::of(proptest::collection::vec(rule(), 0..3)),
        prop::option::of(proptest::collection::vec(rule(), 0..3)),
    )
        .prop_map(move |(ns, pod_selector, ingress, egress)| NetworkPolicy {
            namespace: format!("n{ns}"),
            name: format!("np{i}"),
            pod_selector,
            ingress,
            egress,
        })
}

fn subject() -> impl Strategy<Value = Subject> {
    prop_oneof![
        selector().prop_map(Subject::Namespaces),
        (selector(), selector()).prop_map(|(namespaces, pods)| Subject::Pods { namespaces, pods }),
    ]
}

fn admin_port() -> impl Strategy<Value = AdminPort> {
    prop_oneof![
        (protocol(), prop::sample::select(vec![53u16, 80, 81]))
            .prop_map(|(protocol, port)| AdminPort::Number { protocol, port }),
        port_name().prop_map(AdminPort::Named),
        protocol().prop_map(|protocol| AdminPort::Range {
            protocol,
            range: PortRange::new(80, 81).unwrap()
        }),
    ]
}

fn admin_rule(egress: bool, actions: Vec<Action>) -> impl Strategy<Value = AdminRule> {
    let peer = if egress {
        prop_oneof![
            selector().prop_map(AdminPeer::Namespaces),
            (selector(), selector())
                .prop_map(|(namespaces, pods)| AdminPeer::Pods { namespaces, pods }),
            selector().prop_map(AdminPeer::Nodes),
            proptest::collection::vec(cidr(), 1..3).prop_map(AdminPeer::Networks),
        ]
        .boxed()
    } else {
        prop_oneof![
            selector().prop_map(AdminPeer::Namespaces),
            (selector(), selector())
                .prop_map(|(namespaces, pods)| AdminPeer::Pods { namespaces, pods }),
        ]
        .boxed()
    };
    (
        prop::sample::select(actions),
        proptest::collection::vec(peer, 1..3),
        prop::option::of(proptest::collection::vec(admin_port(), 1..3)),
    )
        .prop_map(|(action, peers, ports)| AdminRule {
            name: String::new(),
            action,
            peers,
            ports,
        })
}

fn admin_policy(i: usize) -> impl Strategy<Value = AdminNetworkPolicy> {
    let actions = vec![Action::Allow, Action::Deny, Action::Pass];
    (
        0u32..3,
        subject(),
        proptest::collection::vec(admin_rule(false, actions.clone()), 0..3),
        proptest::collection::vec(admin_rule(true, actions), 0..3),
    )
        .prop_map(
            move |(priority, subject, ingress, egress)| AdminNetworkPolicy {
                name: format!("anp{i}"),
                priority,
                subject,
                ingress,
                egress,
            },
        )
}

fn baseline() -> impl Strategy<Value = BaselineAdminNetworkPolicy> {
    let actions = vec![Action::Allow, Action::Deny];
    (
        subject(),
        proptest::collection::vec(admin_rule(false, actions.clone()), 0..3),
        proptest::collection::vec(admin_rule(true, actions), 0..3),
    )
        .prop_map(|(subject, ingress, egress)| BaselineAdminNetworkPolicy {
            name: "default".to_owned(),
            subject,
            ingress,
            egress,
        })
}

fn container_port() -> impl Strategy<Value = ContainerPort> {
    (
        prop::option::of(port_name()),
        prop::sample::select(vec![53u16, 80, 81]),
        protocol(),
    )
        .prop_map(|(name, port, protocol)| ContainerPort {
            name,
            port,
            protocol,
        })
}

#[derive(Debug, Clone)]
struct PodSpec {
    ns: usize,
    labels: Labels,
    ports: Vec<ContainerPort>,
    host_network: bool,
    has_ip: bool,
}

fn pod_spec() -> impl Strategy<Value = PodSpec> {
    (
        0usize..3,
        labels(),
        proptest::collection::vec(container_port(), 0..3),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.9),
    )
        .prop_map(|(ns, labels, ports, host_network, has_ip)| PodSpec {
            ns,
            labels,
            ports,
            host_network,
            has_ip,
        })
}

fn world() -> impl Strategy<Value = (Cluster, PolicySet)> {
    (
        proptest::collection::vec(labels(), 3),
        proptest::collection::vec(pod_spec(), 1..9),
        proptest::collection::vec(labels(), 2),
        (0usize..4).prop_flat_map(|n| (0..n).map(network_policy).collect::<Vec<_>>()),
        (0usize..3).prop_flat_map(|n| (0..n).map(admin_policy).collect::<Vec<_>>()),
        prop::option::of(baseline()),
    )
        .prop_map(|(ns_labels, pods, node_labels, nps, anps, banp)| {
            let mut cluster = Cluster::default();
            for (i, l) in ns_labels.into_iter().enumerate() {
                let mut ns = Namespace::new(&format!("n{i}"));
                ns.labels.extend(l);
                cluster.namespaces.insert(ns.name.clone(), ns);
            }
            for (i, l) in node_labels.into_iter().enumerate() {
                cluster.nodes.push(Node {
                    name: format!("node{i}"),
                    labels: l,
                    addresses: vec![IpAddr::V4(Ipv4Addr::new(172, 16, 0, i as u8 + 1))],
                });
            }
            for (i, p) in pods.into_iter().enumerate() {
                let ip = if p.host_network {
                    IpAddr::V4(Ipv4Addr::new(172, 16, 0, (i % 2) as u8 + 1))
                } else {
                    IpAddr::V4(Ipv4Addr::new(10, 0, p.ns as u8, i as u8 + 1))
                };
                cluster.pods.push(Pod {
                    namespace: format!("n{}", p.ns),
                    name: format!("p{i}"),
                    labels: p.labels,
                    ports: p.ports,
                    ips: if p.has_ip { vec![ip] } else { Vec::new() },
                    host_network: p.host_network,
                    node_name: None,
                });
            }
            cluster.normalize();
            let mut policies = PolicySet {
                network_policies: nps,
                admin_policies: anps,
                baseline: banp,
            };
            policies.normalize();
            (cluster, policies)
        })
}

fn outside() -> Vec<IpAddr> {
    ["10.0.1.200", "172.16.0.1", "192.0.2.1", "10.0.0.7"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect()
}

/// Whether the compiled table lets a new flow through, following the path a packet takes
/// on a node: pod to pod through `forward`, the node (and host-network pods) to a pod
/// through `output`, a pod to the node through `input`.
fn kernel_allows(table: &Table, src: (IpAddr, bool), dst: (IpAddr, bool), probe: Probe) -> bool {
    let packet = Packet::new_flow(src.0, dst.0, probe.protocol.number(), probe.port);
    let hooks: &[Hook] = match (src.1, dst.1) {
        (false, false) => &[Hook::Forward],
        (true, false) => &[Hook::Output],
        (false, true) => &[Hook::Input],
        (true, true) => &[Hook::Output, Hook::Input],
    };
    hooks
        .iter()
        .all(|h| table.evaluate(*h, &packet) == TableVerdict::Accept)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn kernel_program_agrees_with_reference((cluster, policies) in world()) {
        let reference = Evaluator::new(&cluster, &policies);
        for stateful in [ir::Stateful::AcceptEstablished, ir::Stateful::RecheckOriginal] {
            let options = Options { local: LocalPods::All, stateful, ..Options::default() };
            let table = ir::compile(&cluster, &policies, &options).table;
            for probe in PROBES {
                for a in &cluster.pods {
                    let Some(a_ip) = a.primary_ip() else { continue };
                    for b in &cluster.pods {
                        let Some(b_ip) = b.primary_ip() else { continue };
                        if a_ip == b_ip {
                            // The same pod, or host-network pods of one node: never filtered.
                            continue;
                        }
                        if cluster.pods.iter().filter(|p| p.ips.contains(&b_ip)).count() > 1 {
                            // Host-network pods sharing a node address: the kernel sees one
                            // address, and resolves a named port on any pod there.
                            continue;
                        }
                        let want = reference.allowed(&Endpoint::pod(a), &Endpoint::pod(b), probe);
                        let got = kernel_allows(&table, (a_ip, a.host_network), (b_ip, b.host_network), probe);
                        prop_assert_eq!(got, want, "{}/{} -> {}/{} {}", a.namespace, a.name, b.namespace, b.name, probe);
                    }
                    for ip in outside() {
                        if cluster.pods.iter().any(|p| p.ips.contains(&ip)) {
                            continue;
                        }
                        let is_node = cluster.nodes.iter().any(|n| n.addresses.contains(&ip));
                        let want_out = reference.allowed(&Endpoint::pod(a), &Endpoint::Address(ip), probe);
                        let want_in = reference.allowed(&Endpoint::Address(ip), &Endpoint::pod(a), probe);
                        prop_assert_eq!(kernel_allows(&table, (a_ip, a.host_network), (ip, is_node), probe), want_out, "{} -> {}", a.name, ip);
                        prop_assert_eq!(kernel_allows(&table, (ip, is_node), (a_ip, a.host_network), probe), want_in, "{} -> {}", ip, a.name);
                    }
                }
            }
        }
    }
}
