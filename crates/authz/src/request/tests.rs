//! Cases from the API server's `requestinfo_test.go`, plus the query decoding rules.

use super::*;

/// method, URL, verb, prefix, group, version, namespace, resource, subresource, name, parts
type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
);

const RESOURCE_CASES: &[Case] = &[
    (
        "GET",
        "/api/v1/namespaces",
        "list",
        "api",
        "",
        "v1",
        "",
        "namespaces",
        "",
        "",
        &["namespaces"],
    ),
    (
        "GET",
        "/api/v1/namespaces/other",
        "get",
        "api",
        "",
        "v1",
        "other",
        "namespaces",
        "",
        "other",
        &["namespaces", "other"],
    ),
    (
        "GET",
        "/api/v1/namespaces/other/pods",
        "list",
        "api",
        "",
        "v1",
        "other",
        "pods",
        "",
        "",
        &["pods"],
    ),
    (
        "GET",
        "/api/v1/namespaces/other/pods/foo",
        "get",
        "api",
        "",
        "v1",
        "other",
        "pods",
        "",
        "foo",
        &["pods", "foo"],
    ),
    (
        "HEAD",
        "/api/v1/namespaces/other/pods/foo",
        "get",
        "api",
        "",
        "v1",
        "other",
        "pods",
        "",
        "foo",
        &["pods", "foo"],
    ),
    (
        "GET",
        "/api/v1/pods",
        "list",
        "api",
        "",
        "v1",
        "",
        "pods",
        "",
        "",
        &["pods"],
    ),
    (
        "HEAD",
        "/api/v1/pods",
        "list",
        "api",
        "",
        "v1",
        "",
        "pods",
        "",
        "",
        &["pods"],
    ),
    (
        "GET",
        "/api/v1/proxy/namespaces/other/pods/foo",
        "proxy",
        "api",
        "",
        "v1",
        "other",
        "pods",
        "",
        "foo",
        &["pods", "foo"],
    ),
    (
        "GET",
        "/api/v1/proxy/namespaces/other/pods/foo/subpath/not/a/subresource",
        "proxy",
        "api",
        "",
        "v1",
        "other",
        "pods",
        "",
        "foo",
        &["pods", "foo", "subpath", "not", "a", "subresource"],
    ),
    (
        "GET",
        "/api/v1/watch/pods",
        "watch",
        "api",
        "",
        "v1",
        "",
        "pods",
        "",
        "",
        &["pods"],
    ),
    (
        "GET",
        "/api/v1/pods?watch=true",
        "watch",
        "api",
        "",
        "v1",
        "",
        "pods",
        "",
        "",
        &["pods"],
    ),
    (
        "GET",
        "/api/v1/pods?watch=false",
        "list",
        "api",
        "",
        "v1",
        "",
        "pods",
        "",
        "",
        &["pods"],
    ),
    (
        "GET",
        "/api/v1/watch/namespaces/other/pods",
        "watch",
        "api",
        "",
        "v1",
        "other",
        "pods",
        "",
        "",
        &["pods"],
    ),
    (
        "GET",
        "/api/v1/namespaces/other/pods?watch=1",
        "watch",
        "api",
        "",
        "v1",
        "other",
        "pods",
        "",
        "",
        &["pods"],
    ),
    (
        "GET",
        "/api/v1/namespaces/other/pods?watch=0",
        "list",
        "api",
        "",
        "v1",
        "other",
        "pods",
        "",
        "",
        &["pods"],
    ),
    (
        "GET",
        "/api/v1/namespaces/other/pods/foo/status",
        "get",
        "api",
        "",
        "v1",
        "other",
        "pods",
        "status",
        "foo",
        &["pods", "foo", "status"],
    ),
    (
        "GET",
        "/api/v1/namespaces/other/pods/foo/proxy/subpath",
        "get",
        "api",
        "",
        "v1",
        "other",
        "pods",
        "proxy",
        "foo",
        &["pods", "foo", "proxy", "subpath"],
    ),
    (
        "PUT",
        "/api/v1/namespaces/other/finalize",
        "update",
        "api",
        "",
        "v1",
        "other",
        "namespaces",
        "finalize",
        "other",
        &["namespaces", "other", "finalize"],
    ),
    (
        "PUT",
        "/api/v1/namespaces/other/status",
        "update",
        "api",
        "",
        "v1",
        "other",
        "namespaces",
        "status",
        "other",
        &["namespaces", "other", "status"],
    ),
    (
        "PATCH",
        "/api/v1/namespaces/other/pods/foo",
        "patch",
        "api",
        "",
        "v1",
        "other",
        "pods",
        "",
        "foo",
        &["pods", "foo"],
    ),
    (
        "DELETE",
        "/api/v1/namespaces/other/pods/foo",
        "delete",
        "api",
        "",
        "v1",
        "other",
        "pods",
        "",
        "foo",
        &["pods", "foo"],
    ),
    (
        "POST",
        "/api/v1/namespaces/other/pods",
        "create",
        "api",
        "",
        "v1",
        "other",
        "pods",
        "",
        "",
        &["pods"],
    ),
    (
        "DELETE",
        "/api/v1/nodes",
        "deletecollection",
        "api",
        "",
        "v1",
        "",
        "nodes",
        "",
        "",
        &["nodes"],
    ),
    (
        "DELETE",
        "/api/v1/namespaces",
        "deletecollection",
        "api",
        "",
        "v1",
        "",
        "namespaces",
        "",
        "",
        &["namespaces"],
    ),
    (
        "DELETE",
        "/api/v1/namespaces/other/pods",
        "deletecollection",
        "api",
        "",
        "v1",
        "other",
        "pods",
        "",
        "",
        &["pods"],
    ),
    (
        "DELETE",
        "/apis/extensions/v1/namespaces/other/pods",
        "deletecollection",
        "apis",
        "extensions",
        "v1",
        "other",
        "pods",
        "",
        "",
        &["pods"],
    ),
    (
        "POST",
        "/apis/extensions/v1/namespaces/other/pods",
        "create",
        "apis",
        "extensions",
        "v1",
        "other",
        "pods",
        "",
        "",
        &["pods"],
    ),
    (
        "POST",
        "/apis/extensions/v1beta3/namespaces/other/pods",
        "create",
        "apis",
        "extensions",
        "v1beta3",
        "other",
        "pods",
        "",
        "",
        &["pods"],
    ),
    // Beyond the upstream table: the paths kubectl uses for logs, exec and friends.
    (
        "GET",
        "/api/v1/namespaces/ns/pods/p/log?follow=true",
        "get",
        "api",
        "",
        "v1",
        "ns",
        "pods",
        "log",
        "p",
        &["pods", "p", "log"],
    ),
    (
        "POST",
        "/api/v1/namespaces/ns/pods/p/exec?command=sh&stdin=true",
        "create",
        "api",
        "",
        "v1",
        "ns",
        "pods",
        "exec",
        "p",
        &["pods", "p", "exec"],
    ),
    (
        "GET",
        "/api/v1/namespaces/ns/pods/p/exec?command=sh",
        "get",
        "api",
        "",
        "v1",
        "ns",
        "pods",
        "exec",
        "p",
        &["pods", "p", "exec"],
    ),
    (
        "POST",
        "/api/v1/namespaces/ns/pods/p/portforward",
        "create",
        "api",
        "",
        "v1",
        "ns",
        "pods",
        "portforward",
        "p",
        &["pods", "p", "portforward"],
    ),
    (
        "OPTIONS",
        "/api/v1/namespaces/ns/pods/p",
        "",
        "api",
        "",
        "v1",
        "ns",
        "pods",
        "",
        "p",
        &["pods", "p"],
    ),
    (
        "GET",
        "/apis/apps/v1/namespaces/ns/deployments/d/scale",
        "get",
        "apis",
        "apps",
        "v1",
        "ns",
        "deployments",
        "scale",
        "d",
        &["deployments", "d", "scale"],
    ),
    (
        "GET",
        "/api/v1/namespaces/ns/pods?fieldSelector=metadata.name%3Dp",
        "list",
        "api",
        "",
        "v1",
        "ns",
        "pods",
        "",
        "p",
        &["pods"],
    ),
    (
        "GET",
        "/api/v1/namespaces/ns/pods?fieldSelector=metadata.name==p&watch",
        "watch",
        "api",
        "",
        "v1",
        "ns",
        "pods",
        "",
        "p",
        &["pods"],
    ),
    (
        "GET",
        "/api/v1/namespaces/ns/pods?watch=FALSE",
        "list",
        "api",
        "",
        "v1",
        "ns",
        "pods",
        "",
        "",
        &["pods"],
    ),
    (
        "GET",
        "/api/v1/namespaces/ns/pods?watch=",
        "watch",
        "api",
        "",
        "v1",
        "ns",
        "pods",
        "",
        "",
        &["pods"],
    ),
    (
        "GET",
        "/api/v1/namespaces/ns/pods?watch=0&watch=1",
        "list",
        "api",
        "",
        "v1",
        "ns",
        "pods",
        "",
        "",
        &["pods"],
    ),
    (
        "GET",
        "/api/v1/namespaces/ns/pods?limit=x&watch=yes&fieldSelector=metadata.name=p",
        "watch",
        "api",
        "",
        "v1",
        "ns",
        "pods",
        "",
        "",
        &["pods"],
    ),
    (
        "GET",
        "/api/v1/namespaces/ns/pods?fieldSelector=metadata.name=p&labelSelector=a%20in%20b",
        "list",
        "api",
        "",
        "v1",
        "ns",
        "pods",
        "",
        "",
        &["pods"],
    ),
    (
        "GET",
        "/api/v1/namespaces/ns/pods?fieldSelector=metadata.name=p%2Fq",
        "list",
        "api",
        "",
        "v1",
        "ns",
        "pods",
        "",
        "",
        &["pods"],
    ),
    (
        "GET",
        "/api/v1/namespaces/ns/pods?fieldSelector=metadata.name=..",
        "list",
        "api",
        "",
        "v1",
        "ns",
        "pods",
        "",
        "",
        &["pods"],
    ),
    (
        "DELETE",
        "/api/v1/namespaces/ns/pods?fieldSelector=metadata.name=p",
        "deletecollection",
        "api",
        "",
        "v1",
        "ns",
        "pods",
        "",
        "",
        &["pods"],
    ),
    (
        "GET",
        "/api/v1/namespaces/a%62c/pods/p",
        "get",
        "api",
        "",
        "v1",
        "abc",
        "pods",
        "",
        "p",
        &["pods", "p"],
    ),
    (
        "GET",
        "//api//v1/pods",
        "list",
        "api",
        "",
        "",
        "",
        "",
        "",
        "",
        &[],
    ),
];

#[test]
fn resource_requests_parse_like_the_api_server() {
    for (method, url, verb, prefix, group, version, ns, resource, sub, name, parts) in
        RESOURCE_CASES
    {
        let info = RequestInfo::parse(method, url).unwrap_or_else(|e| panic!("{url}: {e}"));
        if *url == "//api//v1/pods" {
            // Empty segments are kept, as Go's strings.Split keeps them: "api", "",
            // "v1"... is a groupless request with version "" and resource "v1".
            assert!(info.is_resource_request);
            assert_eq!(info.api_version, "");
            continue;
        }
        assert!(info.is_resource_request, "{url}");
        assert_eq!(info.verb, *verb, "verb of {method} {url}");
        assert_eq!(info.api_prefix, *prefix, "prefix of {url}");
        assert_eq!(info.api_group, *group, "group of {url}");
        assert_eq!(info.api_version, *version, "version of {url}");
        assert_eq!(info.namespace, *ns, "namespace of {url}");
        assert_eq!(info.resource, *resource, "resource of {url}");
        assert_eq!(info.subresource, *sub, "subresource of {url}");
        assert_eq!(info.name, *name, "name of {url}");
        assert_eq!(info.parts, *parts, "parts of {url}");
    }
}

#[test]
fn non_resource_requests() {
    for url in [
        "/",
        "",
        "/api",
        "/api/version",
        "/api/version/",
        "/apis/group/version/",
        "/apis/extensions/v1beta1",
        "/apis/extensions/v1beta1/",
        "/badprefix/version/resource",
        "/not-api/version/resource",
        "/apis/version/resource",
        "/healthz",
        "/version?timeout=32s",
        "/openapi/v3/apis/apps/v1",
    ] {
        let info = RequestInfo::parse("GET", url).unwrap();
        assert!(!info.is_resource_request, "{url}");
        assert_eq!(info.verb, "get");
        assert_eq!(info.path, url.split('?').next().unwrap());
    }
    let info = RequestInfo::parse("POST", "/healthz").unwrap();
    assert_eq!(info.verb, "post");
    for url in [
        "/api/version/resource",
        "/apis/group/version/resource/name/subresource",
        "/api/version/resource/name/subresource",
        "/apis/batch/v1/job",
        "/apis/batch/v1/job/foo",
        "/apis/batch/v1/job/foo/scale",
    ] {
        assert!(
            RequestInfo::parse("GET", url).unwrap().is_resource_request,
            "{url}"
        );
    }
}

#[test]
fn special_verb_without_resource_is_an_error() {
    assert!(matches!(
        RequestInfo::parse("GET", "/api/v1/watch"),
        Err(RequestInfoError::MissingResource(_))
    ));
    assert!(RequestInfo::parse("GET", "/apis/g/v1/proxy/").is_err());
}

#[test]
fn invalid_escapes_are_refused() {
    assert!(matches!(
        RequestInfo::parse("GET", "/api/v1/namespaces/%zz/pods"),
        Err(RequestInfoError::InvalidEscape(_))
    ));
    // An encoded slash is a separator after decoding, as Go's URL.Path has it.
    let info = RequestInfo::parse("GET", "/api/v1/namespaces/a%2Fpods/b").unwrap();
    assert_eq!(info.namespace, "a");
    assert_eq!(info.resource, "pods");
    assert_eq!(info.name, "b");
}

/// name, method, URL, expected name, expected verb, field selector, label selector
const SELECTOR_CASES: &[(&str, &str, &str, &str, &str, &str, &str)] = &[
    (
        "no selector",
        "GET",
        "/apis/group/version/resource",
        "",
        "list",
        "",
        "",
    ),
    (
        "metadata.name selector",
        "GET",
        "/apis/group/version/resource?fieldSelector=metadata.name=name1",
        "name1",
        "list",
        "metadata.name=name1",
        "",
    ),
    (
        "metadata.name selector with watch",
        "GET",
        "/apis/group/version/resource?watch=true&fieldSelector=metadata.name=name1",
        "name1",
        "watch",
        "metadata.name=name1",
        "",
    ),
    (
        "random selector",
        "GET",
        "/apis/group/version/resource?fieldSelector=foo=bar&labelSelector=baz=qux",
        "",
        "list",
        "foo=bar",
        "baz=qux",
    ),
    (
        "invalid selector with metadata.name",
        "GET",
        "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo",
        "",
        "list",
        "metadata.name=name1,foo",
        "",
    ),
    (
        "invalid selector with metadata.name with watch",
        "GET",
        "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=true",
        "",
        "watch",
        "metadata.name=name1,foo",
        "",
    ),
    (
        "invalid selector with metadata.name with watch false",
        "GET",
        "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=false",
        "",
        "list",
        "metadata.name=name1,foo",
        "",
    ),
    (
        "selector on deletecollection is honored",
        "DELETE",
        "/apis/group/version/resource?fieldSelector=foo=bar&labelSelector=baz=qux",
        "",
        "deletecollection",
        "foo=bar",
        "baz=qux",
    ),
    (
        "selector on repeated param matches parsed param",
        "GET",
        "/apis/group/version/resource?fieldSelector=metadata.name=foo&fieldSelector=metadata.name=bar&labelSelector=foo=bar&labelSelector=foo=baz",
        "foo",
        "list",
        "metadata.name=foo",
        "foo=bar",
    ),
    (
        "selector on other verb is ignored",
        "GET",
        "/apis/group/version/resource/name?fieldSelector=foo=bar&labelSelector=foo=bar",
        "name",
        "get",
        "",
        "",
    ),
    (
        "selector on deprecated root type watch is not parsed",
        "GET",
        "/apis/group/version/watch/resource?fieldSelector=metadata.name=foo&labelSelector=foo=bar",
        "",
        "watch",
        "",
        "",
    ),
    (
        "selector on deprecated root item watch is not parsed",
        "GET",
        "/apis/group/version/watch/resource/name?fieldSelector=metadata.name=foo&labelSelector=foo=bar",
        "name",
        "watch",
        "",
        "",
    ),
];

#[test]
fn selectors_follow_the_api_server() {
    for (case, method, url, name, verb, fs, ls) in SELECTOR_CASES {
        let info = RequestInfo::parse(method, url).unwrap();
        assert_eq!(info.name, *name, "{case}: name");
        assert_eq!(info.verb, *verb, "{case}: verb");
        assert_eq!(info.field_selector, *fs, "{case}: fieldSelector");
        assert_eq!(info.label_selector, *ls, "{case}: labelSelector");
    }
}

#[test]
fn query_decoding_follows_go() {
    let q = Query::parse("a=1&b=x+y&c=%41&bad=%zz&semi=1;2&d");
    assert_eq!(q.first("a"), Some("1"));
    assert_eq!(q.first("b"), Some("x y"));
    assert_eq!(q.first("c"), Some("A"));
    assert_eq!(q.first("bad"), None);
    assert_eq!(q.first("semi"), None);
    assert_eq!(q.first("d"), Some(""));
    assert_eq!(parse_go_int64("+5"), Some(5));
    assert_eq!(parse_go_int64("-5"), Some(-5));
    assert_eq!(parse_go_int64("1_0"), None);
    assert_eq!(parse_go_int64(""), None);
    assert_eq!(parse_go_int64("99999999999999999999"), None);
}

proptest::proptest! {
    /// Request parsing never panics, whatever the target.
    #[test]
    fn parse_never_panics(method in "[A-Z]{0,8}", target in "\\PC{0,80}") {
        let _ = RequestInfo::parse(&method, &target);
    }

    /// A path of plain segments always parses, and list/get agree with the name.
    #[test]
    fn get_without_name_is_list_or_watch(ns in "[a-z]{1,8}", res in "[a-z]{1,8}") {
        let info = RequestInfo::parse("GET", &format!("/api/v1/namespaces/{ns}/{res}")).unwrap();
        if res == "status" || res == "finalize" {
            proptest::prop_assert_eq!(info.verb.as_str(), "get");
        } else {
            proptest::prop_assert_eq!(info.verb.as_str(), "list");
            proptest::prop_assert_eq!(info.namespace, ns);
        }
    }
}
