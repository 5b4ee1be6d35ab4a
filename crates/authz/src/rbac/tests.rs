//! Cases from the API server's RBAC authorizer tests (`rbac_test.go`) and rule helpers.

use super::*;

fn split(s: &str) -> Vec<String> {
    s.split(',').map(str::to_owned).collect()
}

/// `newRule(verbs, apiGroups, resources, nonResourceURLs)` as upstream's tests build it.
fn rule(verbs: &str, groups: &str, resources: &str, urls: &str) -> PolicyRule {
    PolicyRule {
        verbs: split(verbs),
        api_groups: split(groups),
        resources: split(resources),
        resource_names: vec![],
        non_resource_urls: split(urls),
    }
}

fn subjects(list: &[&str]) -> Vec<Subject> {
    list.iter()
        .map(|s| {
            let (kind, name) = s.split_once(':').unwrap();
            match kind {
                "User" => Subject::User(name.into()),
                "Group" => Subject::Group(name.into()),
                "ServiceAccount" => {
                    let (ns, n) = name.split_once(':').unwrap_or(("", name));
                    Subject::ServiceAccount {
                        namespace: ns.into(),
                        name: n.into(),
                    }
                }
                _ => panic!("{kind}"),
            }
        })
        .collect()
}

fn crb(name: &str, role: &str, subs: &[&str]) -> Binding {
    Binding {
        namespace: String::new(),
        name: name.into(),
        role_ref: RoleRef::ClusterRole(role.into()),
        subjects: subjects(subs),
    }
}

fn rb(ns: &str, name: &str, role_ref: RoleRef, subs: &[&str]) -> Binding {
    Binding {
        namespace: ns.into(),
        name: name.into(),
        role_ref,
        subjects: subjects(subs),
    }
}

fn res(verb: &str, resource: &str, sub: &str, ns: &str, group: &str) -> RequestInfo {
    RequestInfo {
        is_resource_request: true,
        verb: verb.into(),
        api_group: group.into(),
        namespace: ns.into(),
        resource: resource.into(),
        subresource: sub.into(),
        ..RequestInfo::default()
    }
}

fn non_res(verb: &str, path: &str) -> RequestInfo {
    RequestInfo {
        verb: verb.into(),
        path: path.into(),
        ..RequestInfo::default()
    }
}

fn allowed(rbac: &Rbac, user: &str, groups: &str, req: &RequestInfo) -> bool {
    let groups: Vec<String> = if groups.is_empty() {
        vec![]
    } else {
        split(groups)
    };
    rbac.authorize(
        UserInfo {
            name: user,
            groups: &groups,
        },
        req,
    )
    .is_allowed()
}

#[test]
fn role_binding_to_cluster_role_applies_in_its_namespace_only() {
    let rbac = Rbac::new(
        [],
        [("admin".into(), vec![rule("*", "*", "*", "*")])],
        [rb(
            "ns1",
            "b",
            RoleRef::ClusterRole("admin".into()),
            &["User:admin", "Group:admins"],
        )],
    );
    for (user, groups, verb, resource) in [
        ("admin", "", "get", "Pods"),
        ("admin", "", "watch", "Pods"),
        ("admin", "group1", "watch", "Foobar"),
        ("joe", "admins", "watch", "Foobar"),
        ("joe", "group1,admins", "watch", "Foobar"),
    ] {
        assert!(allowed(
            &rbac,
            user,
            groups,
            &res(verb, resource, "", "ns1", "")
        ));
    }
    for (user, groups, ns, resource) in [
        ("admin", "", "ns2", "Pods"),
        ("admin", "", "", "Nodes"),
        ("admin", "admins", "ns2", "Pods"),
        ("admin", "admins", "", "Nodes"),
    ] {
        assert!(!allowed(
            &rbac,
            user,
            groups,
            &res("GET", resource, "", ns, "")
        ));
    }
}

#[test]
fn non_resource_urls() {
    let rbac = Rbac::new(
        [],
        [
            ("getter".into(), vec![rule("get", "", "", "/apis")]),
            ("all".into(), vec![rule("*", "", "", "/apis")]),
            ("prefix".into(), vec![rule("get", "", "", "/apis/*")]),
        ],
        [
            crb("a", "getter", &["User:foo", "Group:bar"]),
            crb("b", "all", &["User:admin", "Group:admin"]),
            crb("c", "prefix", &["User:prefixed", "Group:prefixed"]),
        ],
    );
    let pass = [
        ("foo", "", "get", "/apis"),
        ("", "bar", "get", "/apis"),
        ("admin", "", "get", "/apis"),
        ("", "admin", "get", "/apis"),
        ("admin", "", "watch", "/apis"),
        ("", "admin", "watch", "/apis"),
        ("prefixed", "", "get", "/apis/v1"),
        ("", "prefixed", "get", "/apis/v1"),
        ("prefixed", "", "get", "/apis/v1/foobar"),
        ("", "prefixed", "get", "/apis/v1/foorbar"),
    ];
    for (user, groups, verb, path) in pass {
        assert!(
            allowed(&rbac, user, groups, &non_res(verb, path)),
            "{user} {groups} {verb} {path}"
        );
    }
    let fail = [
        ("foo", "", "watch", "/apis"),
        ("", "bar", "watch", "/apis"),
        ("foo", "", "get", "/api/v1"),
        ("", "bar", "get", "/api/v1"),
        ("admin", "", "get", "/api/v1"),
        ("", "admin", "get", "/api/v1"),
        ("prefixed", "", "get", "/api/v1"),
        ("", "prefixed", "get", "/api/v1"),
        // `/apis/*` does not match `/apis` itself.
        ("prefixed", "", "get", "/apis"),
    ];
    for (user, groups, verb, path) in fail {
        assert!(
            !allowed(&rbac, user, groups, &non_res(verb, path)),
            "{user} {groups} {verb} {path}"
        );
    }
}

#[test]
fn subresources_need_their_own_rules() {
    let pods = Rbac::new(
        [],
        [("admin".into(), vec![rule("*", "*", "pods", "*")])],
        [rb(
            "ns1",
            "b",
            RoleRef::ClusterRole("admin".into()),
            &["User:admin"],
        )],
    );
    assert!(allowed(
        &pods,
        "admin",
        "",
        &res("get", "pods", "", "ns1", "")
    ));
    assert!(!allowed(
        &pods,
        "admin",
        "",
        &res("get", "pods", "status", "ns1", "")
    ));
    let status = Rbac::new(
        [],
        [("admin".into(), vec![rule("*", "*", "pods/status", "*")])],
        [rb(
            "ns1",
            "b",
            RoleRef::ClusterRole("admin".into()),
            &["User:admin"],
        )],
    );
    assert!(allowed(
        &status,
        "admin",
        "",
        &res("get", "pods", "status", "ns1", "")
    ));
    assert!(!allowed(
        &status,
        "admin",
        "",
        &res("get", "pods", "", "ns1", "")
    ));
}

#[test]
fn rule_matching_table() {
    let r = |verbs: &[&str], groups: &[&str], resources: &[&str]| PolicyRule {
        verbs: verbs.iter().map(|s| (*s).into()).collect(),
        api_groups: groups.iter().map(|s| (*s).into()).collect(),
        resources: resources.iter().map(|s| (*s).into()).collect(),
        ..PolicyRule::default()
    };
    let req =
        |verb: &str, group: &str, resource: &str, sub: &str| res(verb, resource, sub, "", group);
    let cases: Vec<(PolicyRule, Vec<(RequestInfo, bool)>)> = vec![
        (
            r(&["*"], &["group1"], &["resource1"]),
            vec![
                (req("verb1", "group1", "resource1", ""), true),
                (req("verb1", "group2", "resource1", ""), false),
                (req("verb1", "group1", "resource2", ""), false),
                (req("verb2", "group1", "resource1", ""), true),
            ],
        ),
        (
            r(&["verb1"], &["*"], &["resource1"]),
            vec![
                (req("verb1", "group1", "resource1", ""), true),
                (req("verb1", "group2", "resource1", ""), true),
                (req("verb1", "group1", "resource2", ""), false),
                (req("verb2", "group1", "resource1", ""), false),
            ],
        ),
        (
            r(&["verb1"], &["group1"], &["*"]),
            vec![
                (req("verb1", "group1", "resource1", ""), true),
                (req("verb1", "group2", "resource1", ""), false),
                (req("verb1", "group1", "resource2", ""), true),
                (req("verb2", "group1", "resource1", ""), false),
            ],
        ),
        (
            r(
                &["verb1", "verb2"],
                &["group1", "group2"],
                &["resource1", "resource2"],
            ),
            vec![
                (req("verb1", "group1", "resource1", ""), true),
                (req("verb2", "group2", "resource2", ""), true),
                (req("verb3", "group2", "resource2", ""), false),
            ],
        ),
        (
            r(&["*"], &["*"], &["resource1/subresource1"]),
            vec![
                (req("verb1", "group1", "resource1", "subresource1"), true),
                (req("verb1", "group2", "resource1", "subresource2"), false),
                (req("verb1", "group1", "resource2", "subresource1"), false),
                (req("verb1", "group1", "resource1", ""), false),
            ],
        ),
        (
            r(&["*"], &["*"], &["*/scale"]),
            vec![
                (req("get", "apps", "deployments", "scale"), true),
                (req("get", "", "replicationcontrollers", "scale"), true),
                (req("get", "apps", "deployments", ""), false),
                (req("get", "apps", "deployments", "status"), false),
                (req("get", "apps", "deployments", "xscale"), false),
            ],
        ),
        (
            // Matching is case-sensitive.
            r(&["get"], &[""], &["pods"]),
            vec![
                (req("get", "", "pods", ""), true),
                (req("GET", "", "pods", ""), false),
                (req("get", "", "Pods", ""), false),
                (req("get", "apps", "pods", ""), false),
            ],
        ),
    ];
    for (rule, requests) in cases {
        for (req, expected) in requests {
            assert_eq!(rule.allows(&req), expected, "{rule:?} vs {req:?}");
        }
    }
    let urls = |urls: &[&str]| PolicyRule {
        verbs: vec!["verb1".into()],
        non_resource_urls: urls.iter().map(|s| (*s).into()).collect(),
        ..PolicyRule::default()
    };
    for (rule, path, expected) in [
        (urls(&["*"]), "/foo/bar/one", true),
        (urls(&["/foo/*"]), "/foo", false),
        (urls(&["/foo/*"]), "/foo/bar", true),
        (urls(&["/foo/*"]), "/foo/bar/one", true),
        (urls(&["/foo/*"]), "/notfoo/bar", false),
        (urls(&["/foo", "/foo/bar/one"]), "/foo", true),
        (urls(&["/foo", "/foo/bar/one"]), "/foo/bar", false),
        (urls(&["/foo", "/foo/bar/one"]), "/foo/bar/one", true),
        (urls(&["/foo**"]), "/foobar", true),
    ] {
        assert_eq!(
            rule.allows(&non_res("verb1", path)),
            expected,
            "{rule:?} {path}"
        );
    }
    // Resource rules never match non-resource requests and the reverse.
    assert!(!r(&["*"], &["*"], &["*"]).allows(&non_res("get", "/healthz")));
    assert!(!urls(&["*"]).allows(&res("verb1", "pods", "", "", "")));
}

#[test]
fn resource_names_only_bind_named_requests() {
    let rule = PolicyRule {
        verbs: vec!["get".into(), "list".into(), "create".into()],
        api_groups: vec!["".into()],
        resources: vec!["configmaps".into()],
        resource_names: vec!["cm1".into()],
        ..PolicyRule::default()
    };
    let mut req = res("get", "configmaps", "", "ns", "");
    req.name = "cm1".into();
    assert!(rule.allows(&req));
    req.name = "cm2".into();
    assert!(!rule.allows(&req));
    let mut list = res("list", "configmaps", "", "ns", "");
    assert!(!rule.allows(&list));
    list.name = "cm1".into();
    assert!(rule.allows(&list), "list narrowed by metadata.name");
    assert!(!rule.allows(&res("create", "configmaps", "", "ns", "")));
}

#[test]
fn service_account_subjects() {
    let rbac = Rbac::new(
        [],
        [("view".into(), vec![rule("get", "", "pods", "")])],
        [
            rb(
                "ns1",
                "local",
                RoleRef::ClusterRole("view".into()),
                &["ServiceAccount:sa"],
            ),
            rb(
                "ns1",
                "other",
                RoleRef::ClusterRole("view".into()),
                &["ServiceAccount:ns2:sb"],
            ),
            crb("cluster", "view", &["ServiceAccount:sc"]),
        ],
    );
    let get = |ns: &str| res("get", "pods", "", ns, "");
    assert!(allowed(
        &rbac,
        "system:serviceaccount:ns1:sa",
        "",
        &get("ns1")
    ));
    assert!(!allowed(
        &rbac,
        "system:serviceaccount:ns2:sa",
        "",
        &get("ns1")
    ));
    assert!(allowed(
        &rbac,
        "system:serviceaccount:ns2:sb",
        "",
        &get("ns1")
    ));
    assert!(!allowed(
        &rbac,
        "system:serviceaccount:ns2:sb",
        "",
        &get("ns2")
    ));
    // An empty namespace never matches in a ClusterRoleBinding.
    assert!(!allowed(
        &rbac,
        "system:serviceaccount::sc",
        "",
        &get("ns1")
    ));
    assert!(!allowed(
        &rbac,
        "system:serviceaccount:ns1:sc",
        "",
        &get("ns1")
    ));
    // `*` is not a wildcard for users.
    let star = Rbac::new(
        [],
        [("view".into(), vec![rule("get", "", "pods", "")])],
        [crb("star", "view", &["User:*"])],
    );
    assert!(!allowed(&star, "alice", "", &get("ns1")));
    assert!(allowed(&star, "*", "", &get("ns1")));
}

#[test]
fn roles_are_looked_up_in_the_binding_namespace() {
    let rbac = Rbac::new(
        [(
            "ns1".into(),
            "reader".into(),
            vec![rule("get", "", "pods", "")],
        )],
        [],
        [
            rb("ns1", "b1", RoleRef::Role("reader".into()), &["User:alice"]),
            rb("ns2", "b2", RoleRef::Role("reader".into()), &["User:alice"]),
        ],
    );
    assert!(allowed(
        &rbac,
        "alice",
        "",
        &res("get", "pods", "", "ns1", "")
    ));
    let d = rbac.authorize(
        UserInfo {
            name: "alice",
            groups: &[],
        },
        &res("get", "pods", "", "ns2", ""),
    );
    assert_eq!(
        d,
        Decision::NoOpinion {
            reason: "RBAC: role.rbac.authorization.k8s.io \"reader\" not found".into()
        }
    );
    // Cluster-scoped requests see no RoleBindings.
    assert!(!allowed(
        &rbac,
        "alice",
        "",
        &res("get", "pods", "", "", "")
    ));
}

#[test]
fn reasons_name_the_binding_like_the_api_server() {
    let rbac = Rbac::new(
        [],
        [("view".into(), vec![rule("get", "", "pods", "")])],
        [
            crb("crb", "view", &["Group:devs"]),
            rb(
                "ns1",
                "rb",
                RoleRef::ClusterRole("view".into()),
                &["ServiceAccount:sa"],
            ),
            crb("missing-a", "nope-a", &["User:bob"]),
            crb("missing-b", "nope-b", &["User:bob"]),
        ],
    );
    let groups = vec!["devs".to_owned()];
    let d = rbac.authorize(
        UserInfo {
            name: "alice",
            groups: &groups,
        },
        &res("get", "pods", "", "ns1", ""),
    );
    assert_eq!(
        d.reason(),
        r#"RBAC: allowed by ClusterRoleBinding "crb" of ClusterRole "view" to Group "devs""#
    );
    let d = rbac.authorize(
        UserInfo {
            name: "system:serviceaccount:ns1:sa",
            groups: &[],
        },
        &res("get", "pods", "", "ns1", ""),
    );
    assert_eq!(
        d.reason(),
        r#"RBAC: allowed by RoleBinding "rb/ns1" of ClusterRole "view" to ServiceAccount "sa/ns1""#
    );
    let d = rbac.authorize(
        UserInfo {
            name: "bob",
            groups: &[],
        },
        &res("get", "pods", "", "ns1", ""),
    );
    assert!(!d.is_allowed());
    assert_eq!(
        d.reason(),
        r#"RBAC: [clusterrole.rbac.authorization.k8s.io "nope-a" not found, clusterrole.rbac.authorization.k8s.io "nope-b" not found]"#
    );
}
