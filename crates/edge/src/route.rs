//! HTTP route matching: a pure function of the request's host, path, method and
//! headers. Routes are tried in the order written; the first match wins.

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::config::HttpRoute;

/// The host a request is for: the URI authority (HTTP/2 `:authority`, absolute-form
/// HTTP/1) or else the `Host` header, without port, lower case, no trailing dot.
pub fn request_host<'a>(uri: &'a http::Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    let raw = match uri.authority() {
        Some(a) => a.host(),
        None => headers.get(http::header::HOST)?.to_str().ok()?,
    };
    Some(host_without_port(raw))
}

/// A `Host` value or authority without its port and trailing dot.
pub fn host_without_port(raw: &str) -> &str {
    strip_port(raw).trim_end_matches('.')
}

/// Header lookups for route conditions, whatever the protocol the request came in.
pub trait HeaderLookup {
    /// True when a field `name` is present.
    fn has(&self, name: &HeaderName) -> bool;
    /// True when a field `name` has exactly `value`.
    fn has_value(&self, name: &HeaderName, value: &HeaderValue) -> bool;
    /// The value of the first field `name`, if any.
    fn first(&self, name: &HeaderName) -> Option<&[u8]>;
}

impl HeaderLookup for HeaderMap {
    fn has(&self, name: &HeaderName) -> bool {
        self.contains_key(name)
    }
    fn has_value(&self, name: &HeaderName, value: &HeaderValue) -> bool {
        self.get_all(name).iter().any(|x| x == value)
    }
    fn first(&self, name: &HeaderName) -> Option<&[u8]> {
        self.get(name).map(HeaderValue::as_bytes)
    }
}

impl HeaderLookup for crate::h1::encode::Parsed<'_> {
    fn has(&self, name: &HeaderName) -> bool {
        let n = name.as_str().as_bytes();
        self.fields
            .iter()
            .any(|f| self.buf[f.name.clone()].eq_ignore_ascii_case(n))
    }
    fn has_value(&self, name: &HeaderName, value: &HeaderValue) -> bool {
        let n = name.as_str().as_bytes();
        self.fields.iter().any(|f| {
            self.buf[f.name.clone()].eq_ignore_ascii_case(n)
                && &self.buf[f.value.clone()] == value.as_bytes()
        })
    }
    fn first(&self, name: &HeaderName) -> Option<&[u8]> {
        let n = name.as_str().as_bytes();
        self.fields
            .iter()
            .find(|f| self.buf[f.name.clone()].eq_ignore_ascii_case(n))
            .map(|f| &self.buf[f.value.clone()])
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// True when `path` starts with `prefix` on a segment boundary.
pub fn path_has_prefix(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Finds the first route matching the request. `host` must already be lower case (see
/// [`lowercase_host`]).
pub fn find_route<H: HeaderLookup + ?Sized>(
    routes: &[HttpRoute],
    host: Option<&str>,
    path: &str,
    method: &Method,
    headers: &H,
) -> Option<usize> {
    routes.iter().position(|r| {
        (r.hosts.is_empty() || host.is_some_and(|h| r.hosts.iter().any(|m| m.matches(h))))
            && r.path_prefix
                .as_deref()
                .is_none_or(|p| path_has_prefix(path, p))
            && (r.methods.is_empty() || r.methods.contains(method))
            && r.headers.iter().all(|hm| match &hm.value {
                None => headers.has(&hm.name),
                Some(v) => headers.has_value(&hm.name, v),
            })
    })
}

/// Why a request path is refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRefusal {
    /// A `.` or `..` segment, literal or percent-encoded (`%2e`). Clients resolve dot
    /// segments before sending (RFC 3986 §5.2.4); one that arrives is a traversal or a
    /// routing-bypass attempt.
    DotSegment,
    /// The path takes another route once decoded the way servers commonly read it
    /// (`/%61dmin` for `/admin`, `//admin`): the route the gateway applied would not be
    /// the one the server serves.
    Ambiguous,
}

impl PathRefusal {
    /// A short text for logs.
    pub fn detail(self) -> &'static str {
        match self {
            PathRefusal::DotSegment => "dot segment in the request path",
            PathRefusal::Ambiguous => "the request path takes another route once decoded",
        }
    }
}

/// True when a segment of `path` is `.` or `..`, literal or with `%2e` for a dot.
pub fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|seg| {
        let b = seg.as_bytes();
        let mut dots = 0;
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'.' {
                i += 1;
            } else if b.len() - i >= 3
                && b[i] == b'%'
                && b[i + 1] == b'2'
                && b[i + 2] | 0x20 == b'e'
            {
                i += 3;
            } else {
                return false;
            }
            dots += 1;
        }
        dots == 1 || dots == 2
    })
}

/// `path` as servers commonly read it: percent-encoded unreserved characters decoded
/// (RFC 3986 §2.3) and runs of slashes merged. Borrowed when nothing changes.
pub fn canonical_path(path: &str) -> std::borrow::Cow<'_, str> {
    let b = path.as_bytes();
    let needs = b.windows(2).any(|w| w == b"//") || b.contains(&b'%');
    if !needs {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (
                char::from(b[i + 1]).to_digit(16),
                char::from(b[i + 2]).to_digit(16),
            )
            && let Ok(d) = u8::try_from(h << 4 | l)
        {
            if d.is_ascii_alphanumeric() || matches!(d, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(d));
            } else {
                out.push_str(&path[i..i + 3]);
            }
            i += 3;
            continue;
        }
        if c == b'/' && out.ends_with('/') {
            i += 1;
            continue;
        }
        // Request targets are ASCII (checked by the parsers); others are kept as is.
        out.push(char::from(c));
        i += 1;
    }
    if out == path {
        std::borrow::Cow::Borrowed(path)
    } else {
        std::borrow::Cow::Owned(out)
    }
}

/// [`find_route`] for a request path from a client: refuses dot segments, and paths
/// whose [`canonical_path`] takes another route than the path as sent.
pub fn route_request<H: HeaderLookup + ?Sized>(
    routes: &[HttpRoute],
    host: Option<&str>,
    path: &str,
    method: &Method,
    headers: &H,
) -> Result<Option<usize>, PathRefusal> {
    if has_dot_segment(path) {
        return Err(PathRefusal::DotSegment);
    }
    let found = find_route(routes, host, path, method, headers);
    if let std::borrow::Cow::Owned(canonical) = canonical_path(path)
        && find_route(routes, host, &canonical, method, headers) != found
    {
        return Err(PathRefusal::Ambiguous);
    }
    Ok(found)
}

/// Lower-cases a host only when needed.
pub fn lowercase_host(host: &str) -> std::borrow::Cow<'_, str> {
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HeaderEdits, HeaderMatch, HostMatch, Limits, RouteAction, RouteLimits};

    fn route(hosts: &[HostMatch], prefix: Option<&str>, methods: &[Method]) -> HttpRoute {
        HttpRoute {
            name: "r".to_owned(),
            hosts: hosts.to_vec(),
            path_prefix: prefix.map(str::to_owned),
            methods: methods.to_vec(),
            headers: Vec::new(),
            action: RouteAction::Backend(0),
            request_headers: HeaderEdits::default(),
            response_headers: HeaderEdits::default(),
            limits: RouteLimits::from_global(&Limits::default()),
        }
    }

    #[test]
    fn hosts_paths_methods_in_order() {
        let routes = vec![
            route(
                &[HostMatch::Exact("api.test".into())],
                Some("/v1"),
                &[Method::GET],
            ),
            route(&[HostMatch::Wildcard("apps.test".into())], None, &[]),
            route(&[], Some("/"), &[]),
        ];
        let h = HeaderMap::new();
        let find = |host, path, m: &Method| find_route(&routes, host, path, m, &h);
        assert_eq!(find(Some("api.test"), "/v1/x", &Method::GET), Some(0));
        assert_eq!(find(Some("api.test"), "/v1", &Method::GET), Some(0));
        assert_eq!(find(Some("api.test"), "/v10", &Method::GET), Some(2));
        assert_eq!(find(Some("api.test"), "/v1/x", &Method::POST), Some(2));
        assert_eq!(find(Some("a.apps.test"), "/", &Method::GET), Some(1));
        assert_eq!(find(Some("a.b.apps.test"), "/", &Method::GET), Some(1));
        assert_eq!(find(Some("apps.test"), "/", &Method::GET), Some(2));
        assert_eq!(find(None, "/", &Method::GET), Some(2));
    }

    #[test]
    fn header_conditions() {
        let mut r = route(&[], None, &[]);
        r.headers.push(HeaderMatch {
            name: http::HeaderName::from_static("x-canary"),
            value: Some(http::HeaderValue::from_static("1")),
        });
        let routes = vec![r];
        let mut h = HeaderMap::new();
        assert_eq!(find_route(&routes, None, "/", &Method::GET, &h), None);
        h.append("x-canary", http::HeaderValue::from_static("0"));
        assert_eq!(find_route(&routes, None, "/", &Method::GET, &h), None);
        h.append("x-canary", http::HeaderValue::from_static("1"));
        assert_eq!(find_route(&routes, None, "/", &Method::GET, &h), Some(0));
    }

    #[test]
    fn host_extraction() {
        let mut h = HeaderMap::new();
        let uri: http::Uri = "/x".parse().unwrap();
        assert_eq!(request_host(&uri, &h), None);
        h.insert("host", http::HeaderValue::from_static("Example.test:8443"));
        assert_eq!(request_host(&uri, &h), Some("Example.test"));
        h.insert("host", http::HeaderValue::from_static("[::1]:8443"));
        assert_eq!(request_host(&uri, &h), Some("[::1]"));
        let uri: http::Uri = "https://a.test./x".parse().unwrap();
        assert_eq!(request_host(&uri, &h), Some("a.test"));
    }

    #[test]
    fn dot_segments_literal_and_encoded() {
        for p in [
            "/.",
            "/..",
            "/a/./b",
            "/a/../b",
            "/%2e",
            "/%2E%2e/x",
            "/.%2e/",
            "/%2e./",
            "/a/..",
        ] {
            assert!(has_dot_segment(p), "{p}");
        }
        for p in [
            "/",
            "/a.b",
            "/...",
            "/.well-known/x",
            "/%2e%2e%2e",
            "/a..",
            "/%2f..x",
            "/%2",
        ] {
            assert!(!has_dot_segment(p), "{p}");
        }
    }

    #[test]
    fn canonical_paths() {
        assert!(matches!(
            canonical_path("/a/b"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(canonical_path("/%61dmin"), "/admin");
        assert_eq!(canonical_path("//admin///x"), "/admin/x");
        assert_eq!(canonical_path("/%7Euser/%2Fx/%zz/%4"), "/~user/%2Fx/%zz/%4");
        assert!(matches!(
            canonical_path("/a%2Fb"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn paths_that_change_route_once_decoded_are_refused() {
        let routes = vec![route(&[], Some("/admin"), &[]), route(&[], Some("/"), &[])];
        let h = http::HeaderMap::new();
        let go = |p: &str| route_request(&routes, None, p, &Method::GET, &h);
        assert_eq!(go("/admin/x"), Ok(Some(0)));
        assert_eq!(go("/public/%7Euser"), Ok(Some(1)));
        assert_eq!(go("/admin/%7Euser"), Ok(Some(0)));
        assert_eq!(go("/%61dmin"), Err(PathRefusal::Ambiguous));
        assert_eq!(go("//admin"), Err(PathRefusal::Ambiguous));
        assert_eq!(go("/public/../admin"), Err(PathRefusal::DotSegment));
        assert_eq!(go("/admin/%2e%2e/public"), Err(PathRefusal::DotSegment));
    }

    proptest::proptest! {
        /// Whatever the client sends, the route applied is the route of the path as a
        /// decoding, slash-merging server reads it, or the request is refused.
        #[test]
        fn applied_route_is_the_served_route(
            segs in proptest::collection::vec("(admin|a|%61|%2e|\\.|%7E|~|x|%2F|)", 0..5)
        ) {
            let routes = vec![
                route(&[], Some("/admin"), &[]),
                route(&[], Some("/a/x"), &[]),
                route(&[], Some("/"), &[]),
            ];
            let h = http::HeaderMap::new();
            let path = format!("/{}", segs.join("/"));
            if let Ok(found) = route_request(&routes, None, &path, &Method::GET, &h) {
                let canonical = canonical_path(&path);
                proptest::prop_assert!(!has_dot_segment(&canonical));
                proptest::prop_assert_eq!(
                    found,
                    find_route(&routes, None, &canonical, &Method::GET, &h)
                );
            }
        }
    }
}
