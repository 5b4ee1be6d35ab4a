//! Network policies of the three tiers, validated and defaulted:
//!
//! 1. [`AdminNetworkPolicy`] (policy.networking.k8s.io/v1alpha1): cluster-scoped, ordered
//!    by `priority` (lower first), rules in order, first match decides Allow, Deny or
//!    Pass (on to the next tier).
//! 2. [`NetworkPolicy`] (networking.k8s.io/v1): namespaced, allow-only; a pod selected for
//!    a direction is isolated in that direction and only the union of the rules of the
//!    policies selecting it is allowed.
//! 3. [`BaselineAdminNetworkPolicy`]: the cluster-wide default (one, named `default`),
//!    consulted for a direction only when no NetworkPolicy isolates the pod.

use std::fmt;

use crate::labels::LabelSelector;
use crate::net::{Cidr, IpBlock};
use crate::port::{PolicyPort, PortName, PortRange, Protocol};

/// Which way traffic goes, seen from the pod a policy is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Traffic into the pod.
    Ingress,
    /// Traffic out of the pod.
    Egress,
}

impl Direction {
    /// `Ingress` or `Egress`, as the API spells policy types.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "Ingress",
            Direction::Egress => "Egress",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which namespaces a pod peer looks in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NamespaceMatch {
    /// The policy's own namespace (a peer with only `podSelector`).
    Own,
    /// Namespaces whose labels match (`namespaceSelector`; `{}` is every namespace).
    Selector(LabelSelector),
}

/// One peer of a NetworkPolicy rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Peer {
    /// Pods: `podSelector` and/or `namespaceSelector` in one peer (both must match).
    Pods {
        /// Where to look.
        namespaces: NamespaceMatch,
        /// Which pods there (`{}` when the peer had only a `namespaceSelector`).
        pods: LabelSelector,
    },
    /// Addresses (`ipBlock`), applied to pod IPs as well.
    IpBlock(IpBlock),
}

/// The peers of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Peers {
    /// `from`/`to` absent or empty: every source or destination, in or out of the cluster.
    Any,
    /// Any of these peers (a non-empty list).
    List(Vec<Peer>),
}

/// One ingress or egress rule of a NetworkPolicy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Who may connect (ingress) or be connected to (egress).
    pub peers: Peers,
    /// On which ports; empty means every port and protocol.
    pub ports: Vec<PolicyPort>,
}

/// A NetworkPolicy (networking.k8s.io/v1), defaulted as the API server does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The pods it selects in its namespace.
    pub pod_selector: LabelSelector,
    /// Ingress rules, present iff `Ingress` is in `policyTypes` (after defaulting).
    pub ingress: Option<Vec<Rule>>,
    /// Egress rules, present iff `Egress` is in `policyTypes` (after defaulting).
    pub egress: Option<Vec<Rule>>,
}

impl NetworkPolicy {
    /// The rules for a direction, if the policy isolates in that direction.
    pub fn rules(&self, direction: Direction) -> Option<&[Rule]> {
        match direction {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }

    /// `namespace/name`.
    pub fn reference(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// What an admin rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Action {
    /// Allow, skipping every lower tier.
    Allow,
    /// Deny, skipping every lower tier.
    Deny,
    /// Skip the rest of the admin tier; NetworkPolicies (then the baseline) decide.
    Pass,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Allow => "Allow",
            Action::Deny => "Deny",
            Action::Pass => "Pass",
        })
    }
}

/// The pods an admin policy applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// Every pod in the matching namespaces.
    Namespaces(LabelSelector),
    /// Matching pods in matching namespaces.
    Pods {
        /// Namespace selector.
        namespaces: LabelSelector,
        /// Pod selector.
        pods: LabelSelector,
    },
}

/// A peer of an admin rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AdminPeer {
    /// Every pod in the matching namespaces.
    Namespaces(LabelSelector),
    /// Matching pods in matching namespaces.
    Pods {
        /// Namespace selector.
        namespaces: LabelSelector,
        /// Pod selector.
        pods: LabelSelector,
    },
    /// Nodes with matching labels: their addresses, and host-network pods on them
    /// (egress only).
    Nodes(LabelSelector),
    /// Address ranges (egress only); applied to pod IPs as well.
    Networks(Vec<Cidr>),
}

/// A port of an admin rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AdminPort {
    /// One port number.
    Number {
        /// Protocol.
        protocol: Protocol,
        /// Port.
        port: u16,
    },
    /// A named container port of the destination pod, whatever its protocol.
    Named(PortName),
    /// A range of ports.
    Range {
        /// Protocol.
        protocol: Protocol,
        /// The ports.
        range: PortRange,
    },
}

impl fmt::Display for AdminPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminPort::Number { protocol, port } => write!(f, "{port}/{protocol}"),
            AdminPort::Named(name) => write!(f, "{name}"),
            AdminPort::Range { protocol, range } => write!(f, "{range}/{protocol}"),
        }
    }
}

/// One rule of an admin or baseline policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AdminRule {
    /// Its name (may be empty).
    pub name: String,
    /// What it does.
    pub action: Action,
    /// Who it matches (non-empty).
    pub peers: Vec<AdminPeer>,
    /// On which ports; `None` means every port.
    pub ports: Option<Vec<AdminPort>>,
}

/// An AdminNetworkPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminNetworkPolicy {
    /// Name.
    pub name: String,
    /// 0 to 1000; lower is evaluated first.
    pub priority: u32,
    /// The pods it applies to.
    pub subject: Subject,
    /// Ingress rules, in order.
    pub ingress: Vec<AdminRule>,
    /// Egress rules, in order.
    pub egress: Vec<AdminRule>,
}

/// The BaselineAdminNetworkPolicy (named `default`); its rules never Pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaselineAdminNetworkPolicy {
    /// Name (always `default`).
    pub name: String,
    /// The pods it applies to.
    pub subject: Subject,
    /// Ingress rules, in order.
    pub ingress: Vec<AdminRule>,
    /// Egress rules, in order.
    pub egress: Vec<AdminRule>,
}

impl AdminNetworkPolicy {
    /// The rules for a direction.
    pub fn rules(&self, direction: Direction) -> &[AdminRule] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

impl BaselineAdminNetworkPolicy {
    /// The rules for a direction.
    pub fn rules(&self, direction: Direction) -> &[AdminRule] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

/// Every policy in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySet {
    /// NetworkPolicies, sorted by namespace and name.
    pub network_policies: Vec<NetworkPolicy>,
    /// AdminNetworkPolicies, sorted by priority then name (the API leaves the order of
    /// equal priorities undefined; Rampart breaks ties by name).
    pub admin_policies: Vec<AdminNetworkPolicy>,
    /// The baseline, if any.
    pub baseline: Option<BaselineAdminNetworkPolicy>,
}

impl PolicySet {
    /// Sorts the policies into evaluation order.
    pub fn normalize(&mut self) {
        self.network_policies
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        self.admin_policies
            .sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
    }
}
