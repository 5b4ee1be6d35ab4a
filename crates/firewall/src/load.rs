//! One pass over the agent's sources: cluster and policy kinds, security groups, the
//! host firewall, and OpenStack's JSON as `openstack ... show -f json` prints it.
//!
//! OpenStack's output has no `apiVersion` or `kind`: a JSON source whose top-level
//! object (or every object of a top-level list) has neither is read as OpenStack output
//! when its fields say what it is: `rules` or `security_group_rules` (a security group,
//! also inside `{"security_group": ...}`), `fixed_ips` (a port, also inside
//! `{"port": ...}`), `addresses` (an address group). Such objects become documents of
//! API version [`OPENSTACK`].

use rampart_resources::{
    ClusterInput, Diagnostic, Diagnostics, Document, Location, Severity, Source, decode_cluster,
    parse_source, read_sources,
};
use serde_json::Value;

use crate::sg::{self, SecurityGroups};
use crate::talos::{self, HostFirewall};

/// The API version given to objects imported from OpenStack's JSON.
pub const OPENSTACK: &str = "openstack";

/// Everything the node agent reads.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Workloads and policies.
    pub cluster: ClusterInput,
    /// Security groups, ports and address groups.
    pub security_groups: SecurityGroups,
    /// The host firewall, if any document configures it.
    pub host: Option<HostFirewall>,
    /// Number of documents read.
    pub documents: usize,
}

fn openstack_kind(v: &Value) -> Option<(&'static str, &Value)> {
    let obj = v.as_object()?;
    if obj.contains_key("apiVersion") || obj.contains_key("kind") {
        return None;
    }
    if let Some(inner) = obj.get("security_group") {
        return Some(("SecurityGroup", inner));
    }
    if let Some(inner) = obj.get("port") {
        return Some(("Port", inner));
    }
    if let Some(inner) = obj.get("address_group") {
        return Some(("AddressGroup", inner));
    }
    if obj.contains_key("rules") || obj.contains_key("security_group_rules") {
        return Some(("SecurityGroup", v));
    }
    if obj.contains_key("fixed_ips") {
        return Some(("Port", v));
    }
    if obj.contains_key("addresses") {
        return Some(("AddressGroup", v));
    }
    None
}

/// Documents from OpenStack's JSON, if `source` is such output.
fn openstack_documents(source: &Source) -> Option<Vec<Document>> {
    let text = source.text.trim_start_matches('\u{feff}').trim_start();
    if !text.starts_with('{') && !text.starts_with('[') {
        return None;
    }
    let value: Value = serde_json::from_str(text).ok()?;
    let items: Vec<&Value> = match &value {
        Value::Array(items) if !items.is_empty() => items.iter().collect(),
        Value::Object(_) => vec![&value],
        _ => return None,
    };
    let kinds: Vec<(&str, &Value)> = items
        .iter()
        .map(|v| openstack_kind(v))
        .collect::<Option<_>>()?;
    let array = value.is_array();
    Some(
        kinds
            .into_iter()
            .enumerate()
            .map(|(i, (kind, v))| Document {
                location: Location {
                    source: source.name.clone(),
                    document: 1,
                    line: 1,
                    item: array.then_some(i),
                },
                api_version: OPENSTACK.to_owned(),
                kind: kind.to_owned(),
                value: v.clone(),
            })
            .collect(),
    )
}

/// Parses sources into documents (OpenStack's JSON included).
pub fn parse(sources: &[Source]) -> (Vec<Document>, Diagnostics) {
    let mut docs = Vec::new();
    let mut errors = Diagnostics::default();
    for source in sources {
        if let Some(d) = openstack_documents(source) {
            docs.extend(d);
            continue;
        }
        let (d, e) = parse_source(source);
        docs.extend(d);
        errors.extend(e);
    }
    (docs, errors)
}

/// Decodes every kind the agent knows; every error, located.
pub fn decode_inputs(docs: &[Document]) -> Result<Inputs, Diagnostics> {
    let mut errors = Diagnostics::default();
    let sg_docs: Vec<&Document> = docs.iter().filter(|d| sg::is_kind(d)).collect();
    let host_docs: Vec<&Document> = docs.iter().filter(|d| talos::is_kind(d)).collect();
    let rest: Vec<Document> = docs
        .iter()
        .filter(|d| !sg::is_kind(d) && !talos::is_kind(d))
        .cloned()
        .collect();
    let cluster = match decode_cluster(&rest) {
        Ok(c) => Some(c),
        Err(e) => {
            errors.extend(e);
            None
        }
    };
    let security_groups = match sg::decode(&sg_docs) {
        Ok(s) => Some(s),
        Err(e) => {
            errors.extend(e);
            None
        }
    };
    let host = match talos::decode(&host_docs) {
        Ok(h) => Some(h),
        Err(e) => {
            errors.extend(e);
            None
        }
    };
    match (cluster, security_groups, host) {
        (Some(cluster), Some(security_groups), Some(host)) if errors.is_empty() => Ok(Inputs {
            cluster,
            security_groups,
            host,
            documents: docs.len(),
        }),
        _ => Err(errors),
    }
}

/// Reads, parses and decodes `paths` (files, directories, `-`).
pub fn load_inputs<S: AsRef<str>>(paths: &[S]) -> Result<Inputs, Diagnostics> {
    let sources = read_sources(paths)?;
    let (docs, mut errors) = parse(&sources);
    match decode_inputs(&docs) {
        Ok(inputs) if errors.is_empty() => Ok(inputs),
        Ok(_) => Err(errors),
        Err(e) => {
            errors.extend(e);
            Err(errors)
        }
    }
}

/// A warning for a document of a kind no layer uses (shown with `--verbose`).
pub fn skipped_warning(doc: &Document) -> Diagnostic {
    Diagnostic {
        severity: Severity::Warning,
        ..doc.error(
            &rampart_resources::FieldPath::root(),
            format!("{} {} is not used by the agent", doc.api_version, doc.kind),
        )
    }
}
