//! The agent's configuration: an `AgentConfig` document (`rampart.dev/v1alpha1`).
//!
//! ```yaml
//! apiVersion: rampart.dev/v1alpha1
//! kind: AgentConfig
//! metadata: {name: worker-1}
//! spec:
//!   nodeName: worker-1                # pods (spec.nodeName) and ports (spec.node) it enforces
//!   resources: [/etc/rampart/resources]   # files or directories; relative to this file
//!   stateDir: /var/lib/rampart/agent  # what was applied, pending tries
//!   netns: ""                         # a named network namespace; empty: the agent's own
//!   tablePrefix: rampart              # tables <prefix>-sg, <prefix>-host, <prefix>-pods
//!   revokedConnections: flush         # flush | cut | keep (see below)
//!   pollIntervalSeconds: 2            # how often inputs are checked for changes
//!   pods: {enabled: true, allPods: false, allowFromNode: true}
//!   hostFirewall: {enabled: true, trustedInterfaces: [lo, siderolink, kubespan], clusterNetworks: []}
//!   securityGroups: {enabled: true}
//! ```
//!
//! `revokedConnections` says what happens to a connection that was allowed when it
//! started once the rules no longer allow it:
//! - `flush` (default, Neutron's choice): after each change the agent deletes the
//!   conntrack entries of connections the new rules would not allow; their next packet
//!   is judged as new, and dropped. Established traffic otherwise costs one lookup.
//! - `cut` (Cilium's choice): only replies and related packets skip the rules; every
//!   packet in the original direction is checked again, so a revoked connection stops at
//!   once, in the same transaction that changes the rules.
//! - `keep` (iptables-based plugins): connections live on until they end.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rampart_model::Cidr;
use rampart_resources::{Diagnostics, FieldPath, ObjectErrors, parse_sources, read_sources};
use serde_json::Value;

use crate::nft::Netns;

/// What happens to connections whose allow was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Revoked {
    /// Delete their conntrack entries after each change.
    #[default]
    Flush,
    /// Check every original-direction packet again.
    Cut,
    /// Let them live.
    Keep,
}

impl Revoked {
    /// The spelling in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Revoked::Flush => "flush",
            Revoked::Cut => "cut",
            Revoked::Keep => "keep",
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// The node this agent runs for.
    pub node: String,
    /// Files and directories of resources.
    pub resources: Vec<PathBuf>,
    /// Where the agent keeps its state.
    pub state_dir: PathBuf,
    /// Where to enforce.
    pub netns: Netns,
    /// Prefix of the table names.
    pub table_prefix: String,
    /// Revoked connections.
    pub revoked: Revoked,
    /// Poll interval.
    pub poll: Duration,
    /// Enforce NetworkPolicies.
    pub pods: bool,
    /// Enforce for every pod, not only those with `spec.nodeName` equal to `node`.
    pub all_pods: bool,
    /// Accept connections from the node itself to its pods (kubelet probes).
    pub allow_from_node: bool,
    /// Enforce the host firewall.
    pub host: bool,
    /// Interfaces the host firewall always trusts.
    pub trusted_interfaces: Vec<String>,
    /// Pod and service networks (host firewall, block mode).
    pub cluster_networks: Vec<Cidr>,
    /// Enforce security groups.
    pub security_groups: bool,
}

impl AgentConfig {
    /// A configuration with defaults, for `node`, reading `resources`.
    pub fn new(node: &str, resources: Vec<PathBuf>, state_dir: PathBuf) -> Self {
        AgentConfig {
            node: node.to_owned(),
            resources,
            state_dir,
            netns: Netns::Current,
            table_prefix: "rampart".to_owned(),
            revoked: Revoked::Flush,
            poll: Duration::from_secs(2),
            pods: true,
            all_pods: false,
            allow_from_node: true,
            host: true,
            trusted_interfaces: vec!["lo".into(), "siderolink".into(), "kubespan".into()],
            cluster_networks: Vec::new(),
            security_groups: true,
        }
    }

    /// The table of a layer.
    pub fn table(&self, layer: &str) -> String {
        format!("{}-{layer}", self.table_prefix)
    }
}

fn ident_ok(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Reads and validates the configuration file; relative paths in it are relative to it.
pub fn load_config(path: &Path) -> Result<AgentConfig, Diagnostics> {
    let sources = read_sources(&[path.to_string_lossy().into_owned()])?;
    let (docs, errors) = parse_sources(&sources);
    if !errors.is_empty() {
        return Err(errors);
    }
    let docs: Vec<_> = docs
        .into_iter()
        .filter(|d| d.api_version == "rampart.dev/v1alpha1" && d.kind == "AgentConfig")
        .collect();
    let [doc] = docs.as_slice() else {
        return Err(Diagnostics::from(rampart_resources::Diagnostic::error(
            format!(
                "{}: expected exactly one AgentConfig (apiVersion rampart.dev/v1alpha1), found {}",
                path.display(),
                docs.len()
            ),
        )));
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let mut errors = ObjectErrors::new(Some(&doc.location), doc.object_ref());
    let spec_path = FieldPath::root().field("spec");
    let spec = doc.value.get("spec").and_then(Value::as_object);
    let Some(spec) = spec else {
        errors.push(&spec_path, "required: an object");
        return Err(errors.finish());
    };
    const KNOWN: [&str; 10] = [
        "nodeName",
        "resources",
        "stateDir",
        "netns",
        "tablePrefix",
        "revokedConnections",
        "pollIntervalSeconds",
        "pods",
        "hostFirewall",
        "securityGroups",
    ];
    for k in spec.keys() {
        if !KNOWN.contains(&k.as_str()) {
            errors.push(
                &spec_path.field(k),
                format!("unknown field; expected one of: {}", KNOWN.join(", ")),
            );
        }
    }
    let string = |key: &str, errors: &mut ObjectErrors<'_>| -> Option<String> {
        match spec.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                errors.push(&spec_path.field(key), "must be a string");
                None
            }
        }
    };
    let node = string("nodeName", &mut errors).unwrap_or_default();
    if node.is_empty() {
        errors.push(
            &spec_path.field("nodeName"),
            "required: the name of this node",
        );
    }
    let mut resources = Vec::new();
    match spec.get("resources") {
        Some(Value::Array(items)) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                match v.as_str() {
                    Some(s) if !s.is_empty() => resources.push(base.join(s)),
                    _ => errors.push(&spec_path.field("resources").index(i), "must be a path"),
                }
            }
        }
        _ => errors.push(
            &spec_path.field("resources"),
            "required: a list of files or directories",
        ),
    }
    let state_dir = base.join(
        string("stateDir", &mut errors).unwrap_or_else(|| "/var/lib/rampart/agent".to_owned()),
    );
    let netns = match string("netns", &mut errors) {
        None => Netns::Current,
        Some(s) if s.is_empty() => Netns::Current,
        Some(s)
            if ident_ok(&s, 64)
                || s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Netns::Named(s)
        }
        Some(_) => {
            errors.push(
                &spec_path.field("netns"),
                "must be a network namespace name (letters, digits, '-', '_')",
            );
            Netns::Current
        }
    };
    let table_prefix = string("tablePrefix", &mut errors).unwrap_or_else(|| "rampart".to_owned());
    if !ident_ok(&table_prefix, 40) {
        errors.push(
            &spec_path.field("tablePrefix"),
            "must start with a letter and hold only letters, digits, '-' and '_' (at most 40)",
        );
    }
    let revoked = match string("revokedConnections", &mut errors).as_deref() {
        None | Some("flush") => Revoked::Flush,
        Some("cut") => Revoked::Cut,
        Some("keep") => Revoked::Keep,
        Some(other) => {
            errors.push(
                &spec_path.field("revokedConnections"),
                format!("must be flush, cut or keep, not {other:?}"),
            );
            Revoked::Flush
        }
    };
    let poll = match spec.get("pollIntervalSeconds") {
        None | Some(Value::Null) => Duration::from_secs(2),
        Some(v) => match v.as_u64() {
            Some(n) if (1..=3600).contains(&n) => Duration::from_secs(n),
            _ => {
                errors.push(
                    &spec_path.field("pollIntervalSeconds"),
                    "must be a number of seconds from 1 to 3600",
                );
                Duration::from_secs(2)
            }
        },
    };
    let section = |key: &str,
                   known: &[&str],
                   errors: &mut ObjectErrors<'_>|
     -> serde_json::Map<String, Value> {
        match spec.get(key) {
            None | Some(Value::Null) => serde_json::Map::new(),
            Some(Value::Object(m)) => {
                for k in m.keys() {
                    if !known.contains(&k.as_str()) {
                        errors.push(
                            &spec_path.field(key).field(k),
                            format!("unknown field; expected one of: {}", known.join(", ")),
                        );
                    }
                }
                m.clone()
            }
            Some(_) => {
                errors.push(&spec_path.field(key), "must be an object");
                serde_json::Map::new()
            }
        }
    };
    let flag = |m: &serde_json::Map<String, Value>,
                section: &str,
                key: &str,
                default: bool,
                errors: &mut ObjectErrors<'_>|
     -> bool {
        match m.get(key) {
            None | Some(Value::Null) => default,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                errors.push(
                    &spec_path.field(section).field(key),
                    "must be true or false",
                );
                default
            }
        }
    };
    let pods_section = section(
        "pods",
        &["enabled", "allPods", "allowFromNode"],
        &mut errors,
    );
    let host_section = section(
        "hostFirewall",
        &["enabled", "trustedInterfaces", "clusterNetworks"],
        &mut errors,
    );
    let sg_section = section("securityGroups", &["enabled"], &mut errors);
    let pods = flag(&pods_section, "pods", "enabled", true, &mut errors);
    let all_pods = flag(&pods_section, "pods", "allPods", false, &mut errors);
    let allow_from_node = flag(&pods_section, "pods", "allowFromNode", true, &mut errors);
    let host = flag(&host_section, "hostFirewall", "enabled", true, &mut errors);
    let security_groups = flag(&sg_section, "securityGroups", "enabled", true, &mut errors);
    let mut trusted_interfaces = vec![
        "lo".to_owned(),
        "siderolink".to_owned(),
        "kubespan".to_owned(),
    ];
    if let Some(v) = host_section.get("trustedInterfaces") {
        trusted_interfaces.clear();
        match v.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    match item.as_str() {
                        Some(s) if !s.is_empty() && s.len() <= 15 => {
                            trusted_interfaces.push(s.to_owned())
                        }
                        _ => errors.push(
                            &spec_path
                                .field("hostFirewall")
                                .field("trustedInterfaces")
                                .index(i),
                            "must be an interface name",
                        ),
                    }
                }
            }
            None => errors.push(
                &spec_path.field("hostFirewall").field("trustedInterfaces"),
                "must be a list",
            ),
        }
    }
    let mut cluster_networks = Vec::new();
    if let Some(v) = host_section.get("clusterNetworks") {
        match v.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    match item.as_str().map(Cidr::parse) {
                        Some(Ok(c)) => cluster_networks.push(c),
                        Some(Err(e)) => errors.push(
                            &spec_path
                                .field("hostFirewall")
                                .field("clusterNetworks")
                                .index(i),
                            e.to_string(),
                        ),
                        None => errors.push(
                            &spec_path
                                .field("hostFirewall")
                                .field("clusterNetworks")
                                .index(i),
                            "must be a CIDR",
                        ),
                    }
                }
            }
            None => errors.push(
                &spec_path.field("hostFirewall").field("clusterNetworks"),
                "must be a list",
            ),
        }
    }
    let config = AgentConfig {
        node,
        resources,
        state_dir,
        netns,
        table_prefix,
        revoked,
        poll,
        pods,
        all_pods,
        allow_from_node,
        host,
        trusted_interfaces,
        cluster_networks,
        security_groups,
    };
    errors.finish().into_result(config)
}
