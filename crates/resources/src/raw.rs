//! Serde types for the Kubernetes kinds Rampart reads, as they appear on the wire.
//!
//! Policy specs refuse unknown fields (the API server's strict field validation, so a
//! typo such as `podselector` is an error instead of a policy that selects every pod);
//! metadata, pods, namespaces and nodes accept everything `kubectl get -o yaml` prints
//! and read only what matters to policies.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// `metadata`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawMeta {
    pub(crate) name: Option<String>,
    pub(crate) namespace: Option<String>,
    #[serde(default)]
    pub(crate) labels: Option<BTreeMap<String, String>>,
}

/// Any object: only its metadata.
#[derive(Debug, Deserialize)]
pub(crate) struct RawObject<S, T = ()> {
    #[serde(default)]
    pub(crate) metadata: RawMeta,
    pub(crate) spec: Option<S>,
    pub(crate) status: Option<T>,
}

/// A label selector.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawLabelSelector {
    #[serde(default)]
    pub(crate) match_labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub(crate) match_expressions: Option<Vec<RawRequirement>>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRequirement {
    #[serde(default)]
    pub(crate) key: String,
    #[serde(default)]
    pub(crate) operator: String,
    #[serde(default)]
    pub(crate) values: Option<Vec<String>>,
}

/// An `int-or-string` field (`port: 80` or `port: http`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IntOrString {
    Int(i64),
    Str(String),
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IntOrString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntOrString, E> {
                Ok(IntOrString::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntOrString, E> {
                i64::try_from(v)
                    .map(IntOrString::Int)
                    .map_err(|_| E::custom("integer out of range"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IntOrString, E> {
                Ok(IntOrString::Str(v.to_owned()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------
// Core kinds.

/// `Pod.spec`, the parts policies need.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawPodSpec {
    #[serde(default)]
    pub(crate) containers: Option<Vec<RawContainer>>,
    #[serde(default)]
    pub(crate) init_containers: Option<Vec<RawContainer>>,
    #[serde(default)]
    pub(crate) host_network: Option<bool>,
    #[serde(default)]
    pub(crate) node_name: Option<String>,
}

/// A container.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawContainer {
    #[serde(default)]
    pub(crate) ports: Option<Vec<RawContainerPort>>,
    /// `Always` on an init container makes it a sidecar, whose ports count.
    #[serde(default)]
    pub(crate) restart_policy: Option<String>,
}

/// A container port.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawContainerPort {
    #[serde(default)]
    pub(crate) container_port: Option<i64>,
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) protocol: Option<String>,
}

/// `Pod.status`, the parts policies need.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawPodStatus {
    #[serde(default, rename = "podIP")]
    pub(crate) pod_ip: Option<String>,
    #[serde(default, rename = "podIPs")]
    pub(crate) pod_ips: Option<Vec<RawPodIp>>,
}

/// One `status.podIPs` entry.
#[derive(Debug, Deserialize)]
pub(crate) struct RawPodIp {
    #[serde(default)]
    pub(crate) ip: Option<String>,
}

/// `Node.status`, the parts policies need.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawNodeStatus {
    #[serde(default)]
    pub(crate) addresses: Option<Vec<RawNodeAddress>>,
}

/// One `status.addresses` entry.
#[derive(Debug, Deserialize)]
pub(crate) struct RawNodeAddress {
    #[serde(default, rename = "type")]
    pub(crate) kind: Option<String>,
    #[serde(default)]
    pub(crate) address: Option<String>,
}

// ---------------------------------------------------------------------------------------
// networking.k8s.io/v1 NetworkPolicy.

/// `NetworkPolicy.spec`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawNetworkPolicySpec {
    #[serde(default)]
    pub(crate) pod_selector: Option<RawLabelSelector>,
    #[serde(default)]
    pub(crate) ingress: Option<Vec<RawNetworkPolicyRule>>,
    #[serde(default)]
    pub(crate) egress: Option<Vec<RawNetworkPolicyRule>>,
    #[serde(default)]
    pub(crate) policy_types: Option<Vec<String>>,
}

/// An ingress rule (`from`) or an egress rule (`to`); the decoder refuses the field
/// that does not belong to the direction.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawNetworkPolicyRule {
    #[serde(default)]
    pub(crate) ports: Option<Vec<RawNetworkPolicyPort>>,
    #[serde(default)]
    pub(crate) from: Option<Vec<RawNetworkPolicyPeer>>,
    #[serde(default)]
    pub(crate) to: Option<Vec<RawNetworkPolicyPeer>>,
}

/// A peer.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawNetworkPolicyPeer {
    #[serde(default)]
    pub(crate) pod_selector: Option<RawLabelSelector>,
    #[serde(default)]
    pub(crate) namespace_selector: Option<RawLabelSelector>,
    #[serde(default)]
    pub(crate) ip_block: Option<RawIpBlock>,
}

/// `ipBlock`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawIpBlock {
    #[serde(default)]
    pub(crate) cidr: Option<String>,
    #[serde(default)]
    pub(crate) except: Option<Vec<String>>,
}

/// A NetworkPolicy port.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawNetworkPolicyPort {
    #[serde(default)]
    pub(crate) protocol: Option<String>,
    #[serde(default)]
    pub(crate) port: Option<IntOrString>,
    #[serde(default)]
    pub(crate) end_port: Option<i64>,
}

// ---------------------------------------------------------------------------------------
// policy.networking.k8s.io/v1alpha1 AdminNetworkPolicy and BaselineAdminNetworkPolicy.

/// `spec` of both admin kinds (`priority` only on AdminNetworkPolicy).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawAdminSpec {
    #[serde(default)]
    pub(crate) priority: Option<i64>,
    #[serde(default)]
    pub(crate) subject: Option<RawAdminSubject>,
    #[serde(default)]
    pub(crate) ingress: Option<Vec<RawAdminRule>>,
    #[serde(default)]
    pub(crate) egress: Option<Vec<RawAdminRule>>,
}

/// `subject`: exactly one field.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawAdminSubject {
    #[serde(default)]
    pub(crate) namespaces: Option<RawLabelSelector>,
    #[serde(default)]
    pub(crate) pods: Option<RawNamespacedPod>,
}

/// `pods` in a subject or peer: both selectors required.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawNamespacedPod {
    #[serde(default)]
    pub(crate) namespace_selector: Option<RawLabelSelector>,
    #[serde(default)]
    pub(crate) pod_selector: Option<RawLabelSelector>,
}

/// An admin rule (`from` for ingress, `to` for egress).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawAdminRule {
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) action: Option<String>,
    #[serde(default)]
    pub(crate) from: Option<Vec<RawAdminPeer>>,
    #[serde(default)]
    pub(crate) to: Option<Vec<RawAdminPeer>>,
    #[serde(default)]
    pub(crate) ports: Option<Vec<RawAdminPort>>,
}

/// An admin peer: exactly one field.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawAdminPeer {
    #[serde(default)]
    pub(crate) namespaces: Option<RawLabelSelector>,
    #[serde(default)]
    pub(crate) pods: Option<RawNamespacedPod>,
    #[serde(default)]
    pub(crate) nodes: Option<RawLabelSelector>,
    #[serde(default)]
    pub(crate) networks: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) domain_names: Option<Vec<String>>,
}

/// An admin port: exactly one field.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawAdminPort {
    #[serde(default)]
    pub(crate) port_number: Option<RawAdminPortNumber>,
    #[serde(default)]
    pub(crate) named_port: Option<String>,
    #[serde(default)]
    pub(crate) port_range: Option<RawAdminPortRange>,
}

/// `portNumber`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawAdminPortNumber {
    #[serde(default)]
    pub(crate) protocol: Option<String>,
    #[serde(default)]
    pub(crate) port: Option<i64>,
}

/// `portRange`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawAdminPortRange {
    #[serde(default)]
    pub(crate) protocol: Option<String>,
    #[serde(default)]
    pub(crate) start: Option<i64>,
    #[serde(default)]
    pub(crate) end: Option<i64>,
}
