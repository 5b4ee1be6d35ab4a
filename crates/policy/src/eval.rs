//! The reference evaluator: the semantics written out rule by rule, with a full account
//! of every decision. `explain` uses it; the compiled [`crate::Index`] is checked against it.
//!
//! For a flow from `src` to `dst` on a port and protocol:
//!
//! - Egress is decided for `src` if it is a pod not on the host network, ingress for `dst`
//!   likewise; an end that is not such a pod puts no restriction on its side.
//! - Each side goes through the tiers in order. AdminNetworkPolicies whose subject selects
//!   the pod, by priority (ties by name), rules in order: the first rule whose peers and
//!   ports match decides Allow or Deny, or Passes to the next tier. Then NetworkPolicies:
//!   if any policy selects the pod for this direction, the pod is isolated and the flow is
//!   allowed only if some rule of those policies matches. Otherwise the
//!   BaselineAdminNetworkPolicy, first matching rule; otherwise allowed.
//! - The flow is allowed when both sides allow it. A pod's traffic to itself is always
//!   allowed.
//!
//! Peers: pod and namespace selectors match pods (never host-network pods); `ipBlock` and
//! `networks` match addresses, pod addresses included; `nodes` match the addresses of the
//! selected nodes. Named ports resolve on the destination pod, for the flow's protocol.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::net::IpAddr;

use rampart_model::{
    Action, AdminPeer, AdminPort, AdminRule, Cluster, Direction, LabelSelector, NamespaceMatch,
    NetworkPolicy, Node, Peer, Peers, Pod, PolicyPort, PolicySet, PortSpec, Probe, Subject,
};
use serde::Serialize;

/// One end of a flow.
#[derive(Debug, Clone, Copy)]
pub enum Endpoint<'a> {
    /// A pod, reached at `ip` (its primary IP unless stated; `None` if it has none).
    Pod {
        /// The pod.
        pod: &'a Pod,
        /// The address the flow uses.
        ip: Option<IpAddr>,
    },
    /// An address that belongs to no pod.
    Address(IpAddr),
}

impl<'a> Endpoint<'a> {
    /// A pod at its primary address.
    pub fn pod(pod: &'a Pod) -> Self {
        Endpoint::Pod {
            pod,
            ip: pod.primary_ip(),
        }
    }

    /// The address the flow uses.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Endpoint::Pod { ip, .. } => *ip,
            Endpoint::Address(ip) => Some(*ip),
        }
    }

    /// The pod, if this end is a pod that policies apply to (not on the host network).
    pub fn policy_pod(&self) -> Option<&'a Pod> {
        match self {
            Endpoint::Pod { pod, .. } if !pod.host_network => Some(pod),
            _ => None,
        }
    }

    /// The pod, whether on the host network or not.
    pub fn any_pod(&self) -> Option<&'a Pod> {
        match self {
            Endpoint::Pod { pod, .. } => Some(pod),
            Endpoint::Address(_) => None,
        }
    }
}

impl fmt::Display for Endpoint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Pod { pod, ip: Some(ip) } => {
                write!(f, "{}/{} ({ip})", pod.namespace, pod.name)
            }
            Endpoint::Pod { pod, ip: None } => write!(f, "{}/{} (no IP)", pod.namespace, pod.name),
            Endpoint::Address(ip) => write!(f, "{ip}"),
        }
    }
}

/// The tier that decided one side of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Tier {
    /// No policy applies to this end (not a pod, or a host-network pod).
    NotApplicable,
    /// An AdminNetworkPolicy rule.
    AdminNetworkPolicy,
    /// NetworkPolicies (the pod is isolated in this direction).
    NetworkPolicy,
    /// A BaselineAdminNetworkPolicy rule.
    BaselineAdminNetworkPolicy,
    /// Nothing selects the pod: allowed by default.
    Default,
    /// A pod's traffic to itself.
    SelfTraffic,
}

/// The admin rule that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminRuleMatch {
    /// Index in the direction's rule list.
    pub index: usize,
    /// Rule name (may be empty).
    pub name: String,
    /// Its action.
    pub action: Action,
    /// Field path of the rule, e.g. `spec.ingress[2]`.
    pub path: String,
}

/// How one admin (or baseline) policy treated the flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminEvaluation {
    /// Policy name.
    pub policy: String,
    /// Priority (AdminNetworkPolicy only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// The first rule that matched, if any.
    pub matched: Option<AdminRuleMatch>,
}

/// A NetworkPolicy rule that allows the flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicyMatch {
    /// `namespace/name`.
    pub policy: String,
    /// Rule index.
    pub rule: usize,
    /// Peer index, or `None` when the rule allows every peer.
    pub peer: Option<usize>,
    /// Port index, or `None` when the rule allows every port.
    pub port: Option<usize>,
    /// Field path of what matched, e.g. `spec.ingress[0].from[1]` with `ports[0]`.
    pub path: String,
    /// The peer and port in words.
    pub detail: String,
}

/// The decision for one direction of a flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Side {
    /// Ingress or egress.
    pub direction: Direction,
    /// The pod whose policies apply (`namespace/name`), if any.
    pub pod: Option<String>,
    /// Whether this side lets the flow through.
    pub allowed: bool,
    /// Which tier decided.
    pub decided_by: Tier,
    /// One sentence.
    pub summary: String,
    /// The admin policies that select the pod, in evaluation order, up to the deciding one.
    pub admin: Vec<AdminEvaluation>,
    /// True if some NetworkPolicy selects the pod for this direction.
    pub isolated: bool,
    /// The NetworkPolicies that select the pod for this direction.
    pub selected_by: Vec<String>,
    /// Every NetworkPolicy rule, peer and port that allows the flow.
    pub allowed_by: Vec<NetworkPolicyMatch>,
    /// The baseline's verdict, when it was consulted and selects the pod.
    pub baseline: Option<AdminEvaluation>,
}

impl Side {
    fn open(direction: Direction, summary: String, tier: Tier) -> Self {
        Side {
            direction,
            pod: None,
            allowed: true,
            decided_by: tier,
            summary,
            admin: Vec::new(),
            isolated: false,
            selected_by: Vec::new(),
            allowed_by: Vec::new(),
            baseline: None,
        }
    }
}

/// The full account of one flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// Source, e.g. `x/a (10.0.0.1)`.
    pub from: String,
    /// Destination.
    pub to: String,
    /// Destination port.
    pub port: u16,
    /// Protocol.
    pub protocol: String,
    /// The verdict.
    pub allowed: bool,
    /// The source's egress side.
    pub egress: Side,
    /// The destination's ingress side.
    pub ingress: Side,
}

impl fmt::Display for Explanation {
    /// A readable account, one line per fact.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.allowed { "ALLOWED" } else { "DENIED" };
        writeln!(
            f,
            "{} -> {} on {}/{}: {verdict}",
            self.from, self.to, self.port, self.protocol
        )?;
        for side in [&self.egress, &self.ingress] {
            let who = side.pod.as_deref().unwrap_or("-");
            let word = if side.allowed { "allowed" } else { "denied" };
            writeln!(
                f,
                "  {} ({who}): {word}: {}",
                side.direction.as_str().to_lowercase(),
                side.summary
            )?;
            for a in &side.admin {
                let mut line = format!("    AdminNetworkPolicy {}", a.policy);
                if let Some(p) = a.priority {
                    let _ = write!(line, " (priority {p})");
                }
                match &a.matched {
                    Some(m) => {
                        let _ = write!(line, ": {} {} {}", m.path, quoted(&m.name), m.action);
                    }
                    None => line.push_str(": no rule matches"),
                }
                writeln!(f, "{line}")?;
            }
            if side.pod.is_some() && side.decided_by != Tier::SelfTraffic {
                if side.isolated {
                    writeln!(
                        f,
                        "    isolated by NetworkPolicy {}",
                        side.selected_by.join(", ")
                    )?;
                }
                for m in &side.allowed_by {
                    writeln!(
                        f,
                        "    allowed by NetworkPolicy {} {}: {}",
                        m.policy, m.path, m.detail
                    )?;
                }
                if side.isolated && side.allowed_by.is_empty() {
                    writeln!(f, "    no rule of these policies allows it")?;
                }
            }
            if let Some(b) = &side.baseline {
                match &b.matched {
                    Some(m) => writeln!(
                        f,
                        "    BaselineAdminNetworkPolicy {}: {} {} {}",
                        b.policy,
                        m.path,
                        quoted(&m.name),
                        m.action
                    )?,
                    None => writeln!(
                        f,
                        "    BaselineAdminNetworkPolicy {}: no rule matches",
                        b.policy
                    )?,
                }
            }
        }
        Ok(())
    }
}

fn quoted(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!("{name:?}")
    }
}

/// The reference evaluator over one cluster and policy set.
#[derive(Debug)]
pub struct Evaluator<'a> {
    cluster: &'a Cluster,
    policies: &'a PolicySet,
    nodes_by_ip: HashMap<IpAddr, Vec<&'a Node>>,
}

impl<'a> Evaluator<'a> {
    /// An evaluator for `policies` over `cluster`.
    pub fn new(cluster: &'a Cluster, policies: &'a PolicySet) -> Self {
        let mut nodes_by_ip: HashMap<IpAddr, Vec<&Node>> = HashMap::new();
        for node in &cluster.nodes {
            for ip in &node.addresses {
                nodes_by_ip.entry(*ip).or_default().push(node);
            }
        }
        Self {
            cluster,
            policies,
            nodes_by_ip,
        }
    }

    /// True if the flow is allowed. The same decision as [`Self::explain`], without
    /// the account (no allocation, first match wins).
    pub fn allowed(&self, src: &Endpoint<'_>, dst: &Endpoint<'_>, probe: Probe) -> bool {
        if let (Some(a), Some(b)) = (src.any_pod(), dst.any_pod())
            && (std::ptr::eq(a, b) || (a.namespace == b.namespace && a.name == b.name))
        {
            return true;
        }
        self.side_allowed(Direction::Egress, src, dst, probe)
            && self.side_allowed(Direction::Ingress, dst, src, probe)
    }

    /// The decision of [`Self::side`], tier by tier in the same order.
    fn side_allowed(
        &self,
        direction: Direction,
        subject: &Endpoint<'_>,
        peer: &Endpoint<'_>,
        probe: Probe,
    ) -> bool {
        let Some(pod) = subject.policy_pod() else {
            return true;
        };
        let dst_pod = match direction {
            Direction::Egress => peer.any_pod(),
            Direction::Ingress => Some(pod),
        };
        for anp in &self.policies.admin_policies {
            if !self.subject_matches(&anp.subject, pod) {
                continue;
            }
            let rules = anp.rules(direction);
            match self
                .first_admin_index(rules, peer, dst_pod, probe)
                .map(|i| rules[i].action)
            {
                Some(Action::Allow) => return true,
                Some(Action::Deny) => return false,
                Some(Action::Pass) => break,
                None => {}
            }
        }
        let mut isolated = false;
        for np in &self.policies.network_policies {
            let Some(rules) = np.rules(direction) else {
                continue;
            };
            if !np_selects(np, pod) {
                continue;
            }
            isolated = true;
            let allows = rules.iter().any(|rule| {
                !matches!(np_port_match(&rule.ports, dst_pod, probe), PortMatch::None)
                    && match &rule.peers {
                        Peers::Any => true,
                        Peers::List(peers) => {
                            peers.iter().any(|p| self.np_peer_matches(np, p, peer))
                        }
                    }
            });
            if allows {
                return true;
            }
        }
        if isolated {
            return false;
        }
        if let Some(banp) = &self.policies.baseline
            && self.subject_matches(&banp.subject, pod)
        {
            let rules = banp.rules(direction);
            if let Some(i) = self.first_admin_index(rules, peer, dst_pod, probe) {
                return rules[i].action == Action::Allow;
            }
        }
        true
    }

    /// The verdict with its full account.
    pub fn explain(&self, src: &Endpoint<'_>, dst: &Endpoint<'_>, probe: Probe) -> Explanation {
        let same_pod = match (src.any_pod(), dst.any_pod()) {
            (Some(a), Some(b)) => {
                std::ptr::eq(a, b) || (a.namespace == b.namespace && a.name == b.name)
            }
            _ => false,
        };
        let (egress, ingress) = if same_pod {
            let summary = "a pod's traffic to itself is always allowed".to_owned();
            let mut e = Side::open(Direction::Egress, summary.clone(), Tier::SelfTraffic);
            let mut i = Side::open(Direction::Ingress, summary, Tier::SelfTraffic);
            let who = src.any_pod().map(|p| format!("{}/{}", p.namespace, p.name));
            e.pod.clone_from(&who);
            i.pod = who;
            (e, i)
        } else {
            (
                self.side(Direction::Egress, src, dst, probe),
                self.side(Direction::Ingress, dst, src, probe),
            )
        };
        Explanation {
            from: src.to_string(),
            to: dst.to_string(),
            port: probe.port,
            protocol: probe.protocol.to_string(),
            allowed: egress.allowed && ingress.allowed,
            egress,
            ingress,
        }
    }

    /// Decides one direction for `subject` (the pod whose policies apply) talking with
    /// `peer`.
    fn side(
        &self,
        direction: Direction,
        subject: &Endpoint<'_>,
        peer: &Endpoint<'_>,
        probe: Probe,
    ) -> Side {
        let Some(pod) = subject.policy_pod() else {
            let summary = match subject {
                Endpoint::Pod { .. } => {
                    "a host-network pod: policies do not apply to it".to_owned()
                }
                Endpoint::Address(_) => "not a pod: no policy applies on this side".to_owned(),
            };
            return Side::open(direction, summary, Tier::NotApplicable);
        };
        // Named ports resolve on the destination.
        let dst_pod = match direction {
            Direction::Egress => peer.any_pod(),
            Direction::Ingress => Some(pod),
        };
        let mut side = Side::open(direction, String::new(), Tier::Default);
        side.pod = Some(format!("{}/{}", pod.namespace, pod.name));
        let field = match direction {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        };

        // Tier 1: AdminNetworkPolicies.
        for anp in &self.policies.admin_policies {
            if !self.subject_matches(&anp.subject, pod) {
                continue;
            }
            let matched = self.first_admin_match(anp.rules(direction), peer, dst_pod, probe, field);
            let action = matched.as_ref().map(|m| m.action);
            let priority = anp.priority;
            side.admin.push(AdminEvaluation {
                policy: anp.name.clone(),
                priority: Some(priority),
                matched,
            });
            match action {
                Some(Action::Allow) => {
                    side.decided_by = Tier::AdminNetworkPolicy;
                    side.summary = format!(
                        "allowed by AdminNetworkPolicy {} (priority {priority})",
                        anp.name
                    );
                    return side;
                }
                Some(Action::Deny) => {
                    side.allowed = false;
                    side.decided_by = Tier::AdminNetworkPolicy;
                    side.summary = format!(
                        "denied by AdminNetworkPolicy {} (priority {priority})",
                        anp.name
                    );
                    return side;
                }
                Some(Action::Pass) => break,
                None => {}
            }
        }

        // Tier 2: NetworkPolicies.
        for np in &self.policies.network_policies {
            let Some(rules) = np.rules(direction) else {
                continue;
            };
            if !np_selects(np, pod) {
                continue;
            }
            side.selected_by.push(np.reference());
            for (ri, rule) in rules.iter().enumerate() {
                self.np_rule_matches(
                    np,
                    rule,
                    ri,
                    field,
                    peer,
                    dst_pod,
                    probe,
                    &mut side.allowed_by,
                );
            }
        }
        if !side.selected_by.is_empty() {
            side.isolated = true;
            side.decided_by = Tier::NetworkPolicy;
            side.allowed = !side.allowed_by.is_empty();
            side.summary = if side.allowed {
                format!(
                    "isolated, and allowed by NetworkPolicy {}",
                    dedup_policies(&side.allowed_by)
                )
            } else {
                format!(
                    "isolated by NetworkPolicy {}, and no rule allows it",
                    side.selected_by.join(", ")
                )
            };
            return side;
        }

        // Tier 3: the baseline.
        if let Some(banp) = &self.policies.baseline
            && self.subject_matches(&banp.subject, pod)
        {
            let matched =
                self.first_admin_match(banp.rules(direction), peer, dst_pod, probe, field);
            let action = matched.as_ref().map(|m| m.action);
            side.baseline = Some(AdminEvaluation {
                policy: banp.name.clone(),
                priority: None,
                matched,
            });
            match action {
                Some(Action::Allow) => {
                    side.decided_by = Tier::BaselineAdminNetworkPolicy;
                    side.summary = format!(
                        "not isolated; allowed by BaselineAdminNetworkPolicy {}",
                        banp.name
                    );
                    return side;
                }
                Some(Action::Deny) => {
                    side.allowed = false;
                    side.decided_by = Tier::BaselineAdminNetworkPolicy;
                    side.summary = format!(
                        "not isolated; denied by BaselineAdminNetworkPolicy {}",
                        banp.name
                    );
                    return side;
                }
                _ => {}
            }
        }
        side.summary = format!(
            "not isolated: no policy restricts {} of {}",
            direction.as_str().to_lowercase(),
            side.pod.as_deref().unwrap_or_default()
        );
        side
    }

    fn first_admin_index(
        &self,
        rules: &[AdminRule],
        peer: &Endpoint<'_>,
        dst_pod: Option<&Pod>,
        probe: Probe,
    ) -> Option<usize> {
        rules.iter().position(|rule| {
            rule.peers.iter().any(|p| self.admin_peer_matches(p, peer))
                && admin_ports_match(rule.ports.as_deref(), dst_pod, probe)
        })
    }

    fn first_admin_match(
        &self,
        rules: &[AdminRule],
        peer: &Endpoint<'_>,
        dst_pod: Option<&Pod>,
        probe: Probe,
        field: &str,
    ) -> Option<AdminRuleMatch> {
        self.first_admin_index(rules, peer, dst_pod, probe)
            .map(|i| AdminRuleMatch {
                index: i,
                name: rules[i].name.clone(),
                action: rules[i].action,
                path: format!("spec.{field}[{i}]"),
            })
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one call site; the arguments are the rule's context"
    )]
    fn np_rule_matches(
        &self,
        np: &NetworkPolicy,
        rule: &rampart_model::Rule,
        ri: usize,
        field: &str,
        peer: &Endpoint<'_>,
        dst_pod: Option<&Pod>,
        probe: Probe,
        out: &mut Vec<NetworkPolicyMatch>,
    ) {
        let peers_field = if field == "ingress" { "from" } else { "to" };
        let port = match np_port_match(&rule.ports, dst_pod, probe) {
            PortMatch::None => return,
            PortMatch::All => None,
            PortMatch::Index(i) => Some(i),
        };
        let port_text = match port {
            None => "any port".to_owned(),
            Some(i) => format!("port {}", rule.ports[i]),
        };
        let port_path = port.map(|i| format!(" ports[{i}]")).unwrap_or_default();
        match &rule.peers {
            Peers::Any => out.push(NetworkPolicyMatch {
                policy: np.reference(),
                rule: ri,
                peer: None,
                port,
                path: format!("spec.{field}[{ri}]{port_path}"),
                detail: format!(
                    "every {} on {port_text}",
                    if field == "ingress" {
                        "source"
                    } else {
                        "destination"
                    }
                ),
            }),
            Peers::List(peers) => {
                for (pi, p) in peers.iter().enumerate() {
                    if self.np_peer_matches(np, p, peer) {
                        out.push(NetworkPolicyMatch {
                            policy: np.reference(),
                            rule: ri,
                            peer: Some(pi),
                            port,
                            path: format!("spec.{field}[{ri}].{peers_field}[{pi}]{port_path}"),
                            detail: format!("{} on {port_text}", describe_peer(p)),
                        });
                    }
                }
            }
        }
    }

    fn ns_labels(&self, ns: &str) -> Option<&rampart_model::Labels> {
        self.cluster.namespace_labels(ns)
    }

    fn ns_matches(&self, selector: &LabelSelector, ns: &str) -> bool {
        match self.ns_labels(ns) {
            Some(labels) => selector.matches(labels),
            // A namespace nobody declared carries only its name label.
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

    fn np_peer_matches(&self, np: &NetworkPolicy, peer: &Peer, ep: &Endpoint<'_>) -> bool {
        match peer {
            Peer::Pods { namespaces, pods } => match ep.policy_pod() {
                None => false,
                Some(pod) => {
                    let ns_ok = match namespaces {
                        NamespaceMatch::Own => pod.namespace == np.namespace,
                        NamespaceMatch::Selector(sel) => self.ns_matches(sel, &pod.namespace),
                    };
                    ns_ok && pods.matches(&pod.labels)
                }
            },
            Peer::IpBlock(block) => ep.ip().is_some_and(|ip| block.contains(ip)),
        }
    }

    fn admin_peer_matches(&self, peer: &AdminPeer, ep: &Endpoint<'_>) -> bool {
        match peer {
            AdminPeer::Namespaces(sel) => ep
                .policy_pod()
                .is_some_and(|p| self.ns_matches(sel, &p.namespace)),
            AdminPeer::Pods { namespaces, pods } => ep.policy_pod().is_some_and(|p| {
                self.ns_matches(namespaces, &p.namespace) && pods.matches(&p.labels)
            }),
            AdminPeer::Nodes(sel) => ep.ip().is_some_and(|ip| {
                self.nodes_by_ip
                    .get(&ip)
                    .is_some_and(|nodes| nodes.iter().any(|n| sel.matches(&n.labels)))
            }),
            AdminPeer::Networks(cidrs) => ep
                .ip()
                .is_some_and(|ip| cidrs.iter().any(|c| c.contains(ip))),
        }
    }
}

/// True if a NetworkPolicy selects `pod` (same namespace, not on the host network,
/// labels match).
pub fn np_selects(np: &NetworkPolicy, pod: &Pod) -> bool {
    !pod.host_network && pod.namespace == np.namespace && np.pod_selector.matches(&pod.labels)
}

enum PortMatch {
    None,
    All,
    Index(usize),
}

fn np_port_match(ports: &[PolicyPort], dst_pod: Option<&Pod>, probe: Probe) -> PortMatch {
    if ports.is_empty() {
        return PortMatch::All;
    }
    for (i, p) in ports.iter().enumerate() {
        if np_port_matches(p, dst_pod, probe) {
            return PortMatch::Index(i);
        }
    }
    PortMatch::None
}

/// True if one NetworkPolicy port entry matches the probe (named ports resolved on
/// `dst_pod`).
pub fn np_port_matches(p: &PolicyPort, dst_pod: Option<&Pod>, probe: Probe) -> bool {
    p.protocol == probe.protocol
        && match &p.port {
            PortSpec::Any => true,
            PortSpec::Range(r) => r.contains(probe.port),
            PortSpec::Named(name) => {
                dst_pod.is_some_and(|d| d.named_port_is(name, probe.protocol, probe.port))
            }
        }
}

/// True if an admin rule's port list matches the probe (`None` matches every port).
pub fn admin_ports_match(ports: Option<&[AdminPort]>, dst_pod: Option<&Pod>, probe: Probe) -> bool {
    match ports {
        None => true,
        Some(list) => list.iter().any(|p| admin_port_matches(p, dst_pod, probe)),
    }
}

/// True if one admin port entry matches the probe.
pub fn admin_port_matches(p: &AdminPort, dst_pod: Option<&Pod>, probe: Probe) -> bool {
    match p {
        AdminPort::Number { protocol, port } => *protocol == probe.protocol && *port == probe.port,
        AdminPort::Named(name) => {
            dst_pod.is_some_and(|d| d.named_port_is(name, probe.protocol, probe.port))
        }
        AdminPort::Range { protocol, range } => {
            *protocol == probe.protocol && range.contains(probe.port)
        }
    }
}

/// A peer in words.
pub fn describe_peer(peer: &Peer) -> String {
    match peer {
        Peer::Pods {
            namespaces: NamespaceMatch::Own,
            pods,
        } => format!("pods {pods} in the policy's namespace"),
        Peer::Pods {
            namespaces: NamespaceMatch::Selector(ns),
            pods,
        } if pods.is_everything() => {
            format!("every pod in namespaces {ns}")
        }
        Peer::Pods {
            namespaces: NamespaceMatch::Selector(ns),
            pods,
        } => format!("pods {pods} in namespaces {ns}"),
        Peer::IpBlock(b) => format!("ipBlock {b}"),
    }
}

fn dedup_policies(matches: &[NetworkPolicyMatch]) -> String {
    let mut names: Vec<&str> = matches.iter().map(|m| m.policy.as_str()).collect();
    names.dedup();
    names.join(", ")
}
