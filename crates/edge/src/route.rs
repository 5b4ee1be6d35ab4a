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
}

impl HeaderLookup for HeaderMap {
    fn has(&self, name: &HeaderName) -> bool {
        self.contains_key(name)
    }
    fn has_value(&self, name: &HeaderName, value: &HeaderValue) -> bool {
        self.get_all(name).iter().any(|x| x == value)
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
}
