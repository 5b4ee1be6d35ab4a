//! Lint: what an auditor asks of a cluster's policies, as findings with stable IDs.
//!
//! | ID    | name                          | severity | finding |
//! |-------|-------------------------------|----------|---------|
//! | L101  | no-default-deny-ingress       | warning  | a namespace where no NetworkPolicy with an empty `podSelector` isolates ingress, so new pods accept traffic from anywhere |
//! | L102  | no-default-deny-egress        | warning  | the same for egress |
//! | L201  | selects-no-pods               | warning  | a policy whose selector or subject matches no pod |
//! | L301  | named-port-never-declared     | warning  | a named port that no pod the rule can apply to declares (for that protocol): that port entry never matches |
//! | L302  | except-covers-cidr            | error    | an `ipBlock` whose `except` entries cover all of its `cidr`: the peer matches nothing |
//! | L401  | ingress-from-anywhere         | warning  | an ingress rule that allows `0.0.0.0/0` or `::/0`, or every source (no `from`) |
//! | L402  | egress-to-anywhere            | info     | an egress rule that allows `0.0.0.0/0` or `::/0`, or every destination (no `to`) |
//! | L501  | policy-shadowed               | warning  | a NetworkPolicy that changes no verdict: other policies isolate every pod it selects and have rules covering each of its rules |
//! | L502  | admin-rule-shadowed           | warning  | an admin rule that never decides: an earlier rule (in the same or a higher-precedence policy) matches all of its traffic first |
//!
//! Findings about selectors (L201, L301, L501, L502) are judged against the pods in the
//! input; they say so, since pods come and go.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;

use rampart_model::{
    Action, AdminPeer, AdminPort, AdminRule, Cluster, Direction, IpSet, LabelSelector,
    NamespaceMatch, NetworkPolicy, Peer, Peers, Pod, PolicyPort, PolicySet, PortSpec, Protocol,
    Rule, Subject,
};
use serde::Serialize;

use crate::bitset::BitSet;
use crate::eval::np_selects;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Probably a mistake or a gap in isolation.
    Warning,
    /// Certainly a mistake.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// A kind of finding: a stable ID, a name and a severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable ID, e.g. `L101`.
    pub id: &'static str,
    /// Name, e.g. `no-default-deny-ingress`.
    pub name: &'static str,
    /// Severity.
    pub severity: Severity,
}

/// Every check, in ID order.
pub const CHECKS: [Check; 9] = [
    NO_DEFAULT_DENY_INGRESS,
    NO_DEFAULT_DENY_EGRESS,
    SELECTS_NO_PODS,
    NAMED_PORT_NEVER_DECLARED,
    EXCEPT_COVERS_CIDR,
    INGRESS_FROM_ANYWHERE,
    EGRESS_TO_ANYWHERE,
    POLICY_SHADOWED,
    ADMIN_RULE_SHADOWED,
];

const NO_DEFAULT_DENY_INGRESS: Check = Check {
    id: "L101",
    name: "no-default-deny-ingress",
    severity: Severity::Warning,
};
const NO_DEFAULT_DENY_EGRESS: Check = Check {
    id: "L102",
    name: "no-default-deny-egress",
    severity: Severity::Warning,
};
const SELECTS_NO_PODS: Check = Check {
    id: "L201",
    name: "selects-no-pods",
    severity: Severity::Warning,
};
const NAMED_PORT_NEVER_DECLARED: Check = Check {
    id: "L301",
    name: "named-port-never-declared",
    severity: Severity::Warning,
};
const EXCEPT_COVERS_CIDR: Check = Check {
    id: "L302",
    name: "except-covers-cidr",
    severity: Severity::Error,
};
const INGRESS_FROM_ANYWHERE: Check = Check {
    id: "L401",
    name: "ingress-from-anywhere",
    severity: Severity::Warning,
};
const EGRESS_TO_ANYWHERE: Check = Check {
    id: "L402",
    name: "egress-to-anywhere",
    severity: Severity::Info,
};
const POLICY_SHADOWED: Check = Check {
    id: "L501",
    name: "policy-shadowed",
    severity: Severity::Warning,
};
const ADMIN_RULE_SHADOWED: Check = Check {
    id: "L502",
    name: "admin-rule-shadowed",
    severity: Severity::Warning,
};

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// Stable ID.
    pub id: &'static str,
    /// Check name.
    pub name: &'static str,
    /// Severity.
    pub severity: Severity,
    /// The object, e.g. `NetworkPolicy x/allow-web` or `Namespace x`.
    pub object: String,
    /// Field path inside the object, if the finding is about a part of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// What is wrong and why it matters.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}: {}",
            self.severity, self.id, self.name, self.object
        )?;
        if let Some(p) = &self.path {
            write!(f, " {p}")?;
        }
        write!(f, ": {}", self.message)
    }
}

fn finding(check: Check, object: String, path: Option<String>, message: String) -> Finding {
    Finding {
        id: check.id,
        name: check.name,
        severity: check.severity,
        object,
        path,
        message,
    }
}

/// Runs every check.
pub fn lint(cluster: &Cluster, policies: &PolicySet) -> Vec<Finding> {
    let ctx = Context::new(cluster, policies);
    let mut out = Vec::new();
    default_deny(&ctx, policies, &mut out);
    for (i, np) in policies.network_policies.iter().enumerate() {
        network_policy_checks(&ctx, i, np, &mut out);
    }
    admin_checks(&ctx, policies, &mut out);
    shadowed_policies(&ctx, policies, &mut out);
    shadowed_admin_rules(&ctx, policies, &mut out);
    out
}

struct Context<'a> {
    cluster: &'a Cluster,
    /// Pods (not on the host network) by namespace.
    by_namespace: HashMap<&'a str, Vec<usize>>,
    /// Pods whose primary address is known, with it.
    addressed: Vec<(usize, IpAddr)>,
    /// Per NetworkPolicy and direction (0 ingress, 1 egress), the peers of each rule.
    np_peers: Vec<[Vec<PeerSet>; 2]>,
}

impl<'a> Context<'a> {
    fn new(cluster: &'a Cluster, policies: &PolicySet) -> Self {
        let mut by_namespace: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut addressed = Vec::new();
        for (i, p) in cluster.pods.iter().enumerate() {
            if !p.host_network {
                by_namespace
                    .entry(p.namespace.as_str())
                    .or_default()
                    .push(i);
            }
            if let Some(ip) = p.primary_ip() {
                addressed.push((i, ip));
            }
        }
        let mut ctx = Self {
            cluster,
            by_namespace,
            addressed,
            np_peers: Vec::new(),
        };
        ctx.np_peers = policies
            .network_policies
            .iter()
            .map(|np| {
                [Direction::Ingress, Direction::Egress].map(|d| {
                    np.rules(d)
                        .unwrap_or_default()
                        .iter()
                        .map(|r| ctx.compute_np_peers(np, r))
                        .collect()
                })
            })
            .collect();
        ctx
    }

    fn n(&self) -> usize {
        self.cluster.pods.len()
    }

    fn ns_matches(&self, sel: &LabelSelector, ns: &str) -> bool {
        match self.cluster.namespace_labels(ns) {
            Some(labels) => sel.matches(labels),
            None => sel.matches(&rampart_model::Namespace::new(ns).labels),
        }
    }

    /// Selectable pods in namespaces matching `namespaces` whose labels match `pods`.
    fn pods_in(&self, namespaces: &LabelSelector, pods: &LabelSelector) -> BitSet {
        let mut set = BitSet::new(self.n());
        for (ns, members) in &self.by_namespace {
            if self.ns_matches(namespaces, ns) {
                for &i in members {
                    if pods.matches(&self.cluster.pods[i].labels) {
                        set.insert(i);
                    }
                }
            }
        }
        set
    }

    /// The (selectable) pods a NetworkPolicy selects.
    fn np_pods(&self, np: &NetworkPolicy) -> BitSet {
        let mut set = BitSet::new(self.n());
        for &i in self
            .by_namespace
            .get(np.namespace.as_str())
            .into_iter()
            .flatten()
        {
            if np_selects(np, &self.cluster.pods[i]) {
                set.insert(i);
            }
        }
        set
    }

    fn subject_pods(&self, subject: &Subject) -> BitSet {
        match subject {
            Subject::Namespaces(ns) => self.pods_in(ns, &LabelSelector::everything()),
            Subject::Pods { namespaces, pods } => self.pods_in(namespaces, pods),
        }
    }

    fn peer_set(&self, all: bool, pods: BitSet, ips: IpSet) -> PeerSet {
        let mut ip_pods = BitSet::new(self.n());
        if !ips.is_empty() {
            for &(i, ip) in &self.addressed {
                if ips.contains(ip) {
                    ip_pods.insert(i);
                }
            }
        }
        PeerSet {
            all,
            pods,
            ips,
            ip_pods,
        }
    }

    /// What a NetworkPolicy rule's peers match: pods (by selectors), addresses, or all.
    fn compute_np_peers(&self, np: &NetworkPolicy, rule: &Rule) -> PeerSet {
        let Peers::List(peers) = &rule.peers else {
            return self.peer_set(true, BitSet::new(self.n()), IpSet::empty());
        };
        let mut pods_set = BitSet::new(self.n());
        let mut ips = IpSet::empty();
        for peer in peers {
            match peer {
                Peer::Pods {
                    namespaces: NamespaceMatch::Own,
                    pods,
                } => {
                    for &i in self
                        .by_namespace
                        .get(np.namespace.as_str())
                        .into_iter()
                        .flatten()
                    {
                        if pods.matches(&self.cluster.pods[i].labels) {
                            pods_set.insert(i);
                        }
                    }
                }
                Peer::Pods {
                    namespaces: NamespaceMatch::Selector(ns),
                    pods,
                } => {
                    pods_set.union_with(&self.pods_in(ns, pods));
                }
                Peer::IpBlock(b) => ips = ips.union(&b.to_set()),
            }
        }
        self.peer_set(false, pods_set, ips)
    }

    fn admin_peers(&self, rule: &AdminRule) -> PeerSet {
        let mut pods_set = BitSet::new(self.n());
        let mut ips = IpSet::empty();
        for peer in &rule.peers {
            match peer {
                AdminPeer::Namespaces(sel) => {
                    pods_set.union_with(&self.pods_in(sel, &LabelSelector::everything()));
                }
                AdminPeer::Pods { namespaces, pods } => {
                    pods_set.union_with(&self.pods_in(namespaces, pods))
                }
                AdminPeer::Nodes(sel) => {
                    let hosts = self
                        .cluster
                        .nodes
                        .iter()
                        .filter(|n| sel.matches(&n.labels))
                        .flat_map(|n| {
                            n.addresses
                                .iter()
                                .map(|ip| rampart_model::Cidr::host(*ip).range())
                        });
                    ips = ips.union(&IpSet::from_ranges(hosts));
                }
                AdminPeer::Networks(cidrs) => ips = ips.union(&IpSet::from_cidrs(cidrs)),
            }
        }
        self.peer_set(false, pods_set, ips)
    }
}

/// The endpoints a rule's peers match, as far as the input tells.
#[derive(Debug, Clone)]
struct PeerSet {
    all: bool,
    /// Pods matched by selectors.
    pods: BitSet,
    /// Addresses matched.
    ips: IpSet,
    /// Pods whose primary address is in `ips`.
    ip_pods: BitSet,
}

impl PeerSet {
    /// True if every endpoint of `inner` is an endpoint of `self` (pods counted by
    /// identity or by their addresses).
    fn covers(&self, inner: &PeerSet) -> bool {
        if self.all {
            return true;
        }
        if inner.all || !self.ips.is_superset(&inner.ips) {
            return false;
        }
        let mut rest = inner.pods.clone();
        rest.subtract(&self.pods);
        rest.subtract(&self.ip_pods);
        rest.is_empty()
    }

    /// True if the pod matches.
    fn contains_pod(&self, i: usize) -> bool {
        self.all || self.pods.contains(i) || self.ip_pods.contains(i)
    }
}

// ---------------------------------------------------------------------------------------

fn default_deny(ctx: &Context<'_>, policies: &PolicySet, out: &mut Vec<Finding>) {
    let mut namespaces: BTreeSet<&str> =
        ctx.cluster.namespaces.keys().map(String::as_str).collect();
    namespaces.extend(ctx.cluster.pods.iter().map(|p| p.namespace.as_str()));
    for ns in namespaces {
        for (direction, check) in [
            (Direction::Ingress, NO_DEFAULT_DENY_INGRESS),
            (Direction::Egress, NO_DEFAULT_DENY_EGRESS),
        ] {
            let isolated = policies.network_policies.iter().any(|np| {
                np.namespace == ns
                    && np.pod_selector.is_everything()
                    && np.rules(direction).is_some_and(|rules| {
                        !rules
                            .iter()
                            .any(|r| matches!(r.peers, Peers::Any) && r.ports.is_empty())
                    })
            });
            if !isolated {
                let word = direction.as_str().to_lowercase();
                out.push(finding(
                    check,
                    format!("Namespace {ns}"),
                    None,
                    format!(
                        "no NetworkPolicy with an empty podSelector isolates {word}: pods are open to {word} traffic unless a policy selects them"
                    ),
                ));
            }
        }
    }
}

fn network_policy_checks(
    ctx: &Context<'_>,
    index: usize,
    np: &NetworkPolicy,
    out: &mut Vec<Finding>,
) {
    let object = format!("NetworkPolicy {}", np.reference());
    let selected = ctx.np_pods(np);
    if selected.is_empty() {
        out.push(finding(
            SELECTS_NO_PODS,
            object.clone(),
            Some("spec.podSelector".to_owned()),
            format!(
                "selects no pod in namespace {} (of the pods in the input)",
                np.namespace
            ),
        ));
    }
    for direction in [Direction::Ingress, Direction::Egress] {
        let Some(rules) = np.rules(direction) else {
            continue;
        };
        let (field, peers_field) = match direction {
            Direction::Ingress => ("ingress", "from"),
            Direction::Egress => ("egress", "to"),
        };
        for (ri, rule) in rules.iter().enumerate() {
            let rp = format!("spec.{field}[{ri}]");
            // Peers.
            match &rule.peers {
                Peers::Any => anywhere(
                    direction,
                    &object,
                    &rp,
                    &format!(
                        "has no `{peers_field}`: it allows every {} in and out of the cluster",
                        if direction == Direction::Ingress {
                            "source"
                        } else {
                            "destination"
                        }
                    ),
                    out,
                ),
                Peers::List(peers) => {
                    for (pi, peer) in peers.iter().enumerate() {
                        let Peer::IpBlock(block) = peer else { continue };
                        let pp = format!("{rp}.{peers_field}[{pi}].ipBlock");
                        if block.to_set().is_empty() {
                            out.push(finding(
                                EXCEPT_COVERS_CIDR,
                                object.clone(),
                                Some(pp.clone()),
                                format!(
                                    "the except entries cover all of {}: this peer matches nothing",
                                    block.cidr()
                                ),
                            ));
                        }
                        if block.cidr().is_everything() {
                            let extra = if block.except().is_empty() {
                                String::new()
                            } else {
                                " (minus its except entries)".to_owned()
                            };
                            anywhere(
                                direction,
                                &object,
                                &pp,
                                &format!("allows {}{extra}", block.cidr()),
                                out,
                            );
                        }
                    }
                }
            }
            // Named ports: resolved on the destination.
            if !rule
                .ports
                .iter()
                .any(|p| matches!(p.port, PortSpec::Named(_)))
            {
                continue;
            }
            let candidates: Vec<&Pod> = match direction {
                Direction::Ingress => selected.iter().map(|i| &ctx.cluster.pods[i]).collect(),
                Direction::Egress => {
                    let peers = &ctx.np_peers[index][1][ri];
                    ctx.cluster
                        .pods
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| peers.contains_pod(*i))
                        .map(|(_, p)| p)
                        .collect()
                }
            };
            for (pi, port) in rule.ports.iter().enumerate() {
                if let PortSpec::Named(name) = &port.port
                    && !candidates
                        .iter()
                        .any(|p| p.resolve_port(name, port.protocol).is_some())
                {
                    let whose = if direction == Direction::Ingress {
                        "no pod this policy selects"
                    } else {
                        "no destination pod of this rule"
                    };
                    out.push(finding(
                        NAMED_PORT_NEVER_DECLARED,
                        object.clone(),
                        Some(format!("{rp}.ports[{pi}]")),
                        format!("{whose} declares a {} port named {name:?}: this port entry never matches (of the pods in the input)", port.protocol),
                    ));
                }
            }
        }
    }
}

fn anywhere(direction: Direction, object: &str, path: &str, what: &str, out: &mut Vec<Finding>) {
    let check = match direction {
        Direction::Ingress => INGRESS_FROM_ANYWHERE,
        Direction::Egress => EGRESS_TO_ANYWHERE,
    };
    out.push(finding(
        check,
        object.to_owned(),
        Some(path.to_owned()),
        format!("this rule {what}"),
    ));
}

fn admin_checks(ctx: &Context<'_>, policies: &PolicySet, out: &mut Vec<Finding>) {
    let admins = policies
        .admin_policies
        .iter()
        .map(|a| {
            (
                format!("AdminNetworkPolicy {}", a.name),
                &a.subject,
                &a.ingress,
                &a.egress,
            )
        })
        .chain(policies.baseline.iter().map(|b| {
            (
                format!("BaselineAdminNetworkPolicy {}", b.name),
                &b.subject,
                &b.ingress,
                &b.egress,
            )
        }));
    for (object, subject, ingress, egress) in admins {
        let subjects = ctx.subject_pods(subject);
        if subjects.is_empty() {
            out.push(finding(
                SELECTS_NO_PODS,
                object.clone(),
                Some("spec.subject".to_owned()),
                "its subject matches no pod (of the pods in the input)".to_owned(),
            ));
        }
        for (direction, rules) in [(Direction::Ingress, ingress), (Direction::Egress, egress)] {
            let field = if direction == Direction::Ingress {
                "ingress"
            } else {
                "egress"
            };
            for (ri, rule) in rules.iter().enumerate() {
                let rp = format!("spec.{field}[{ri}]");
                if direction == Direction::Egress && rule.action == Action::Allow {
                    for (pi, peer) in rule.peers.iter().enumerate() {
                        if let AdminPeer::Networks(cidrs) = peer
                            && let Some(c) = cidrs.iter().find(|c| c.is_everything())
                        {
                            anywhere(
                                direction,
                                &object,
                                &format!("{rp}.to[{pi}]"),
                                &format!("allows {c}"),
                                out,
                            );
                        }
                    }
                }
                let Some(ports) = &rule.ports else { continue };
                let candidates: Vec<&Pod> = match direction {
                    Direction::Ingress => subjects.iter().map(|i| &ctx.cluster.pods[i]).collect(),
                    Direction::Egress => {
                        let peers = ctx.admin_peers(rule);
                        peers.pods.iter().map(|i| &ctx.cluster.pods[i]).collect()
                    }
                };
                for (pi, port) in ports.iter().enumerate() {
                    if let AdminPort::Named(name) = port
                        && !candidates.iter().any(|p| {
                            Protocol::ALL
                                .iter()
                                .any(|pr| p.resolve_port(name, *pr).is_some())
                        })
                    {
                        out.push(finding(
                            NAMED_PORT_NEVER_DECLARED,
                            object.clone(),
                            Some(format!("{rp}.ports[{pi}]")),
                            format!("no pod this rule applies to declares a port named {name:?}: this port entry never matches (of the pods in the input)"),
                        ));
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Shadowing.

/// True if the ports of `outer` accept every port `inner` accepts.
fn np_ports_cover(outer: &[PolicyPort], inner: &[PolicyPort]) -> bool {
    if outer.is_empty() {
        return true;
    }
    if inner.is_empty() {
        return false;
    }
    inner.iter().all(|i| {
        outer
            .iter()
            .any(|o| o.protocol == i.protocol && spec_covers(&o.port, &i.port))
    })
}

fn spec_covers(outer: &PortSpec, inner: &PortSpec) -> bool {
    match (outer, inner) {
        (PortSpec::Any, _) => true,
        (PortSpec::Range(o), PortSpec::Range(i)) => o.contains_range(i),
        (PortSpec::Named(o), PortSpec::Named(i)) => o == i,
        _ => false,
    }
}

fn shadowed_policies(ctx: &Context<'_>, policies: &PolicySet, out: &mut Vec<Finding>) {
    let nps = &policies.network_policies;
    let selections: Vec<BitSet> = nps.iter().map(|np| ctx.np_pods(np)).collect();
    // Per direction, the policies isolating each pod.
    let mut isolating: [Vec<Vec<usize>>; 2] =
        [vec![Vec::new(); ctx.n()], vec![Vec::new(); ctx.n()]];
    for (q, np) in nps.iter().enumerate() {
        for (d, direction) in [Direction::Ingress, Direction::Egress]
            .into_iter()
            .enumerate()
        {
            if np.rules(direction).is_some() {
                for pod in selections[q].iter() {
                    isolating[d][pod].push(q);
                }
            }
        }
    }
    let mut reported: BTreeSet<usize> = BTreeSet::new();
    for (p, np) in nps.iter().enumerate() {
        if selections[p].is_empty() {
            continue; // reported as L201
        }
        let mut by: BTreeSet<String> = BTreeSet::new();
        let mut shadowed = true;
        'directions: for (d, direction) in [Direction::Ingress, Direction::Egress]
            .into_iter()
            .enumerate()
        {
            let Some(rules) = np.rules(direction) else {
                continue;
            };
            // Pods isolated by the same other policies are judged once.
            let groups: BTreeSet<Vec<usize>> = selections[p]
                .iter()
                .map(|pod| {
                    isolating[d][pod]
                        .iter()
                        .copied()
                        .filter(|&q| q != p && !reported.contains(&q))
                        .collect()
                })
                .collect();
            for others in groups {
                if others.is_empty() {
                    shadowed = false;
                    break 'directions;
                }
                if rules.is_empty() {
                    by.insert(nps[others[0]].reference());
                }
                for (ri, rule) in rules.iter().enumerate() {
                    let inner = &ctx.np_peers[p][d][ri];
                    let cover = others.iter().find(|&&q| {
                        nps[q]
                            .rules(direction)
                            .unwrap_or_default()
                            .iter()
                            .enumerate()
                            .any(|(rj, r)| {
                                np_ports_cover(&r.ports, &rule.ports)
                                    && ctx.np_peers[q][d][rj].covers(inner)
                            })
                    });
                    match cover {
                        Some(&q) => {
                            by.insert(nps[q].reference());
                        }
                        None => {
                            shadowed = false;
                            break 'directions;
                        }
                    }
                }
            }
        }
        if shadowed && !by.is_empty() {
            reported.insert(p);
            out.push(finding(
                POLICY_SHADOWED,
                format!("NetworkPolicy {}", np.reference()),
                None,
                format!(
                    "changes no verdict for the pods in the input: {} already isolate every pod it selects and allow everything it allows",
                    by.into_iter().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
}

fn admin_ports_cover(outer: Option<&[AdminPort]>, inner: Option<&[AdminPort]>) -> bool {
    let Some(outer) = outer else { return true };
    let Some(inner) = inner else { return false };
    inner.iter().all(|i| {
        outer.iter().any(|o| match (o, i) {
            (
                AdminPort::Number {
                    protocol: a,
                    port: x,
                },
                AdminPort::Number {
                    protocol: b,
                    port: y,
                },
            ) => a == b && x == y,
            (AdminPort::Range { protocol: a, range }, AdminPort::Number { protocol: b, port }) => {
                a == b && range.contains(*port)
            }
            (
                AdminPort::Range {
                    protocol: a,
                    range: r,
                },
                AdminPort::Range {
                    protocol: b,
                    range: s,
                },
            ) => a == b && r.contains_range(s),
            (AdminPort::Named(a), AdminPort::Named(b)) => a == b,
            _ => false,
        })
    })
}

fn shadowed_admin_rules(ctx: &Context<'_>, policies: &PolicySet, out: &mut Vec<Finding>) {
    // Every admin rule in evaluation order: (object, priority text, subject pods, direction, index, rule).
    struct Entry<'a> {
        object: String,
        label: String,
        subjects: BitSet,
        direction: Direction,
        index: usize,
        rule: &'a AdminRule,
        baseline: bool,
    }
    let mut entries: Vec<Entry<'_>> = Vec::new();
    for a in &policies.admin_policies {
        let subjects = ctx.subject_pods(&a.subject);
        for direction in [Direction::Ingress, Direction::Egress] {
            for (index, rule) in a.rules(direction).iter().enumerate() {
                entries.push(Entry {
                    object: format!("AdminNetworkPolicy {}", a.name),
                    label: format!("AdminNetworkPolicy {} (priority {})", a.name, a.priority),
                    subjects: subjects.clone(),
                    direction,
                    index,
                    rule,
                    baseline: false,
                });
            }
        }
    }
    if let Some(b) = &policies.baseline {
        let subjects = ctx.subject_pods(&b.subject);
        for direction in [Direction::Ingress, Direction::Egress] {
            for (index, rule) in b.rules(direction).iter().enumerate() {
                entries.push(Entry {
                    object: format!("BaselineAdminNetworkPolicy {}", b.name),
                    label: format!("BaselineAdminNetworkPolicy {}", b.name),
                    subjects: subjects.clone(),
                    direction,
                    index,
                    rule,
                    baseline: true,
                });
            }
        }
    }
    let peers: Vec<PeerSet> = entries.iter().map(|e| ctx.admin_peers(e.rule)).collect();
    for (j, later) in entries.iter().enumerate() {
        if later.subjects.is_empty() {
            continue;
        }
        let earlier = entries[..j].iter().enumerate().find(|(i, e)| {
            e.direction == later.direction
                // A baseline rule is reached only after the admin tier and NetworkPolicies;
                // only earlier baseline rules shadow it.
                && e.baseline == later.baseline
                && later.subjects.is_subset_of(&e.subjects)
                && admin_ports_cover(e.rule.ports.as_deref(), later.rule.ports.as_deref())
                && peers[*i].covers(&peers[j])
        });
        if let Some((_, e)) = earlier {
            let field = if later.direction == Direction::Ingress {
                "ingress"
            } else {
                "egress"
            };
            let name = if e.rule.name.is_empty() {
                String::new()
            } else {
                format!(" {:?}", e.rule.name)
            };
            out.push(finding(
                ADMIN_RULE_SHADOWED,
                later.object.clone(),
                Some(format!("spec.{field}[{}]", later.index)),
                format!(
                    "never decides: {} spec.{field}[{}]{name} ({}) matches all of its traffic first (for the pods in the input)",
                    e.label, e.index, e.rule.action
                ),
            ));
        }
    }
}

/// Counts of findings by severity.
pub fn summary(findings: &[Finding]) -> BTreeMap<Severity, usize> {
    let mut m = BTreeMap::new();
    for f in findings {
        *m.entry(f.severity).or_insert(0) += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_model::{AdminNetworkPolicy, Namespace, PortRange};

    fn pod(ns: &str, name: &str, app: &str) -> Pod {
        Pod {
            namespace: ns.into(),
            name: name.into(),
            labels: [("app".to_owned(), app.to_owned())].into(),
            ports: vec![],
            ips: vec![format!("10.0.0.{}", name.len()).parse().unwrap()],
            host_network: false,
            node_name: None,
        }
    }

    #[test]
    fn selects_nothing_and_shadowed_admin_rules() {
        let mut cluster = Cluster::default();
        cluster.namespaces.insert("a".into(), Namespace::new("a"));
        cluster.pods.push(pod("a", "p", "web"));
        let allow_all = |name: &str, action| AdminRule {
            name: name.into(),
            action,
            peers: vec![AdminPeer::Namespaces(LabelSelector::everything())],
            ports: None,
        };
        let on_port = AdminRule {
            name: "later".into(),
            action: Action::Allow,
            peers: vec![AdminPeer::Namespaces(LabelSelector::from_labels([(
                "kubernetes.io/metadata.name",
                "a",
            )]))],
            ports: Some(vec![AdminPort::Range {
                protocol: Protocol::Tcp,
                range: PortRange::new(80, 90).unwrap(),
            }]),
        };
        let policies = PolicySet {
            network_policies: vec![NetworkPolicy {
                namespace: "a".into(),
                name: "db".into(),
                pod_selector: LabelSelector::from_labels([("app", "db")]),
                ingress: Some(vec![]),
                egress: None,
            }],
            admin_policies: vec![
                AdminNetworkPolicy {
                    name: "first".into(),
                    priority: 1,
                    subject: Subject::Namespaces(LabelSelector::everything()),
                    ingress: vec![allow_all("all", Action::Deny)],
                    egress: vec![],
                },
                AdminNetworkPolicy {
                    name: "second".into(),
                    priority: 2,
                    subject: Subject::Namespaces(LabelSelector::everything()),
                    ingress: vec![on_port],
                    egress: vec![],
                },
            ],
            baseline: None,
        };
        let findings = lint(&cluster, &policies);
        let ids: Vec<(&str, &str)> = findings.iter().map(|f| (f.id, f.object.as_str())).collect();
        assert!(ids.contains(&("L201", "NetworkPolicy a/db")), "{ids:?}");
        let shadowed = findings.iter().find(|f| f.id == "L502").expect("L502");
        assert_eq!(shadowed.object, "AdminNetworkPolicy second");
        assert_eq!(shadowed.path.as_deref(), Some("spec.ingress[0]"));
        assert!(
            shadowed
                .message
                .contains("AdminNetworkPolicy first (priority 1) spec.ingress[0] \"all\" (Deny)"),
            "{}",
            shadowed.message
        );
    }
}
