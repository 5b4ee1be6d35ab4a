//! The workloads of a cluster: namespaces, pods and nodes, as far as policies see them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use crate::labels::Labels;
use crate::port::{PortName, Protocol};

/// The label the API server puts on every namespace, holding its name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// Its name.
    pub name: String,
    /// Its labels, including `kubernetes.io/metadata.name`.
    pub labels: Labels,
}

impl Namespace {
    /// A namespace with only the name label, as the API server creates one.
    pub fn new(name: &str) -> Self {
        let labels = Labels::from([(NAMESPACE_NAME_LABEL.to_owned(), name.to_owned())]);
        Self {
            name: name.to_owned(),
            labels,
        }
    }
}

/// A container port a pod declares.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerPort {
    /// Its name, if any; policies can refer to it.
    pub name: Option<PortName>,
    /// The port number.
    pub port: u16,
    /// The protocol (TCP when not given).
    pub protocol: Protocol,
}

/// A pod's `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl fmt::Display for PodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: Labels,
    /// Container ports of every container, in order.
    pub ports: Vec<ContainerPort>,
    /// Pod IPs (`status.podIPs`, or `status.podIP`); the first is the primary one.
    pub ips: Vec<IpAddr>,
    /// True for pods on the host network: policies never select them and pod peers
    /// never match them; their traffic is the node's.
    pub host_network: bool,
    /// The node it runs on (`spec.nodeName`), if scheduled.
    pub node_name: Option<String>,
}

impl Pod {
    /// Its `namespace/name`.
    pub fn reference(&self) -> PodRef {
        PodRef {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// The port number a named port resolves to for `protocol`, if the pod declares one.
    pub fn resolve_port(&self, name: &PortName, protocol: Protocol) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.protocol == protocol && p.name.as_ref() == Some(name))
            .map(|p| p.port)
    }

    /// True if `name` resolves to `port` for `protocol` on this pod.
    pub fn named_port_is(&self, name: &PortName, protocol: Protocol, port: u16) -> bool {
        self.ports
            .iter()
            .any(|p| p.protocol == protocol && p.port == port && p.name.as_ref() == Some(name))
    }

    /// The primary IP, if the pod has one.
    pub fn primary_ip(&self) -> Option<IpAddr> {
        self.ips.first().copied()
    }
}

/// A node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: Labels,
    /// Its addresses (`status.addresses` of type InternalIP and ExternalIP).
    pub addresses: Vec<IpAddr>,
}

/// The workloads policies are evaluated against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cluster {
    /// Namespaces by name.
    pub namespaces: BTreeMap<String, Namespace>,
    /// Pods, sorted by namespace and name.
    pub pods: Vec<Pod>,
    /// Nodes, sorted by name.
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// The labels of a namespace (empty if unknown).
    pub fn namespace_labels(&self, name: &str) -> Option<&Labels> {
        self.namespaces.get(name).map(|n| &n.labels)
    }

    /// The pod `namespace/name`.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&Pod> {
        self.pods
            .binary_search_by(|p| (p.namespace.as_str(), p.name.as_str()).cmp(&(namespace, name)))
            .ok()
            .map(|i| &self.pods[i])
    }

    /// Sorts pods and nodes into their canonical order.
    pub fn normalize(&mut self) {
        self.pods
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    }
}
