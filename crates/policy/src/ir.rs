//! Compiles the three policy tiers into a firewall program (`rampart-ruleset`) that
//! enforces them in the kernel, for the pods of one node.
//!
//! For every pod it enforces and each direction, the compiler works out the exact
//! *decision*: the set of (peer address, protocol, destination port) that the tiers let
//! through, with the evaluator's semantics (admin rules first match with Pass, then the
//! union of NetworkPolicy rules if the pod is isolated, else the baseline's first match,
//! else allow). Selectors become the addresses of the pods they select; named ports
//! resolve on the destination pod. The decision is computed with set algebra over
//! address ranges and port segments, so it is exact, and it is written as one flow set
//! (`address . protocol . port`, with ranges) per distinct decision, plus an address set
//! for protocols without ports. Pods with the same decision share a chain.
//!
//! The table dispatches on addresses with verdict maps, so the per-packet cost is a map
//! lookup and one set lookup whatever the number of policies, rules and pods:
//!
//! - `forward` (pod to pod, through the node's bridge): the source pod's egress chain,
//!   then the destination pod's ingress chain;
//! - `input` (pod to the node itself): the source pod's egress chain;
//! - `output` (the node, or a host-network pod, to a pod): the destination's ingress
//!   chain, or nothing with [`Options::allow_from_node`] (the agent's default).
//!
//! A pod's traffic to itself never leaves its network namespace, so it is never
//! filtered, as the API requires. Every base chain starts with the stateful preamble of
//! [`crate::ir::Stateful`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rampart_model::{
    Action, AdminPeer, AdminPort, AdminRule, Cluster, Direction, Family, IpRange, IpSet,
    LabelSelector, NamespaceMatch, Peer, Peers, Pod, PolicySet, PortName, PortSpec, Protocol,
    Subject,
};
use rampart_ruleset::{
    AddrMatch, BaseChain, Chain, CtState, Element, Hook, MapKey, Match, Policy, Rule, Set, SetKey,
    Side, Table, Verdict, VerdictMap, VmapKey, proto,
};

use crate::eval::np_selects;

/// What happens to tracked connections whose packets a base chain sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Stateful {
    /// `ct state established,related accept` first: a connection, once allowed, is
    /// never checked again (iptables-style; with conntrack flushing on change, Neutron's).
    #[default]
    AcceptEstablished,
    /// Only replies and related packets skip the policy; every packet in the original
    /// direction is checked again, so removing an allow cuts the connection (Cilium's).
    RecheckOriginal,
}

/// The rules every base chain starts with: conntrack, then IPv6 neighbour discovery.
pub fn stateful_preamble(mode: Stateful) -> Vec<Rule> {
    let mut rules = Vec::new();
    match mode {
        Stateful::AcceptEstablished => rules.push(
            Rule::new(
                vec![Match::CtState(vec![CtState::Established, CtState::Related])],
                Verdict::Accept,
            )
            .comment("stateful: established and related connections"),
        ),
        Stateful::RecheckOriginal => {
            rules.push(
                Rule::new(
                    vec![
                        Match::CtState(vec![CtState::Established, CtState::Related]),
                        Match::CtReply,
                    ],
                    Verdict::Accept,
                )
                .comment("stateful: replies of allowed connections"),
            );
            rules.push(
                Rule::new(
                    vec![Match::CtState(vec![CtState::Related])],
                    Verdict::Accept,
                )
                .comment("stateful: related packets (ICMP errors)"),
            );
        }
    }
    rules.push(
        Rule::new(vec![Match::CtState(vec![CtState::Invalid])], Verdict::Drop)
            .counted()
            .comment("stateful: invalid packets"),
    );
    rules.push(
        Rule::new(
            vec![Match::Icmp {
                v6: true,
                types: vec![133, 134, 135, 136, 137],
                code: None,
            }],
            Verdict::Accept,
        )
        .comment("IPv6 neighbour discovery is never blocked"),
    );
    rules
}

/// Which pods the program enforces policies for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalPods {
    /// Every pod of the cluster (a single-node cluster, or the lab).
    All,
    /// The pods scheduled on this node (`spec.nodeName`).
    Node(String),
}

/// Compiler settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The table's name.
    pub table: String,
    /// The pods to enforce.
    pub local: LocalPods,
    /// The stateful preamble.
    pub stateful: Stateful,
    /// Accept every connection from the node itself (and its host-network pods) to its
    /// pods, as the API describes isolated pods ("the only allowed connections into the
    /// pod are those from the pod's node and those allowed by ..."): kubelet probes work
    /// whatever the policies. Off, the node is judged like any other address, as the
    /// analyser does.
    pub allow_from_node: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            allow_from_node: false,
            table: "rampart-pods".to_owned(),
            local: LocalPods::All,
            stateful: Stateful::default(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Address sets with linear-time algebra.

/// A sorted, merged list of inclusive ranges; IPv4 (family 4) sorts before IPv6.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct Addrs(Vec<(u8, u128, u128)>);

fn bits_of(ip: IpAddr) -> (u8, u128) {
    match ip {
        IpAddr::V4(v4) => (4, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => (6, u128::from(v6)),
    }
}

impl Addrs {
    fn all() -> Self {
        Addrs(vec![(4, 0, u128::from(u32::MAX)), (6, 0, u128::MAX)])
    }

    fn from_ranges(mut v: Vec<(u8, u128, u128)>) -> Self {
        v.sort_unstable();
        let mut out: Vec<(u8, u128, u128)> = Vec::with_capacity(v.len());
        for r in v {
            if let Some(last) = out.last_mut()
                && last.0 == r.0
                && (r.1 <= last.2 || r.1 == last.2.saturating_add(1))
            {
                last.2 = last.2.max(r.2);
                continue;
            }
            out.push(r);
        }
        Addrs(out)
    }

    fn from_ips(ips: impl IntoIterator<Item = IpAddr>) -> Self {
        Addrs::from_ranges(
            ips.into_iter()
                .map(|ip| {
                    let (f, b) = bits_of(ip);
                    (f, b, b)
                })
                .collect(),
        )
    }

    fn from_ipset(set: &IpSet) -> Self {
        Addrs::from_ranges(
            set.ranges()
                .iter()
                .map(|r| {
                    let (f, s) = bits_of(r.start());
                    let (_, e) = bits_of(r.end());
                    (f, s, e)
                })
                .collect(),
        )
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn union(&self, other: &Addrs) -> Addrs {
        if other.is_empty() {
            return self.clone();
        }
        if self.is_empty() {
            return other.clone();
        }
        let mut v = self.0.clone();
        v.extend_from_slice(&other.0);
        Addrs::from_ranges(v)
    }

    fn intersection(&self, other: &Addrs) -> Addrs {
        let (a, b) = (&self.0, &other.0);
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while i < a.len() && j < b.len() {
            let (x, y) = (a[i], b[j]);
            if x.0 != y.0 {
                if x.0 < y.0 {
                    i += 1;
                } else {
                    j += 1;
                }
                continue;
            }
            let lo = x.1.max(y.1);
            let hi = x.2.min(y.2);
            if lo <= hi {
                out.push((x.0, lo, hi));
            }
            if x.2 < y.2 {
                i += 1;
            } else {
                j += 1;
            }
        }
        Addrs(out)
    }

    fn difference(&self, other: &Addrs) -> Addrs {
        if other.is_empty() || self.is_empty() {
            return self.clone();
        }
        let b = &other.0;
        let mut out = Vec::new();
        let mut j = 0;
        for &(f, s, e) in &self.0 {
            let mut start = s;
            let mut done = false;
            while j < b.len() && (b[j].0 < f || (b[j].0 == f && b[j].2 < start)) {
                j += 1;
            }
            let mut k = j;
            while k < b.len() && b[k].0 == f && b[k].1 <= e {
                let (_, bs, be) = b[k];
                if bs > start {
                    out.push((f, start, bs - 1));
                }
                if be >= e {
                    done = true;
                    break;
                }
                start = start.max(be + 1);
                k += 1;
            }
            if !done {
                out.push((f, start, e));
            }
        }
        Addrs(out)
    }

    fn ranges(&self, family: Family) -> impl Iterator<Item = IpRange> + '_ {
        let want = match family {
            Family::V4 => 4,
            Family::V6 => 6,
        };
        self.0
            .iter()
            .filter(move |r| r.0 == want)
            .filter_map(|&(f, s, e)| {
                let (a, b) = if f == 4 {
                    // Values of family 4 fit in 32 bits by construction.
                    (
                        IpAddr::V4(Ipv4Addr::from(s as u32)),
                        IpAddr::V4(Ipv4Addr::from(e as u32)),
                    )
                } else {
                    (IpAddr::V6(Ipv6Addr::from(s)), IpAddr::V6(Ipv6Addr::from(e)))
                };
                IpRange::new(a, b)
            })
    }
}

// ---------------------------------------------------------------------------------------
// Rules of one direction of one pod, with their addresses resolved.

/// The protocols with ports, in a fixed order, and "every other protocol".
const PORT_PROTOCOLS: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

#[derive(Debug, Clone)]
enum Atom {
    /// A port range of one protocol.
    Range(Protocol, u16, u16),
    /// A named port: on the destination pod, for one protocol or (admin) any.
    Named(Option<Protocol>, PortName),
}

#[derive(Debug, Clone)]
struct Resolved {
    action: Action,
    peers: Addrs,
    /// `None`: every port of every protocol.
    ports: Option<Vec<Atom>>,
}

/// Where a packet goes: a protocol with a port, or a protocol without ports.
#[derive(Debug, Clone, Copy)]
enum Point {
    Port(Protocol, u16),
    Other,
}

struct Compiler<'a> {
    cluster: &'a Cluster,
    policies: &'a PolicySet,
    /// For egress named ports: name -> (protocol, port, addresses of pods declaring it).
    named: HashMap<&'a str, Vec<(Protocol, u16, IpAddr)>>,
    node_addrs: Vec<(&'a rampart_model::Node, Addrs)>,
}

impl<'a> Compiler<'a> {
    fn new(cluster: &'a Cluster, policies: &'a PolicySet) -> Self {
        let mut named: HashMap<&str, Vec<(Protocol, u16, IpAddr)>> = HashMap::new();
        for pod in &cluster.pods {
            for cp in &pod.ports {
                if let Some(name) = &cp.name {
                    for ip in &pod.ips {
                        named
                            .entry(name.as_str())
                            .or_default()
                            .push((cp.protocol, cp.port, *ip));
                    }
                }
            }
        }
        let node_addrs = cluster
            .nodes
            .iter()
            .map(|n| (n, Addrs::from_ips(n.addresses.iter().copied())))
            .collect();
        Compiler {
            cluster,
            policies,
            named,
            node_addrs,
        }
    }

    fn ns_matches(&self, selector: &LabelSelector, ns: &str) -> bool {
        match self.cluster.namespace_labels(ns) {
            Some(labels) => selector.matches(labels),
            None => selector.matches(&rampart_model::Namespace::new(ns).labels),
        }
    }

    fn subject_matches(&self, subject: &Subject, pod: &Pod) -> bool {
        !pod.host_network
            && match subject {
                Subject::Namespaces(ns) => self.ns_matches(ns, &pod.namespace),
                Subject::Pods { namespaces, pods } => {
                    self.ns_matches(namespaces, &pod.namespace) && pods.matches(&pod.labels)
                }
            }
    }

    /// Addresses of the pods (not on the host network) that `keep` accepts.
    fn pods_where(&self, keep: impl Fn(&Pod) -> bool) -> Addrs {
        Addrs::from_ips(
            self.cluster
                .pods
                .iter()
                .filter(|p| !p.host_network && keep(p))
                .flat_map(|p| p.ips.iter().copied()),
        )
    }

    fn np_peer(&self, namespace: &str, peer: &Peer) -> Addrs {
        match peer {
            Peer::Pods { namespaces, pods } => self.pods_where(|p| {
                let ns_ok = match namespaces {
                    NamespaceMatch::Own => p.namespace == namespace,
                    NamespaceMatch::Selector(sel) => self.ns_matches(sel, &p.namespace),
                };
                ns_ok && pods.matches(&p.labels)
            }),
            Peer::IpBlock(block) => Addrs::from_ipset(&block.to_set()),
        }
    }

    fn admin_peer(&self, peer: &AdminPeer) -> Addrs {
        match peer {
            AdminPeer::Namespaces(sel) => self.pods_where(|p| self.ns_matches(sel, &p.namespace)),
            AdminPeer::Pods { namespaces, pods } => self.pods_where(|p| {
                self.ns_matches(namespaces, &p.namespace) && pods.matches(&p.labels)
            }),
            AdminPeer::Nodes(sel) => self
                .node_addrs
                .iter()
                .filter(|(n, _)| sel.matches(&n.labels))
                .fold(Addrs::default(), |acc, (_, a)| acc.union(a)),
            AdminPeer::Networks(cidrs) => Addrs::from_ipset(&IpSet::from_cidrs(cidrs.iter())),
        }
    }

    fn admin_rule(&self, rule: &AdminRule) -> Resolved {
        let peers = rule
            .peers
            .iter()
            .fold(Addrs::default(), |acc, p| acc.union(&self.admin_peer(p)));
        let ports = rule.ports.as_ref().map(|list| {
            list.iter()
                .map(|p| match p {
                    AdminPort::Number { protocol, port } => Atom::Range(*protocol, *port, *port),
                    AdminPort::Range { protocol, range } => {
                        Atom::Range(*protocol, range.start(), range.end())
                    }
                    AdminPort::Named(name) => Atom::Named(None, name.clone()),
                })
                .collect()
        });
        Resolved {
            action: rule.action,
            peers,
            ports,
        }
    }

    /// The program of one direction of one pod: admin rules in order, whether a
    /// NetworkPolicy isolates it and their rules, the baseline's rules.
    fn program(&self, pod: &Pod, direction: Direction) -> Program {
        let mut admin = Vec::new();
        for anp in &self.policies.admin_policies {
            if self.subject_matches(&anp.subject, pod) {
                admin.extend(anp.rules(direction).iter().map(|r| self.admin_rule(r)));
            }
        }
        let mut isolated = false;
        let mut network = Vec::new();
        for np in &self.policies.network_policies {
            let Some(rules) = np.rules(direction) else {
                continue;
            };
            if !np_selects(np, pod) {
                continue;
            }
            isolated = true;
            for rule in rules {
                let peers = match &rule.peers {
                    Peers::Any => Addrs::all(),
                    Peers::List(list) => list.iter().fold(Addrs::default(), |acc, p| {
                        acc.union(&self.np_peer(&np.namespace, p))
                    }),
                };
                let ports = if rule.ports.is_empty() {
                    None
                } else {
                    Some(
                        rule.ports
                            .iter()
                            .map(|p| match &p.port {
                                PortSpec::Any => Atom::Range(p.protocol, 0, u16::MAX),
                                PortSpec::Range(r) => Atom::Range(p.protocol, r.start(), r.end()),
                                PortSpec::Named(n) => Atom::Named(Some(p.protocol), n.clone()),
                            })
                            .collect(),
                    )
                };
                network.push(Resolved {
                    action: Action::Allow,
                    peers,
                    ports,
                });
            }
        }
        let mut baseline = Vec::new();
        if let Some(banp) = &self.policies.baseline
            && self.subject_matches(&banp.subject, pod)
        {
            baseline.extend(banp.rules(direction).iter().map(|r| self.admin_rule(r)));
        }
        Program {
            admin,
            isolated,
            network,
            baseline,
        }
    }

    /// The addresses of `rule` that match at `point`, for `pod` in `direction`.
    fn rule_at(&self, rule: &Resolved, pod: &Pod, direction: Direction, point: Point) -> Addrs {
        let Some(atoms) = &rule.ports else {
            return rule.peers.clone();
        };
        let Point::Port(protocol, port) = point else {
            return Addrs::default();
        };
        let mut named_ips: Vec<IpAddr> = Vec::new();
        for atom in atoms {
            match atom {
                Atom::Range(p, lo, hi) => {
                    if *p == protocol && *lo <= port && port <= *hi {
                        return rule.peers.clone();
                    }
                }
                Atom::Named(p, name) => {
                    if p.is_some_and(|p| p != protocol) {
                        continue;
                    }
                    match direction {
                        Direction::Ingress => {
                            if pod.named_port_is(name, protocol, port) {
                                return rule.peers.clone();
                            }
                        }
                        Direction::Egress => {
                            if let Some(list) = self.named.get(name.as_str()) {
                                named_ips.extend(
                                    list.iter()
                                        .filter(|(pr, po, _)| *pr == protocol && *po == port)
                                        .map(|(_, _, ip)| *ip),
                                );
                            }
                        }
                    }
                }
            }
        }
        if named_ips.is_empty() {
            Addrs::default()
        } else {
            rule.peers.intersection(&Addrs::from_ips(named_ips))
        }
    }

    /// The ports at which the decision may change, per protocol (segment starts).
    fn boundaries(&self, program: &Program, pod: &Pod, direction: Direction) -> [BTreeSet<u32>; 3] {
        let mut out: [BTreeSet<u32>; 3] = Default::default();
        for set in &mut out {
            set.insert(0);
        }
        let idx = |p: Protocol| PORT_PROTOCOLS.iter().position(|x| *x == p).unwrap_or(0);
        let rules = program
            .admin
            .iter()
            .chain(&program.network)
            .chain(&program.baseline);
        for rule in rules {
            for atom in rule.ports.iter().flatten() {
                match atom {
                    Atom::Range(p, lo, hi) => {
                        out[idx(*p)].insert(u32::from(*lo));
                        out[idx(*p)].insert(u32::from(*hi) + 1);
                    }
                    Atom::Named(p, name) => match direction {
                        Direction::Ingress => {
                            for cp in &pod.ports {
                                if cp.name.as_ref() == Some(name)
                                    && p.is_none_or(|p| p == cp.protocol)
                                {
                                    out[idx(cp.protocol)].insert(u32::from(cp.port));
                                    out[idx(cp.protocol)].insert(u32::from(cp.port) + 1);
                                }
                            }
                        }
                        Direction::Egress => {
                            for (pr, po, _) in self.named.get(name.as_str()).into_iter().flatten() {
                                if p.is_none_or(|p| p == *pr) {
                                    out[idx(*pr)].insert(u32::from(*po));
                                    out[idx(*pr)].insert(u32::from(*po) + 1);
                                }
                            }
                        }
                    },
                }
            }
        }
        for set in &mut out {
            set.remove(&65536);
        }
        out
    }

    /// The addresses `program` lets through at `point`.
    fn allowed_at(
        &self,
        program: &Program,
        pod: &Pod,
        direction: Direction,
        point: Point,
    ) -> Addrs {
        let mut remaining = Addrs::all();
        let mut allowed = Addrs::default();
        let mut passed = Addrs::default();
        for rule in &program.admin {
            if remaining.is_empty() {
                break;
            }
            let m = self
                .rule_at(rule, pod, direction, point)
                .intersection(&remaining);
            if m.is_empty() {
                continue;
            }
            match rule.action {
                Action::Allow => allowed = allowed.union(&m),
                Action::Deny => {}
                Action::Pass => passed = passed.union(&m),
            }
            remaining = remaining.difference(&m);
        }
        let lower = remaining.union(&passed);
        if program.isolated {
            let mut all = Vec::new();
            for rule in &program.network {
                all.extend(self.rule_at(rule, pod, direction, point).0);
            }
            let np = Addrs::from_ranges(all);
            return allowed.union(&lower.intersection(&np));
        }
        let mut rest = lower;
        for rule in &program.baseline {
            if rest.is_empty() {
                break;
            }
            let m = self
                .rule_at(rule, pod, direction, point)
                .intersection(&rest);
            if m.is_empty() {
                continue;
            }
            if rule.action == Action::Allow {
                allowed = allowed.union(&m);
            }
            rest = rest.difference(&m);
        }
        allowed.union(&rest)
    }

    fn decision(&self, pod: &Pod, direction: Direction) -> Option<Decision> {
        let program = self.program(pod, direction);
        if program.admin.is_empty() && !program.isolated && program.baseline.is_empty() {
            return None;
        }
        let bounds = self.boundaries(&program, pod, direction);
        let mut ports: [Vec<(u16, u16, Addrs)>; 3] = Default::default();
        for (i, protocol) in PORT_PROTOCOLS.iter().enumerate() {
            let starts: Vec<u32> = bounds[i].iter().copied().collect();
            for (k, &start) in starts.iter().enumerate() {
                let end = starts.get(k + 1).map_or(65535, |n| n - 1);
                // Both fit in 16 bits: boundaries are ports or ports + 1 below 65536.
                let (lo, hi) = (start as u16, end as u16);
                let addrs = self.allowed_at(&program, pod, direction, Point::Port(*protocol, lo));
                match ports[i].last_mut() {
                    Some(last) if last.2 == addrs && u32::from(last.1) + 1 == start => last.1 = hi,
                    _ => ports[i].push((lo, hi, addrs)),
                }
            }
        }
        let other = self.allowed_at(&program, pod, direction, Point::Other);
        let decision = Decision { ports, other };
        if decision.allows_everything() {
            return None;
        }
        Some(decision)
    }
}

#[derive(Debug, Default)]
struct Program {
    admin: Vec<Resolved>,
    isolated: bool,
    network: Vec<Resolved>,
    baseline: Vec<Resolved>,
}

/// What one direction of one pod lets through.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Decision {
    /// Per protocol with ports (TCP, UDP, SCTP): disjoint port segments covering 0-65535
    /// with the peer addresses allowed there.
    ports: [Vec<(u16, u16, Addrs)>; 3],
    /// Peer addresses allowed for every other protocol.
    other: Addrs,
}

impl Decision {
    fn allows_everything(&self) -> bool {
        let all = Addrs::all();
        self.other == all
            && self
                .ports
                .iter()
                .all(|segs| segs.iter().all(|(_, _, a)| *a == all))
    }
}

/// FNV-1a, 64 bits: a stable digest for names and change detection.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// What the compiler made, with counts for reports.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The table.
    pub table: Table,
    /// Pods enforced (with an address, not on the host network).
    pub pods: usize,
    /// Pod directions restricted by some policy.
    pub restricted: usize,
    /// Distinct decisions (chains).
    pub decisions: usize,
}

/// Compiles the policies for the pods `options.local` names into one table.
pub fn compile(cluster: &Cluster, policies: &PolicySet, options: &Options) -> Compiled {
    let compiler = Compiler::new(cluster, policies);
    let local: Vec<&Pod> = cluster
        .pods
        .iter()
        .filter(|p| !p.host_network && !p.ips.is_empty())
        .filter(|p| match &options.local {
            LocalPods::All => true,
            LocalPods::Node(node) => p.node_name.as_deref() == Some(node.as_str()),
        })
        .collect();

    let mut table = Table::new(options.table.clone());
    // Decision -> chain name, per direction; chains in order of first use.
    let mut chains: HashMap<(Direction, Decision), String> = HashMap::new();
    let mut dispatch: BTreeMap<(Direction, Family), Vec<(String, Verdict)>> = BTreeMap::new();
    let mut restricted = 0;
    for pod in &local {
        for direction in [Direction::Egress, Direction::Ingress] {
            let Some(decision) = compiler.decision(pod, direction) else {
                continue;
            };
            restricted += 1;
            let key = (direction, decision);
            let name = match chains.get(&key) {
                Some(name) => name.clone(),
                None => {
                    let name = chain_name(direction, &key.1, &chains);
                    emit_decision(&mut table, &name, direction, &key.1);
                    chains.insert(key.clone(), name.clone());
                    name
                }
            };
            for ip in &pod.ips {
                dispatch
                    .entry((direction, Family::of(*ip)))
                    .or_default()
                    .push((ip.to_string(), Verdict::Jump(name.clone())));
            }
        }
    }

    let map_name = |d: Direction, f: Family| {
        format!(
            "{}{}",
            match d {
                Direction::Ingress => "ingress",
                Direction::Egress => "egress",
            },
            match f {
                Family::V4 => "4",
                Family::V6 => "6",
            }
        )
    };
    for direction in [Direction::Egress, Direction::Ingress] {
        for family in [Family::V4, Family::V6] {
            let entries = dispatch.remove(&(direction, family)).unwrap_or_default();
            table.maps.push(VerdictMap {
                name: map_name(direction, family),
                key: MapKey::Addr(family),
                entries,
            });
        }
    }
    let dispatch_rules = |direction: Direction, side: Side| -> Vec<Rule> {
        [Family::V4, Family::V6]
            .into_iter()
            .map(|f| {
                Rule::dispatch(
                    vec![Match::Family(f)],
                    VmapKey::Addr(side, f),
                    &map_name(direction, f),
                )
            })
            .collect()
    };
    let base = |hook: Hook| BaseChain {
        hook,
        priority: 0,
        policy: Policy::Accept,
    };
    let mut forward = stateful_preamble(options.stateful);
    forward.extend(dispatch_rules(Direction::Egress, Side::Src));
    forward.extend(dispatch_rules(Direction::Ingress, Side::Dst));
    let mut input = stateful_preamble(options.stateful);
    input.extend(dispatch_rules(Direction::Egress, Side::Src));
    let mut output = stateful_preamble(options.stateful);
    if options.allow_from_node {
        output.push(
            Rule::new(vec![], Verdict::Accept)
                .comment("the node (kubelet probes, host-network pods) reaches its pods"),
        );
    } else {
        output.extend(dispatch_rules(Direction::Ingress, Side::Dst));
    }
    let bases = [
        (Hook::Forward, "forward", forward),
        (Hook::Input, "input", input),
        (Hook::Output, "output", output),
    ];
    for (hook, name, rules) in bases {
        table.chains.push(Chain {
            name: name.to_owned(),
            base: Some(base(hook)),
            rules,
        });
    }
    // Base chains first, then per-decision chains sorted by name, for stable listings.
    table.chains[..].sort_by_key(|c| (c.base.is_none(), c.name.clone()));
    table.sets.sort_by(|a, b| a.name.cmp(&b.name));
    Compiled {
        table,
        pods: local.len(),
        restricted,
        decisions: chains.len(),
    }
}

fn chain_name(
    direction: Direction,
    decision: &Decision,
    taken: &HashMap<(Direction, Decision), String>,
) -> String {
    let prefix = match direction {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    };
    let text = format!("{decision:?}");
    let mut h = fnv1a(text.as_bytes());
    loop {
        let name = format!("{prefix}-{:08x}", h as u32);
        if !taken.values().any(|n| *n == name) {
            return name;
        }
        h = h.wrapping_add(1);
    }
}

/// Writes the chain and sets of one decision: allowed flows return to the caller,
/// everything else is dropped.
fn emit_decision(table: &mut Table, name: &str, direction: Direction, decision: &Decision) {
    let side = match direction {
        Direction::Ingress => Side::Src,
        Direction::Egress => Side::Dst,
    };
    let mut rules = Vec::new();
    for family in [Family::V4, Family::V6] {
        let suffix = match family {
            Family::V4 => "4",
            Family::V6 => "6",
        };
        let mut elements = Vec::new();
        for (i, protocol) in PORT_PROTOCOLS.iter().enumerate() {
            for (lo, hi, addrs) in &decision.ports[i] {
                for r in addrs.ranges(family) {
                    elements.push(Element::Flow {
                        addrs: r,
                        proto: protocol.number(),
                        ports: (*lo, *hi),
                    });
                }
            }
        }
        if !elements.is_empty() {
            let set = format!("{name}-ports{suffix}");
            table.sets.push(Set {
                name: set.clone(),
                key: SetKey::Flow(family),
                elements,
            });
            rules.push(Rule::new(
                vec![Match::Flow { side, family, set }],
                Verdict::Return,
            ));
        }
        let other: Vec<Element> = decision.other.ranges(family).map(Element::Addr).collect();
        if !other.is_empty() {
            let set = format!("{name}-other{suffix}");
            table.sets.push(Set {
                name: set.clone(),
                key: SetKey::Addr(family),
                elements: other,
            });
            rules.push(Rule::new(
                vec![
                    Match::Proto {
                        protos: vec![proto::TCP, proto::UDP, proto::SCTP],
                        negate: true,
                    },
                    Match::Addr {
                        side,
                        family,
                        addrs: AddrMatch::Set(set),
                        negate: false,
                    },
                ],
                Verdict::Return,
            ));
        }
    }
    rules.push(Rule::new(vec![], Verdict::Drop).counted().comment(format!(
        "{} not allowed by policy",
        direction.as_str().to_lowercase()
    )));
    table.chains.push(Chain {
        name: name.to_owned(),
        base: None,
        rules,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_model::{LabelSelector, NetworkPolicy, Pod};
    use rampart_ruleset::{Packet, TableVerdict};

    #[test]
    fn the_node_reaches_isolated_pods_only_when_allowed() {
        let mut cluster = Cluster::default();
        cluster
            .namespaces
            .insert("a".into(), rampart_model::Namespace::new("a"));
        cluster.pods.push(Pod {
            namespace: "a".into(),
            name: "p".into(),
            labels: Default::default(),
            ports: vec![],
            ips: vec!["10.0.0.1".parse().unwrap()],
            host_network: false,
            node_name: None,
        });
        let policies = PolicySet {
            network_policies: vec![NetworkPolicy {
                namespace: "a".into(),
                name: "deny".into(),
                pod_selector: LabelSelector::everything(),
                ingress: Some(vec![]),
                egress: None,
            }],
            ..PolicySet::default()
        };
        let probe = Packet::new_flow(
            "192.168.0.1".parse().unwrap(),
            "10.0.0.1".parse().unwrap(),
            6,
            8080,
        );
        for (allow, want) in [(false, false), (true, true)] {
            let options = Options {
                allow_from_node: allow,
                ..Options::default()
            };
            let table = compile(&cluster, &policies, &options).table;
            assert_eq!(
                table.evaluate(Hook::Output, &probe) == TableVerdict::Accept,
                want
            );
            // Other hosts are judged by the policies either way.
            assert_ne!(table.evaluate(Hook::Forward, &probe), TableVerdict::Accept);
        }
    }

    fn a(v: &[(u8, u128, u128)]) -> Addrs {
        Addrs::from_ranges(v.to_vec())
    }

    #[test]
    fn linear_algebra_matches_expectations() {
        let x = a(&[(4, 10, 20), (4, 30, 40), (6, 0, 5)]);
        let y = a(&[(4, 15, 35), (6, 5, 9)]);
        assert_eq!(
            x.intersection(&y),
            a(&[(4, 15, 20), (4, 30, 35), (6, 5, 5)])
        );
        assert_eq!(x.difference(&y), a(&[(4, 10, 14), (4, 36, 40), (6, 0, 4)]));
        assert_eq!(x.union(&y), a(&[(4, 10, 40), (6, 0, 9)]));
        assert_eq!(Addrs::all().difference(&Addrs::all()), Addrs::default());
        let hole = Addrs::all().difference(&a(&[
            (4, 0, 0),
            (4, u128::from(u32::MAX), u128::from(u32::MAX)),
        ]));
        assert_eq!(hole.0[0], (4, 1, u128::from(u32::MAX) - 1));
    }
}
