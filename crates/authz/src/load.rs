//! Loading RBAC manifests: Role, ClusterRole, RoleBinding and ClusterRoleBinding
//! documents (`rbac.authorization.k8s.io/v1`) become an [`Rbac`] authorizer.
//!
//! Every object is checked as the API server's validation would check it, and every
//! problem is reported at once with its file, document and field path. Documents of
//! other kinds are skipped, so a whole `kubectl get -o yaml` dump loads as is.
//!
//! Defaults follow the v1 API: an empty `roleRef.apiGroup` and an empty `apiGroup` of a
//! `User` or `Group` subject mean `rbac.authorization.k8s.io`.
//!
//! Aggregation: a ClusterRole with an `aggregationRule` gets the union of the rules of
//! every ClusterRole matched by one of its `clusterRoleSelectors` (its own listed rules
//! are replaced, as the aggregation controller replaces them). Aggregation repeats until
//! nothing changes, so aggregates of aggregates resolve too.

use std::collections::{BTreeMap, HashMap, HashSet};

use rampart_resources::{Diagnostics, Document, FieldPath, ObjectErrors};
use serde::Deserialize;

use crate::rbac::{Binding, PolicyRule, Rbac, RoleRef, Subject};
use crate::selector::{is_dns1123_subdomain, is_label_key, is_label_value};

/// The RBAC API group.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const RBAC_API_VERSION: &str = "rbac.authorization.k8s.io/v1";
const KINDS: [&str; 4] = ["Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"];

/// An RBAC policy loaded from documents, with the warnings found on the way.
#[derive(Debug)]
pub struct LoadedRbac {
    /// The authorizer.
    pub rbac: Rbac,
    /// Problems that do not stop loading (a binding to a role that does not exist).
    pub warnings: Diagnostics,
    /// Counts of objects loaded, by kind, in [`KINDS`] order.
    pub counts: [usize; 4],
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawMetadata {
    name: Option<String>,
    namespace: Option<String>,
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
struct RawRule {
    verbs: Option<Vec<String>>,
    api_groups: Option<Vec<String>>,
    resources: Option<Vec<String>>,
    resource_names: Option<Vec<String>>,
    #[serde(rename = "nonResourceURLs")]
    non_resource_urls: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawLabelSelector {
    #[serde(default)]
    match_labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    match_expressions: Option<Vec<RawRequirement>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequirement {
    key: String,
    operator: String,
    #[serde(default)]
    values: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawAggregationRule {
    #[serde(default)]
    cluster_role_selectors: Option<Vec<RawLabelSelector>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRole {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    #[serde(default)]
    metadata: RawMetadata,
    #[serde(default)]
    rules: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    aggregation_rule: Option<RawAggregationRule>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRoleRef {
    #[serde(default)]
    api_group: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSubject {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    api_group: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawBinding {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    #[serde(default)]
    metadata: RawMetadata,
    #[serde(default)]
    role_ref: Option<RawRoleRef>,
    #[serde(default)]
    subjects: Option<Vec<serde_json::Value>>,
}

/// A label selector of an aggregation rule.
#[derive(Debug, Clone)]
struct Selector {
    labels: Vec<(String, String)>,
    expressions: Vec<(String, Op, Vec<String>)>,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl Selector {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.labels
            .iter()
            .all(|(k, v)| labels.get(k).is_some_and(|x| x == v))
            && self.expressions.iter().all(|(k, op, values)| {
                let value = labels.get(k);
                match op {
                    Op::In => value.is_some_and(|v| values.contains(v)),
                    Op::NotIn => value.is_none_or(|v| !values.contains(v)),
                    Op::Exists => value.is_some(),
                    Op::DoesNotExist => value.is_none(),
                }
            })
    }
}

struct ClusterRoleEntry {
    name: String,
    labels: BTreeMap<String, String>,
    rules: Vec<PolicyRule>,
    aggregation: Option<Vec<Selector>>,
}

/// Loads every RBAC object in `docs`; other kinds are skipped.
pub fn load(docs: &[Document]) -> Result<LoadedRbac, Diagnostics> {
    let mut errors = Diagnostics::default();
    let mut warnings = Diagnostics::default();
    let mut roles: Vec<(String, String, Vec<PolicyRule>)> = Vec::new();
    let mut cluster_roles: Vec<ClusterRoleEntry> = Vec::new();
    let mut bindings: Vec<(Binding, &Document)> = Vec::new();
    let mut seen: HashMap<(String, String, String), &Document> = HashMap::new();
    let mut counts = [0; 4];

    for doc in docs {
        let Some(kind_index) = KINDS.iter().position(|k| *k == doc.kind) else {
            continue;
        };
        if doc.api_group() != RBAC_GROUP {
            continue;
        }
        if doc.api_version != RBAC_API_VERSION {
            errors.push(doc.error(
                &FieldPath::root().field("apiVersion"),
                format!("unsupported: use {RBAC_API_VERSION}"),
            ));
            continue;
        }
        let namespaced = doc.kind == "Role" || doc.kind == "RoleBinding";
        let mut oe = ObjectErrors::new(Some(&doc.location), doc.object_ref());
        let outcome = if doc.kind.ends_with("Binding") {
            decode_binding(doc, namespaced, &mut oe).map(|b| {
                let key = (doc.kind.clone(), b.namespace.clone(), b.name.clone());
                (key, Loaded::Binding(b))
            })
        } else {
            decode_role(doc, namespaced, &mut oe).map(|r| {
                let key = (doc.kind.clone(), r.0.clone(), r.1.name.clone());
                (key, Loaded::Role(r))
            })
        };
        let oe_errors = oe.finish();
        let bad = !oe_errors.is_empty();
        errors.extend(oe_errors);
        let Some((key, loaded)) = outcome else {
            continue;
        };
        if bad {
            continue;
        }
        if let Some(first) = seen.get(&key) {
            errors.push(doc.error(
                &FieldPath::root().field("metadata").field("name"),
                format!(
                    "duplicate: {} is also defined at {}",
                    doc.object_ref(),
                    first.location
                ),
            ));
            continue;
        }
        seen.insert(key, doc);
        counts[kind_index] += 1;
        match loaded {
            Loaded::Role((ns, entry)) if namespaced => roles.push((ns, entry.name, entry.rules)),
            Loaded::Role((_, entry)) => cluster_roles.push(entry),
            Loaded::Binding(b) => bindings.push((b, doc)),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    aggregate(&mut cluster_roles);

    let role_names: HashSet<(&str, &str)> = roles
        .iter()
        .map(|(ns, n, _)| (ns.as_str(), n.as_str()))
        .collect();
    let cluster_role_names: HashSet<&str> = cluster_roles.iter().map(|c| c.name.as_str()).collect();
    for (b, doc) in &bindings {
        let found = match &b.role_ref {
            RoleRef::Role(n) => role_names.contains(&(b.namespace.as_str(), n.as_str())),
            RoleRef::ClusterRole(n) => cluster_role_names.contains(n.as_str()),
        };
        if !found {
            let what = match &b.role_ref {
                RoleRef::Role(n) => format!("Role {}/{n}", b.namespace),
                RoleRef::ClusterRole(n) => format!("ClusterRole {n}"),
            };
            warnings.push(doc.warning(
                &FieldPath::root().field("roleRef"),
                format!("{what} is not defined: this binding grants nothing"),
            ));
        }
    }

    let rbac = Rbac::new(
        roles,
        cluster_roles.into_iter().map(|c| (c.name, c.rules)),
        bindings.into_iter().map(|(b, _)| b),
    );
    Ok(LoadedRbac {
        rbac,
        warnings,
        counts,
    })
}

enum Loaded {
    Role((String, ClusterRoleEntry)),
    Binding(Binding),
}

fn decode_role(
    doc: &Document,
    namespaced: bool,
    oe: &mut ObjectErrors<'_>,
) -> Option<(String, ClusterRoleEntry)> {
    let raw: RawRole = match doc.decode() {
        Ok(r) => r,
        Err(e) => {
            oe.push(&FieldPath::root().field(&e.path), e.message);
            return None;
        }
    };
    let (name, namespace) = check_metadata(&raw.metadata, namespaced, oe);
    let mut rules = Vec::new();
    let rules_path = FieldPath::root().field("rules");
    for (i, r) in raw.rules.unwrap_or_default().into_iter().enumerate() {
        let Some(r) = decode_part::<RawRule>(r, &rules_path.index(i), oe) else {
            continue;
        };
        if let Some(rule) = check_rule(r, namespaced, &rules_path.index(i), oe) {
            rules.push(rule);
        }
    }
    let mut aggregation = None;
    if let Some(agg) = raw.aggregation_rule {
        let path = FieldPath::root().field("aggregationRule");
        if namespaced {
            oe.push(&path, "not allowed in a Role");
        }
        let selectors = agg.cluster_role_selectors.unwrap_or_default();
        let sel_path = path.field("clusterRoleSelectors");
        if selectors.is_empty() {
            oe.push(
                &sel_path,
                "required: at least one clusterRoleSelector if aggregationRule is set",
            );
        }
        let mut out = Vec::new();
        for (i, s) in selectors.into_iter().enumerate() {
            if let Some(s) = check_selector(s, &sel_path.index(i), oe) {
                out.push(s);
            }
        }
        aggregation = Some(out);
    }
    for (k, v) in &raw.metadata.labels {
        let path = FieldPath::root().field("metadata").field("labels").key(k);
        if !is_label_key(k) {
            oe.push(&path, "invalid label key");
        }
        if !is_label_value(v) {
            oe.push(&path, format!("invalid label value {v:?}"));
        }
    }
    Some((
        namespace,
        ClusterRoleEntry {
            name,
            labels: raw.metadata.labels,
            rules,
            aggregation,
        },
    ))
}

/// Decodes one element of a list on its own, so that the errors of the other elements
/// are reported too.
fn decode_part<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
    path: &FieldPath,
    oe: &mut ObjectErrors<'_>,
) -> Option<T> {
    match serde_path_to_error::deserialize(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let at = if inner == "." {
                path.clone()
            } else {
                path.field(&inner)
            };
            oe.push(&at, e.into_inner().to_string());
            None
        }
    }
}

fn check_metadata(
    meta: &RawMetadata,
    namespaced: bool,
    oe: &mut ObjectErrors<'_>,
) -> (String, String) {
    let path = FieldPath::root().field("metadata");
    let name = meta.name.clone().unwrap_or_default();
    if name.is_empty() {
        oe.push(&path.field("name"), "required");
    } else if !is_path_segment_name(&name) {
        oe.push(
            &path.field("name"),
            "may not be '.' or '..' or contain '/' or '%'",
        );
    }
    let namespace = if namespaced {
        let ns = meta.namespace.clone().unwrap_or_default();
        if ns.is_empty() {
            oe.push(
                &path.field("namespace"),
                "required for namespaced objects (the API server would use the client's current namespace)",
            );
        } else if !is_dns1123_label(&ns) {
            oe.push(&path.field("namespace"), "must be a DNS-1123 label");
        }
        ns
    } else {
        String::new()
    };
    (name, namespace)
}

fn is_path_segment_name(s: &str) -> bool {
    s != "." && s != ".." && !s.contains('/') && !s.contains('%')
}

fn is_dns1123_label(s: &str) -> bool {
    s.len() <= 63 && !s.contains('.') && is_dns1123_subdomain(s)
}

fn check_rule(
    raw: RawRule,
    namespaced: bool,
    path: &FieldPath,
    oe: &mut ObjectErrors<'_>,
) -> Option<PolicyRule> {
    let before = !oe.is_empty();
    let rule = PolicyRule {
        verbs: raw.verbs.unwrap_or_default(),
        api_groups: raw.api_groups.unwrap_or_default(),
        resources: raw.resources.unwrap_or_default(),
        resource_names: raw.resource_names.unwrap_or_default(),
        non_resource_urls: raw.non_resource_urls.unwrap_or_default(),
    };
    let mut failed = false;
    if rule.verbs.is_empty() {
        oe.push(
            &path.field("verbs"),
            "required: verbs must contain at least one value",
        );
        failed = true;
    }
    if !rule.non_resource_urls.is_empty() {
        if namespaced {
            oe.push(
                &path.field("nonResourceURLs"),
                "namespaced rules cannot apply to non-resource URLs",
            );
            failed = true;
        }
        if !rule.api_groups.is_empty() || !rule.resources.is_empty() {
            oe.push(
                &path.field("nonResourceURLs"),
                "rules cannot apply to both regular resources and non-resource URLs",
            );
            failed = true;
        }
    } else {
        if rule.api_groups.is_empty() {
            oe.push(
                &path.field("apiGroups"),
                "required: resource rules must supply at least one api group",
            );
            failed = true;
        }
        if rule.resources.is_empty() {
            oe.push(
                &path.field("resources"),
                "required: resource rules must supply at least one resource",
            );
            failed = true;
        }
    }
    let _ = before;
    (!failed).then_some(rule)
}

fn check_selector(
    raw: RawLabelSelector,
    path: &FieldPath,
    oe: &mut ObjectErrors<'_>,
) -> Option<Selector> {
    let mut ok = true;
    let mut labels = Vec::new();
    for (k, v) in raw.match_labels.unwrap_or_default() {
        let p = path.field("matchLabels").key(&k);
        if !is_label_key(&k) {
            oe.push(&p, "invalid label key");
            ok = false;
        }
        if !is_label_value(&v) {
            oe.push(&p, format!("invalid label value {v:?}"));
            ok = false;
        }
        labels.push((k, v));
    }
    let mut expressions = Vec::new();
    for (i, e) in raw
        .match_expressions
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let p = path.field("matchExpressions").index(i);
        if !is_label_key(&e.key) {
            oe.push(&p.field("key"), "invalid label key");
            ok = false;
        }
        let values = e.values.unwrap_or_default();
        let op = match e.operator.as_str() {
            "In" => Op::In,
            "NotIn" => Op::NotIn,
            "Exists" => Op::Exists,
            "DoesNotExist" => Op::DoesNotExist,
            other => {
                oe.push(
                    &p.field("operator"),
                    format!("unsupported value {other:?}: use In, NotIn, Exists or DoesNotExist"),
                );
                ok = false;
                continue;
            }
        };
        match op {
            Op::In | Op::NotIn if values.is_empty() => {
                oe.push(
                    &p.field("values"),
                    "must be specified when operator is In or NotIn",
                );
                ok = false;
            }
            Op::Exists | Op::DoesNotExist if !values.is_empty() => {
                oe.push(
                    &p.field("values"),
                    "may not be specified when operator is Exists or DoesNotExist",
                );
                ok = false;
            }
            _ => {}
        }
        for (j, v) in values.iter().enumerate() {
            if !is_label_value(v) {
                oe.push(&p.field("values").index(j), "invalid label value");
                ok = false;
            }
        }
        expressions.push((e.key, op, values));
    }
    ok.then_some(Selector {
        labels,
        expressions,
    })
}

fn decode_binding(doc: &Document, namespaced: bool, oe: &mut ObjectErrors<'_>) -> Option<Binding> {
    let raw: RawBinding = match doc.decode() {
        Ok(r) => r,
        Err(e) => {
            oe.push(&FieldPath::root().field(&e.path), e.message);
            return None;
        }
    };
    let (name, namespace) = check_metadata(&raw.metadata, namespaced, oe);
    let rr_path = FieldPath::root().field("roleRef");
    let role_ref = match raw.role_ref {
        None => {
            oe.push(&rr_path, "required");
            None
        }
        Some(rr) => {
            if !rr.api_group.is_empty() && rr.api_group != RBAC_GROUP {
                oe.push(
                    &rr_path.field("apiGroup"),
                    format!("unsupported value {:?}: use {RBAC_GROUP}", rr.api_group),
                );
            }
            if rr.name.is_empty() {
                oe.push(&rr_path.field("name"), "required");
            }
            match rr.kind.as_str() {
                "Role" if namespaced => Some(RoleRef::Role(rr.name)),
                "ClusterRole" => Some(RoleRef::ClusterRole(rr.name)),
                other => {
                    let allowed = if namespaced {
                        "Role or ClusterRole"
                    } else {
                        "ClusterRole"
                    };
                    oe.push(
                        &rr_path.field("kind"),
                        format!("unsupported value {other:?}: use {allowed}"),
                    );
                    None
                }
            }
        }
    };
    let mut subjects = Vec::new();
    let sp = FieldPath::root().field("subjects");
    for (i, s) in raw.subjects.unwrap_or_default().into_iter().enumerate() {
        let p = sp.index(i);
        let Some(s) = decode_part::<RawSubject>(s, &p, oe) else {
            continue;
        };
        if s.name.is_empty() {
            oe.push(&p.field("name"), "required");
            continue;
        }
        match s.kind.as_str() {
            "User" | "Group" => {
                if !s.api_group.is_empty() && s.api_group != RBAC_GROUP {
                    oe.push(
                        &p.field("apiGroup"),
                        format!("unsupported value {:?}: use {RBAC_GROUP}", s.api_group),
                    );
                    continue;
                }
                subjects.push(if s.kind == "User" {
                    Subject::User(s.name)
                } else {
                    Subject::Group(s.name)
                });
            }
            "ServiceAccount" => {
                if !s.api_group.is_empty() {
                    oe.push(&p.field("apiGroup"), "must be empty for a ServiceAccount");
                    continue;
                }
                if !namespaced && s.namespace.is_empty() {
                    oe.push(&p.field("namespace"), "required for a ServiceAccount");
                    continue;
                }
                subjects.push(Subject::ServiceAccount {
                    namespace: s.namespace,
                    name: s.name,
                });
            }
            other => oe.push(
                &p.field("kind"),
                format!("unsupported value {other:?}: use User, Group or ServiceAccount"),
            ),
        }
    }
    Some(Binding {
        namespace,
        name,
        role_ref: role_ref?,
        subjects,
    })
}

/// Resolves aggregated ClusterRoles to a fixpoint.
fn aggregate(cluster_roles: &mut [ClusterRoleEntry]) {
    if cluster_roles.iter().all(|c| c.aggregation.is_none()) {
        return;
    }
    // Sorted by name, as the controller lists them.
    let mut order: Vec<usize> = (0..cluster_roles.len()).collect();
    order.sort_by(|a, b| cluster_roles[*a].name.cmp(&cluster_roles[*b].name));
    for c in cluster_roles.iter_mut() {
        if c.aggregation.is_some() {
            c.rules.clear();
        }
    }
    // Each round can only add rules; the union is bounded, so this ends. The bound on
    // rounds is a safeguard.
    for _ in 0..=cluster_roles.len() {
        let mut changed = false;
        for i in 0..cluster_roles.len() {
            let Some(selectors) = cluster_roles[i].aggregation.clone() else {
                continue;
            };
            let mut rules: Vec<PolicyRule> = Vec::new();
            for s in &selectors {
                for &j in &order {
                    if j == i || !s.matches(&cluster_roles[j].labels) {
                        continue;
                    }
                    for r in &cluster_roles[j].rules {
                        if !rules.contains(r) {
                            rules.push(r.clone());
                        }
                    }
                }
            }
            if rules != cluster_roles[i].rules {
                cluster_roles[i].rules = rules;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use rampart_resources::{Source, parse_source};

    use super::*;
    use crate::{RequestInfo, UserInfo};

    fn load_text(text: &str) -> Result<LoadedRbac, Diagnostics> {
        let (docs, errors) = parse_source(&Source::from_text("rbac.yaml", text));
        assert!(errors.is_empty(), "{errors}");
        load(&docs)
    }

    fn can(rbac: &Rbac, user: &str, groups: &[&str], method: &str, url: &str) -> bool {
        let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        let req = RequestInfo::parse(method, url).unwrap();
        rbac.authorize(
            UserInfo {
                name: user,
                groups: &groups,
            },
            &req,
        )
        .is_allowed()
    }

    #[test]
    fn aggregated_cluster_roles_are_resolved() {
        let loaded = load_text(
            r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: monitoring}
aggregationRule:
  clusterRoleSelectors:
  - matchLabels: {rbac.example.com/aggregate-to-monitoring: "true"}
rules: [{apiGroups: [""], resources: [secrets], verbs: ["*"]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: monitoring-endpoints
  labels: {rbac.example.com/aggregate-to-monitoring: "true"}
rules: [{apiGroups: [""], resources: [services, endpoints, pods], verbs: [get, list, watch]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: top}
aggregationRule:
  clusterRoleSelectors:
  - matchExpressions: [{key: tier, operator: In, values: [mid]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: mid, labels: {tier: mid}}
aggregationRule:
  clusterRoleSelectors: [{matchLabels: {rbac.example.com/aggregate-to-monitoring: "true"}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: mon}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: monitoring}
subjects: [{kind: User, name: alice}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: top}
roleRef: {kind: ClusterRole, name: top}
subjects: [{kind: User, name: bob}]
"#,
        )
        .unwrap();
        let rbac = &loaded.rbac;
        assert!(can(rbac, "alice", &[], "GET", "/api/v1/namespaces/x/pods"));
        // The aggregate's own listed rules are replaced by the aggregation.
        assert!(!can(
            rbac,
            "alice",
            &[],
            "GET",
            "/api/v1/namespaces/x/secrets/s"
        ));
        // Aggregates of aggregates resolve.
        assert!(can(
            rbac,
            "bob",
            &[],
            "GET",
            "/api/v1/namespaces/x/endpoints?watch=1"
        ));
        assert!(!can(
            rbac,
            "bob",
            &[],
            "DELETE",
            "/api/v1/namespaces/x/pods/p"
        ));
        assert_eq!(loaded.counts, [0, 4, 0, 2]);
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let err = load_text(
            r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: r}
rules:
- {apiGroups: [""], resources: [pods]}
- {verbs: [get], nonResourceURLs: ["/healthz"]}
- {verbs: [get], resource: [pods], apiGroups: [""]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: b}
roleRef: {kind: Role, name: r}
subjects: [{kind: Robot, name: x}, {kind: ServiceAccount, name: sa}]
---
apiVersion: rbac.authorization.k8s.io/v1beta1
kind: ClusterRole
metadata: {name: old}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ignored}
"#,
        )
        .unwrap_err();
        let text = err.to_string();
        for expected in [
            "rbac.yaml: document 1 (line 2): Role r: metadata.namespace: required",
            "Role r: rules[0].verbs: required",
            "Role r: rules[1].nonResourceURLs: namespaced rules cannot apply to non-resource URLs",
            "Role r: rules[2].resource: unknown field `resource`",
            "ClusterRoleBinding b: roleRef.kind: unsupported value \"Role\": use ClusterRole",
            "ClusterRoleBinding b: subjects[0].kind: unsupported value \"Robot\"",
            "ClusterRoleBinding b: subjects[1].namespace: required for a ServiceAccount",
            "ClusterRole old: apiVersion: unsupported: use rbac.authorization.k8s.io/v1",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }

    #[test]
    fn missing_roles_warn_and_duplicates_fail() {
        let loaded = load_text(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: b, namespace: ns}\nroleRef: {kind: Role, name: gone}\nsubjects: [{kind: Group, name: g}]\n",
        )
        .unwrap();
        assert_eq!(loaded.warnings.len(), 1);
        assert!(
            loaded
                .warnings
                .to_string()
                .contains("Role ns/gone is not defined")
        );
        let err = load_text(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: a}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: a}\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("duplicate"), "{err}");
    }
}
