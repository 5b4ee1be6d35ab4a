//! Which security-group rule and which host-firewall rule let a flow through, or that
//! none does: the perimeter and host layers' part of an explanation.
//!
//! The decisions follow the same semantics the compilers in [`crate::sg`] and
//! [`crate::talos`] put into the kernel; the tests check them against the compiled
//! tables run through `rampart-ruleset`'s evaluator.

use std::collections::BTreeMap;
use std::net::IpAddr;

use rampart_model::{Cidr, Family, IpSet};
use serde::Serialize;

use crate::sg::{Direction, Port, PortMatch, Remote, SecurityGroups, SgRule};
use crate::talos::{DefaultAction, HostFirewall, HostRule};

/// The first port of Linux's default ephemeral range (`net.ipv4.ip_local_port_range`).
pub const EPHEMERAL_PORTS: (u16, u16) = (32768, 60999);

/// A security-group rule that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SgRuleMatch {
    /// The group.
    pub group: String,
    /// Where the rule is in its document (`spec.rules[2]`), or `default egress rule`.
    pub rule: String,
    /// The rule in words.
    pub text: String,
}

/// One port's decision on one direction of a flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortDecision {
    /// Port name.
    pub port: String,
    /// The node enforcing it, if any.
    pub node: Option<String>,
    /// The port address (fixed IP or allowed address pair) that holds the flow's address.
    pub address: String,
    /// Ingress (to the port) or egress (from it).
    pub direction: &'static str,
    /// Whether the port lets the flow through in this direction.
    pub allowed: bool,
    /// Port security off: no filtering at all.
    pub port_security: bool,
    /// Stateless groups: replies need rules of their own.
    pub stateful: bool,
    /// Every rule of the port's groups that allows the flow (a union; order has no
    /// meaning).
    pub matched: Vec<SgRuleMatch>,
    /// For stateless groups: whether a rule lets the replies back (to any ephemeral port).
    pub replies_allowed: Option<bool>,
}

/// The perimeter layer's decision: the source's port on egress, the destination's on
/// ingress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PerimeterDecision {
    /// Ports holding the source address (egress checked).
    pub egress: Vec<PortDecision>,
    /// Ports holding the destination address (ingress checked).
    pub ingress: Vec<PortDecision>,
}

impl PerimeterDecision {
    /// True if some port holds either address.
    pub fn applies(&self) -> bool {
        !self.egress.is_empty() || !self.ingress.is_empty()
    }

    /// True if every port involved lets the flow (and, for stateless groups, its
    /// replies) through.
    pub fn allowed(&self) -> bool {
        self.egress
            .iter()
            .chain(&self.ingress)
            .all(|p| p.allowed && p.replies_allowed != Some(false))
    }
}

/// A flow as the firewall layers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number.
    pub protocol: u8,
    /// Destination port.
    pub port: u16,
}

/// The perimeter's decision on a new flow.
pub fn perimeter(input: &SecurityGroups, flow: &Flow) -> PerimeterDecision {
    let members = crate::sg::members(input);
    let groups: BTreeMap<&str, &crate::sg::SecurityGroup> =
        input.groups.iter().map(|g| (g.name.as_str(), g)).collect();
    let address_groups: BTreeMap<&str, IpSet> = input
        .address_groups
        .iter()
        .map(|a| (a.name.as_str(), IpSet::from_cidrs(&a.addresses)))
        .collect();
    let member_sets: BTreeMap<&str, IpSet> = members
        .iter()
        .map(|(k, v)| (*k, IpSet::from_cidrs(v)))
        .collect();
    let ctx = Ctx {
        groups: &groups,
        members: &member_sets,
        address_groups: &address_groups,
    };

    let egress = ports_holding(input, flow.src)
        .into_iter()
        .map(|(port, address)| ctx.decide(port, address, Direction::Egress, flow))
        .collect();
    let ingress = ports_holding(input, flow.dst)
        .into_iter()
        .map(|(port, address)| ctx.decide(port, address, Direction::Ingress, flow))
        .collect();
    PerimeterDecision { egress, ingress }
}

/// The enforced ports whose addresses hold `ip`, the most specific address first wins
/// (a node's fixed IP over a pod network in its allowed address pairs).
fn ports_holding(input: &SecurityGroups, ip: IpAddr) -> Vec<(&Port, Cidr)> {
    let mut best: Option<u8> = None;
    let mut out = Vec::new();
    for port in input.ports.iter().filter(|p| p.node.is_some()) {
        let Some(address) = port
            .addresses
            .iter()
            .filter(|c| c.contains(ip))
            .max_by_key(|c| c.prefix())
        else {
            continue;
        };
        match best {
            Some(b) if address.prefix() < b => continue,
            Some(b) if address.prefix() > b => out.clear(),
            _ => {}
        }
        best = Some(address.prefix());
        out.push((port, *address));
    }
    out
}

struct Ctx<'a> {
    groups: &'a BTreeMap<&'a str, &'a crate::sg::SecurityGroup>,
    members: &'a BTreeMap<&'a str, IpSet>,
    address_groups: &'a BTreeMap<&'a str, IpSet>,
}

impl Ctx<'_> {
    fn decide(
        &self,
        port: &Port,
        address: Cidr,
        direction: Direction,
        flow: &Flow,
    ) -> PortDecision {
        let remote = match direction {
            Direction::Ingress => flow.src,
            Direction::Egress => flow.dst,
        };
        let groups: Vec<&crate::sg::SecurityGroup> = port
            .groups
            .iter()
            .filter_map(|g| self.groups.get(g.as_str()).copied())
            .collect();
        let stateful = groups.iter().all(|g| g.stateful);
        let matched: Vec<SgRuleMatch> = groups
            .iter()
            .flat_map(|g| g.rules.iter().map(move |r| (g, r)))
            .filter(|(_, r)| {
                r.direction == direction && self.rule_matches(r, remote, flow.protocol, flow.port)
            })
            .map(|(g, r)| SgRuleMatch {
                group: g.name.clone(),
                rule: r.origin.clone(),
                text: describe(r),
            })
            .collect();
        let allowed = !port.port_security || !matched.is_empty();
        // Replies of a stateless port go the other way, to the client's ephemeral port.
        let replies_allowed = (port.port_security && !stateful).then(|| {
            let back = match direction {
                Direction::Ingress => Direction::Egress,
                Direction::Egress => Direction::Ingress,
            };
            groups.iter().flat_map(|g| &g.rules).any(|r| {
                r.direction == back
                    && self.remote_matches(&r.remote, r.family, remote)
                    && r.protocol.is_none_or(|p| p == flow.protocol)
                    && match r.ports {
                        PortMatch::Any => true,
                        PortMatch::Range(a, b) => a <= EPHEMERAL_PORTS.0 && EPHEMERAL_PORTS.1 <= b,
                        PortMatch::Icmp(..) => false,
                    }
            })
        });
        PortDecision {
            port: port.name.clone(),
            node: port.node.clone(),
            address: address.to_string(),
            direction: match direction {
                Direction::Ingress => "ingress",
                Direction::Egress => "egress",
            },
            allowed,
            port_security: port.port_security,
            stateful,
            matched,
            replies_allowed,
        }
    }

    fn rule_matches(&self, rule: &SgRule, remote: IpAddr, protocol: u8, port: u16) -> bool {
        rule.protocol.is_none_or(|p| p == protocol)
            && match rule.ports {
                PortMatch::Any => true,
                PortMatch::Range(a, b) => a <= port && port <= b,
                PortMatch::Icmp(..) => false,
            }
            && self.remote_matches(&rule.remote, rule.family, remote)
    }

    fn remote_matches(&self, remote: &Remote, family: Family, ip: IpAddr) -> bool {
        Family::of(ip) == family
            && match remote {
                Remote::Any => true,
                Remote::Prefix(c) => c.contains(ip),
                Remote::Group(g) => self.members.get(g.as_str()).is_some_and(|s| s.contains(ip)),
                Remote::AddressGroup(g) => self
                    .address_groups
                    .get(g.as_str())
                    .is_some_and(|s| s.contains(ip)),
            }
    }
}

fn protocol_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        n => format!("protocol {n}"),
    }
}

/// A rule in words: `ingress IPv4 tcp 10250 from group k8s-control-plane`.
pub fn describe(rule: &SgRule) -> String {
    let dir = match rule.direction {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    };
    let family = match rule.family {
        Family::V4 => "IPv4",
        Family::V6 => "IPv6",
    };
    let proto = rule
        .protocol
        .map_or_else(|| "any protocol".to_owned(), protocol_name);
    let ports = match rule.ports {
        PortMatch::Any => String::new(),
        PortMatch::Range(a, b) if a == b => format!(" {a}"),
        PortMatch::Range(a, b) => format!(" {a}-{b}"),
        PortMatch::Icmp(t, Some(c)) => format!(" type {t} code {c}"),
        PortMatch::Icmp(t, None) => format!(" type {t}"),
    };
    let word = if rule.direction == Direction::Ingress {
        "from"
    } else {
        "to"
    };
    let remote = match &rule.remote {
        Remote::Any => "anywhere".to_owned(),
        Remote::Prefix(c) => c.to_string(),
        Remote::Group(g) => format!("group {g}"),
        Remote::AddressGroup(g) => format!("address group {g}"),
    };
    format!("{dir} {family} {proto}{ports} {word} {remote}")
}

/// The host firewall's decision on a new flow addressed to the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostDecision {
    /// `accept` or `block`.
    pub default_action: &'static str,
    /// Whether the flow gets through.
    pub allowed: bool,
    /// The rule that decided (`NetworkRuleConfig` name), if one did.
    pub rule: Option<String>,
    /// One sentence.
    pub summary: String,
}

fn rule_sources(rule: &HostRule) -> IpSet {
    IpSet::from_cidrs(&rule.subnets).difference(&IpSet::from_cidrs(&rule.except))
}

fn rule_ports(rule: &HostRule, protocol: u8, port: u16) -> bool {
    rule.protocol == protocol
        && match protocol {
            6 | 17 => rule.ports.iter().any(|(a, b)| *a <= port && port <= *b),
            // ICMP rules match the protocol.
            _ => true,
        }
}

/// Talos's ingress firewall on a new flow arriving on an untrusted interface and
/// addressed to the host (see [`crate::talos`] for the semantics).
pub fn host(fw: &HostFirewall, flow: &Flow) -> HostDecision {
    let matching: Vec<&HostRule> = fw
        .rules
        .iter()
        .filter(|r| rule_ports(r, flow.protocol, flow.port))
        .collect();
    match fw.default {
        DefaultAction::Accept => {
            // Each rule drops its ports for sources outside its subnets.
            match matching
                .iter()
                .find(|r| !rule_sources(r).contains(flow.src))
            {
                Some(r) => HostDecision {
                    default_action: "accept",
                    allowed: false,
                    rule: Some(r.name.clone()),
                    summary: format!(
                        "dropped by NetworkRuleConfig {}: the source is not in its subnets",
                        r.name
                    ),
                },
                None => HostDecision {
                    default_action: "accept",
                    allowed: true,
                    rule: matching.first().map(|r| r.name.clone()),
                    summary: match matching.first() {
                        Some(r) => format!("allowed by NetworkRuleConfig {}", r.name),
                        None => "default action accept: no rule covers the port".to_owned(),
                    },
                },
            }
        }
        DefaultAction::Block => {
            if let Some(r) = matching.iter().find(|r| rule_sources(r).contains(flow.src)) {
                return HostDecision {
                    default_action: "block",
                    allowed: true,
                    rule: Some(r.name.clone()),
                    summary: format!("allowed by NetworkRuleConfig {}", r.name),
                };
            }
            let summary = if matching.is_empty() {
                "default action block: no rule allows the port".to_owned()
            } else {
                format!(
                    "default action block: the source is not in the subnets of {}",
                    matching
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            HostDecision {
                default_action: "block",
                allowed: false,
                rule: None,
                summary,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sg::SecurityGroup;
    use proptest::prelude::*;
    use rampart_ruleset::{Hook, Packet, TableVerdict};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidr(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    const REMOTES: [&str; 4] = ["192.0.2.7", "10.0.0.12", "10.244.2.9", "198.51.100.1"];

    fn arb_rule() -> impl Strategy<Value = SgRule> {
        let remote = prop_oneof![
            Just(Remote::Any),
            prop::sample::select(vec![
                "192.0.2.0/24",
                "10.0.0.0/8",
                "10.244.2.0/24",
                "0.0.0.0/0"
            ])
            .prop_map(|c| Remote::Prefix(cidr(c))),
            Just(Remote::Group("peers".to_owned())),
            Just(Remote::AddressGroup("office".to_owned())),
        ];
        let ports = prop_oneof![
            Just(PortMatch::Any),
            prop::sample::select(vec![
                (80u16, 80u16),
                (1, 1024),
                (8000, 9000),
                (1, 65535),
                (30000, 65535)
            ])
            .prop_map(|(a, b)| PortMatch::Range(a, b)),
        ];
        (
            any::<bool>(),
            prop::option::of(prop::sample::select(vec![6u8, 17])),
            ports,
            remote,
        )
            .prop_map(|(ingress, protocol, ports, remote)| SgRule {
                direction: if ingress {
                    Direction::Ingress
                } else {
                    Direction::Egress
                },
                family: Family::V4,
                ports: if protocol.is_some() {
                    ports
                } else {
                    PortMatch::Any
                },
                protocol,
                remote,
                origin: String::new(),
            })
    }

    fn world(rules: Vec<SgRule>, stateful: bool) -> SecurityGroups {
        SecurityGroups {
            groups: vec![
                SecurityGroup {
                    name: "node".into(),
                    id: None,
                    stateful,
                    rules,
                },
                SecurityGroup {
                    name: "peers".into(),
                    id: None,
                    stateful,
                    rules: vec![],
                },
            ],
            ports: vec![
                Port {
                    name: "node-1".into(),
                    node: Some("node-1".into()),
                    interface: Some("eth0".into()),
                    addresses: vec![cidr("10.0.0.11/32"), cidr("10.244.1.0/24")],
                    groups: vec!["node".into()],
                    port_security: true,
                },
                Port {
                    name: "peer".into(),
                    node: None,
                    interface: None,
                    addresses: vec![cidr("10.0.0.12/32")],
                    groups: vec!["peers".into()],
                    port_security: true,
                },
            ],
            address_groups: vec![crate::sg::AddressGroup {
                name: "office".into(),
                id: None,
                addresses: vec![cidr("198.51.100.0/24")],
            }],
        }
    }

    proptest! {
        /// The explanation agrees with the table the agent loads into the kernel.
        #[test]
        fn perimeter_agrees_with_the_compiled_table(
            rules in proptest::collection::vec(arb_rule(), 0..6),
            remote in prop::sample::select(REMOTES.to_vec()),
            local in prop::sample::select(vec!["10.0.0.11", "10.244.1.5"]),
            protocol in prop::sample::select(vec![6u8, 17]),
            port in prop::sample::select(vec![22u16, 80, 443, 8080, 40000]),
        ) {
            let input = world(rules, true);
            let table = crate::sg::compile(&input, &crate::sg::Options { table: "t".into(), node: Some("node-1".into()), recheck_established: false });
            // Into the port.
            let flow = Flow { src: ip(remote), dst: ip(local), protocol, port };
            let d = perimeter(&input, &flow);
            let mut packet = Packet::new_flow(flow.src, flow.dst, protocol, port);
            packet.iif = Some("eth0".into());
            let kernel = table.evaluate(Hook::Prerouting, &packet) == TableVerdict::Accept;
            prop_assert_eq!(d.allowed(), kernel, "ingress {:?}", d);
            // Out of the port.
            let flow = Flow { src: ip(local), dst: ip(remote), protocol, port };
            let d = perimeter(&input, &flow);
            let mut packet = Packet::new_flow(flow.src, flow.dst, protocol, port);
            packet.oif = Some("eth0".into());
            let kernel = table.evaluate(Hook::Postrouting, &packet) == TableVerdict::Accept;
            prop_assert_eq!(d.allowed(), kernel, "egress {:?}", d);
        }

        #[test]
        fn host_agrees_with_the_compiled_table(
            block in any::<bool>(),
            rules in proptest::collection::vec(
                (prop::sample::select(vec![6u8, 17]), prop::sample::select(vec![(22u16, 22u16), (6443, 6443), (50000, 50001), (10250, 10259)]),
                 prop::sample::select(vec!["0.0.0.0/0", "10.0.0.0/8", "192.0.2.0/24"]), prop::option::of(prop::sample::select(vec!["10.0.0.0/16", "192.0.2.128/25"]))),
                0..4),
            src in prop::sample::select(vec!["10.0.0.5", "10.1.0.5", "192.0.2.200", "203.0.113.1"]),
            protocol in prop::sample::select(vec![6u8, 17]),
            port in prop::sample::select(vec![22u16, 6443, 50000, 10255, 80]),
        ) {
            // Talos refuses overlapping port ranges within a rule, not across rules; names are unique.
            let fw = HostFirewall {
                default: if block { DefaultAction::Block } else { DefaultAction::Accept },
                rules: rules.into_iter().enumerate().map(|(i, (protocol, ports, subnet, except))| HostRule {
                    name: format!("r{i}"),
                    protocol,
                    ports: vec![ports],
                    subnets: vec![cidr(subnet)],
                    except: except.map(cidr).into_iter().filter(|e| cidr(subnet).contains_cidr(e)).collect(),
                }).collect(),
            };
            let flow = Flow { src: ip(src), dst: ip("10.0.0.11"), protocol, port };
            let d = host(&fw, &flow);
            let table = crate::talos::compile(Some(&fw), &crate::talos::Options::default());
            let mut packet = Packet::new_flow(flow.src, flow.dst, protocol, port);
            packet.iif = Some("eth0".into());
            packet.dst_local = true;
            let kernel = table.evaluate(Hook::Prerouting, &packet) == TableVerdict::Accept
                && table.evaluate(Hook::Input, &packet) == TableVerdict::Accept;
            prop_assert_eq!(d.allowed, kernel, "{:?} {:?}", d, fw);
        }
    }

    #[test]
    fn stateless_ports_need_rules_for_replies() {
        let rules = vec![SgRule {
            direction: Direction::Ingress,
            family: Family::V4,
            protocol: Some(6),
            ports: PortMatch::Range(443, 443),
            remote: Remote::Any,
            origin: "spec.rules[0]".into(),
        }];
        let flow = Flow {
            src: ip("192.0.2.7"),
            dst: ip("10.0.0.11"),
            protocol: 6,
            port: 443,
        };
        let d = perimeter(&world(rules.clone(), false), &flow);
        assert!(d.ingress[0].allowed);
        assert_eq!(d.ingress[0].replies_allowed, Some(false));
        assert!(!d.allowed());
        assert_eq!(
            d.ingress[0].matched[0].text,
            "ingress IPv4 tcp 443 from anywhere"
        );
        assert_eq!(d.ingress[0].matched[0].rule, "spec.rules[0]");
        let d = perimeter(&world(rules, true), &flow);
        assert!(d.allowed());
        assert_eq!(d.ingress[0].replies_allowed, None);
    }
}
