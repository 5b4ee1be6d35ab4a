//! The API server's bootstrap RBAC policy for every authenticated user
//! (`plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go`): discovery, the
//! public health and version endpoints, and self-reviews. A cluster has these objects
//! from its first start, so a gateway deciding as that cluster does needs them too.

/// The bootstrap objects, as RBAC manifests.
pub const BOOTSTRAP_POLICY: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:discovery"}
rules:
- nonResourceURLs: [/api, /api/*, /apis, /apis/*, /healthz, /livez, /openapi, /openapi/*, /readyz, /version, /version/]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:basic-user"}
rules:
- apiGroups: [authorization.k8s.io]
  resources: [selfsubjectaccessreviews, selfsubjectrulesreviews]
  verbs: [create]
- apiGroups: [authentication.k8s.io]
  resources: [selfsubjectreviews]
  verbs: [create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:public-info-viewer"}
rules:
- nonResourceURLs: [/healthz, /livez, /readyz, /version, /version/]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:discovery"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:discovery"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:authenticated"}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:basic-user"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:basic-user"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:authenticated"}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:public-info-viewer"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:public-info-viewer"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:authenticated"}
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:unauthenticated"}
"#;

/// The name the bootstrap policy's documents are reported under.
pub const BOOTSTRAP_SOURCE: &str = "<bootstrap policy>";

#[cfg(test)]
mod tests {
    use rampart_resources::{Source, parse_source};

    use crate::{RequestInfo, UserInfo};

    #[test]
    fn authenticated_users_get_discovery_and_self_reviews() {
        let (docs, errors) = parse_source(&Source::from_text(
            super::BOOTSTRAP_SOURCE,
            super::BOOTSTRAP_POLICY,
        ));
        assert!(errors.is_empty(), "{errors}");
        let rbac = crate::load(&docs).unwrap().rbac;
        let groups = vec!["system:authenticated".to_owned()];
        let user = UserInfo {
            name: "alice",
            groups: &groups,
        };
        for (method, path, allowed) in [
            ("GET", "/api", true),
            ("GET", "/apis/apps/v1", true),
            ("GET", "/version", true),
            ("GET", "/openapi/v3", true),
            (
                "POST",
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                true,
            ),
            ("GET", "/api/v1/namespaces/default/pods", false),
            ("GET", "/metrics", false),
            ("POST", "/api", false),
        ] {
            let req = RequestInfo::parse(method, path).unwrap();
            assert_eq!(
                rbac.authorize(user, &req).is_allowed(),
                allowed,
                "{method} {path}"
            );
        }
        let nobody = UserInfo {
            name: "x",
            groups: &[],
        };
        assert!(
            !rbac
                .authorize(nobody, &RequestInfo::parse("GET", "/api").unwrap())
                .is_allowed()
        );
    }
}
