//! Decoding of the cluster and policy kinds into the model, with the API server's
//! defaulting and validation.
//!
//! Kinds read: `v1` Namespace, Pod and Node; `networking.k8s.io/v1` NetworkPolicy;
//! `policy.networking.k8s.io/v1alpha1` AdminNetworkPolicy and BaselineAdminNetworkPolicy.
//! Documents of other kinds are skipped and listed in [`ClusterInput::skipped`]; a known
//! kind under an unsupported `apiVersion` is an error, never silently skipped.
//!
//! Defaulting, as the API server does it: a missing `metadata.namespace` is `default`;
//! every namespace carries the label `kubernetes.io/metadata.name`; a missing port
//! `protocol` is TCP; an empty `policyTypes` is `[Ingress]`, plus `Egress` when the
//! policy has egress rules; a missing `podSelector` selects every pod of the namespace.
//!
//! Validation reports every error of every document at once. Pods that name a namespace
//! no document declares get one with only the name label, and a warning.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use rampart_model::labels::{
    dns_label_errors, dns_subdomain_errors, label_key_errors, label_value_errors,
};
use rampart_model::net::parse_ip_sloppy;
use rampart_model::port::port_name_errors;
use rampart_model::{
    Action, AdminNetworkPolicy, AdminPeer, AdminPort, AdminRule, BaselineAdminNetworkPolicy, Cidr,
    Cluster, ContainerPort, Family, IpBlock, LabelSelector, Labels, NAMESPACE_NAME_LABEL,
    Namespace, NamespaceMatch, NetworkPolicy, Node, Peer, Peers, Pod, PolicyPort, PolicySet,
    PortName, PortRange, PortSpec, Protocol, Requirement, Rule, Subject,
};

use crate::diag::{Diagnostic, Diagnostics, FieldPath, Location, ObjectErrors, Severity};
use crate::document::{Document, parse_sources};
use crate::raw::*;
use crate::source::read_sources;

/// The most rules an admin policy may have per direction, peers per rule, ports per rule
/// (the CRD's limits).
const ADMIN_MAX_ITEMS: usize = 100;
/// The most CIDRs in one `networks` peer.
const ADMIN_MAX_NETWORKS: usize = 25;

/// A document that was read but is not of a kind the policy engine uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Where it is.
    pub location: Location,
    /// Its `apiVersion`.
    pub api_version: String,
    /// Its `kind`.
    pub kind: String,
    /// Its name, if it has one.
    pub name: Option<String>,
}

/// Everything read from the inputs: workloads, policies and what was left aside.
#[derive(Debug, Clone, Default)]
pub struct ClusterInput {
    /// Namespaces, pods, nodes.
    pub cluster: Cluster,
    /// Policies of every tier, in evaluation order.
    pub policies: PolicySet,
    /// Where each policy was read, by `Kind name` or `Kind namespace/name`.
    pub origins: BTreeMap<String, Location>,
    /// Documents of other kinds.
    pub skipped: Vec<Skipped>,
    /// Things worth knowing that do not stop the analysis.
    pub warnings: Diagnostics,
}

/// Reads, parses and decodes `paths` (files, directories, `-`), reporting every error of
/// every stage together.
pub fn load_cluster<S: AsRef<str>>(paths: &[S]) -> Result<ClusterInput, Diagnostics> {
    let sources = read_sources(paths)?;
    let (docs, mut errors) = parse_sources(&sources);
    match decode_cluster(&docs) {
        Ok(input) if errors.is_empty() => Ok(input),
        Ok(_) => Err(errors),
        Err(e) => {
            errors.extend(e);
            Err(errors)
        }
    }
}

/// Decodes documents into workloads and policies.
pub fn decode_cluster(docs: &[Document]) -> Result<ClusterInput, Diagnostics> {
    let mut input = ClusterInput::default();
    let mut errors = Diagnostics::default();
    let mut seen: HashMap<(String, String, String), Location> = HashMap::new();

    for doc in docs {
        let Some(kind) = known_kind(doc, &mut errors) else {
            input.skipped.push(Skipped {
                location: doc.location.clone(),
                api_version: doc.api_version.clone(),
                kind: doc.kind.clone(),
                name: doc.name().map(str::to_owned),
            });
            continue;
        };
        let decoded = match kind {
            Kind::Namespace => decode_namespace(doc).map(Decoded::Namespace),
            Kind::Pod => decode_pod(doc).map(Decoded::Pod),
            Kind::Node => decode_node(doc).map(Decoded::Node),
            Kind::NetworkPolicy => decode_network_policy(doc).map(Decoded::NetworkPolicy),
            Kind::AdminNetworkPolicy => decode_anp(doc).map(Decoded::Admin),
            Kind::BaselineAdminNetworkPolicy => decode_banp(doc).map(|(b, w)| {
                input.warnings.extend(w);
                Decoded::Baseline(b)
            }),
        };
        let decoded = match decoded {
            Ok(d) => d,
            Err(e) => {
                errors.extend(e);
                continue;
            }
        };
        let (namespace, name) = decoded.key();
        let key = (doc.kind.clone(), namespace.clone(), name.clone());
        if let Some(first) = seen.get(&key) {
            errors.push(doc.error(
                &FieldPath::root().field("metadata").field("name"),
                format!(
                    "Duplicate value: {name:?}: {} is also defined at {first}",
                    doc.kind
                ),
            ));
            continue;
        }
        seen.insert(key, doc.location.clone());
        match decoded {
            Decoded::Namespace(ns) => {
                input.cluster.namespaces.insert(ns.name.clone(), ns);
            }
            Decoded::Pod(pod) => input.cluster.pods.push(pod),
            Decoded::Node(node) => input.cluster.nodes.push(node),
            Decoded::NetworkPolicy(np) => {
                input.origins.insert(
                    format!("NetworkPolicy {}", np.reference()),
                    doc.location.clone(),
                );
                input.policies.network_policies.push(np);
            }
            Decoded::Admin(anp) => {
                input.origins.insert(
                    format!("AdminNetworkPolicy {}", anp.name),
                    doc.location.clone(),
                );
                input.policies.admin_policies.push(anp);
            }
            Decoded::Baseline(banp) => {
                input.origins.insert(
                    format!("BaselineAdminNetworkPolicy {}", banp.name),
                    doc.location.clone(),
                );
                input.policies.baseline = Some(banp);
            }
        }
    }

    // Pods in namespaces that no document declares.
    let mut implicit = BTreeSet::new();
    for pod in &input.cluster.pods {
        if !input.cluster.namespaces.contains_key(&pod.namespace) {
            implicit.insert(pod.namespace.clone());
        }
    }
    for ns in implicit {
        input.warnings.push(Diagnostic {
            severity: Severity::Warning,
            location: None,
            object: Some(format!("Namespace {ns}")),
            path: String::new(),
            message:
                "not declared; assumed to exist with only the label kubernetes.io/metadata.name"
                    .to_owned(),
        });
        input
            .cluster
            .namespaces
            .insert(ns.clone(), Namespace::new(&ns));
    }

    input.cluster.normalize();
    input.policies.normalize();
    errors.into_result(input)
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Namespace,
    Pod,
    Node,
    NetworkPolicy,
    AdminNetworkPolicy,
    BaselineAdminNetworkPolicy,
}

enum Decoded {
    Namespace(Namespace),
    Pod(Pod),
    Node(Node),
    NetworkPolicy(NetworkPolicy),
    Admin(AdminNetworkPolicy),
    Baseline(BaselineAdminNetworkPolicy),
}

impl Decoded {
    fn key(&self) -> (String, String) {
        match self {
            Decoded::Namespace(n) => (String::new(), n.name.clone()),
            Decoded::Pod(p) => (p.namespace.clone(), p.name.clone()),
            Decoded::Node(n) => (String::new(), n.name.clone()),
            Decoded::NetworkPolicy(n) => (n.namespace.clone(), n.name.clone()),
            Decoded::Admin(a) => (String::new(), a.name.clone()),
            Decoded::Baseline(b) => (String::new(), b.name.clone()),
        }
    }
}

/// The kind of a document, if the policy engine reads it. A known kind under an
/// unsupported API version is reported as an error (and not skipped).
fn known_kind(doc: &Document, errors: &mut Diagnostics) -> Option<Kind> {
    let (kind, group, version) = match doc.kind.as_str() {
        "Namespace" => (Kind::Namespace, "", "v1"),
        "Pod" => (Kind::Pod, "", "v1"),
        "Node" => (Kind::Node, "", "v1"),
        "NetworkPolicy" => (Kind::NetworkPolicy, "networking.k8s.io", "v1"),
        "AdminNetworkPolicy" => (
            Kind::AdminNetworkPolicy,
            "policy.networking.k8s.io",
            "v1alpha1",
        ),
        "BaselineAdminNetworkPolicy" => (
            Kind::BaselineAdminNetworkPolicy,
            "policy.networking.k8s.io",
            "v1alpha1",
        ),
        _ => return None,
    };
    let expected = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    if doc.api_version == expected {
        return Some(kind);
    }
    // The same kind name in an unrelated API group is somebody else's kind.
    let same_group = doc.api_group() == group
        || (doc.kind == "NetworkPolicy" && doc.api_group() == "extensions");
    if same_group {
        errors.push(doc.error(
            &FieldPath::root().field("apiVersion"),
            format!(
                "Unsupported value: {:?}: {} is read as {expected}",
                doc.api_version, doc.kind
            ),
        ));
    }
    None
}

// ---------------------------------------------------------------------------------------
// Metadata, labels and selectors.

struct Meta {
    name: String,
    namespace: String,
    labels: Labels,
}

enum Scope {
    Namespaced,
    Cluster,
}

enum NameRule {
    Subdomain,
    Label,
}

fn decode_meta(raw: &RawMeta, scope: Scope, rule: NameRule, errs: &mut ObjectErrors<'_>) -> Meta {
    let meta = FieldPath::root().field("metadata");
    let name = match raw.name.as_deref() {
        None | Some("") => {
            errs.push(&meta.field("name"), "Required value: name is required");
            String::new()
        }
        Some(name) => {
            let problems = match rule {
                NameRule::Subdomain => dns_subdomain_errors(name),
                NameRule::Label => dns_label_errors(name),
            };
            for p in problems {
                errs.push(&meta.field("name"), format!("Invalid value: {name:?}: {p}"));
            }
            name.to_owned()
        }
    };
    let namespace = match scope {
        Scope::Cluster => String::new(),
        Scope::Namespaced => match raw.namespace.as_deref() {
            None | Some("") => "default".to_owned(),
            Some(ns) => {
                for p in dns_label_errors(ns) {
                    errs.push(
                        &meta.field("namespace"),
                        format!("Invalid value: {ns:?}: {p}"),
                    );
                }
                ns.to_owned()
            }
        },
    };
    let labels = raw.labels.clone().unwrap_or_default();
    validate_labels(&labels, &meta.field("labels"), errs);
    Meta {
        name,
        namespace,
        labels,
    }
}

fn validate_labels(labels: &Labels, path: &FieldPath, errs: &mut ObjectErrors<'_>) {
    for (k, v) in labels {
        for p in label_key_errors(k) {
            errs.push(&path.key(k), format!("Invalid value: {k:?}: {p}"));
        }
        for p in label_value_errors(v) {
            errs.push(&path.key(k), format!("Invalid value: {v:?}: {p}"));
        }
    }
}

fn decode_selector(
    raw: &RawLabelSelector,
    path: &FieldPath,
    errs: &mut ObjectErrors<'_>,
) -> LabelSelector {
    let mut requirements = Vec::new();
    if let Some(labels) = &raw.match_labels {
        validate_labels(labels, &path.field("matchLabels"), errs);
        for (k, v) in labels {
            requirements.push(Requirement::In(k.clone(), BTreeSet::from([v.clone()])));
        }
    }
    for (i, expr) in raw.match_expressions.iter().flatten().enumerate() {
        let p = path.field("matchExpressions").index(i);
        for problem in label_key_errors(&expr.key) {
            errs.push(
                &p.field("key"),
                format!("Invalid value: {:?}: {problem}", expr.key),
            );
        }
        let values: Vec<String> = expr.values.clone().unwrap_or_default();
        match expr.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(
                        &p.field("values"),
                        "Required value: must be specified when `operator` is 'In' or 'NotIn'",
                    );
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(
                        &p.field("values"),
                        "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    );
                }
            }
            other => errs.push(
                &p.field("operator"),
                format!("Invalid value: {other:?}: not a valid selector operator (In, NotIn, Exists, DoesNotExist)"),
            ),
        }
        for (j, v) in values.iter().enumerate() {
            for problem in label_value_errors(v) {
                errs.push(
                    &p.field("values").index(j),
                    format!("Invalid value: {v:?}: {problem}"),
                );
            }
        }
        let set: BTreeSet<String> = values.into_iter().collect();
        let key = expr.key.clone();
        requirements.push(match expr.operator.as_str() {
            "In" => Requirement::In(key, set),
            "NotIn" => Requirement::NotIn(key, set),
            "Exists" => Requirement::Exists(key),
            _ => Requirement::DoesNotExist(key),
        });
    }
    LabelSelector::new(requirements)
}

fn decode_protocol(raw: Option<&str>, path: &FieldPath, errs: &mut ObjectErrors<'_>) -> Protocol {
    match raw {
        None => Protocol::Tcp,
        Some(p) => p.parse().unwrap_or_else(|_| {
            errs.push(
                path,
                format!("Unsupported value: {p:?}: supported values: \"TCP\", \"UDP\", \"SCTP\""),
            );
            Protocol::Tcp
        }),
    }
}

fn port_number(value: i64, path: &FieldPath, errs: &mut ObjectErrors<'_>) -> u16 {
    match u16::try_from(value) {
        Ok(p) if p >= 1 => p,
        _ => {
            errs.push(
                path,
                format!("Invalid value: {value}: must be between 1 and 65535, inclusive"),
            );
            1
        }
    }
}

fn parse_ip(text: &str, path: &FieldPath, errs: &mut ObjectErrors<'_>) -> Option<IpAddr> {
    let ip = parse_ip_sloppy(text);
    if ip.is_none() {
        errs.push(
            path,
            format!("Invalid value: {text:?}: must be a valid IP address"),
        );
    }
    ip
}

fn parse_cidr(text: &str, path: &FieldPath, errs: &mut ObjectErrors<'_>) -> Option<Cidr> {
    match Cidr::parse(text) {
        Ok(c) => Some(c),
        Err(e) => {
            errs.push(path, format!("Invalid value: {text:?}: {e}"));
            None
        }
    }
}

// ---------------------------------------------------------------------------------------
// Namespaces, pods, nodes.

fn decode_namespace(doc: &Document) -> Result<Namespace, Diagnostics> {
    let raw: RawObject<serde::de::IgnoredAny, serde::de::IgnoredAny> = doc.decode()?;
    let mut errs = ObjectErrors::new(Some(&doc.location), doc.object_ref());
    let meta = decode_meta(&raw.metadata, Scope::Cluster, NameRule::Label, &mut errs);
    let mut labels = meta.labels;
    labels.insert(NAMESPACE_NAME_LABEL.to_owned(), meta.name.clone());
    errs.finish().into_result(Namespace {
        name: meta.name,
        labels,
    })
}

fn decode_pod(doc: &Document) -> Result<Pod, Diagnostics> {
    let raw: RawObject<RawPodSpec, RawPodStatus> = doc.decode()?;
    let mut errs = ObjectErrors::new(Some(&doc.location), doc.object_ref());
    let meta = decode_meta(
        &raw.metadata,
        Scope::Namespaced,
        NameRule::Subdomain,
        &mut errs,
    );
    let spec = raw.spec.unwrap_or_default();
    let spec_path = FieldPath::root().field("spec");

    let mut ports = Vec::new();
    let containers = spec
        .containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| (spec_path.field("containers").index(i), c));
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .filter(|(_, c)| c.restart_policy.as_deref() == Some("Always"))
        .map(|(i, c)| (spec_path.field("initContainers").index(i), c));
    for (cpath, container) in containers.chain(sidecars) {
        let mut names = BTreeSet::new();
        for (j, port) in container.ports.iter().flatten().enumerate() {
            let ppath = cpath.field("ports").index(j);
            let number = match port.container_port {
                Some(n) => port_number(n, &ppath.field("containerPort"), &mut errs),
                None => {
                    errs.push(&ppath.field("containerPort"), "Required value");
                    1
                }
            };
            let protocol = decode_protocol(
                port.protocol.as_deref(),
                &ppath.field("protocol"),
                &mut errs,
            );
            let name = match port.name.as_deref() {
                None | Some("") => None,
                Some(n) => {
                    for p in port_name_errors(n) {
                        errs.push(&ppath.field("name"), format!("Invalid value: {n:?}: {p}"));
                    }
                    if !names.insert(n.to_owned()) {
                        errs.push(&ppath.field("name"), format!("Duplicate value: {n:?}"));
                    }
                    PortName::new(n).ok()
                }
            };
            ports.push(ContainerPort {
                name,
                port: number,
                protocol,
            });
        }
    }

    let status = raw.status.unwrap_or_default();
    let status_path = FieldPath::root().field("status");
    let mut ips = Vec::new();
    match (&status.pod_ips, &status.pod_ip) {
        (Some(list), _) if !list.is_empty() => {
            for (i, entry) in list.iter().enumerate() {
                let p = status_path.field("podIPs").index(i).field("ip");
                match entry.ip.as_deref() {
                    Some(text) => ips.extend(parse_ip(text, &p, &mut errs)),
                    None => errs.push(&p, "Required value"),
                }
            }
        }
        (_, Some(text)) if !text.is_empty() => {
            ips.extend(parse_ip(text, &status_path.field("podIP"), &mut errs));
        }
        _ => {}
    }
    if ips.len() > 2 || (ips.len() == 2 && Family::of(ips[0]) == Family::of(ips[1])) {
        errs.push(
            &status_path.field("podIPs"),
            "Invalid value: may specify no more than one IP for each IP family",
        );
    }
    if let (Some(primary), Some(first)) = (
        status.pod_ip.as_deref().and_then(parse_ip_sloppy),
        ips.first(),
    ) && primary != *first
    {
        errs.push(
            &status_path.field("podIP"),
            "Invalid value: must be the same as podIPs[0]",
        );
    }

    errs.finish().into_result(Pod {
        namespace: meta.namespace,
        name: meta.name,
        labels: meta.labels,
        ports,
        ips,
        host_network: spec.host_network.unwrap_or(false),
        node_name: spec.node_name.filter(|n| !n.is_empty()),
    })
}

fn decode_node(doc: &Document) -> Result<Node, Diagnostics> {
    let raw: RawObject<serde::de::IgnoredAny, RawNodeStatus> = doc.decode()?;
    let mut errs = ObjectErrors::new(Some(&doc.location), doc.object_ref());
    let meta = decode_meta(
        &raw.metadata,
        Scope::Cluster,
        NameRule::Subdomain,
        &mut errs,
    );
    let mut addresses = Vec::new();
    let status = raw.status.unwrap_or_default();
    for (i, a) in status.addresses.iter().flatten().enumerate() {
        let is_ip = matches!(a.kind.as_deref(), Some("InternalIP" | "ExternalIP"));
        if let (true, Some(text)) = (is_ip, a.address.as_deref()) {
            let path = FieldPath::root()
                .field("status")
                .field("addresses")
                .index(i)
                .field("address");
            addresses.extend(parse_ip(text, &path, &mut errs));
        }
    }
    errs.finish().into_result(Node {
        name: meta.name,
        labels: meta.labels,
        addresses,
    })
}

// ---------------------------------------------------------------------------------------
// NetworkPolicy.

fn decode_network_policy(doc: &Document) -> Result<NetworkPolicy, Diagnostics> {
    let raw: RawObject<RawNetworkPolicySpec> = doc.decode()?;
    let mut errs = ObjectErrors::new(Some(&doc.location), doc.object_ref());
    let meta = decode_meta(
        &raw.metadata,
        Scope::Namespaced,
        NameRule::Subdomain,
        &mut errs,
    );
    let spec = raw.spec.unwrap_or_default();
    let sp = FieldPath::root().field("spec");

    let pod_selector = match &spec.pod_selector {
        Some(s) => decode_selector(s, &sp.field("podSelector"), &mut errs),
        None => LabelSelector::everything(),
    };

    let ingress_raw = spec.ingress.unwrap_or_default();
    let egress_raw = spec.egress.unwrap_or_default();
    let ingress = decode_np_rules(&ingress_raw, &sp.field("ingress"), "from", "to", &mut errs);
    let egress = decode_np_rules(&egress_raw, &sp.field("egress"), "to", "from", &mut errs);

    let (mut has_ingress, mut has_egress) = (false, false);
    match spec.policy_types.as_deref() {
        None | Some([]) => {
            has_ingress = true;
            has_egress = !egress_raw.is_empty();
        }
        Some(types) => {
            if types.len() > 2 {
                errs.push(
                    &sp.field("policyTypes"),
                    "Invalid value: may not specify more than two policyTypes",
                );
            }
            for (i, t) in types.iter().enumerate() {
                match t.as_str() {
                    "Ingress" => has_ingress = true,
                    "Egress" => has_egress = true,
                    other => errs.push(
                        &sp.field("policyTypes").index(i),
                        format!("Unsupported value: {other:?}: supported values: \"Ingress\", \"Egress\""),
                    ),
                }
            }
        }
    }

    errs.finish().into_result(NetworkPolicy {
        namespace: meta.namespace,
        name: meta.name,
        pod_selector,
        ingress: has_ingress.then_some(ingress),
        egress: has_egress.then_some(egress),
    })
}

fn decode_np_rules(
    raw: &[RawNetworkPolicyRule],
    path: &FieldPath,
    peers_field: &str,
    wrong_field: &str,
    errs: &mut ObjectErrors<'_>,
) -> Vec<Rule> {
    let mut rules = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let rp = path.index(i);
        let (peers_raw, wrong) = if peers_field == "from" {
            (&r.from, &r.to)
        } else {
            (&r.to, &r.from)
        };
        if wrong.is_some() {
            errs.push(
                &rp.field(wrong_field),
                format!("unknown field {wrong_field:?}, expected `ports` or `{peers_field}`"),
            );
        }
        let peers = match peers_raw.as_deref() {
            None | Some([]) => Peers::Any,
            Some(list) => Peers::List(
                list.iter()
                    .enumerate()
                    .filter_map(|(j, p)| decode_np_peer(p, &rp.field(peers_field).index(j), errs))
                    .collect(),
            ),
        };
        let ports = r
            .ports
            .iter()
            .flatten()
            .enumerate()
            .map(|(j, p)| decode_np_port(p, &rp.field("ports").index(j), errs))
            .collect();
        rules.push(Rule { peers, ports });
    }
    rules
}

/// How many of the optional fields are present.
fn count_present(flags: &[bool]) -> usize {
    flags.iter().filter(|b| **b).count()
}

fn decode_np_peer(
    raw: &RawNetworkPolicyPeer,
    path: &FieldPath,
    errs: &mut ObjectErrors<'_>,
) -> Option<Peer> {
    let count = count_present(&[
        raw.pod_selector.is_some(),
        raw.namespace_selector.is_some(),
        raw.ip_block.is_some(),
    ]);
    if count == 0 {
        errs.push(path, "Required value: must specify a peer");
        return None;
    }
    if count > 1 && raw.ip_block.is_some() {
        errs.push(
            path,
            "Forbidden: may not specify both ipBlock and another peer",
        );
    }
    if let Some(block) = &raw.ip_block {
        return decode_ip_block(block, &path.field("ipBlock"), errs).map(Peer::IpBlock);
    }
    let pods = match &raw.pod_selector {
        Some(s) => decode_selector(s, &path.field("podSelector"), errs),
        None => LabelSelector::everything(),
    };
    let namespaces = match &raw.namespace_selector {
        Some(s) => {
            NamespaceMatch::Selector(decode_selector(s, &path.field("namespaceSelector"), errs))
        }
        None => NamespaceMatch::Own,
    };
    Some(Peer::Pods { namespaces, pods })
}

fn decode_ip_block(
    raw: &RawIpBlock,
    path: &FieldPath,
    errs: &mut ObjectErrors<'_>,
) -> Option<IpBlock> {
    let cidr = match raw.cidr.as_deref() {
        None | Some("") => {
            errs.push(&path.field("cidr"), "Required value");
            return None;
        }
        Some(text) => parse_cidr(text, &path.field("cidr"), errs)?,
    };
    let mut except = Vec::new();
    for (i, text) in raw.except.iter().flatten().enumerate() {
        let p = path.field("except").index(i);
        if let Some(e) = parse_cidr(text, &p, errs) {
            if !cidr.contains_cidr(&e) || e.prefix() <= cidr.prefix() {
                errs.push(
                    &p,
                    format!("Invalid value: {text:?}: must be a strict subset of `cidr`"),
                );
            }
            except.push(e);
        }
    }
    Some(IpBlock::new(cidr, except))
}

fn decode_np_port(
    raw: &RawNetworkPolicyPort,
    path: &FieldPath,
    errs: &mut ObjectErrors<'_>,
) -> PolicyPort {
    let protocol = decode_protocol(raw.protocol.as_deref(), &path.field("protocol"), errs);
    let port = match &raw.port {
        None => {
            if let Some(end) = raw.end_port {
                errs.push(
                    &path.field("endPort"),
                    format!(
                        "Invalid value: {end}: may not be specified when `port` is not specified"
                    ),
                );
            }
            PortSpec::Any
        }
        Some(IntOrString::Int(n)) => {
            let start = port_number(*n, &path.field("port"), errs);
            match raw.end_port {
                None => PortSpec::Range(PortRange::single(start).unwrap_or(PortRange::all())),
                Some(end) => {
                    let end_ok = port_number(end, &path.field("endPort"), errs);
                    if end < *n {
                        errs.push(
                            &path.field("endPort"),
                            format!("Invalid value: {n}: must be greater than or equal to `port`"),
                        );
                    }
                    PortSpec::Range(
                        PortRange::new(start, end_ok.max(start)).unwrap_or(PortRange::all()),
                    )
                }
            }
        }
        Some(IntOrString::Str(name)) => {
            if let Some(end) = raw.end_port {
                errs.push(
                    &path.field("endPort"),
                    format!(
                        "Invalid value: {end}: may not be specified when `port` is non-numeric"
                    ),
                );
            }
            match PortName::new(name) {
                Ok(n) => PortSpec::Named(n),
                Err(e) => {
                    errs.push(&path.field("port"), format!("Invalid value: {name:?}: {e}"));
                    PortSpec::Any
                }
            }
        }
    };
    PolicyPort { protocol, port }
}

// ---------------------------------------------------------------------------------------
// AdminNetworkPolicy and BaselineAdminNetworkPolicy.

fn decode_anp(doc: &Document) -> Result<AdminNetworkPolicy, Diagnostics> {
    let raw: RawObject<RawAdminSpec> = doc.decode()?;
    let mut errs = ObjectErrors::new(Some(&doc.location), doc.object_ref());
    let meta = decode_meta(
        &raw.metadata,
        Scope::Cluster,
        NameRule::Subdomain,
        &mut errs,
    );
    let sp = FieldPath::root().field("spec");
    let Some(spec) = raw.spec else {
        errs.push(&sp, "Required value");
        return Err(errs.finish());
    };
    let priority = match spec.priority {
        None => {
            errs.push(&sp.field("priority"), "Required value");
            0
        }
        Some(p) => match u32::try_from(p) {
            Ok(p) if p <= 1000 => p,
            _ => {
                errs.push(
                    &sp.field("priority"),
                    format!("Invalid value: {p}: must be between 0 and 1000, inclusive"),
                );
                0
            }
        },
    };
    let subject = decode_subject(spec.subject.as_ref(), &sp.field("subject"), &mut errs);
    let (ingress, _) = decode_admin_rules(
        spec.ingress.as_deref(),
        &sp.field("ingress"),
        Tier::Admin,
        Dir::Ingress,
        &mut errs,
    );
    let (egress, _) = decode_admin_rules(
        spec.egress.as_deref(),
        &sp.field("egress"),
        Tier::Admin,
        Dir::Egress,
        &mut errs,
    );
    let anp = AdminNetworkPolicy {
        name: meta.name,
        priority,
        subject: subject.unwrap_or(Subject::Namespaces(LabelSelector::everything())),
        ingress,
        egress,
    };
    errs.finish().into_result(anp)
}

fn decode_banp(doc: &Document) -> Result<(BaselineAdminNetworkPolicy, Diagnostics), Diagnostics> {
    let raw: RawObject<RawAdminSpec> = doc.decode()?;
    let mut errs = ObjectErrors::new(Some(&doc.location), doc.object_ref());
    let meta = decode_meta(
        &raw.metadata,
        Scope::Cluster,
        NameRule::Subdomain,
        &mut errs,
    );
    if !meta.name.is_empty() && meta.name != "default" {
        errs.push(
            &FieldPath::root().field("metadata").field("name"),
            format!("Invalid value: {:?}: Only one baseline admin network policy with metadata.name=\"default\" can be created in the cluster", meta.name),
        );
    }
    let sp = FieldPath::root().field("spec");
    let Some(spec) = raw.spec else {
        errs.push(&sp, "Required value");
        return Err(errs.finish());
    };
    if spec.priority.is_some() {
        errs.push(
            &sp.field("priority"),
            "unknown field \"priority\": a BaselineAdminNetworkPolicy has no priority",
        );
    }
    let subject = decode_subject(spec.subject.as_ref(), &sp.field("subject"), &mut errs);
    let (ingress, mut warnings) = decode_admin_rules(
        spec.ingress.as_deref(),
        &sp.field("ingress"),
        Tier::Baseline,
        Dir::Ingress,
        &mut errs,
    );
    let (egress, w) = decode_admin_rules(
        spec.egress.as_deref(),
        &sp.field("egress"),
        Tier::Baseline,
        Dir::Egress,
        &mut errs,
    );
    warnings.extend(w);
    let warnings = Diagnostics(
        warnings
            .into_iter()
            .map(|(path, message)| doc.warning(&path, message))
            .collect(),
    );
    let banp = BaselineAdminNetworkPolicy {
        name: meta.name,
        subject: subject.unwrap_or(Subject::Namespaces(LabelSelector::everything())),
        ingress,
        egress,
    };
    errs.finish().into_result((banp, warnings))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tier {
    Admin,
    Baseline,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Ingress,
    Egress,
}

fn decode_subject(
    raw: Option<&RawAdminSubject>,
    path: &FieldPath,
    errs: &mut ObjectErrors<'_>,
) -> Option<Subject> {
    let Some(raw) = raw else {
        errs.push(path, "Required value");
        return None;
    };
    match (&raw.namespaces, &raw.pods) {
        (Some(ns), None) => Some(Subject::Namespaces(decode_selector(
            ns,
            &path.field("namespaces"),
            errs,
        ))),
        (None, Some(pods)) => {
            let (namespaces, pods) = decode_namespaced_pod(pods, &path.field("pods"), errs);
            Some(Subject::Pods { namespaces, pods })
        }
        _ => {
            errs.push(
                path,
                "Invalid value: must specify exactly one of `namespaces` or `pods`",
            );
            None
        }
    }
}

fn decode_namespaced_pod(
    raw: &RawNamespacedPod,
    path: &FieldPath,
    errs: &mut ObjectErrors<'_>,
) -> (LabelSelector, LabelSelector) {
    let ns = match &raw.namespace_selector {
        Some(s) => decode_selector(s, &path.field("namespaceSelector"), errs),
        None => {
            errs.push(&path.field("namespaceSelector"), "Required value");
            LabelSelector::everything()
        }
    };
    let pods = match &raw.pod_selector {
        Some(s) => decode_selector(s, &path.field("podSelector"), errs),
        None => {
            errs.push(&path.field("podSelector"), "Required value");
            LabelSelector::everything()
        }
    };
    (ns, pods)
}

type Warnings = Vec<(FieldPath, String)>;

fn decode_admin_rules(
    raw: Option<&[RawAdminRule]>,
    path: &FieldPath,
    tier: Tier,
    dir: Dir,
    errs: &mut ObjectErrors<'_>,
) -> (Vec<AdminRule>, Warnings) {
    let raw = raw.unwrap_or_default();
    let mut warnings = Vec::new();
    if raw.len() > ADMIN_MAX_ITEMS {
        errs.push(
            path,
            format!(
                "Too many: {}: must have at most {ADMIN_MAX_ITEMS} items",
                raw.len()
            ),
        );
    }
    let (peers_field, wrong_field) = match dir {
        Dir::Ingress => ("from", "to"),
        Dir::Egress => ("to", "from"),
    };
    let mut rules = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let rp = path.index(i);
        let name = r.name.clone().unwrap_or_default();
        if name.chars().count() > 100 {
            errs.push(&rp.field("name"), "Too long: may not be longer than 100");
        }
        let action = match (r.action.as_deref(), tier) {
            (Some("Allow"), _) => Action::Allow,
            (Some("Deny"), _) => Action::Deny,
            (Some("Pass"), Tier::Admin) => Action::Pass,
            (None, _) => {
                errs.push(&rp.field("action"), "Required value");
                Action::Deny
            }
            (Some(other), Tier::Admin) => {
                errs.push(&rp.field("action"), format!("Unsupported value: {other:?}: supported values: \"Allow\", \"Deny\", \"Pass\""));
                Action::Deny
            }
            (Some(other), Tier::Baseline) => {
                errs.push(
                    &rp.field("action"),
                    format!("Unsupported value: {other:?}: supported values: \"Allow\", \"Deny\""),
                );
                Action::Deny
            }
        };
        let (peers_raw, wrong) = if dir == Dir::Ingress {
            (&r.from, &r.to)
        } else {
            (&r.to, &r.from)
        };
        if wrong.is_some() {
            errs.push(&rp.field(wrong_field), format!("unknown field {wrong_field:?}, expected `name`, `action`, `{peers_field}` or `ports`"));
        }
        let peers_path = rp.field(peers_field);
        let mut peers = Vec::new();
        match peers_raw.as_deref() {
            None | Some([]) => errs.push(&peers_path, "Required value: must have at least 1 item"),
            Some(list) => {
                if list.len() > ADMIN_MAX_ITEMS {
                    errs.push(
                        &peers_path,
                        format!(
                            "Too many: {}: must have at most {ADMIN_MAX_ITEMS} items",
                            list.len()
                        ),
                    );
                }
                for (j, p) in list.iter().enumerate() {
                    let pp = peers_path.index(j);
                    if let Some(peer) = decode_admin_peer(p, &pp, dir, action, &mut warnings, errs)
                    {
                        peers.push(peer);
                    }
                }
            }
        }
        let ports = match r.ports.as_deref() {
            None => None,
            Some(list) => {
                let pp = rp.field("ports");
                if list.is_empty() {
                    errs.push(&pp, "Required value: must have at least 1 item");
                }
                if list.len() > ADMIN_MAX_ITEMS {
                    errs.push(
                        &pp,
                        format!(
                            "Too many: {}: must have at most {ADMIN_MAX_ITEMS} items",
                            list.len()
                        ),
                    );
                }
                Some(
                    list.iter()
                        .enumerate()
                        .filter_map(|(j, p)| decode_admin_port(p, &pp.index(j), errs))
                        .collect::<Vec<_>>(),
                )
            }
        };
        let address_peer = peers
            .iter()
            .any(|p| matches!(p, AdminPeer::Nodes(_) | AdminPeer::Networks(_)))
            || peers_raw.iter().flatten().any(|p| p.domain_names.is_some());
        let named = ports
            .iter()
            .flatten()
            .any(|p| matches!(p, AdminPort::Named(_)));
        if dir == Dir::Egress && address_peer && named {
            errs.push(&rp, "Invalid value: networks/nodes/domainNames peer cannot be set with namedPorts since there are no namedPorts for networks/nodes/domainNames");
        }
        rules.push(AdminRule {
            name,
            action,
            peers,
            ports,
        });
    }
    (rules, warnings)
}

fn decode_admin_peer(
    raw: &RawAdminPeer,
    path: &FieldPath,
    dir: Dir,
    action: Action,
    warnings: &mut Warnings,
    errs: &mut ObjectErrors<'_>,
) -> Option<AdminPeer> {
    let set = [
        raw.namespaces.is_some(),
        raw.pods.is_some(),
        raw.nodes.is_some(),
        raw.networks.is_some(),
        raw.domain_names.is_some(),
    ];
    if count_present(&set) != 1 {
        errs.push(path, "Invalid value: must specify exactly one peer type");
        return None;
    }
    if dir == Dir::Ingress {
        for (present, field) in [
            (raw.nodes.is_some(), "nodes"),
            (raw.networks.is_some(), "networks"),
            (raw.domain_names.is_some(), "domainNames"),
        ] {
            if present {
                errs.push(
                    &path.field(field),
                    format!("unknown field {field:?}: ingress peers are `namespaces` or `pods`"),
                );
                return None;
            }
        }
    }
    if let Some(ns) = &raw.namespaces {
        return Some(AdminPeer::Namespaces(decode_selector(
            ns,
            &path.field("namespaces"),
            errs,
        )));
    }
    if let Some(pods) = &raw.pods {
        let (namespaces, pods) = decode_namespaced_pod(pods, &path.field("pods"), errs);
        return Some(AdminPeer::Pods { namespaces, pods });
    }
    if let Some(nodes) = &raw.nodes {
        return Some(AdminPeer::Nodes(decode_selector(
            nodes,
            &path.field("nodes"),
            errs,
        )));
    }
    if let Some(networks) = &raw.networks {
        let np = path.field("networks");
        if networks.is_empty() {
            errs.push(&np, "Required value: must have at least 1 item");
        }
        if networks.len() > ADMIN_MAX_NETWORKS {
            errs.push(
                &np,
                format!(
                    "Too many: {}: must have at most {ADMIN_MAX_NETWORKS} items",
                    networks.len()
                ),
            );
        }
        let cidrs = networks
            .iter()
            .enumerate()
            .filter_map(|(k, text)| parse_cidr(text, &np.index(k), errs))
            .collect();
        return Some(AdminPeer::Networks(cidrs));
    }
    // domainNames: the addresses behind a name are not known offline. Only Allow rules
    // may use it, so matching nothing is the fail-closed reading.
    let dp = path.field("domainNames");
    if action != Action::Allow {
        errs.push(
            &dp,
            "Invalid value: domainNames peers are only supported in Allow rules",
        );
    }
    warnings.push((
        dp,
        "domainNames peers match no address in Rampart's analysis (names are not resolved offline)"
            .to_owned(),
    ));
    Some(AdminPeer::Networks(Vec::new()))
}

fn decode_admin_port(
    raw: &RawAdminPort,
    path: &FieldPath,
    errs: &mut ObjectErrors<'_>,
) -> Option<AdminPort> {
    let count = count_present(&[
        raw.port_number.is_some(),
        raw.named_port.is_some(),
        raw.port_range.is_some(),
    ]);
    if count != 1 {
        errs.push(
            path,
            "Invalid value: must specify exactly one of `portNumber`, `namedPort` or `portRange`",
        );
        return None;
    }
    if let Some(n) = &raw.port_number {
        let p = path.field("portNumber");
        let protocol = decode_protocol(n.protocol.as_deref(), &p.field("protocol"), errs);
        let port = match n.port {
            Some(v) => port_number(v, &p.field("port"), errs),
            None => {
                errs.push(&p.field("port"), "Required value");
                1
            }
        };
        return Some(AdminPort::Number { protocol, port });
    }
    if let Some(name) = &raw.named_port {
        return match PortName::new(name) {
            Ok(n) => Some(AdminPort::Named(n)),
            Err(e) => {
                errs.push(
                    &path.field("namedPort"),
                    format!("Invalid value: {name:?}: {e}"),
                );
                None
            }
        };
    }
    let r = raw.port_range.as_ref()?;
    let p = path.field("portRange");
    let protocol = decode_protocol(r.protocol.as_deref(), &p.field("protocol"), errs);
    let start = match r.start {
        Some(v) => port_number(v, &p.field("start"), errs),
        None => {
            errs.push(&p.field("start"), "Required value");
            1
        }
    };
    let end = match r.end {
        Some(v) => port_number(v, &p.field("end"), errs),
        None => {
            errs.push(&p.field("end"), "Required value");
            u16::MAX
        }
    };
    match PortRange::new(start, end) {
        Some(range) => Some(AdminPort::Range { protocol, range }),
        None => {
            errs.push(
                &p.field("end"),
                format!("Invalid value: {end}: must be greater than or equal to `start`"),
            );
            None
        }
    }
}
