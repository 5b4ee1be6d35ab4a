//! One flow, every layer: which layer and which rule lets it through or stops it.
//!
//! A flow from a source to a destination on a port and protocol crosses, in order:
//!
//! 1. segmentation, egress: the source pod's NetworkPolicies and admin tiers;
//! 2. perimeter, egress: the security groups of the port the source sits behind (a
//!    node's fixed IP, or the pod network in its allowed address pairs);
//! 3. perimeter, ingress: the security groups of the destination's port;
//! 4. host, ingress: the host firewall, when the destination is a node's address;
//! 5. segmentation, ingress: the destination pod's policies.
//!
//! A layer that has nothing to say about the flow is listed as not applicable, with why
//! (an address outside every port, traffic between two pods behind the same port, which
//! never leaves the node, a destination that is not a node). The flow is allowed when
//! every check that applies allows it; the explanation names the first check, in path
//! order, that stops it, and for every check the rules that decided.
//!
//! What it does not do: no I/O; the decisions themselves come from `rampart-policy`
//! (segmentation) and `rampart-firewall` (perimeter and host), the same code that the
//! analysis and the node agent use.

use std::fmt;
use std::net::IpAddr;

use rampart_firewall::explain::{self as fw, Flow, PortDecision};
use rampart_firewall::sg::SecurityGroups;
use rampart_firewall::talos::HostFirewall;
use rampart_model::{Cluster, PolicySet, Probe};
use rampart_policy::eval::{Endpoint, Evaluator, Explanation, Side, Tier};
use serde::Serialize;

/// Everything the layers decide with.
#[derive(Debug, Clone, Copy)]
pub struct Layers<'a> {
    /// Workloads (namespaces, pods, nodes).
    pub cluster: &'a Cluster,
    /// NetworkPolicies and the admin tiers.
    pub policies: &'a PolicySet,
    /// Security groups, ports and address groups.
    pub security_groups: &'a SecurityGroups,
    /// The host firewall of the nodes, if configured.
    pub host: Option<&'a HostFirewall>,
}

/// A layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// Security groups on the nodes' ports.
    Perimeter,
    /// The nodes' host firewall.
    Host,
    /// NetworkPolicies and admin policies on pods.
    Segmentation,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Perimeter => "perimeter",
            Layer::Host => "host",
            Layer::Segmentation => "segmentation",
        })
    }
}

/// One check on the flow's path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// The layer.
    pub layer: Layer,
    /// `egress` (leaving the source side) or `ingress` (reaching the destination side).
    pub direction: &'static str,
    /// Where it is enforced: `pod shop/web-0`, `port node-1 (node node-1)`, `node node-2`.
    pub at: String,
    /// Whether it lets the flow through.
    pub allowed: bool,
    /// One sentence.
    pub summary: String,
    /// The rules that decided, each with its object and field path.
    pub rules: Vec<String>,
}

/// A layer with nothing to say about the flow, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotApplicable {
    /// The layer.
    pub layer: Layer,
    /// Why.
    pub reason: String,
}

/// The account of one flow across the layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowExplanation {
    /// Source, e.g. `shop/web-0 (10.244.1.10)`.
    pub from: String,
    /// Destination.
    pub to: String,
    /// Destination port.
    pub port: u16,
    /// Protocol.
    pub protocol: String,
    /// The verdict.
    pub allowed: bool,
    /// The first check on the path that stops the flow.
    pub denied_by: Option<String>,
    /// Every check that applies, in path order.
    pub checks: Vec<Check>,
    /// Layers with nothing to say.
    pub not_applicable: Vec<NotApplicable>,
    /// The segmentation layer's full account, when a pod is involved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segmentation: Option<Explanation>,
}

impl fmt::Display for FlowExplanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match &self.denied_by {
            None if self.allowed => "ALLOWED".to_owned(),
            Some(by) => format!("DENIED by {by}"),
            None => "DENIED".to_owned(),
        };
        writeln!(
            f,
            "{} -> {} on {}/{}: {verdict}",
            self.from, self.to, self.port, self.protocol
        )?;
        for c in &self.checks {
            let word = if c.allowed { "allowed" } else { "denied" };
            writeln!(
                f,
                "  {} {} at {}: {word}: {}",
                c.layer, c.direction, c.at, c.summary
            )?;
            for r in &c.rules {
                writeln!(f, "    {r}")?;
            }
        }
        for n in &self.not_applicable {
            writeln!(f, "  {}: not applicable: {}", n.layer, n.reason)?;
        }
        Ok(())
    }
}

/// Resolves `namespace/pod` or an address against the cluster.
pub fn endpoint<'c>(cluster: &'c Cluster, text: &str) -> Option<Endpoint<'c>> {
    if let Some((ns, name)) = text.split_once('/')
        && let Some(pod) = cluster.pod(ns, name)
    {
        return Some(Endpoint::pod(pod));
    }
    let ip: IpAddr = text.parse().ok()?;
    Some(
        match cluster
            .pods
            .iter()
            .find(|p| !p.host_network && p.ips.contains(&ip))
        {
            Some(pod) => Endpoint::Pod { pod, ip: Some(ip) },
            None => match cluster.pods.iter().find(|p| p.ips.contains(&ip)) {
                Some(pod) => Endpoint::Pod { pod, ip: Some(ip) },
                None => Endpoint::Address(ip),
            },
        },
    )
}

/// Explains one flow across every layer.
pub fn explain(
    layers: &Layers<'_>,
    src: &Endpoint<'_>,
    dst: &Endpoint<'_>,
    probe: Probe,
) -> FlowExplanation {
    let mut checks = Vec::new();
    let mut not_applicable = Vec::new();

    // Segmentation: the policy engine's account, split into its two sides.
    let involves_pod = src.policy_pod().is_some() || dst.policy_pod().is_some();
    let segmentation = involves_pod
        .then(|| Evaluator::new(layers.cluster, layers.policies).explain(src, dst, probe));
    if let Some(e) = &segmentation
        && e.egress.decided_by != Tier::NotApplicable
    {
        checks.push(segmentation_check(&e.egress, "egress"));
    }

    // Perimeter and host: addresses.
    match (src.ip(), dst.ip()) {
        (Some(s), Some(d)) => {
            let flow = Flow {
                src: s,
                dst: d,
                protocol: probe.protocol.number(),
                port: probe.port,
            };
            perimeter_checks(layers, &flow, &mut checks, &mut not_applicable);
            host_check(layers, dst, &flow, &mut checks, &mut not_applicable);
        }
        _ => {
            let reason = "an end of the flow has no address".to_owned();
            not_applicable.push(NotApplicable {
                layer: Layer::Perimeter,
                reason: reason.clone(),
            });
            not_applicable.push(NotApplicable {
                layer: Layer::Host,
                reason,
            });
        }
    }

    if let Some(e) = &segmentation
        && e.ingress.decided_by != Tier::NotApplicable
    {
        checks.push(segmentation_check(&e.ingress, "ingress"));
    }
    if segmentation.is_none() {
        not_applicable.push(NotApplicable {
            layer: Layer::Segmentation,
            reason: "neither end is a pod that policies apply to".to_owned(),
        });
    }

    let denied_by = checks
        .iter()
        .find(|c| !c.allowed)
        .map(|c| format!("{} {} at {}", c.layer, c.direction, c.at));
    FlowExplanation {
        from: src.to_string(),
        to: dst.to_string(),
        port: probe.port,
        protocol: probe.protocol.to_string(),
        allowed: checks.iter().all(|c| c.allowed),
        denied_by,
        checks,
        not_applicable,
        segmentation,
    }
}

fn segmentation_check(side: &Side, direction: &'static str) -> Check {
    let mut rules = Vec::new();
    for a in &side.admin {
        if let Some(m) = &a.matched {
            let name = if m.name.is_empty() {
                String::new()
            } else {
                format!(" {:?}", m.name)
            };
            let prio = a
                .priority
                .map(|p| format!(" (priority {p})"))
                .unwrap_or_default();
            rules.push(format!(
                "AdminNetworkPolicy {}{prio} {}{name}: {}",
                a.policy, m.path, m.action
            ));
        }
    }
    if side.isolated && side.allowed_by.is_empty() {
        rules.push(format!(
            "isolated by NetworkPolicy {}; no rule allows it",
            side.selected_by.join(", ")
        ));
    }
    for m in &side.allowed_by {
        rules.push(format!(
            "NetworkPolicy {} {}: {}",
            m.policy, m.path, m.detail
        ));
    }
    if let Some(b) = &side.baseline
        && let Some(m) = &b.matched
    {
        let name = if m.name.is_empty() {
            String::new()
        } else {
            format!(" {:?}", m.name)
        };
        rules.push(format!(
            "BaselineAdminNetworkPolicy {} {}{name}: {}",
            b.policy, m.path, m.action
        ));
    }
    Check {
        layer: Layer::Segmentation,
        direction,
        at: format!("pod {}", side.pod.as_deref().unwrap_or("-")),
        allowed: side.allowed,
        summary: side.summary.clone(),
        rules,
    }
}

fn port_check(p: &PortDecision) -> Check {
    let at = match &p.node {
        Some(n) => format!("port {} (node {n})", p.port),
        None => format!("port {}", p.port),
    };
    let rules: Vec<String> = p
        .matched
        .iter()
        .map(|m| format!("SecurityGroup {} {}: {}", m.group, m.rule, m.text))
        .collect();
    let summary = if !p.port_security {
        "port security is off: no filtering".to_owned()
    } else if p.matched.is_empty() {
        format!(
            "no rule of the port's security groups allows it (address {})",
            p.address
        )
    } else if p.replies_allowed == Some(false) {
        "allowed, but its groups are stateless and no rule lets the replies back".to_owned()
    } else {
        format!("allowed by its security groups (address {})", p.address)
    };
    Check {
        layer: Layer::Perimeter,
        direction: p.direction,
        at,
        allowed: p.allowed && p.replies_allowed != Some(false),
        summary,
        rules,
    }
}

fn perimeter_checks(
    layers: &Layers<'_>,
    flow: &Flow,
    checks: &mut Vec<Check>,
    not_applicable: &mut Vec<NotApplicable>,
) {
    let d = fw::perimeter(layers.security_groups, flow);
    if !d.applies() {
        not_applicable.push(NotApplicable {
            layer: Layer::Perimeter,
            reason: "neither address is behind a port with security groups".to_owned(),
        });
        return;
    }
    // Two ends behind the same port: the traffic never crosses it.
    let same: Vec<&str> = d
        .egress
        .iter()
        .filter(|e| d.ingress.iter().any(|i| i.port == e.port))
        .map(|e| e.port.as_str())
        .collect();
    if !same.is_empty() {
        not_applicable.push(NotApplicable {
            layer: Layer::Perimeter,
            reason: format!(
                "both ends are behind port {}: the traffic does not cross it",
                same.join(", ")
            ),
        });
        return;
    }
    checks.extend(d.egress.iter().chain(&d.ingress).map(port_check));
}

/// True if `ip` is a node's address: a Node's InternalIP/ExternalIP, or the host
/// address of a port bound to a node.
fn node_of(layers: &Layers<'_>, ip: IpAddr) -> Option<String> {
    if let Some(n) = layers
        .cluster
        .nodes
        .iter()
        .find(|n| n.addresses.contains(&ip))
    {
        return Some(n.name.clone());
    }
    layers
        .security_groups
        .ports
        .iter()
        .find(|p| {
            p.node.is_some()
                && p.addresses
                    .iter()
                    .any(|c| c.contains(ip) && c.prefix() == c.family().bits())
        })
        .and_then(|p| p.node.clone())
}

fn host_check(
    layers: &Layers<'_>,
    dst: &Endpoint<'_>,
    flow: &Flow,
    checks: &mut Vec<Check>,
    not_applicable: &mut Vec<NotApplicable>,
) {
    let Some(node) = node_of(layers, flow.dst) else {
        let reason = match dst.any_pod() {
            Some(_) => "the destination is a pod, not a node's own address".to_owned(),
            None => "the destination is not a node's address".to_owned(),
        };
        not_applicable.push(NotApplicable {
            layer: Layer::Host,
            reason,
        });
        return;
    };
    let Some(host) = layers.host else {
        not_applicable.push(NotApplicable {
            layer: Layer::Host,
            reason: format!("no host firewall is configured for node {node}"),
        });
        return;
    };
    let d = fw::host(host, flow);
    checks.push(Check {
        layer: Layer::Host,
        direction: "ingress",
        at: format!("node {node}"),
        allowed: d.allowed,
        summary: d.summary,
        rules: d
            .rule
            .into_iter()
            .map(|r| {
                format!(
                    "NetworkRuleConfig {r} (default action {})",
                    d.default_action
                )
            })
            .collect(),
    });
}
