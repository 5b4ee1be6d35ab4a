//! Kubernetes authorization for Rampart's access gateway: the API server's request
//! parsing ([`RequestInfo`]) and its RBAC authorizer ([`Rbac`]), with the same semantics
//! as kube-apiserver, so that the gateway in front of the API server decides exactly as
//! the API server would.
//!
//! What it does:
//! - [`request`] turns a method and request target into a [`RequestInfo`] (verb, group,
//!   version, namespace, resource, subresource, name);
//! - [`rbac`] decides a request for a user from Roles, ClusterRoles and their bindings;
//! - [`load`] turns `rbac.authorization.k8s.io/v1` documents into an [`Rbac`], reporting
//!   every invalid field at once and resolving aggregated ClusterRoles;
//! - [`bootstrap`] holds the API server's bootstrap policy for authenticated users
//!   (discovery, health and version, self-reviews);
//! - [`impersonation_checks`] lists the authorization checks the API server makes before
//!   it lets a user act as another (`kubectl --as`).
//!
//! What it does not do: no authentication, no I/O, no clock. RBAC never denies; the
//! caller refuses whatever no rule allows.

pub mod bootstrap;
pub mod load;
pub mod rbac;
pub mod request;
mod selector;

pub use load::{LoadedRbac, load};
pub use rbac::{Binding, Decision, PolicyRule, Rbac, RoleRef, Subject, UserInfo};
pub use request::{RequestInfo, RequestInfoError};

/// The message the API server gives when it refuses a request (`forbiddenMessage`
/// upstream), e.g. `User "alice" cannot list resource "pods" in API group "" in the
/// namespace "default"`.
pub fn forbidden_message(user: &str, req: &RequestInfo) -> String {
    if !req.is_resource_request {
        return format!("User {user:?} cannot {} path {:?}", req.verb, req.path);
    }
    let resource = req.combined_resource();
    if req.namespace.is_empty() {
        format!(
            "User {user:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
            req.verb, req.api_group
        )
    } else {
        format!(
            "User {user:?} cannot {} resource {resource:?} in API group {:?} in the namespace {:?}",
            req.verb, req.api_group, req.namespace
        )
    }
}

/// The message of the API server's 403 `Status` for a refused request
/// (`apierrors.NewForbidden`): `pods "x" is forbidden: User ...`.
pub fn forbidden_status_message(user: &str, req: &RequestInfo) -> String {
    let detail = forbidden_message(user, req);
    if !req.is_resource_request || req.resource.is_empty() {
        return format!("forbidden: {detail}");
    }
    let qualified = if req.api_group.is_empty() {
        req.resource.clone()
    } else {
        format!("{}.{}", req.resource, req.api_group)
    };
    if req.name.is_empty() {
        format!("{qualified} is forbidden: {detail}")
    } else {
        format!("{qualified} {:?} is forbidden: {detail}", req.name)
    }
}

/// What a user asks to act as (the `Impersonate-*` headers of a request).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImpersonationRequest {
    /// `Impersonate-User`.
    pub user: String,
    /// `Impersonate-Group` values.
    pub groups: Vec<String>,
    /// `Impersonate-Uid`, if sent.
    pub uid: Option<String>,
    /// `Impersonate-Extra-<key>` values, keys lower-cased and unescaped.
    pub extra: Vec<(String, Vec<String>)>,
}

/// The authorization checks the API server makes for an impersonation request, one per
/// impersonated item, all with the verb `impersonate`: `users` (or `serviceaccounts`
/// for `system:serviceaccount:<ns>:<name>`), `groups`, `uids` and `userextras/<key>` (the
/// last two in the `authentication.k8s.io` group).
pub fn impersonation_checks(req: &ImpersonationRequest) -> Vec<RequestInfo> {
    let check = |group: &str, resource: &str, sub: &str, ns: &str, name: &str| RequestInfo {
        is_resource_request: true,
        verb: "impersonate".to_owned(),
        api_group: group.to_owned(),
        namespace: ns.to_owned(),
        resource: resource.to_owned(),
        subresource: sub.to_owned(),
        name: name.to_owned(),
        ..RequestInfo::default()
    };
    let mut out = Vec::new();
    let sa = req
        .user
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'));
    match sa {
        Some((ns, name)) => out.push(check("", "serviceaccounts", "", ns, name)),
        None => out.push(check("", "users", "", "", &req.user)),
    }
    for g in &req.groups {
        out.push(check("", "groups", "", "", g));
    }
    if let Some(uid) = &req.uid {
        out.push(check("authentication.k8s.io", "uids", "", "", uid));
    }
    for (key, values) in &req.extra {
        for v in values {
            out.push(check("authentication.k8s.io", "userextras", key, "", v));
        }
    }
    out
}
