//! The host firewall, with the semantics of Talos Linux's ingress firewall.
//!
//! Documents (as Talos reads them from its machine configuration, `apiVersion:
//! v1alpha1`, fields at the top level):
//! - `NetworkDefaultActionConfig { ingress: accept | block }` (at most one; `accept` when
//!   absent);
//! - `NetworkRuleConfig { name, portSelector: { ports: [80, "8000-9000"], protocol: tcp |
//!   udp | icmp | icmpv6 }, ingress: [{ subnet, except }] }` (names unique, port ranges
//!   inclusive and not overlapping).
//!
//! Semantics (Talos's `NfTablesChainConfigController`):
//! - ingress only; egress is never filtered;
//! - traffic on trusted interfaces (`lo`, `siderolink`, `kubespan` by default) is
//!   always accepted;
//! - `accept` mode: a rule drops traffic to its ports whose source is not in its subnets
//!   (minus every `except`); everything else is accepted;
//! - `block` mode: chain policy drop; established and related accepted, invalid dropped;
//!   ICMP timestamp and address-mask requests and replies dropped (CVE-1999-0524); other
//!   ICMP and ICMPv6 accepted at 5 packets per second; traffic between the cluster's pod
//!   and service networks accepted (when given); then each rule accepts its sources on
//!   its ports;
//! - a second chain on prerouting (before DNAT) applies the rules to new connections
//!   addressed to the host itself, so forwarded or DNAT'd traffic cannot slip past them;
//!   in `block` mode it drops every other new TCP and UDP connection to the host.
//!
//! Ports are matched for TCP and UDP; a rule for ICMP or ICMPv6 matches the protocol.
//! Nothing is applied at all in `accept` mode without rules, as on Talos.

use std::collections::BTreeSet;

use rampart_model::{Cidr, Family, IpSet};
use rampart_resources::{Diagnostics, Document, FieldPath, ObjectErrors};
use rampart_ruleset::{
    AddrMatch, BaseChain, Chain, CtState, Match, NameMatch, Policy, Rule, Side, Table, Verdict,
    proto,
};
use serde_json::Value;

use crate::value::Obj;

/// The default action for ingress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DefaultAction {
    /// Accept, rules drop (the default).
    #[default]
    Accept,
    /// Block, rules accept.
    Block,
}

/// One `NetworkRuleConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    /// Its name.
    pub name: String,
    /// IP protocol number (TCP, UDP, ICMP or ICMPv6).
    pub protocol: u8,
    /// Inclusive port ranges, sorted.
    pub ports: Vec<(u16, u16)>,
    /// Allowed source subnets.
    pub subnets: Vec<Cidr>,
    /// Excluded from the subnets.
    pub except: Vec<Cidr>,
}

/// The host firewall.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFirewall {
    /// Default action for ingress.
    pub default: DefaultAction,
    /// Rules, in document order.
    pub rules: Vec<HostRule>,
}

/// The kinds this module decodes.
pub fn is_kind(doc: &Document) -> bool {
    doc.api_version == "v1alpha1"
        && matches!(
            doc.kind.as_str(),
            "NetworkDefaultActionConfig" | "NetworkRuleConfig"
        )
}

fn parse_port(v: &Value) -> Result<(u16, u16), String> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .filter(|p| *p <= 65535)
            .map(|p| (p as u16, p as u16))
            .ok_or_else(|| format!("invalid port: {n}")),
        Value::String(s) => {
            let single = s.parse::<u16>().ok();
            if let Some(p) = single {
                return Ok((p, p));
            }
            let (lo, hi) = s
                .split_once('-')
                .ok_or_else(|| format!("invalid port range: {s:?}"))?;
            let lo: u16 = lo
                .parse()
                .map_err(|_| format!("invalid port range: {s:?}"))?;
            let hi: u16 = hi
                .parse()
                .map_err(|_| format!("invalid port range: {s:?}"))?;
            Ok((lo, hi))
        }
        _ => Err("must be a port number or a range \"lo-hi\"".to_owned()),
    }
}

fn decode_rule(doc: &Document) -> Result<HostRule, Diagnostics> {
    let mut errors = ObjectErrors::new(Some(&doc.location), doc.object_ref());
    let rule = {
        let mut o = Obj::new(Some(&doc.value), FieldPath::root(), &mut errors);
        o.only(&["apiVersion", "kind", "name", "portSelector", "ingress"]);
        let name = o.required_string("name");
        let (ports, protocol) = {
            let mut sel = Obj::new(o.raw("portSelector"), o.at("portSelector"), o.errors);
            sel.only(&["ports", "protocol"]);
            let protocol = match sel.string("protocol").as_deref() {
                Some("tcp") => Some(proto::TCP),
                Some("udp") => Some(proto::UDP),
                Some("icmp") => Some(proto::ICMP),
                Some("icmpv6") => Some(proto::ICMPV6),
                Some(other) => {
                    sel.error(
                        "protocol",
                        format!("must be tcp, udp, icmp or icmpv6, not {other:?}"),
                    );
                    None
                }
                None => {
                    sel.error("protocol", "required: tcp, udp, icmp or icmpv6");
                    None
                }
            };
            let items = sel.array("ports");
            if items.is_empty() {
                sel.error("ports", "portSelector.ports is required");
            }
            let mut ports = Vec::new();
            for (i, v) in items.iter().enumerate() {
                match parse_port(v) {
                    Ok((lo, hi)) if lo > hi => {
                        let p = sel.at("ports").index(i);
                        sel.errors
                            .push(&p, format!("invalid port range: {lo}-{hi}"));
                    }
                    Ok(r) => ports.push((r, i)),
                    Err(e) => {
                        let p = sel.at("ports").index(i);
                        sel.errors.push(&p, e);
                    }
                }
            }
            ports.sort();
            for w in ports.windows(2) {
                let ((a, _), (b, i)) = (w[0], w[1]);
                if b.0 <= a.1 {
                    let p = sel.at("ports").index(i);
                    sel.errors.push(
                        &p,
                        format!(
                            "invalid port range: {}-{}, overlaps with {}-{}",
                            b.0, b.1, a.0, a.1
                        ),
                    );
                }
            }
            (
                ports.into_iter().map(|(r, _)| r).collect::<Vec<_>>(),
                protocol,
            )
        };
        let mut subnets = Vec::new();
        let mut except = Vec::new();
        for (i, item) in o.array("ingress").iter().enumerate() {
            let mut r = Obj::new(Some(item), o.at("ingress").index(i), o.errors);
            r.only(&["subnet", "except"]);
            match r.string("subnet") {
                Some(s) => match Cidr::parse(&s) {
                    Ok(c) => subnets.push(c),
                    Err(e) => r.error("subnet", format!("invalid subnet {s:?}: {e}")),
                },
                None => r.error("subnet", "required"),
            }
            if let Some(s) = r.string("except") {
                match Cidr::parse(&s) {
                    Ok(c) => except.push(c),
                    Err(e) => r.error("except", format!("invalid except {s:?}: {e}")),
                }
            }
        }
        HostRule {
            name: name.unwrap_or_default(),
            protocol: protocol.unwrap_or(0),
            ports,
            subnets,
            except,
        }
    };
    errors.finish().into_result(rule)
}

fn decode_default(doc: &Document) -> Result<DefaultAction, Diagnostics> {
    let mut errors = ObjectErrors::new(Some(&doc.location), doc.object_ref());
    let action = {
        let mut o = Obj::new(Some(&doc.value), FieldPath::root(), &mut errors);
        o.only(&["apiVersion", "kind", "ingress"]);
        match o.string("ingress").as_deref() {
            Some("accept") => DefaultAction::Accept,
            Some("block") => DefaultAction::Block,
            Some(other) => {
                o.error(
                    "ingress",
                    format!("must be \"accept\" or \"block\", not {other:?}"),
                );
                DefaultAction::Accept
            }
            None => {
                o.error("ingress", "required: \"accept\" or \"block\"");
                DefaultAction::Accept
            }
        }
    };
    errors.finish().into_result(action)
}

/// Decodes the host-firewall documents; `None` when there are none.
pub fn decode(docs: &[&Document]) -> Result<Option<HostFirewall>, Diagnostics> {
    let mut errors = Diagnostics::default();
    let mut fw = HostFirewall::default();
    let mut any = false;
    let mut default_seen: Option<&Document> = None;
    let mut names = BTreeSet::new();
    for doc in docs {
        any = true;
        match doc.kind.as_str() {
            "NetworkDefaultActionConfig" => {
                if let Some(first) = default_seen {
                    errors.push(doc.error(
                        &FieldPath::root(),
                        format!(
                            "a second NetworkDefaultActionConfig (the first is at {})",
                            first.location
                        ),
                    ));
                    continue;
                }
                default_seen = Some(doc);
                match decode_default(doc) {
                    Ok(a) => fw.default = a,
                    Err(e) => errors.extend(e),
                }
            }
            "NetworkRuleConfig" => match decode_rule(doc) {
                Ok(rule) => {
                    if !names.insert(rule.name.clone()) {
                        errors.push(doc.error(
                            &FieldPath::root().field("name"),
                            format!("NetworkRuleConfig {:?} is defined twice", rule.name),
                        ));
                    }
                    fw.rules.push(rule);
                }
                Err(e) => errors.extend(e),
            },
            _ => {}
        }
    }
    errors.into_result(any.then_some(fw))
}

/// Settings of the host table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Table name.
    pub table: String,
    /// Interfaces whose traffic is always accepted.
    pub trusted_interfaces: Vec<String>,
    /// The cluster's pod and service networks: traffic between them is accepted in
    /// block mode.
    pub cluster_networks: Vec<Cidr>,
    /// Re-check original-direction packets of established connections.
    pub recheck_established: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            table: "rampart-host".to_owned(),
            trusted_interfaces: vec!["lo".into(), "siderolink".into(), "kubespan".into()],
            cluster_networks: Vec::new(),
            recheck_established: false,
        }
    }
}

/// The sources of a rule, per family (subnets minus every except).
fn sources(rule: &HostRule, family: Family) -> Vec<rampart_model::IpRange> {
    let inc = IpSet::from_cidrs(rule.subnets.iter().filter(|c| c.family() == family));
    let exc = IpSet::from_cidrs(rule.except.iter().filter(|c| c.family() == family));
    inc.difference(&exc).ranges().to_vec()
}

/// The matches of one rule for one family; the source match is negated in accept mode.
fn rule_matches(rule: &HostRule, family: Family, negate: bool) -> Option<Vec<Match>> {
    let src = sources(rule, family);
    let mut m = vec![Match::Family(family)];
    if src.is_empty() {
        // No source of this family is allowed: in block mode nothing to accept; in
        // accept mode every source of the family is "not allowed".
        if !negate {
            return None;
        }
    } else {
        m.push(Match::Addr {
            side: Side::Src,
            family,
            addrs: AddrMatch::Ranges(src),
            negate,
        });
    }
    match rule.protocol {
        proto::TCP | proto::UDP => {
            m.push(Match::Proto {
                protos: vec![rule.protocol],
                negate: false,
            });
            m.push(Match::DPort(rule.ports.clone()));
        }
        p => {
            // An ICMP rule of the other family matches nothing.
            let wanted = if family == Family::V4 {
                proto::ICMP
            } else {
                proto::ICMPV6
            };
            if p != wanted {
                return None;
            }
            m.push(Match::Proto {
                protos: vec![p],
                negate: false,
            });
        }
    }
    Some(m)
}

/// Compiles the host firewall.
pub fn compile(fw: Option<&HostFirewall>, options: &Options) -> Table {
    let mut table = Table::new(options.table.clone());
    let Some(fw) = fw else { return table };
    if fw.default == DefaultAction::Accept && fw.rules.is_empty() {
        return table;
    }
    let block = fw.default == DefaultAction::Block;
    let trusted = Rule::new(
        vec![Match::Iif {
            names: NameMatch::List(options.trusted_interfaces.clone()),
            negate: false,
        }],
        Verdict::Accept,
    )
    .counted()
    .comment("trusted interfaces");
    let verdict = if block {
        Verdict::Accept
    } else {
        Verdict::Drop
    };

    let mut ingress = vec![trusted.clone()];
    if block {
        if options.recheck_established {
            ingress.push(Rule::new(
                vec![
                    Match::CtState(vec![CtState::Established, CtState::Related]),
                    Match::CtReply,
                ],
                Verdict::Accept,
            ));
            ingress.push(Rule::new(
                vec![Match::CtState(vec![CtState::Related])],
                Verdict::Accept,
            ));
        } else {
            ingress.push(
                Rule::new(
                    vec![Match::CtState(vec![CtState::Established, CtState::Related])],
                    Verdict::Accept,
                )
                .counted(),
            );
        }
        ingress
            .push(Rule::new(vec![Match::CtState(vec![CtState::Invalid])], Verdict::Drop).counted());
        ingress.push(
            Rule::new(
                vec![Match::Icmp {
                    v6: false,
                    types: vec![13, 14, 17, 18],
                    code: None,
                }],
                Verdict::Drop,
            )
            .counted()
            .comment("CVE-1999-0524: ICMP timestamp and address mask"),
        );
        ingress.push(
            Rule::new(
                vec![
                    Match::Icmp {
                        v6: false,
                        types: vec![],
                        code: None,
                    },
                    Match::Limit { rate: 5, burst: 5 },
                ],
                Verdict::Accept,
            )
            .counted(),
        );
        ingress.push(
            Rule::new(
                vec![
                    Match::Icmp {
                        v6: true,
                        types: vec![],
                        code: None,
                    },
                    Match::Limit { rate: 5, burst: 5 },
                ],
                Verdict::Accept,
            )
            .counted(),
        );
        for family in [Family::V4, Family::V6] {
            let nets: Vec<_> = IpSet::from_cidrs(
                options
                    .cluster_networks
                    .iter()
                    .filter(|c| c.family() == family),
            )
            .ranges()
            .to_vec();
            if nets.is_empty() {
                continue;
            }
            ingress.push(
                Rule::new(
                    vec![
                        Match::Addr {
                            side: Side::Src,
                            family,
                            addrs: AddrMatch::Ranges(nets.clone()),
                            negate: false,
                        },
                        Match::Addr {
                            side: Side::Dst,
                            family,
                            addrs: AddrMatch::Ranges(nets),
                            negate: false,
                        },
                    ],
                    Verdict::Accept,
                )
                .counted()
                .comment("pod and service networks"),
            );
        }
    }
    for rule in &fw.rules {
        for family in [Family::V4, Family::V6] {
            if let Some(m) = rule_matches(rule, family, !block) {
                ingress.push(
                    Rule::new(m, verdict.clone())
                        .counted()
                        .comment(format!("NetworkRuleConfig {}", rule.name)),
                );
            }
        }
    }
    table.chains.push(Chain {
        name: "ingress".into(),
        base: Some(BaseChain {
            hook: rampart_ruleset::Hook::Input,
            priority: -140,
            policy: if block { Policy::Drop } else { Policy::Accept },
        }),
        rules: ingress,
    });

    let mut pre = vec![trusted];
    pre.push(
        Rule::new(vec![Match::DstLocal { negate: true }], Verdict::Accept)
            .comment("not addressed to this host"),
    );
    for rule in &fw.rules {
        for family in [Family::V4, Family::V6] {
            if let Some(mut m) = rule_matches(rule, family, !block) {
                m.insert(0, Match::CtState(vec![CtState::New]));
                pre.push(
                    Rule::new(m, verdict.clone())
                        .counted()
                        .comment(format!("NetworkRuleConfig {}", rule.name)),
                );
            }
        }
    }
    if block {
        for p in [proto::TCP, proto::UDP] {
            pre.push(
                Rule::new(
                    vec![
                        Match::CtState(vec![CtState::New]),
                        Match::Proto {
                            protos: vec![p],
                            negate: false,
                        },
                    ],
                    Verdict::Drop,
                )
                .counted(),
            );
        }
    }
    table.chains.push(Chain {
        name: "prerouting".into(),
        base: Some(BaseChain {
            hook: rampart_ruleset::Hook::Prerouting,
            priority: -110,
            policy: Policy::Accept,
        }),
        rules: pre,
    });
    table
}
