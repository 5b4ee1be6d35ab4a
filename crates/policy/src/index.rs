//! The compiled index: policies compiled once against a cluster, for fast verdicts and
//! whole matrices.
//!
//! Pods are grouped into *classes*: two pods share a class when no selector, no address
//! block and no named port in any policy tells them apart. Every compiled rule holds the
//! set of classes it matches as a bit set, and every class holds its compiled program
//! per direction (the admin rules that apply to it in order, whether it is isolated and
//! by which NetworkPolicy rules, the baseline rules). A verdict is then a few bit tests,
//! and a matrix is computed class by class with word-wide set operations, never pod pair
//! by pod pair.
//!
//! The semantics are those of [`crate::eval`]; the tests check the two agree on random
//! clusters.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::net::IpAddr;

use rampart_model::{
    Action, AdminPeer, AdminPort, AdminRule, Cluster, IpSet, LabelSelector, NamespaceMatch, Peer,
    Peers, PolicySet, PortName, PortRange, PortSpec, Probe, Protocol, Requirement, Subject,
};

use crate::bitset::BitSet;

/// A pod's position in the index (pods are in namespace/name order).
pub type PodId = usize;

/// One end of a flow, resolved against the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowEnd {
    /// A pod at its primary address (or with no address).
    Pod(PodId),
    /// A pod at one of its other addresses.
    PodAt(PodId, IpAddr),
    /// An address that belongs to no pod.
    Address(IpAddr),
}

#[derive(Debug, Clone)]
enum CPort {
    Range {
        protocol: Protocol,
        range: PortRange,
    },
    /// A named port; `protocol` is `None` for admin named ports (any protocol).
    Named {
        protocol: Option<Protocol>,
        name: u32,
    },
}

#[derive(Debug, Clone)]
struct CRule {
    action: Action,
    /// Matches every endpoint (NetworkPolicy rule without peers).
    any: bool,
    /// Classes matched by pod selectors.
    pod_classes: BitSet,
    /// Classes whose primary address is matched by an address peer.
    ip_classes: BitSet,
    /// Addresses matched by address peers (ipBlock, networks, nodes).
    ips: IpSet,
    /// `None`: every port.
    ports: Option<Vec<CPort>>,
}

#[derive(Debug, Clone, Default)]
struct Program {
    /// Admin rules in evaluation order (every selecting ANP's rules, by priority).
    admin: Vec<u32>,
    /// True if some NetworkPolicy selects the class for this direction.
    isolated: bool,
    /// The rules of those NetworkPolicies.
    network: Vec<u32>,
    /// Baseline rules, if the baseline selects the class.
    baseline: Vec<u32>,
}

#[derive(Debug, Clone)]
struct Class {
    /// Named ports of the class's pods that some policy refers to: (name, protocol, port).
    named: Vec<(u32, Protocol, u16)>,
    ingress: Program,
    egress: Program,
}

/// Policies compiled against a cluster.
#[derive(Debug, Clone)]
pub struct Index {
    pod_names: Vec<String>,
    pod_ips: Vec<Vec<IpAddr>>,
    host_network: Vec<bool>,
    class_of: Vec<u32>,
    classes: Vec<Class>,
    rules: Vec<CRule>,
    by_name: HashMap<String, PodId>,
    by_ip: HashMap<IpAddr, PodId>,
}

/// Reachability between classes for one probe: `allowed(s, d)` for classes `s`, `d`.
#[derive(Debug, Clone)]
pub struct ClassMatrix {
    probe: Probe,
    rows: Vec<BitSet>,
}

impl ClassMatrix {
    /// The probe.
    pub fn probe(&self) -> Probe {
        self.probe
    }

    /// True if a flow from a pod of class `src` to a (different) pod of class `dst` is
    /// allowed.
    pub fn allowed(&self, src: usize, dst: usize) -> bool {
        self.rows[src].contains(dst)
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.rows.len()
    }

    /// Number of allowed class pairs.
    pub fn allowed_pairs(&self) -> usize {
        self.rows.iter().map(BitSet::count).sum()
    }
}

/// Reachability between every pair of pods for one probe, as one bit per pair.
#[derive(Debug, Clone)]
pub struct PodMatrix {
    probe: Probe,
    pods: Vec<PodId>,
    rows: Vec<BitSet>,
}

impl PodMatrix {
    /// The probe.
    pub fn probe(&self) -> Probe {
        self.probe
    }

    /// The pods, in row and column order.
    pub fn pods(&self) -> &[PodId] {
        &self.pods
    }

    /// True if the flow from the `i`-th to the `j`-th pod is allowed.
    pub fn allowed(&self, i: usize, j: usize) -> bool {
        self.rows[i].contains(j)
    }

    /// Number of allowed pairs, the diagonal included.
    pub fn allowed_pairs(&self) -> usize {
        self.rows.iter().map(BitSet::count).sum()
    }
}

impl Index {
    /// Compiles `policies` against `cluster`.
    pub fn build(cluster: &Cluster, policies: &PolicySet) -> Index {
        Builder::new(cluster, policies).build()
    }

    /// Number of pods.
    pub fn pods(&self) -> usize {
        self.pod_names.len()
    }

    /// Number of classes.
    pub fn class_count(&self) -> usize {
        self.classes.len()
    }

    /// The class of a pod.
    pub fn class_of(&self, pod: PodId) -> usize {
        self.class_of[pod] as usize
    }

    /// `namespace/name` of a pod.
    pub fn pod_name(&self, pod: PodId) -> &str {
        &self.pod_names[pod]
    }

    /// The addresses of a pod, primary first.
    pub fn pod_ips(&self, pod: PodId) -> &[IpAddr] {
        &self.pod_ips[pod]
    }

    /// The pods that have an address, in namespace/name order.
    pub fn addressed_pods(&self) -> Vec<PodId> {
        (0..self.pods())
            .filter(|p| !self.pod_ips[*p].is_empty())
            .collect()
    }

    /// The pod named `namespace/name`.
    pub fn pod_by_name(&self, name: &str) -> Option<PodId> {
        self.by_name.get(name).copied()
    }

    /// Resolves `namespace/name` or an address into a flow end.
    pub fn resolve(&self, text: &str) -> Option<FlowEnd> {
        if let Some(pod) = self.pod_by_name(text) {
            return Some(FlowEnd::Pod(pod));
        }
        let ip: IpAddr = text.parse().ok()?;
        Some(self.end_at(ip))
    }

    /// The flow end for an address.
    pub fn end_at(&self, ip: IpAddr) -> FlowEnd {
        match self.by_ip.get(&ip) {
            Some(&pod) if self.pod_ips[pod].first() == Some(&ip) => FlowEnd::Pod(pod),
            Some(&pod) => FlowEnd::PodAt(pod, ip),
            None => FlowEnd::Address(ip),
        }
    }

    /// True if the flow is allowed.
    pub fn allowed(&self, src: FlowEnd, dst: FlowEnd, probe: Probe) -> bool {
        let (sp, dp) = (pod_of(src), pod_of(dst));
        if let (Some(a), Some(b)) = (sp, dp)
            && a == b
        {
            return true;
        }
        let dst_class = dp.map(|p| self.class_of[p] as usize);
        let egress = match sp {
            Some(p) if !self.host_network[p] => {
                let class = &self.classes[self.class_of[p] as usize];
                self.run(&class.egress, dst, dst_class, probe)
            }
            _ => true,
        };
        egress
            && match dp {
                Some(p) if !self.host_network[p] => {
                    let class = &self.classes[self.class_of[p] as usize];
                    self.run(&class.ingress, src, dst_class, probe)
                }
                _ => true,
            }
    }

    fn run(&self, prog: &Program, peer: FlowEnd, port_class: Option<usize>, probe: Probe) -> bool {
        for &r in &prog.admin {
            let rule = &self.rules[r as usize];
            if self.peer_matches(rule, peer) && self.port_matches(rule, port_class, probe) {
                match rule.action {
                    Action::Allow => return true,
                    Action::Deny => return false,
                    Action::Pass => break,
                }
            }
        }
        if prog.isolated {
            return prog.network.iter().any(|&r| {
                let rule = &self.rules[r as usize];
                self.peer_matches(rule, peer) && self.port_matches(rule, port_class, probe)
            });
        }
        for &r in &prog.baseline {
            let rule = &self.rules[r as usize];
            if self.peer_matches(rule, peer) && self.port_matches(rule, port_class, probe) {
                return rule.action == Action::Allow;
            }
        }
        true
    }

    fn peer_matches(&self, rule: &CRule, peer: FlowEnd) -> bool {
        if rule.any {
            return true;
        }
        match peer {
            FlowEnd::Pod(p) => {
                let c = self.class_of[p] as usize;
                rule.pod_classes.contains(c) || rule.ip_classes.contains(c)
            }
            FlowEnd::PodAt(p, ip) => {
                rule.pod_classes.contains(self.class_of[p] as usize) || rule.ips.contains(ip)
            }
            FlowEnd::Address(ip) => rule.ips.contains(ip),
        }
    }

    fn port_matches(&self, rule: &CRule, port_class: Option<usize>, probe: Probe) -> bool {
        let Some(ports) = &rule.ports else {
            return true;
        };
        ports.iter().any(|p| match p {
            CPort::Range { protocol, range } => {
                *protocol == probe.protocol && range.contains(probe.port)
            }
            CPort::Named { protocol, name } => {
                protocol.is_none_or(|pr| pr == probe.protocol)
                    && port_class.is_some_and(|c| {
                        self.classes[c]
                            .named
                            .contains(&(*name, probe.protocol, probe.port))
                    })
            }
        })
    }

    /// For one probe: per rule, the destination classes its ports accept.
    fn port_sets(&self, probe: Probe) -> Vec<PortOk> {
        self.rules
            .iter()
            .map(|rule| {
                let Some(ports) = &rule.ports else {
                    return PortOk::All;
                };
                let mut numeric = false;
                let mut named = Vec::new();
                for p in ports {
                    match p {
                        CPort::Range { protocol, range } => {
                            numeric |= *protocol == probe.protocol && range.contains(probe.port);
                        }
                        CPort::Named { protocol, name } => {
                            if protocol.is_none_or(|pr| pr == probe.protocol) {
                                named.push(*name);
                            }
                        }
                    }
                }
                if numeric {
                    return PortOk::All;
                }
                if named.is_empty() {
                    return PortOk::None;
                }
                let mut set = BitSet::new(self.classes.len());
                for (c, class) in self.classes.iter().enumerate() {
                    if class.named.iter().any(|(n, pr, port)| {
                        *pr == probe.protocol && *port == probe.port && named.contains(n)
                    }) {
                        set.insert(c);
                    }
                }
                PortOk::Classes(set)
            })
            .collect()
    }

    /// Reachability between classes for `probe`.
    pub fn class_matrix(&self, probe: Probe) -> ClassMatrix {
        let k = self.classes.len();
        let ports = self.port_sets(probe);
        let peers: Vec<BitSet> = self
            .rules
            .iter()
            .map(|r| {
                if r.any {
                    BitSet::full(k)
                } else {
                    let mut s = r.pod_classes.clone();
                    s.union_with(&r.ip_classes);
                    s
                }
            })
            .collect();
        let full = BitSet::full(k);

        // Egress: for each source class, the destination classes it may reach.
        let egress: Vec<BitSet> = self
            .classes
            .iter()
            .map(|c| {
                decide(
                    &c.egress,
                    k,
                    &full,
                    |r, out: &mut BitSet, within: &BitSet| {
                        // out |= peers[r] & ports[r] & within
                        match &ports[r] {
                            PortOk::None => {}
                            PortOk::All => out.union_with_and(&peers[r], within),
                            PortOk::Classes(set) => {
                                let mut m = peers[r].clone();
                                m.intersect_with(set);
                                out.union_with_and(&m, within);
                            }
                        }
                    },
                    &self.rules,
                )
            })
            .collect();

        // Ingress: for each destination class, the source classes that may reach it.
        // Ports are about the destination, i.e. this class.
        let ingress: Vec<BitSet> = self
            .classes
            .iter()
            .enumerate()
            .map(|(d, c)| {
                decide(
                    &c.ingress,
                    k,
                    &full,
                    |r, out: &mut BitSet, within: &BitSet| {
                        let ok = match &ports[r] {
                            PortOk::None => false,
                            PortOk::All => true,
                            PortOk::Classes(set) => set.contains(d),
                        };
                        if ok {
                            out.union_with_and(&peers[r], within);
                        }
                    },
                    &self.rules,
                )
            })
            .collect();

        // Transpose ingress and intersect.
        let mut rows: Vec<BitSet> = (0..k).map(|_| BitSet::new(k)).collect();
        for (d, sources) in ingress.iter().enumerate() {
            for s in sources.iter() {
                rows[s].insert(d);
            }
        }
        for (row, e) in rows.iter_mut().zip(&egress) {
            row.intersect_with(e);
        }
        ClassMatrix { probe, rows }
    }

    /// Reachability between every pair of `pods` for `probe`, from the class matrix.
    pub fn pod_matrix(&self, classes: &ClassMatrix, pods: &[PodId]) -> PodMatrix {
        let n = pods.len();
        let pod_classes: Vec<usize> = pods.iter().map(|p| self.class_of[*p] as usize).collect();
        // Pods of each class, as positions in `pods`.
        let mut members: Vec<BitSet> = Vec::new();
        members.resize_with(self.classes.len(), || BitSet::new(n));
        for (i, c) in pod_classes.iter().enumerate() {
            members[*c].insert(i);
        }
        // The row of a class: the union of the members of every class it reaches.
        let mut class_rows: HashMap<usize, BitSet> = HashMap::new();
        let rows = pod_classes
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let mut row = class_rows
                    .entry(c)
                    .or_insert_with(|| {
                        let mut row = BitSet::new(n);
                        for d in classes.rows[c].iter() {
                            row.union_with(&members[d]);
                        }
                        row
                    })
                    .clone();
                row.insert(i);
                row
            })
            .collect();
        PodMatrix {
            probe: classes.probe,
            pods: pods.to_vec(),
            rows,
        }
    }
}

fn pod_of(end: FlowEnd) -> Option<PodId> {
    match end {
        FlowEnd::Pod(p) | FlowEnd::PodAt(p, _) => Some(p),
        FlowEnd::Address(_) => None,
    }
}

enum PortOk {
    None,
    All,
    Classes(BitSet),
}

/// Runs a program over all peer classes at once: the set of peer classes allowed.
/// `add(r, out, within)` must do `out |= match(r) & within`.
fn decide(
    prog: &Program,
    k: usize,
    full: &BitSet,
    add: impl Fn(usize, &mut BitSet, &BitSet),
    rules: &[CRule],
) -> BitSet {
    let mut allow = BitSet::new(k);
    let mut undecided = full.clone();
    let mut passed = BitSet::new(k);
    for &r in &prog.admin {
        if undecided.is_empty() {
            break;
        }
        let mut matched = BitSet::new(k);
        add(r as usize, &mut matched, &undecided);
        match rules[r as usize].action {
            Action::Allow => allow.union_with(&matched),
            Action::Deny => {}
            Action::Pass => passed.union_with(&matched),
        }
        undecided.subtract(&matched);
    }
    let mut remaining = undecided;
    remaining.union_with(&passed);
    if prog.isolated {
        let mut np = BitSet::new(k);
        for &r in &prog.network {
            add(r as usize, &mut np, &remaining);
        }
        allow.union_with(&np);
        return allow;
    }
    for &r in &prog.baseline {
        if remaining.is_empty() {
            break;
        }
        let mut m = BitSet::new(k);
        add(r as usize, &mut m, &remaining);
        if rules[r as usize].action == Action::Allow {
            allow.union_with(&m);
        }
        remaining.subtract(&m);
    }
    allow.union_with(&remaining);
    allow
}

// ---------------------------------------------------------------------------------------
// Compilation.

struct Builder<'a> {
    cluster: &'a Cluster,
    policies: &'a PolicySet,
    n: usize,
    /// Pods that policies can select (not on the host network).
    selectable: BitSet,
    labels: HashMap<(&'a str, &'a str), BitSet>,
    keys: HashMap<&'a str, BitSet>,
    namespace_pods: HashMap<&'a str, BitSet>,
    pod_cache: HashMap<LabelSelector, BitSet>,
    ns_cache: HashMap<LabelSelector, BitSet>,
    port_names: HashMap<PortName, u32>,
}

/// The pods a policy selects, with its ingress and egress rule ids.
type SelectedRules<R> = (BitSet, R, R);

/// A compiled rule before classes exist: its peer sets over pods.
struct PodRule {
    action: Action,
    any: bool,
    pods: BitSet,
    ips: IpSet,
    ports: Option<Vec<CPort>>,
}

impl<'a> Builder<'a> {
    fn new(cluster: &'a Cluster, policies: &'a PolicySet) -> Self {
        let n = cluster.pods.len();
        let mut selectable = BitSet::new(n);
        let mut labels: HashMap<(&str, &str), BitSet> = HashMap::new();
        let mut keys: HashMap<&str, BitSet> = HashMap::new();
        let mut namespace_pods: HashMap<&str, BitSet> = HashMap::new();
        for (i, pod) in cluster.pods.iter().enumerate() {
            if pod.host_network {
                continue;
            }
            selectable.insert(i);
            for (k, v) in &pod.labels {
                labels
                    .entry((k.as_str(), v.as_str()))
                    .or_insert_with(|| BitSet::new(n))
                    .insert(i);
                keys.entry(k.as_str())
                    .or_insert_with(|| BitSet::new(n))
                    .insert(i);
            }
            namespace_pods
                .entry(pod.namespace.as_str())
                .or_insert_with(|| BitSet::new(n))
                .insert(i);
        }
        Self {
            cluster,
            policies,
            n,
            selectable,
            labels,
            keys,
            namespace_pods,
            pod_cache: HashMap::new(),
            ns_cache: HashMap::new(),
            port_names: HashMap::new(),
        }
    }

    /// Selectable pods whose labels match.
    fn pods_matching(&mut self, sel: &LabelSelector) -> BitSet {
        if let Some(s) = self.pod_cache.get(sel) {
            return s.clone();
        }
        let mut set = self.selectable.clone();
        for req in sel.requirements() {
            match req {
                Requirement::In(k, values) => {
                    let mut any = BitSet::new(self.n);
                    for v in values {
                        if let Some(s) = self.labels.get(&(k.as_str(), v.as_str())) {
                            any.union_with(s);
                        }
                    }
                    set.intersect_with(&any);
                }
                Requirement::NotIn(k, values) => {
                    for v in values {
                        if let Some(s) = self.labels.get(&(k.as_str(), v.as_str())) {
                            set.subtract(s);
                        }
                    }
                }
                Requirement::Exists(k) => match self.keys.get(k.as_str()) {
                    Some(s) => set.intersect_with(s),
                    None => set = BitSet::new(self.n),
                },
                Requirement::DoesNotExist(k) => {
                    if let Some(s) = self.keys.get(k.as_str()) {
                        set.subtract(s);
                    }
                }
            }
        }
        self.pod_cache.insert(sel.clone(), set.clone());
        set
    }

    /// Selectable pods in namespaces whose labels match.
    fn pods_in_namespaces(&mut self, sel: &LabelSelector) -> BitSet {
        if let Some(s) = self.ns_cache.get(sel) {
            return s.clone();
        }
        let mut set = BitSet::new(self.n);
        for (name, pods) in &self.namespace_pods {
            let matches = match self.cluster.namespaces.get(*name) {
                Some(ns) => sel.matches(&ns.labels),
                None => sel.matches(&rampart_model::Namespace::new(name).labels),
            };
            if matches {
                set.union_with(pods);
            }
        }
        self.ns_cache.insert(sel.clone(), set.clone());
        set
    }

    fn pods_in_namespace(&self, ns: &str) -> BitSet {
        self.namespace_pods
            .get(ns)
            .cloned()
            .unwrap_or_else(|| BitSet::new(self.n))
    }

    fn subject_pods(&mut self, subject: &Subject) -> BitSet {
        match subject {
            Subject::Namespaces(ns) => self.pods_in_namespaces(ns),
            Subject::Pods { namespaces, pods } => {
                let mut s = self.pods_in_namespaces(namespaces);
                s.intersect_with(&self.pods_matching(pods));
                s
            }
        }
    }

    fn name_id(&mut self, name: &PortName) -> u32 {
        let next = self.port_names.len() as u32;
        *self.port_names.entry(name.clone()).or_insert(next)
    }

    fn np_rule(&mut self, namespace: &str, rule: &rampart_model::Rule) -> PodRule {
        let mut pods = BitSet::new(self.n);
        let mut ips = IpSet::empty();
        let any = matches!(rule.peers, Peers::Any);
        if let Peers::List(peers) = &rule.peers {
            for peer in peers {
                match peer {
                    Peer::Pods {
                        namespaces,
                        pods: sel,
                    } => {
                        let mut s = match namespaces {
                            NamespaceMatch::Own => self.pods_in_namespace(namespace),
                            NamespaceMatch::Selector(ns) => self.pods_in_namespaces(ns),
                        };
                        s.intersect_with(&self.pods_matching(sel));
                        pods.union_with(&s);
                    }
                    Peer::IpBlock(block) => ips = ips.union(&block.to_set()),
                }
            }
        }
        let ports = if rule.ports.is_empty() {
            None
        } else {
            Some(
                rule.ports
                    .iter()
                    .map(|p| match &p.port {
                        PortSpec::Any => CPort::Range {
                            protocol: p.protocol,
                            range: PortRange::all(),
                        },
                        PortSpec::Range(range) => CPort::Range {
                            protocol: p.protocol,
                            range: *range,
                        },
                        PortSpec::Named(name) => CPort::Named {
                            protocol: Some(p.protocol),
                            name: self.name_id(name),
                        },
                    })
                    .collect(),
            )
        };
        PodRule {
            action: Action::Allow,
            any,
            pods,
            ips,
            ports,
        }
    }

    fn admin_rule(&mut self, rule: &AdminRule) -> PodRule {
        let mut pods = BitSet::new(self.n);
        let mut ips = IpSet::empty();
        for peer in &rule.peers {
            match peer {
                AdminPeer::Namespaces(ns) => pods.union_with(&self.pods_in_namespaces(ns)),
                AdminPeer::Pods {
                    namespaces,
                    pods: sel,
                } => {
                    let mut s = self.pods_in_namespaces(namespaces);
                    s.intersect_with(&self.pods_matching(sel));
                    pods.union_with(&s);
                }
                AdminPeer::Nodes(sel) => {
                    let addresses = self
                        .cluster
                        .nodes
                        .iter()
                        .filter(|n| sel.matches(&n.labels))
                        .flat_map(|n| n.addresses.iter().map(|ip| rampart_model::Cidr::host(*ip)));
                    ips = ips.union(&IpSet::from_ranges(addresses.map(|c| c.range())));
                }
                AdminPeer::Networks(cidrs) => ips = ips.union(&IpSet::from_cidrs(cidrs)),
            }
        }
        let ports = rule.ports.as_ref().map(|list| {
            list.iter()
                .map(|p| match p {
                    AdminPort::Number { protocol, port } => CPort::Range {
                        protocol: *protocol,
                        range: PortRange::single(*port).unwrap_or(PortRange::all()),
                    },
                    AdminPort::Range { protocol, range } => CPort::Range {
                        protocol: *protocol,
                        range: *range,
                    },
                    AdminPort::Named(name) => CPort::Named {
                        protocol: None,
                        name: self.name_id(name),
                    },
                })
                .collect()
        });
        PodRule {
            action: rule.action,
            any: false,
            pods,
            ips,
            ports,
        }
    }

    fn build(mut self) -> Index {
        let cluster = self.cluster;
        let policies = self.policies;
        let n = self.n;

        // Compile every rule against pods, and record which pods each policy selects.
        let mut pod_rules: Vec<PodRule> = Vec::new();
        // (selection, ingress rule ids, egress rule ids) per NetworkPolicy.
        let mut nps: Vec<SelectedRules<Option<Vec<u32>>>> = Vec::new();
        for np in &policies.network_policies {
            let mut sel = self.pods_matching(&np.pod_selector);
            sel.intersect_with(&self.pods_in_namespace(&np.namespace));
            let mut compile = |rules: Option<&Vec<rampart_model::Rule>>, b: &mut Self| {
                rules.map(|rules| {
                    rules
                        .iter()
                        .map(|r| {
                            pod_rules.push(b.np_rule(&np.namespace, r));
                            (pod_rules.len() - 1) as u32
                        })
                        .collect::<Vec<u32>>()
                })
            };
            let ingress = compile(np.ingress.as_ref(), &mut self);
            let egress = compile(np.egress.as_ref(), &mut self);
            nps.push((sel, ingress, egress));
        }
        // (subject, ingress rule ids, egress rule ids) per admin policy, then the baseline.
        let mut admins: Vec<SelectedRules<Vec<u32>>> = Vec::new();
        let baseline = policies.baseline.as_ref();
        let admin_list = policies
            .admin_policies
            .iter()
            .map(|a| (&a.subject, &a.ingress, &a.egress))
            .chain(baseline.map(|b| (&b.subject, &b.ingress, &b.egress)));
        for (subject, ingress, egress) in admin_list {
            let subj = self.subject_pods(subject);
            let mut ids = |rules: &Vec<AdminRule>, b: &mut Self| {
                rules
                    .iter()
                    .map(|r| {
                        pod_rules.push(b.admin_rule(r));
                        (pod_rules.len() - 1) as u32
                    })
                    .collect::<Vec<u32>>()
            };
            let i = ids(ingress, &mut self);
            let e = ids(egress, &mut self);
            admins.push((subj, i, e));
        }
        let baseline_entry = baseline.and_then(|_| admins.pop());

        // Every set that tells pods apart.
        let primary: Vec<Option<IpAddr>> = cluster.pods.iter().map(|p| p.primary_ip()).collect();
        let ip_members = |ips: &IpSet| -> BitSet {
            let mut s = BitSet::new(n);
            if !ips.is_empty() {
                for (i, ip) in primary.iter().enumerate() {
                    if ip.is_some_and(|ip| ips.contains(ip)) {
                        s.insert(i);
                    }
                }
            }
            s
        };
        let rule_ip_pods: Vec<BitSet> = pod_rules.iter().map(|r| ip_members(&r.ips)).collect();
        let mut partition = Partition::new(n);
        let mut seen: HashSet<Vec<u64>> = HashSet::new();
        let mut split = |set: &BitSet, partition: &mut Partition| {
            let c = set.count();
            if c == 0 || c == n || !seen.insert(set.words().to_vec()) {
                return;
            }
            partition.refine(set);
        };
        for (sel, _, _) in &nps {
            split(sel, &mut partition);
        }
        for (subj, _, _) in admins.iter().chain(baseline_entry.iter()) {
            split(subj, &mut partition);
        }
        for (r, ip_pods) in pod_rules.iter().zip(&rule_ip_pods) {
            split(&r.pods, &mut partition);
            split(ip_pods, &mut partition);
        }
        // Named ports that some rule refers to.
        let named_of: Vec<Vec<(u32, Protocol, u16)>> = cluster
            .pods
            .iter()
            .map(|pod| {
                let mut v: Vec<(u32, Protocol, u16)> = pod
                    .ports
                    .iter()
                    .filter_map(|p| {
                        let name = p.name.as_ref()?;
                        let id = *self.port_names.get(name)?;
                        Some((id, p.protocol, p.port))
                    })
                    .collect();
                v.sort_unstable();
                v.dedup();
                v
            })
            .collect();
        if !self.port_names.is_empty() {
            partition.refine_by_key(&named_of);
        }

        // Classes and their compiled rules.
        let reps = partition.representatives();
        let k = reps.len();
        let class_set = |pods: &BitSet| -> BitSet {
            let mut s = BitSet::new(k);
            for (c, &rep) in reps.iter().enumerate() {
                if pods.contains(rep) {
                    s.insert(c);
                }
            }
            s
        };
        let rules: Vec<CRule> = pod_rules
            .into_iter()
            .zip(&rule_ip_pods)
            .map(|(r, ip_pods)| CRule {
                action: r.action,
                any: r.any,
                pod_classes: class_set(&r.pods),
                ip_classes: class_set(ip_pods),
                ips: r.ips,
                ports: r.ports,
            })
            .collect();
        let classes: Vec<Class> = reps
            .iter()
            .map(|&rep| {
                let mut ingress = Program::default();
                let mut egress = Program::default();
                for (subj, i, e) in &admins {
                    if subj.contains(rep) {
                        ingress.admin.extend(i);
                        egress.admin.extend(e);
                    }
                }
                for (sel, i, e) in &nps {
                    if !sel.contains(rep) {
                        continue;
                    }
                    if let Some(i) = i {
                        ingress.isolated = true;
                        ingress.network.extend(i);
                    }
                    if let Some(e) = e {
                        egress.isolated = true;
                        egress.network.extend(e);
                    }
                }
                if let Some((subj, i, e)) = &baseline_entry
                    && subj.contains(rep)
                {
                    ingress.baseline.clone_from(i);
                    egress.baseline.clone_from(e);
                }
                Class {
                    named: named_of[rep].clone(),
                    ingress,
                    egress,
                }
            })
            .collect();

        let mut by_name = HashMap::new();
        let mut by_ip = HashMap::new();
        for (i, pod) in cluster.pods.iter().enumerate() {
            by_name.insert(format!("{}/{}", pod.namespace, pod.name), i);
            for ip in &pod.ips {
                by_ip.entry(*ip).or_insert(i);
            }
        }
        let class_of = partition.class_of.clone();
        Index {
            pod_names: cluster
                .pods
                .iter()
                .map(|p| format!("{}/{}", p.namespace, p.name))
                .collect(),
            pod_ips: cluster.pods.iter().map(|p| p.ips.clone()).collect(),
            host_network: cluster.pods.iter().map(|p| p.host_network).collect(),
            class_of,
            classes,
            rules,
            by_name,
            by_ip,
        }
    }
}

/// A partition of pods into classes, refined set by set.
struct Partition {
    class_of: Vec<u32>,
    size: Vec<u32>,
    count: Vec<u32>,
    remap: Vec<u32>,
}

impl Partition {
    fn new(n: usize) -> Self {
        Self {
            class_of: vec![0; n],
            size: vec![n as u32],
            count: vec![0],
            remap: vec![0],
        }
    }

    /// Splits every class into its members inside `set` and those outside. Cost is
    /// linear in the size of `set`.
    fn refine(&mut self, set: &BitSet) {
        let mut touched = Vec::new();
        for p in set.iter() {
            let c = self.class_of[p] as usize;
            if self.count[c] == 0 {
                touched.push(c);
            }
            self.count[c] += 1;
        }
        for &c in &touched {
            if self.count[c] == self.size[c] {
                self.remap[c] = c as u32;
            } else {
                let id = self.size.len() as u32;
                self.size.push(self.count[c]);
                self.count.push(0);
                self.remap.push(id);
                self.size[c] -= self.count[c];
                self.remap[c] = id;
            }
        }
        for p in set.iter() {
            let c = self.class_of[p] as usize;
            self.class_of[p] = self.remap[c];
        }
        for &c in &touched {
            self.count[c] = 0;
        }
    }

    /// Splits classes so that pods of one class have equal keys.
    fn refine_by_key<K: Hash + Eq + Clone>(&mut self, keys: &[K]) {
        let mut ids: HashMap<(u32, K), u32> = HashMap::new();
        let mut size: Vec<u32> = Vec::new();
        for (p, key) in keys.iter().enumerate() {
            let next = ids.len() as u32;
            let id = *ids.entry((self.class_of[p], key.clone())).or_insert(next);
            if id as usize == size.len() {
                size.push(0);
            }
            size[id as usize] += 1;
            self.class_of[p] = id;
        }
        self.count = vec![0; size.len()];
        self.remap = vec![0; size.len()];
        self.size = size;
    }

    /// One pod per class, by class id (ids are dense after compaction).
    fn representatives(&mut self) -> Vec<usize> {
        // Compact ids in order of first appearance, so classes follow pod order.
        let mut dense: HashMap<u32, u32> = HashMap::new();
        let mut reps = Vec::new();
        for (p, c) in self.class_of.iter_mut().enumerate() {
            let next = dense.len() as u32;
            let id = *dense.entry(*c).or_insert_with(|| {
                reps.push(p);
                next
            });
            *c = id;
        }
        reps
    }
}
