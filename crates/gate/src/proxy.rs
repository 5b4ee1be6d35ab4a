//! The request path: authenticate, authorize, audit, forward.
//!
//! For every request:
//! 1. the bearer token is verified ([`crate::authn`]); a refused token gets 401 with a
//!    `Status` saying why (expired, wrong audience, MFA required, ...);
//! 2. the request is parsed as the API server parses it ([`RequestInfo`]);
//! 3. client `Impersonate-*` headers (`kubectl --as`) are honoured only when RBAC grants
//!    the real user `impersonate` on each requested user, group, uid and extra, as the
//!    API server checks them; the request is then decided as the impersonated user;
//! 4. RBAC decides; anything not allowed gets 403 with the API server's `Status`;
//! 5. the decision is written to the audit log;
//! 6. the request goes to the API server with every client `Authorization`,
//!    `Impersonate-*` and `X-Remote-*` header removed, the gateway's own credential, and impersonation
//!    headers for the authenticated user (`Impersonate-User`, `-Group`, `-Uid`, and
//!    `-Extra-<key>` with the token's `amr`). Bodies stream both ways (watches,
//!    `logs -f`), and `101 Switching Protocols` upgrades (SPDY and WebSocket for exec,
//!    attach and port-forward) are spliced after the API server accepts them.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rampart_authz::{ImpersonationRequest, Rbac, RequestInfo, UserInfo};
use rampart_oidc::Identity;

use crate::audit::{AuditEvent, AuditLog};
use crate::authn::{AuthError, Authenticator};
use crate::config::{GateConfig, UpstreamAuth};
use crate::error::GateError;
use crate::status;

/// The body of every response the gateway sends.
pub type Body = BoxBody<Bytes, hyper::Error>;

type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Incoming>;

/// The group the API server gives every authenticated user.
pub const ALL_AUTHENTICATED: &str = "system:authenticated";
const ALL_UNAUTHENTICATED: &str = "system:unauthenticated";
const IMPERSONATE_PREFIX: &str = "impersonate-";
const IMPERSONATE_EXTRA_PREFIX: &str = "impersonate-extra-";

/// Hop-by-hop headers (RFC 9110 section 7.6.1), never forwarded as such.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Everything a request needs, shared by all connections.
pub struct Proxy {
    authenticator: Authenticator,
    rbac: RwLock<Arc<Rbac>>,
    audit: AuditLog,
    client: UpstreamClient,
    upstream_url: String,
    upstream_authority: HeaderValue,
    upstream_token: Option<HeaderValue>,
    amr_extra_header: HeaderName,
    response_timeout: Duration,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("upstream", &self.upstream_url)
            .finish_non_exhaustive()
    }
}

fn full(b: Bytes) -> Body {
    Full::new(b).map_err(|never| match never {}).boxed()
}

fn respond(res: Response<Bytes>) -> Response<Body> {
    res.map(full)
}

/// Percent-encodes an extra key for an `Impersonate-Extra-` header name, which the API
/// server lower-cases and path-unescapes.
pub fn encode_extra_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._~!#$&'*+^`|".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

impl Proxy {
    /// Builds the request path from a validated configuration and a loaded RBAC policy.
    pub fn new(
        config: &GateConfig,
        authenticator: Authenticator,
        rbac: Rbac,
        audit: AuditLog,
    ) -> Result<Self, GateError> {
        let up = &config.upstream;
        let (identity, token) = match &up.auth {
            UpstreamAuth::ClientCert(files) => (
                Some((files.cert_file.as_path(), files.key_file.as_path())),
                None,
            ),
            UpstreamAuth::TokenFile(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| GateError::io(format!("upstream token {}", path.display()), e))?;
                let value =
                    HeaderValue::from_str(&format!("Bearer {}", text.trim())).map_err(|_| {
                        GateError::Tls(format!("{}: not a valid token", path.display()))
                    })?;
                (None, Some(value))
            }
        };
        let tls = crate::tls::client_config(&up.ca_file, identity)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.limits.upstream_connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        let amr_extra_header = HeaderName::try_from(format!(
            "{IMPERSONATE_EXTRA_PREFIX}{}",
            encode_extra_key(&config.amr_extra_key)
        ))
        .map_err(|_| GateError::Tls("invalid amrExtraKey".into()))?;
        Ok(Self {
            authenticator,
            rbac: RwLock::new(Arc::new(rbac)),
            audit,
            client,
            upstream_url: up.url.clone(),
            upstream_authority: HeaderValue::from_str(&up.authority)
                .map_err(|_| GateError::Tls("invalid upstream URL".into()))?,
            upstream_token: token,
            amr_extra_header,
            response_timeout: config.limits.upstream_response_timeout,
        })
    }

    /// Replaces the RBAC policy (after a successful reload).
    pub fn set_rbac(&self, rbac: Rbac) {
        if let Ok(mut slot) = self.rbac.write() {
            *slot = Arc::new(rbac);
        }
    }

    fn rbac(&self) -> Arc<Rbac> {
        match self.rbac.read() {
            Ok(r) => Arc::clone(&r),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The authenticator (for key refreshes).
    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    /// Handles one request from `peer`.
    pub async fn handle(&self, mut req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let mut event = AuditEvent {
            source_address: peer.ip().to_string(),
            method: req.method().as_str().to_owned(),
            path: req.uri().path().to_owned(),
            decision: "deny",
            ..AuditEvent::default()
        };

        // 1. Authentication.
        let identity = match bearer_token(req.headers()) {
            None => Err(AuthError::NoToken),
            Some(token) => self.authenticator.authenticate(token).await,
        };
        let identity = match identity {
            Ok(id) => id,
            Err(e) => {
                event.reason = format!("authentication failed: {e}");
                self.audit.record(event).await;
                let message = match &e {
                    AuthError::NoToken => "Unauthorized".to_owned(),
                    other => other.to_string(),
                };
                return respond(status::unauthorized(&message));
            }
        };
        event.user.clone_from(&identity.username);
        event.uid.clone_from(&identity.uid);
        event.mfa.clone_from(&identity.amr);
        let mut groups = identity.groups.clone();
        groups.push(ALL_AUTHENTICATED.to_owned());
        event.groups.clone_from(&groups);

        // 2. Request parsing.
        let target = req
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        let info = match RequestInfo::parse(req.method().as_str(), &target) {
            Ok(info) => info,
            Err(e) => {
                event.reason = format!("bad request: {e}");
                self.audit.record(event).await;
                return respond(status::bad_request(&e.to_string()));
            }
        };
        event.verb.clone_from(&info.verb);
        event.api_group.clone_from(&info.api_group);
        event.resource.clone_from(&info.resource);
        event.subresource.clone_from(&info.subresource);
        event.namespace.clone_from(&info.namespace);
        event.name.clone_from(&info.name);
        event.path.clone_from(&info.path);

        let rbac = self.rbac();

        // 3. Impersonation asked for by the client.
        let impersonation = match impersonation_request(req.headers()) {
            Ok(i) => i,
            Err(message) => {
                event.reason = format!("bad request: {message}");
                self.audit.record(event).await;
                return respond(status::bad_request(&message));
            }
        };
        let (effective_user, effective_groups) = match &impersonation {
            None => (identity.username.clone(), groups.clone()),
            Some(imp) => {
                for check in rampart_authz::impersonation_checks(imp) {
                    let decision = rbac.authorize(
                        UserInfo {
                            name: &identity.username,
                            groups: &groups,
                        },
                        &check,
                    );
                    if !decision.is_allowed() {
                        event.impersonated_user = Some(imp.user.clone());
                        event.impersonated_groups.clone_from(&imp.groups);
                        event.reason = format!(
                            "impersonation refused: {}",
                            rampart_authz::forbidden_message(&identity.username, &check)
                        );
                        self.audit.record(event).await;
                        return respond(status::forbidden(&identity.username, &check));
                    }
                }
                event.impersonated_user = Some(imp.user.clone());
                event.impersonated_groups.clone_from(&imp.groups);
                (imp.user.clone(), impersonated_groups(imp))
            }
        };

        // 4. Authorization.
        let decision = rbac.authorize(
            UserInfo {
                name: &effective_user,
                groups: &effective_groups,
            },
            &info,
        );
        if !decision.is_allowed() {
            let message = rampart_authz::forbidden_message(&effective_user, &info);
            event.reason = if decision.reason().is_empty() {
                format!("{message}: no RBAC rule allows it")
            } else {
                format!("{message}: {}", decision.reason())
            };
            self.audit.record(event).await;
            return respond(status::forbidden(&effective_user, &info));
        }
        event.decision = "allow";
        event.reason = decision.reason().to_owned();
        self.audit.record(event).await;

        // 5. Forwarding.
        let upgrade = is_upgrade(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let upstream_req =
            match self.upstream_request(req, &identity, impersonation.as_ref(), upgrade, peer) {
                Ok(r) => r,
                Err(message) => return respond(status::bad_request(&message)),
            };
        let res =
            match tokio::time::timeout(self.response_timeout, self.client.request(upstream_req))
                .await
            {
                Ok(Ok(res)) => res,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "upstream request failed");
                    return respond(status::bad_gateway());
                }
                Err(_) => return respond(status::gateway_timeout()),
            };
        if res.status() == StatusCode::SWITCHING_PROTOCOLS {
            return self.splice(res, client_upgrade);
        }
        let (mut parts, body) = res.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        Response::from_parts(parts, body.boxed())
    }

    fn upstream_request(
        &self,
        req: Request<Incoming>,
        identity: &Identity,
        impersonation: Option<&ImpersonationRequest>,
        upgrade: bool,
        peer: SocketAddr,
    ) -> Result<Request<Incoming>, String> {
        let (mut parts, body) = req.into_parts();
        let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        parts.uri = format!("{}{pq}", self.upstream_url)
            .parse::<Uri>()
            .map_err(|_| "invalid request target".to_owned())?;
        let h = &mut parts.headers;
        strip_hop_by_hop(h, upgrade);
        h.remove(header::AUTHORIZATION);
        h.remove(header::HOST);
        // Identity headers a client must never set: impersonation, and the API server's
        // front-proxy (request-header) authentication, which it would trust if the
        // gateway's certificate were also a front-proxy client certificate.
        let impersonate: Vec<HeaderName> = h
            .keys()
            .filter(|k| {
                k.as_str().starts_with(IMPERSONATE_PREFIX) || k.as_str().starts_with("x-remote-")
            })
            .cloned()
            .collect();
        for k in impersonate {
            h.remove(k);
        }
        h.insert(header::HOST, self.upstream_authority.clone());
        if let Some(token) = &self.upstream_token {
            h.insert(header::AUTHORIZATION, token.clone());
        }
        let value =
            |s: &str| HeaderValue::from_str(s).map_err(|_| "invalid header value".to_owned());
        match impersonation {
            None => {
                h.insert("impersonate-user", value(&identity.username)?);
                for g in &identity.groups {
                    h.append("impersonate-group", value(g)?);
                }
                if let Some(uid) = &identity.uid {
                    h.insert("impersonate-uid", value(uid)?);
                }
                for m in &identity.amr {
                    h.append(self.amr_extra_header.clone(), value(m)?);
                }
            }
            Some(imp) => {
                h.insert("impersonate-user", value(&imp.user)?);
                for g in &imp.groups {
                    h.append("impersonate-group", value(g)?);
                }
                if let Some(uid) = &imp.uid {
                    h.insert("impersonate-uid", value(uid)?);
                }
                for (k, vs) in &imp.extra {
                    let name = HeaderName::try_from(format!(
                        "{IMPERSONATE_EXTRA_PREFIX}{}",
                        encode_extra_key(k)
                    ))
                    .map_err(|_| "invalid impersonation extra key".to_owned())?;
                    for v in vs {
                        h.append(name.clone(), value(v)?);
                    }
                }
            }
        }
        // The client's own X-Forwarded-For is not trusted: the API server's audit log
        // gets the address the gateway saw.
        h.insert("x-forwarded-for", value(&peer.ip().to_string())?);
        Ok(Request::from_parts(parts, body))
    }

    fn splice(
        &self,
        mut res: Response<Incoming>,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> Response<Body> {
        let Some(client_upgrade) = client_upgrade else {
            // The API server switched protocols without being asked to.
            return respond(status::bad_gateway());
        };
        let upstream_upgrade = hyper::upgrade::on(&mut res);
        tokio::spawn(async move {
            let (client, upstream) = match tokio::try_join!(client_upgrade, upstream_upgrade) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(error = %e, "upgrade failed");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut upstream = TokioIo::new(upstream);
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                tracing::debug!(error = %e, "upgraded stream ended");
            }
        });
        let (parts, _) = res.into_parts();
        Response::from_parts(parts, full(Bytes::new()))
    }
}

/// The token of an `Authorization: Bearer` header.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes hop-by-hop headers and those named by `Connection`; for upgrades keeps
/// `Connection: Upgrade` and `Upgrade`.
fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<String> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && t != "upgrade")
        .collect();
    for name in named {
        h.remove(name.as_str());
    }
    for name in HOP_BY_HOP {
        h.remove(name);
    }
    if keep_upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    } else {
        h.remove(header::UPGRADE);
    }
}

/// The client's `Impersonate-*` headers, read as the API server reads them. `Err` when
/// they are malformed (groups, uid or extras without a user).
pub fn impersonation_request(headers: &HeaderMap) -> Result<Option<ImpersonationRequest>, String> {
    let text = |v: &HeaderValue| {
        v.to_str()
            .map(str::to_owned)
            .map_err(|_| "impersonation headers must be text".to_owned())
    };
    let user = match headers.get("impersonate-user") {
        Some(v) => text(v)?,
        None => String::new(),
    };
    let groups = headers
        .get_all("impersonate-group")
        .iter()
        .map(text)
        .collect::<Result<Vec<_>, _>>()?;
    let uid = match headers.get("impersonate-uid") {
        Some(v) => Some(text(v)?).filter(|u| !u.is_empty()),
        None => None,
    };
    let mut extra: Vec<(String, Vec<String>)> = Vec::new();
    for name in headers.keys() {
        let Some(raw_key) = name.as_str().strip_prefix(IMPERSONATE_EXTRA_PREFIX) else {
            continue;
        };
        let key = percent_unescape(raw_key).ok_or("invalid impersonation extra key")?;
        let values = headers
            .get_all(name)
            .iter()
            .map(text)
            .collect::<Result<Vec<_>, _>>()?;
        extra.push((key, values));
    }
    let others = headers
        .keys()
        .any(|k| k.as_str().starts_with(IMPERSONATE_PREFIX));
    if user.is_empty() {
        if !groups.is_empty() || uid.is_some() || !extra.is_empty() {
            return Err(
                "requested impersonation of groups, uid or extras without impersonating a user"
                    .into(),
            );
        }
        if others {
            return Err("unknown or empty impersonation header".into());
        }
        return Ok(None);
    }
    Ok(Some(ImpersonationRequest {
        user,
        groups,
        uid,
        extra,
    }))
}

fn percent_unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The groups the API server gives an impersonated user: the requested ones (or a
/// service account's own), plus `system:authenticated` unless `system:authenticated`
/// or `system:unauthenticated` was requested or the user is anonymous.
fn impersonated_groups(imp: &ImpersonationRequest) -> Vec<String> {
    let mut groups = imp.groups.clone();
    if groups.is_empty()
        && let Some((ns, _)) = imp
            .user
            .strip_prefix("system:serviceaccount:")
            .and_then(|r| r.split_once(':'))
    {
        groups.push("system:serviceaccounts".into());
        groups.push(format!("system:serviceaccounts:{ns}"));
    }
    if imp.user != "system:anonymous"
        && !groups
            .iter()
            .any(|g| g == ALL_AUTHENTICATED || g == ALL_UNAUTHENTICATED)
    {
        groups.push(ALL_AUTHENTICATED.into());
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_keys_are_escaped_for_header_names() {
        assert_eq!(encode_extra_key("rampart.dev/amr"), "rampart.dev%2famr");
        assert_eq!(
            percent_unescape("rampart.dev%2famr").as_deref(),
            Some("rampart.dev/amr")
        );
    }

    #[test]
    fn impersonation_headers_are_read_like_the_api_server() {
        let mut h = HeaderMap::new();
        assert_eq!(impersonation_request(&h), Ok(None));
        h.append("impersonate-group", HeaderValue::from_static("g"));
        assert!(impersonation_request(&h).is_err());
        h.append("impersonate-user", HeaderValue::from_static("bob"));
        h.append("impersonate-group", HeaderValue::from_static("h"));
        h.append(
            "impersonate-extra-example.com%2fscopes",
            HeaderValue::from_static("a"),
        );
        let imp = impersonation_request(&h).unwrap().unwrap();
        assert_eq!(imp.user, "bob");
        assert_eq!(imp.groups, ["g", "h"]);
        assert_eq!(
            imp.extra,
            [("example.com/scopes".to_owned(), vec!["a".to_owned()])]
        );
        assert_eq!(impersonated_groups(&imp), ["g", "h", ALL_AUTHENTICATED]);
        let sa = ImpersonationRequest {
            user: "system:serviceaccount:ns:sa".into(),
            ..Default::default()
        };
        assert_eq!(
            impersonated_groups(&sa),
            [
                "system:serviceaccounts",
                "system:serviceaccounts:ns",
                ALL_AUTHENTICATED
            ]
        );
    }

    #[test]
    fn bearer_tokens() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&h), None);
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret, Upgrade"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        let mut up = h.clone();
        strip_hop_by_hop(&mut up, true);
        assert!(up.get("x-secret").is_none() && up.get(header::TE).is_none());
        assert_eq!(up.get(header::UPGRADE).unwrap(), "SPDY/3.1");
        assert_eq!(up.get(header::CONNECTION).unwrap(), "Upgrade");
        strip_hop_by_hop(&mut h, false);
        assert!(h.get(header::UPGRADE).is_none() && h.get(header::CONNECTION).is_none());
    }
}
