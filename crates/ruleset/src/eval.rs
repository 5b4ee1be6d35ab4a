//! A reference evaluator: runs one packet through a table the way netfilter does.
//!
//! For a hook, every base chain of the table on that hook runs in priority order; in a
//! chain, rules run in order and the first verdict decides (`jump` evaluates the target
//! and continues after the rule unless the target decided; `goto` does not come back;
//! `return` or the end of a non-base chain goes back to the caller; the end of a base
//! chain applies its policy). A verdict map with no entry for the key continues with the
//! next rule. `accept` ends only the current base chain, `drop` ends everything.

use std::net::IpAddr;

use rampart_model::{Family, IpRange};

use crate::table::{
    AddrMatch, Chain, Element, Hook, Match, NameMatch, Policy, Set, Side, Table, Verdict, VmapKey,
};

/// Connection-tracking state of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CtState {
    /// The first packet of a connection.
    New,
    /// A packet of a connection that has seen traffic both ways.
    Established,
    /// A packet related to a tracked connection (ICMP errors, FTP data).
    Related,
    /// A packet conntrack could not make sense of.
    Invalid,
}

impl CtState {
    /// Lower-case name, as nftables spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            CtState::New => "new",
            CtState::Established => "established",
            CtState::Related => "related",
            CtState::Invalid => "invalid",
        }
    }
}

/// A packet as the evaluator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Input interface, if any (not for locally sent packets).
    pub iif: Option<String>,
    /// Output interface, if known at the hook.
    pub oif: Option<String>,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Transport protocol number.
    pub proto: u8,
    /// Source port (for protocols with ports).
    pub sport: u16,
    /// Destination port (for protocols with ports).
    pub dport: u16,
    /// ICMP type and code (for ICMP and ICMPv6).
    pub icmp: Option<(u8, u8)>,
    /// Conntrack state.
    pub ct: CtState,
    /// True for a packet in the reply direction of its connection.
    pub reply: bool,
    /// True if the destination is one of this host's addresses.
    pub dst_local: bool,
}

impl Packet {
    /// The first packet of a new connection to `dst:dport`.
    pub fn new_flow(src: IpAddr, dst: IpAddr, proto: u8, dport: u16) -> Self {
        Packet {
            iif: None,
            oif: None,
            src,
            dst,
            proto,
            sport: 40000,
            dport,
            icmp: None,
            ct: CtState::New,
            reply: false,
            dst_local: false,
        }
    }

    fn family(&self) -> Family {
        Family::of(self.src)
    }

    fn addr(&self, side: Side) -> IpAddr {
        match side {
            Side::Src => self.src,
            Side::Dst => self.dst,
        }
    }
}

/// What a table does with a packet at a hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableVerdict {
    /// Every base chain on the hook accepted it (or none exists).
    Accept,
    /// A rule or a policy dropped it; the path names the chains and rule indices.
    Drop(String),
}

/// Evaluation stops at this depth of jumps (nftables refuses loops when loading).
const MAX_DEPTH: usize = 16;

impl Table {
    /// Runs `packet` through every base chain of this table on `hook`.
    pub fn evaluate(&self, hook: Hook, packet: &Packet) -> TableVerdict {
        let mut bases: Vec<&Chain> = self
            .chains
            .iter()
            .filter(|c| c.base.as_ref().is_some_and(|b| b.hook == hook))
            .collect();
        bases.sort_by_key(|c| c.base.as_ref().map(|b| b.priority));
        for chain in bases {
            let mut path = String::new();
            match self.run_chain(chain, packet, 0, &mut path) {
                Outcome::Accept => {}
                Outcome::Drop => return TableVerdict::Drop(path),
                Outcome::Continue => {
                    if chain.base.as_ref().map(|b| b.policy) == Some(Policy::Drop) {
                        path.push_str(&format!("{}: policy drop", chain.name));
                        return TableVerdict::Drop(path);
                    }
                }
            }
        }
        TableVerdict::Accept
    }

    fn run_chain(
        &self,
        chain: &Chain,
        packet: &Packet,
        depth: usize,
        path: &mut String,
    ) -> Outcome {
        if depth > MAX_DEPTH {
            return Outcome::Drop;
        }
        for (i, rule) in chain.rules.iter().enumerate() {
            if !rule.matches.iter().all(|m| self.matches(m, packet)) {
                continue;
            }
            let verdict = match (&rule.verdict, &rule.vmap) {
                (Some(v), _) => Some(v.clone()),
                (None, Some((key, map))) => self.lookup(*key, map, packet),
                (None, None) => None,
            };
            let Some(verdict) = verdict else { continue };
            let here = format!("{}[{i}] ", chain.name);
            match verdict {
                Verdict::Accept => return Outcome::Accept,
                Verdict::Drop => {
                    path.push_str(&here);
                    return Outcome::Drop;
                }
                Verdict::Return => return Outcome::Continue,
                Verdict::Jump(target) => {
                    let Some(next) = self.chain(&target) else {
                        continue;
                    };
                    path.push_str(&here);
                    match self.run_chain(next, packet, depth + 1, path) {
                        Outcome::Continue => {
                            path.truncate(path.len() - here.len());
                        }
                        done => return done,
                    }
                }
                Verdict::Goto(target) => {
                    let Some(next) = self.chain(&target) else {
                        continue;
                    };
                    path.push_str(&here);
                    return self.run_chain(next, packet, depth + 1, path);
                }
            }
        }
        Outcome::Continue
    }

    fn lookup(&self, key: VmapKey, map: &str, packet: &Packet) -> Option<Verdict> {
        let map = self.map(map)?;
        let found = match key {
            VmapKey::Addr(side, family) => {
                if packet.family() != family {
                    return None;
                }
                let ip = packet.addr(side);
                map.entries
                    .iter()
                    .find(|(k, _)| k.parse::<IpAddr>().ok() == Some(ip))
            }
            VmapKey::Iif => {
                let name = packet.iif.as_deref()?;
                map.entries.iter().find(|(k, _)| k == name)
            }
            VmapKey::Oif => {
                let name = packet.oif.as_deref()?;
                map.entries.iter().find(|(k, _)| k == name)
            }
        };
        found.map(|(_, v)| v.clone())
    }

    fn set_has(&self, name: &str, pred: impl Fn(&Element) -> bool) -> bool {
        self.set(name)
            .is_some_and(|s: &Set| s.elements.iter().any(pred))
    }

    fn names_match(&self, names: &NameMatch, name: Option<&str>) -> bool {
        let Some(name) = name else { return false };
        match names {
            NameMatch::List(list) => list.iter().any(|n| n == name),
            NameMatch::Set(set) => {
                self.set_has(set, |e| matches!(e, Element::IfName(n) if n == name))
            }
        }
    }

    fn matches(&self, m: &Match, p: &Packet) -> bool {
        match m {
            Match::CtState(states) => states.contains(&p.ct),
            Match::CtReply => p.reply,
            Match::Family(f) => p.family() == *f,
            Match::Iif { names, negate } => {
                p.iif.is_some() && self.names_match(names, p.iif.as_deref()) != *negate
            }
            Match::Oif { names, negate } => {
                p.oif.is_some() && self.names_match(names, p.oif.as_deref()) != *negate
            }
            Match::Addr {
                side,
                family,
                addrs,
                negate,
            } => {
                if p.family() != *family {
                    return false;
                }
                let ip = p.addr(*side);
                let inside = match addrs {
                    AddrMatch::Ranges(ranges) => ranges.iter().any(|r| range_has(r, ip)),
                    AddrMatch::Set(set) => {
                        self.set_has(set, |e| matches!(e, Element::Addr(r) if range_has(r, ip)))
                    }
                };
                inside != *negate
            }
            Match::Proto { protos, negate } => protos.contains(&p.proto) != *negate,
            Match::DPort(ranges) => {
                crate::table::proto::has_ports(p.proto)
                    && ranges.iter().any(|(a, b)| *a <= p.dport && p.dport <= *b)
            }
            Match::Icmp { v6, types, code } => {
                let want = if *v6 {
                    crate::table::proto::ICMPV6
                } else {
                    crate::table::proto::ICMP
                };
                p.proto == want
                    && ((types.is_empty() && code.is_none())
                        || p.icmp.is_some_and(|(t, c)| {
                            (types.is_empty() || types.contains(&t)) && code.is_none_or(|x| x == c)
                        }))
            }
            Match::Flow { side, family, set } => {
                if p.family() != *family {
                    return false;
                }
                let ip = p.addr(*side);
                self.set_has(set, |e| match e {
                    Element::Flow {
                        addrs,
                        proto,
                        ports,
                    } => {
                        *proto == p.proto
                            && range_has(addrs, ip)
                            && ports.0 <= p.dport
                            && p.dport <= ports.1
                    }
                    _ => false,
                })
            }
            Match::DstLocal { negate } => p.dst_local != *negate,
            Match::SPort(ranges) => {
                crate::table::proto::has_ports(p.proto)
                    && ranges.iter().any(|(a, b)| *a <= p.sport && p.sport <= *b)
            }
            // The evaluator models one packet: a rate limit is never exceeded.
            Match::Limit { .. } => true,
        }
    }
}

enum Outcome {
    Accept,
    Drop,
    Continue,
}

/// True if `ip` is inside `range`.
pub fn range_has(range: &IpRange, ip: IpAddr) -> bool {
    Family::of(ip) == range.family() && range.start() <= ip && ip <= range.end()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{BaseChain, MapKey, Rule, VerdictMap};
    use rampart_model::Cidr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn table() -> Table {
        let mut t = Table::new("t");
        t.sets.push(Set {
            name: "peers".into(),
            key: crate::SetKey::Flow(Family::V4),
            elements: vec![Element::Flow {
                addrs: Cidr::parse("10.0.0.0/24").unwrap().range(),
                proto: 6,
                ports: (80, 81),
            }],
        });
        t.maps.push(VerdictMap {
            name: "in".into(),
            key: MapKey::Addr(Family::V4),
            entries: vec![("10.0.1.1".into(), Verdict::Jump("pod".into()))],
        });
        t.chains.push(Chain {
            name: "pod".into(),
            base: None,
            rules: vec![
                Rule::new(
                    vec![Match::Flow {
                        side: Side::Src,
                        family: Family::V4,
                        set: "peers".into(),
                    }],
                    Verdict::Return,
                ),
                Rule::new(vec![], Verdict::Drop),
            ],
        });
        t.chains.push(Chain {
            name: "fwd".into(),
            base: Some(BaseChain {
                hook: Hook::Forward,
                priority: 0,
                policy: Policy::Accept,
            }),
            rules: vec![
                Rule::new(
                    vec![Match::CtState(vec![CtState::Established, CtState::Related])],
                    Verdict::Accept,
                ),
                Rule::dispatch(vec![], VmapKey::Addr(Side::Dst, Family::V4), "in"),
            ],
        });
        t
    }

    #[test]
    fn dispatch_jump_return_and_drop() {
        let t = table();
        let ok = Packet::new_flow(ip("10.0.0.5"), ip("10.0.1.1"), 6, 80);
        assert_eq!(t.evaluate(Hook::Forward, &ok), TableVerdict::Accept);
        let bad_port = Packet::new_flow(ip("10.0.0.5"), ip("10.0.1.1"), 6, 82);
        assert_eq!(
            t.evaluate(Hook::Forward, &bad_port),
            TableVerdict::Drop("fwd[1] pod[1] ".into())
        );
        let other_pod = Packet::new_flow(ip("10.0.0.5"), ip("10.0.1.2"), 6, 82);
        assert_eq!(t.evaluate(Hook::Forward, &other_pod), TableVerdict::Accept);
        let established = Packet {
            ct: CtState::Established,
            ..bad_port
        };
        assert_eq!(
            t.evaluate(Hook::Forward, &established),
            TableVerdict::Accept
        );
        assert_eq!(t.evaluate(Hook::Input, &ok), TableVerdict::Accept);
    }
}
