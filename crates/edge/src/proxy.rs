//! The HTTP service: request filter, routing, redirects, forwarding to a backend with
//! retries, header rewriting, metrics and access logs.
//!
//! Error responses are short fixed texts; the cause goes to the log, never to the
//! client. Who is to blame decides the status: no route 404, filter verdicts as given,
//! no available server 503, a server that cannot be reached or breaks the exchange 502,
//! a server too slow to answer 504.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::config::{HttpRoute, Redirect, RouteAction};
use crate::hooks::{RequestInfo, RequestVerdict};
use crate::io::{Activity, now_ms};
use crate::lb::ServerState;
use crate::runtime::Runtime;
use crate::upstream::{ExchangeError, ServerPool, Upstream};
use crate::{Shared, forwarded, route};

/// A response body: from a server, or made here.
#[derive(Debug)]
pub enum ProxyBody {
    /// Made by the gateway.
    Local(Option<Bytes>),
    /// Streamed from a server.
    Upstream(Box<Streamed>),
}

/// A server's response body, with the connection it arrives on (driven while the body
/// is read, returned to its pool once the body is complete).
#[derive(Debug)]
pub struct Streamed {
    body: Incoming,
    upstream: Option<Upstream>,
    pool: Option<Arc<ServerPool>>,
    guard: InFlight,
}

impl Streamed {
    fn finish(&mut self) {
        self.guard.release();
        if let (Some(up), Some(pool)) = (self.upstream.take(), self.pool.take()) {
            pool.checkin(up, now_ms());
        }
    }
}

impl Drop for Streamed {
    fn drop(&mut self) {
        // A body never polled to its end (HEAD, 204, 304, or a client that left): the
        // connection is reusable only if the server's message is complete.
        if self.body.is_end_stream() {
            self.finish();
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            ProxyBody::Local(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Upstream(s) => {
                if let Some(up) = &mut s.upstream
                    && !up.poll_conn(cx)
                {
                    // The connection ended; the body reports how (complete or cut).
                    s.pool = None;
                }
                let r = Pin::new(&mut s.body).poll_frame(cx);
                if let Poll::Ready(None) = r {
                    s.finish();
                }
                r
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Local(b) => b.is_none(),
            ProxyBody::Upstream(s) => s.body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Local(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ProxyBody::Local(None) => SizeHint::with_exact(0),
            ProxyBody::Upstream(s) => s.body.size_hint(),
        }
    }
}

/// Counts a request against its server and connection until released or dropped.
#[derive(Debug)]
pub struct InFlight {
    server: Option<Arc<ServerState>>,
    activity: Option<Arc<Activity>>,
}

impl InFlight {
    fn new(server: Option<Arc<ServerState>>, activity: Option<Arc<Activity>>) -> Self {
        if let Some(s) = &server {
            s.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(a) = &activity {
            a.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        Self { server, activity }
    }

    fn release(&mut self) {
        if let Some(s) = self.server.take() {
            s.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(a) = self.activity.take() {
            a.in_flight.fetch_sub(1, Ordering::Relaxed);
            a.touch();
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.release();
    }
}

/// What a connection tells its requests.
#[derive(Debug)]
pub struct ConnContext {
    /// Gateway state.
    pub shared: Arc<Shared>,
    /// The listener's name (its identity across reloads).
    pub listener: Arc<str>,
    /// The client (after PROXY protocol).
    pub peer: SocketAddr,
    /// The address the client connected to.
    pub local: SocketAddr,
    /// Activity record (HTTP/2 idle tracking), if any.
    pub activity: Option<Arc<Activity>>,
    /// Forwarding header values that depend only on the peer and scheme, made once.
    pub forwarding: forwarded::PeerValues,
}

fn local(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::Local(Some(Bytes::from_static(text.as_bytes()))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Serves one request.
pub async fn serve(
    ctx: Arc<ConnContext>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let started = Instant::now();
    if let Some(a) = &ctx.activity {
        a.requests.fetch_add(1, Ordering::Relaxed);
    }
    let _active = InFlight::new(None, ctx.activity.clone());
    let rt = ctx.shared.current.load_full();
    let Some(&li) = rt.by_name.get(&ctx.listener) else {
        return Ok(local(
            StatusCode::SERVICE_UNAVAILABLE,
            "listener is being removed\n",
        ));
    };
    let lcfg = &rt.config.listeners[li];
    let host = route::request_host(req.uri(), req.headers())
        .map(|h| route::lowercase_host(h).into_owned());
    let found = route::find_route(
        &lcfg.http_routes,
        host.as_deref(),
        req.uri().path(),
        req.method(),
        req.headers(),
    );
    let route_name = found.map(|ri| lcfg.http_routes[ri].name.as_str());
    let filter = ctx.shared.hooks.request.as_ref();
    if let Some(filter) = filter {
        let info = RequestInfo {
            listener: &lcfg.name,
            route: route_name,
            peer: ctx.peer,
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
        };
        if let RequestVerdict::Respond {
            status,
            retry_after,
            delay,
        } = filter.check(&info)
        {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            let mut r = local(status, "request refused\n");
            if let Some(s) = retry_after {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(s));
            }
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Ok(r);
        }
    }
    let Some(ri) = found else {
        ctx.shared.metrics.unrouted.fetch_add(1, Ordering::Relaxed);
        if let Some(filter) = filter {
            filter.responded(&lcfg.name, None, ctx.peer, StatusCode::NOT_FOUND);
        }
        return Ok(local(StatusCode::NOT_FOUND, "no route\n"));
    };
    let route = &lcfg.http_routes[ri];
    let route_metrics = rt.listeners[li].route_metrics[ri].clone();
    let scheme = rt.listeners[li].scheme;
    let (response, upstream) = match &route.action {
        RouteAction::Redirect(r) => (redirect(r, scheme, &req), None),
        RouteAction::Backend(bi) => forward(&ctx, &rt, route, *bi, req).await,
    };
    let status = response.status();
    route_metrics.record(status.as_u16(), started.elapsed());
    if let Some(filter) = filter {
        filter.responded(&lcfg.name, Some(&route.name), ctx.peer, status);
    }
    if rt.config.access_log {
        tracing::info!(
            target: "rampart_edge::access",
            listener = %lcfg.name,
            route = %route.name,
            peer = %ctx.peer,
            status = status.as_u16(),
            upstream = upstream.map(tracing::field::display),
            micros = started.elapsed().as_micros() as u64,
            "request"
        );
    }
    Ok(response)
}

fn redirect(r: &Redirect, scheme: &str, req: &Request<Incoming>) -> Response<ProxyBody> {
    let raw_host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let (req_host, req_port) = match raw_host.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            if p.bytes().all(|b| b.is_ascii_digit()) && !h.is_empty() {
                (h.to_owned(), Some(p.to_owned()))
            } else {
                (raw_host.clone(), None)
            }
        }
        _ => (raw_host.clone(), None),
    };
    let new_scheme = r.scheme.as_deref().unwrap_or(scheme);
    let host = r.host.clone().unwrap_or(req_host);
    if host.is_empty() {
        return local(StatusCode::BAD_REQUEST, "missing host\n");
    }
    let port = match r.port {
        Some(p) => Some(p.to_string()),
        None if new_scheme != scheme => None,
        None => req_port,
    };
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = match port {
        Some(p) => format!("{new_scheme}://{host}:{p}{pq}"),
        None => format!("{new_scheme}://{host}{pq}"),
    };
    let Ok(value) = HeaderValue::from_str(&location) else {
        return local(StatusCode::BAD_REQUEST, "bad request\n");
    };
    let mut resp = local(
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::MOVED_PERMANENTLY),
        "redirecting\n",
    );
    resp.headers_mut().insert(header::LOCATION, value);
    resp
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), removed in both directions.
static HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if let Some(conn) = headers.get(header::CONNECTION) {
        // Headers named in Connection are hop-by-hop too.
        let named: Vec<HeaderName> = conn
            .to_str()
            .unwrap_or("")
            .split(',')
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        for n in named {
            headers.remove(n);
        }
    }
    for h in &HOP_BY_HOP {
        if headers.contains_key(h) {
            headers.remove(h);
        }
    }
}

enum Failure {
    /// No server could be reached (connect errors): 502.
    Unreachable,
    /// The exchange failed after the request may have reached the server: 502.
    Exchange,
    /// No response headers in time: 504.
    Timeout,
}

/// Gets a connection to server `si`: an idle pooled one, or a new one.
async fn connection(
    ctx: &ConnContext,
    rt: &Runtime,
    bi: usize,
    si: usize,
) -> Option<(Upstream, bool)> {
    let backend = &rt.backends[bi];
    let bcfg = &rt.config.backends[bi];
    if bcfg.proxy_protocol {
        // A connection carries one client's address: never pooled.
        let header = crate::proxy_protocol::encode(ctx.peer, ctx.local);
        return Upstream::open(&backend.connector, backend.addrs[si], Some(&header))
            .await
            .ok()
            .map(|u| (u, false));
    }
    if let Some(up) = backend.pools[si].checkout(now_ms()) {
        return Some((up, true));
    }
    match Upstream::open(&backend.connector, backend.addrs[si], None).await {
        Ok(up) => Some((up, true)),
        Err(e) => {
            tracing::debug!(error = %e, server = %backend.addrs[si], "connect failed");
            None
        }
    }
}

async fn forward(
    ctx: &ConnContext,
    rt: &Runtime,
    route: &HttpRoute,
    bi: usize,
    req: Request<Incoming>,
) -> (Response<ProxyBody>, Option<SocketAddr>) {
    let backend = &rt.backends[bi];
    let bcfg = &rt.config.backends[bi];
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if !parts.headers.contains_key(header::HOST)
        && let Some(a) = parts.uri.authority()
        && let Ok(v) = HeaderValue::from_str(a.as_str())
    {
        parts.headers.insert(header::HOST, v);
    }
    let trusted = crate::config::Cidr::any_contains(&rt.config.trusted_proxies, ctx.peer.ip());
    forwarded::apply(&mut parts.headers, &ctx.forwarding, trusted);
    if !route.request_headers.is_empty() {
        route.request_headers.apply(&mut parts.headers);
    }
    // Servers get origin-form targets.
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let pq = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        parts.uri = http::Uri::from(pq);
    }
    parts.version = Version::HTTP_11;
    let mut req = Request::from_parts(parts, body);
    let mut tried: [usize; 11] = [usize::MAX; 11];
    let mut ntried = 0;
    let mut failure = None;
    // Requests whose bytes never left the gateway (connect failures, a pooled
    // connection the server had closed) are tried again, on another server when the
    // retry budget allows; a request that may have reached a server never is.
    let attempts = bcfg.retries as usize + 1;
    let mut stale_retries = 2;
    while ntried < attempts {
        let Some(si) = backend.balancer.pick(
            now_ms(),
            Some(ctx.peer.ip()),
            rand::random::<u64>(),
            &tried[..ntried],
        ) else {
            break;
        };
        let server = &backend.balancer.servers()[si];
        let Some((mut up, poolable)) = connection(ctx, rt, bi, si).await else {
            tried[ntried] = si;
            ntried += 1;
            failure = Some(Failure::Unreachable);
            if backend.balancer.report(si, false, now_ms()) {
                tracing::warn!(backend = %bcfg.name, server = %backend.addrs[si], "server ejected after consecutive failures");
            }
            continue;
        };
        let guard = InFlight::new(Some(server.clone()), None);
        let sent = tokio::time::timeout(rt.config.timeouts.server_response, up.send(req)).await;
        match sent {
            Ok(Ok(resp)) => {
                let failed = matches!(resp.status().as_u16(), 502..=504);
                if backend.balancer.report(si, !failed, now_ms()) {
                    tracing::warn!(backend = %bcfg.name, server = %backend.addrs[si], "server ejected after consecutive failures");
                }
                let (mut rparts, rbody) = resp.into_parts();
                strip_hop_by_hop(&mut rparts.headers);
                if !route.response_headers.is_empty() {
                    route.response_headers.apply(&mut rparts.headers);
                }
                let streamed = Streamed {
                    body: rbody,
                    upstream: Some(up),
                    pool: poolable.then(|| backend.pools[si].clone()),
                    guard,
                };
                return (
                    Response::from_parts(rparts, ProxyBody::Upstream(Box::new(streamed))),
                    Some(backend.addrs[si]),
                );
            }
            Ok(Err(ExchangeError::NotSent(back))) => {
                // The connection was closed before the request went out: try a fresh
                // connection (not counted against the server or the retry budget).
                req = *back;
                if stale_retries == 0 {
                    failure = Some(Failure::Unreachable);
                    break;
                }
                stale_retries -= 1;
                continue;
            }
            Ok(Err(ExchangeError::Failed(e))) => {
                tracing::debug!(error = %e, server = %backend.addrs[si], "exchange failed");
                backend.balancer.report(si, false, now_ms());
                failure = Some(Failure::Exchange);
                return (fail(&failure), Some(backend.addrs[si]));
            }
            Err(_) => {
                backend.balancer.report(si, false, now_ms());
                failure = Some(Failure::Timeout);
                return (fail(&failure), Some(backend.addrs[si]));
            }
        }
    }
    (fail(&failure), None)
}

fn fail(failure: &Option<Failure>) -> Response<ProxyBody> {
    match failure {
        None => local(StatusCode::SERVICE_UNAVAILABLE, "no server available\n"),
        Some(Failure::Unreachable | Failure::Exchange) => {
            local(StatusCode::BAD_GATEWAY, "bad gateway\n")
        }
        Some(Failure::Timeout) => local(StatusCode::GATEWAY_TIMEOUT, "gateway timeout\n"),
    }
}
