//! Rampart's domain model: the validated types every layer reasons about.
//!
//! What it holds: IP prefixes and sets of them, port ranges and protocols, labels and
//! label selectors, the workloads of a cluster (namespaces, pods, nodes), network
//! policies of every tier (NetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy)
//! in a form that cannot be invalid, flows with their verdicts, and timestamps as text.
//!
//! What it does not do: no parsing of documents (see `rampart-resources`), no policy
//! evaluation (see `rampart-policy`), no I/O, no clock.

pub mod cluster;
pub mod labels;
pub mod net;
pub mod policy;
pub mod port;
pub mod time;

pub use cluster::{Cluster, ContainerPort, NAMESPACE_NAME_LABEL, Namespace, Node, Pod, PodRef};
pub use labels::{LabelSelector, Labels, Requirement};
pub use net::{Cidr, CidrError, Family, IpBlock, IpRange, IpSet};
pub use policy::{
    Action, AdminNetworkPolicy, AdminPeer, AdminPort, AdminRule, BaselineAdminNetworkPolicy,
    Direction, NamespaceMatch, NetworkPolicy, Peer, Peers, PolicySet, Rule, Subject,
};
pub use port::{PolicyPort, PortName, PortRange, PortSpec, Probe, Protocol};
