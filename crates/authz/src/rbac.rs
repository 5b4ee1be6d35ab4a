//! The RBAC authorizer: Kubernetes' `rbac.authorization.k8s.io/v1` semantics, exactly.
//!
//! - The decision is [`Decision::Allow`] or [`Decision::NoOpinion`]; RBAC never denies,
//!   and rules only add permissions. The gateway refuses what nothing allows.
//! - ClusterRoleBindings apply in every namespace and to cluster-scoped requests;
//!   RoleBindings apply only to requests in their own namespace. A RoleBinding may refer
//!   to a ClusterRole, whose rules then apply inside the binding's namespace.
//! - Verbs, API groups, resources, resource names and non-resource URLs match exactly
//!   and case-sensitively, and `*` matches anything. `pods` does not match `pods/log`;
//!   `*/scale` matches the `scale` subresource of every resource. An empty
//!   `resourceNames` matches any name, including none; a non-empty one only matches
//!   requests that carry a name. A non-resource URL ending in `*` is a prefix match.
//! - Subjects: a `User` matches the user name exactly (`*` is not a wildcard), a `Group`
//!   matches membership, a `ServiceAccount` matches `system:serviceaccount:<ns>:<name>`,
//!   where an empty namespace stands for the RoleBinding's namespace (and matches
//!   nothing in a ClusterRoleBinding).
//! - A binding whose role does not exist grants nothing; the missing role is named in
//!   the reason, as the API server does.
//! - Aggregated ClusterRoles are resolved when the policy is built (see
//!   [`crate::load`]), so the authorizer only sees plain rules.

use std::collections::HashMap;
use std::sync::Arc;

use crate::request::RequestInfo;

/// `*`: matches every verb, group, resource or URL.
pub const ALL: &str = "*";

/// One rule of a Role or ClusterRole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PolicyRule {
    /// Verbs, e.g. `get`, `list`, `*`.
    pub verbs: Vec<String>,
    /// API groups (`""` is the core group).
    pub api_groups: Vec<String>,
    /// Resources, `resource/subresource`, `*/subresource` or `*`.
    pub resources: Vec<String>,
    /// Object names; empty means any.
    pub resource_names: Vec<String>,
    /// Non-resource URLs; a trailing `*` is a prefix match.
    pub non_resource_urls: Vec<String>,
}

impl PolicyRule {
    /// Whether this rule allows the request (`RuleAllows` upstream).
    pub fn allows(&self, req: &RequestInfo) -> bool {
        if req.is_resource_request {
            self.verb_matches(&req.verb)
                && self.api_group_matches(&req.api_group)
                && self.resource_matches(&req.resource, &req.subresource)
                && self.resource_name_matches(&req.name)
        } else {
            self.verb_matches(&req.verb) && self.non_resource_url_matches(&req.path)
        }
    }

    fn verb_matches(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == ALL || v == verb)
    }

    fn api_group_matches(&self, group: &str) -> bool {
        self.api_groups.iter().any(|g| g == ALL || g == group)
    }

    fn resource_matches(&self, resource: &str, subresource: &str) -> bool {
        self.resources.iter().any(|r| {
            if r == ALL {
                return true;
            }
            if subresource.is_empty() {
                return r == resource;
            }
            // `resource/subresource`, without allocating the combined name.
            if let Some(rest) = r.strip_prefix(resource)
                && let Some(sub) = rest.strip_prefix('/')
                && sub == subresource
            {
                return true;
            }
            r.len() == subresource.len() + 2 && r.starts_with("*/") && r.ends_with(subresource)
        })
    }

    fn resource_name_matches(&self, name: &str) -> bool {
        self.resource_names.is_empty() || self.resource_names.iter().any(|n| n == name)
    }

    fn non_resource_url_matches(&self, path: &str) -> bool {
        self.non_resource_urls.iter().any(|u| {
            u == ALL || u == path || (u.ends_with('*') && path.starts_with(u.trim_end_matches('*')))
        })
    }
}

/// Who a binding grants its role to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A user, by exact name.
    User(String),
    /// Members of a group.
    Group(String),
    /// A service account; an empty namespace means the RoleBinding's own.
    ServiceAccount {
        /// Its namespace, possibly empty.
        namespace: String,
        /// Its name.
        name: String,
    },
}

impl Subject {
    fn applies_to(&self, user: &UserInfo<'_>, binding_namespace: &str) -> bool {
        match self {
            Subject::User(name) => user.name == name,
            Subject::Group(group) => user.groups.iter().any(|g| g == group),
            Subject::ServiceAccount { namespace, name } => {
                let ns = if namespace.is_empty() {
                    binding_namespace
                } else {
                    namespace
                };
                !ns.is_empty() && service_account_matches(user.name, ns, name)
            }
        }
    }

    fn describe(&self, binding_namespace: &str) -> String {
        match self {
            Subject::User(name) => format!("User {name:?}"),
            Subject::Group(name) => format!("Group {name:?}"),
            Subject::ServiceAccount { namespace, name } => {
                let ns = if namespace.is_empty() {
                    binding_namespace
                } else {
                    namespace
                };
                format!("ServiceAccount {:?}", format!("{name}/{ns}"))
            }
        }
    }
}

fn service_account_matches(username: &str, namespace: &str, name: &str) -> bool {
    username
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.strip_prefix(namespace))
        .and_then(|rest| rest.strip_prefix(':'))
        .is_some_and(|rest| rest == name)
}

/// The role a binding refers to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RoleRef {
    /// A Role in the binding's namespace.
    Role(String),
    /// A ClusterRole.
    ClusterRole(String),
}

impl RoleRef {
    fn kind(&self) -> &'static str {
        match self {
            RoleRef::Role(_) => "Role",
            RoleRef::ClusterRole(_) => "ClusterRole",
        }
    }

    fn name(&self) -> &str {
        match self {
            RoleRef::Role(n) | RoleRef::ClusterRole(n) => n,
        }
    }
}

/// A RoleBinding (with a namespace) or a ClusterRoleBinding (without).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The binding's namespace; empty for a ClusterRoleBinding.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The role it grants.
    pub role_ref: RoleRef,
    /// Who it grants it to.
    pub subjects: Vec<Subject>,
}

/// The user a request is made as.
#[derive(Debug, Clone, Copy)]
pub struct UserInfo<'a> {
    /// The user name.
    pub name: &'a str,
    /// The groups the user is in.
    pub groups: &'a [String],
}

/// The authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A rule allows the request; the reason names the binding, role and subject.
    Allow {
        /// `RBAC: allowed by ClusterRoleBinding "x" of ClusterRole "y" to User "u"`.
        reason: String,
    },
    /// No rule allows the request (RBAC never denies).
    NoOpinion {
        /// Empty, or the bindings whose roles are missing.
        reason: String,
    },
}

impl Decision {
    /// True for [`Decision::Allow`].
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    /// The reason text.
    pub fn reason(&self) -> &str {
        match self {
            Decision::Allow { reason } | Decision::NoOpinion { reason } => reason,
        }
    }
}

/// A validated, resolved set of roles and bindings, ready to answer requests.
#[derive(Debug, Clone, Default)]
pub struct Rbac {
    roles: HashMap<(String, String), Arc<[PolicyRule]>>,
    cluster_roles: HashMap<String, Arc<[PolicyRule]>>,
    cluster_role_bindings: Vec<Binding>,
    role_bindings: HashMap<String, Vec<Binding>>,
}

impl Rbac {
    /// Builds an authorizer from roles (namespace, name, rules), cluster roles (name,
    /// rules, already aggregated) and bindings.
    pub fn new(
        roles: impl IntoIterator<Item = (String, String, Vec<PolicyRule>)>,
        cluster_roles: impl IntoIterator<Item = (String, Vec<PolicyRule>)>,
        bindings: impl IntoIterator<Item = Binding>,
    ) -> Self {
        let mut rbac = Rbac::default();
        for (ns, name, rules) in roles {
            rbac.roles.insert((ns, name), rules.into());
        }
        for (name, rules) in cluster_roles {
            rbac.cluster_roles.insert(name, rules.into());
        }
        for b in bindings {
            if b.namespace.is_empty() {
                rbac.cluster_role_bindings.push(b);
            } else {
                rbac.role_bindings
                    .entry(b.namespace.clone())
                    .or_default()
                    .push(b);
            }
        }
        rbac
    }

    /// Number of bindings of both kinds.
    pub fn binding_count(&self) -> usize {
        self.cluster_role_bindings.len() + self.role_bindings.values().map(Vec::len).sum::<usize>()
    }

    /// The rules of a cluster role, if it exists.
    pub fn cluster_role(&self, name: &str) -> Option<&[PolicyRule]> {
        self.cluster_roles.get(name).map(|r| &r[..])
    }

    /// Decides whether `user` may make the request `req`, as the API server's RBAC
    /// authorizer does: ClusterRoleBindings first, then the RoleBindings of the
    /// request's namespace.
    pub fn authorize(&self, user: UserInfo<'_>, req: &RequestInfo) -> Decision {
        let mut errors: Vec<String> = Vec::new();
        for b in &self.cluster_role_bindings {
            if let Some(reason) = self.visit(b, user, req, "", &mut errors) {
                return Decision::Allow { reason };
            }
        }
        if !req.namespace.is_empty()
            && let Some(bindings) = self.role_bindings.get(&req.namespace)
        {
            for b in bindings {
                if let Some(reason) = self.visit(b, user, req, &req.namespace, &mut errors) {
                    return Decision::Allow { reason };
                }
            }
        }
        let reason = match errors.len() {
            0 => String::new(),
            1 => format!("RBAC: {}", errors[0]),
            _ => format!("RBAC: [{}]", errors.join(", ")),
        };
        Decision::NoOpinion { reason }
    }

    fn visit(
        &self,
        binding: &Binding,
        user: UserInfo<'_>,
        req: &RequestInfo,
        namespace: &str,
        errors: &mut Vec<String>,
    ) -> Option<String> {
        let subject = binding
            .subjects
            .iter()
            .find(|s| s.applies_to(&user, namespace))?;
        let rules = match &binding.role_ref {
            RoleRef::Role(name) => self
                .roles
                .get(&(namespace.to_owned(), name.clone()))
                .ok_or_else(|| format!("role.rbac.authorization.k8s.io {name:?} not found")),
            RoleRef::ClusterRole(name) => self
                .cluster_roles
                .get(name)
                .ok_or_else(|| format!("clusterrole.rbac.authorization.k8s.io {name:?} not found")),
        };
        let rules = match rules {
            Ok(rules) => rules,
            Err(e) => {
                errors.push(e);
                return None;
            }
        };
        if !rules.iter().any(|r| r.allows(req)) {
            return None;
        }
        let source = if binding.namespace.is_empty() {
            format!(
                "ClusterRoleBinding {:?} of {} {:?} to {}",
                binding.name,
                binding.role_ref.kind(),
                binding.role_ref.name(),
                subject.describe("")
            )
        } else {
            format!(
                "RoleBinding {:?} of {} {:?} to {}",
                format!("{}/{}", binding.name, binding.namespace),
                binding.role_ref.kind(),
                binding.role_ref.name(),
                subject.describe(&binding.namespace)
            )
        };
        Some(format!("RBAC: allowed by {source}"))
    }
}

#[cfg(test)]
mod tests;
