//! The API server's request parsing (`RequestInfo`): which verb, API group, version,
//! namespace, resource, subresource and name an HTTP request stands for.
//!
//! This follows `k8s.io/apiserver/pkg/endpoints/request/requestinfo.go` exactly, because a
//! gateway that reads a request differently from the API server behind it (say `list`
//! where the API server serves a `watch`) would authorize something other than what is
//! executed:
//!
//! - paths with fewer than three segments, or whose first segment is not `api` or `apis`,
//!   are non-resource requests whose verb is the lower-cased method; `apis` needs a group
//!   too (four segments);
//! - the deprecated `/watch/` and `/proxy/` prefixes after the version set the verb, and
//!   `proxy` never takes a subresource;
//! - otherwise POST is `create`, GET and HEAD `get`, PUT `update`, PATCH `patch`, DELETE
//!   `delete`, anything else the empty verb;
//! - `namespaces/<ns>/...` sets the namespace; `status` and `finalize` right after the
//!   namespace name are subresources of the namespace itself;
//! - the remaining parts are `resource/name/subresource/...` (anything after the
//!   subresource is not interpreted);
//! - a `get` without a name is `list`, or `watch` when the `watch` query parameter is true
//!   (present and neither `0` nor `false`, case-insensitively); a `fieldSelector` that
//!   requires `metadata.name` to equal a valid path segment sets the name; a query that
//!   does not decode as list options drops the name shortcut but keeps watch detection;
//! - a `delete` without a name is `deletecollection`;
//! - the raw `fieldSelector` and `labelSelector` are recorded for `list`, `watch` and
//!   `deletecollection` unless the verb came from a path prefix.
//!
//! The path is percent-decoded before it is split, as Go's `URL.Path` is; a path with an
//! invalid escape is refused (the API server's HTTP server refuses it with 400).

use serde::Serialize;

use crate::selector;

/// The prefixes of resource paths.
const API_PREFIXES: [&str; 2] = ["api", "apis"];
/// The prefix of the core group, which has no group segment.
const GROUPLESS_PREFIX: &str = "api";
/// Verbs given by a path segment after the version (deprecated API paths).
const SPECIAL_VERBS: [&str; 2] = ["proxy", "watch"];
/// Subresources of a namespace that come right after its name.
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

/// What a request asks for, in the API server's terms.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestInfo {
    /// True for requests to `/api/...` and `/apis/...` resources.
    pub is_resource_request: bool,
    /// The verb: `get`, `list`, `watch`, `create`, ... or a lower-cased method for
    /// non-resource requests.
    pub verb: String,
    /// The API group (`""` for the core group).
    pub api_group: String,
    /// The API version.
    pub api_version: String,
    /// The namespace, `""` for cluster-scoped and all-namespace requests.
    pub namespace: String,
    /// The resource, e.g. `pods`.
    pub resource: String,
    /// The subresource, e.g. `log`.
    pub subresource: String,
    /// The object name, if any.
    pub name: String,
    /// The decoded URL path.
    pub path: String,
    /// `api` or `apis` for resource requests.
    #[serde(skip)]
    pub api_prefix: String,
    /// The path segments from the resource on.
    #[serde(skip)]
    pub parts: Vec<String>,
    /// The raw `fieldSelector` of list, watch and deletecollection requests.
    #[serde(skip)]
    pub field_selector: String,
    /// The raw `labelSelector` of list, watch and deletecollection requests.
    #[serde(skip)]
    pub label_selector: String,
}

/// Why a request cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestInfoError {
    /// The path has an invalid percent escape.
    #[error("invalid URL escape in path {0:?}")]
    InvalidEscape(String),
    /// `/api/v1/watch` or `/api/v1/proxy` with nothing after it.
    #[error("unable to determine kind and namespace from URL {0:?}")]
    MissingResource(String),
}

impl RequestInfo {
    /// Parses a request from its method and request target (path and optional query,
    /// as sent on the request line).
    pub fn parse(method: &str, target: &str) -> Result<Self, RequestInfoError> {
        let (raw_path, raw_query) = match target.split_once('?') {
            Some((p, q)) => (p, q),
            None => (target, ""),
        };
        let path = percent_decode(raw_path, false)
            .ok_or_else(|| RequestInfoError::InvalidEscape(raw_path.to_owned()))?;
        let query = Query::parse(raw_query);
        parse_decoded(method, path, &query, target)
    }

    /// The combined `resource/subresource` name that RBAC rules match.
    pub fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

fn parse_decoded(
    method: &str,
    path: String,
    query: &Query,
    target: &str,
) -> Result<RequestInfo, RequestInfoError> {
    let mut info = RequestInfo {
        is_resource_request: false,
        verb: method.to_lowercase(),
        ..RequestInfo::default()
    };
    let trimmed = path.trim_matches('/');
    let segments: Vec<&str> = if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').collect()
    };
    if segments.len() < 3 || !API_PREFIXES.contains(&segments[0]) {
        info.path = path;
        return Ok(info);
    }
    let mut parts = &segments[..];
    info.api_prefix = parts[0].to_owned();
    parts = &parts[1..];
    if info.api_prefix != GROUPLESS_PREFIX {
        if parts.len() < 3 {
            info.path = path;
            return Ok(info);
        }
        info.api_group = parts[0].to_owned();
        parts = &parts[1..];
    }
    info.is_resource_request = true;
    info.api_version = parts[0].to_owned();
    parts = &parts[1..];

    let mut verb_via_path_prefix = false;
    if SPECIAL_VERBS.contains(&parts[0]) {
        if parts.len() < 2 {
            info.path = path;
            return Err(RequestInfoError::MissingResource(target.to_owned()));
        }
        info.verb = parts[0].to_owned();
        parts = &parts[1..];
        verb_via_path_prefix = true;
    } else {
        info.verb = match method {
            "POST" => "create",
            "GET" | "HEAD" => "get",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" => "delete",
            _ => "",
        }
        .to_owned();
    }

    if parts[0] == "namespaces" && parts.len() > 1 {
        info.namespace = parts[1].to_owned();
        if parts.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&parts[2]) {
            parts = &parts[2..];
        }
    }
    info.parts = parts.iter().map(|s| (*s).to_owned()).collect();

    if info.parts.len() >= 3 && info.verb != "proxy" {
        info.subresource = info.parts[2].clone();
    }
    if info.parts.len() >= 2 {
        info.name = info.parts[1].clone();
    }
    if !info.parts.is_empty() {
        info.resource = info.parts[0].clone();
    }

    if info.name.is_empty() && info.verb == "get" {
        let options = ListOptions::decode(query);
        info.verb = if options.watch { "watch" } else { "list" }.to_owned();
        if let Some(name) = options.metadata_name
            && is_path_segment_name(&name)
        {
            info.name = name;
        }
    }
    if info.name.is_empty() && info.verb == "delete" {
        info.verb = "deletecollection".to_owned();
    }
    if !verb_via_path_prefix && matches!(info.verb.as_str(), "list" | "watch" | "deletecollection")
    {
        if let Some(v) = query.first("fieldSelector") {
            info.field_selector = v.to_owned();
        }
        if let Some(v) = query.first("labelSelector") {
            info.label_selector = v.to_owned();
        }
    }
    info.path = path;
    Ok(info)
}

/// The parts of `metav1.ListOptions` that request parsing depends on.
struct ListOptions {
    watch: bool,
    metadata_name: Option<String>,
}

impl ListOptions {
    /// Decodes the query as the API server's parameter codec does. When any parameter
    /// fails to decode, only `watch` is kept (from its first value).
    fn decode(query: &Query) -> Self {
        match Self::try_decode(query) {
            Some(options) => options,
            None => Self {
                watch: query.first("watch").is_some_and(truthy),
                metadata_name: None,
            },
        }
    }

    fn try_decode(query: &Query) -> Option<Self> {
        let watch = query.first("watch").is_some_and(truthy);
        for key in ["timeoutSeconds", "limit"] {
            if let Some(v) = query.first(key) {
                parse_go_int64(v)?;
            }
        }
        if let Some(v) = query.first("labelSelector") {
            selector::parse_label_selector(v).ok()?;
        }
        let metadata_name = match query.first("fieldSelector") {
            Some(v) => selector::field_selector_exact_match(v, "metadata.name").ok()?,
            None => None,
        };
        Some(Self {
            watch,
            metadata_name,
        })
    }
}

/// Go's `Convert_Slice_string_To_bool`: only `0` and `false` (any case) are false.
fn truthy(v: &str) -> bool {
    !(v == "0" || v.eq_ignore_ascii_case("false"))
}

/// Go's `strconv.ParseInt(s, 10, 64)`.
pub(crate) fn parse_go_int64(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok()
}

/// `content.IsPathSegmentName`: not `.` or `..`, and no `/` or `%`.
fn is_path_segment_name(name: &str) -> bool {
    name != "." && name != ".." && !name.contains('/') && !name.contains('%')
}

/// A decoded query string, as Go's `URL.Query()` reads it: pairs split on `&`, pairs
/// containing `;` or a bad escape dropped, `+` decoded as a space.
#[derive(Debug, Default)]
struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    fn parse(raw: &str) -> Self {
        let mut pairs = Vec::new();
        for pair in raw.split('&') {
            if pair.is_empty() || pair.contains(';') {
                continue;
            }
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (Some(k), Some(v)) = (percent_decode(k, true), percent_decode(v, true)) else {
                continue;
            };
            pairs.push((k, v));
        }
        Self { pairs }
    }

    fn first(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Percent-decodes `s`; `plus_is_space` for query components. `None` on an invalid
/// escape or when the result is not UTF-8.
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    if !(s.contains('%') || plus_is_space && s.contains('+')) {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = hex(*bytes.get(i + 1)?)?;
                let lo = hex(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
