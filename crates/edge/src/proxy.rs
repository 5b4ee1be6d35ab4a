//! What every request goes through whatever its protocol (request filter, routing,
//! limits, redirects, server choice with retries, metrics, access logs), and the
//! HTTP/2 service built on it. HTTP/1.1 requests are served by [`crate::h1`]; both
//! forward over the same HTTP/1.1 server connections.
//!
//! Error responses are short fixed texts; the cause goes to the log, never to the
//! client. Who is to blame decides the status: no route 404, filter verdicts as given,
//! no available server 503, a server that cannot be reached or breaks the exchange 502,
//! a server too slow to answer 504; a client over a limit 413, 414 or 431.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use crate::h2::RequestBody;
use bytes::{Buf, Bytes};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};

use crate::config::{HttpRoute, Redirect, RouteAction};
use crate::h1::chunked::{self, Decoder};
use crate::h1::encode::{self, BodyOut, RequestOut};
use crate::h1::head::{self, Framing, Known};
use crate::hooks::{Abuse, RequestFilter, RequestInfo, RequestVerdict};
use crate::io::{Activity, now_ms};
use crate::lb::ServerState;
use crate::metrics::ListenerMetrics;
use crate::runtime::Runtime;
use crate::upstream::ServerConn;
use crate::{Shared, forwarded, route};

/// What a connection tells its requests.
#[derive(Debug)]
pub struct ConnContext {
    /// Gateway state.
    pub shared: Arc<Shared>,
    /// The listener's name (its identity across reloads).
    pub listener: Arc<str>,
    /// The listener's counters.
    pub metrics: Arc<ListenerMetrics>,
    /// The client (after PROXY protocol).
    pub peer: SocketAddr,
    /// The address the client connected to.
    pub local: SocketAddr,
    /// Activity record (HTTP/2 idle tracking), if any.
    pub activity: Option<Arc<Activity>>,
    /// How fast the client takes streamed responses (HTTP/2), if watched.
    pub read_watch: Option<Arc<crate::h2::ReadWatch>>,
    /// Forwarding header values that depend only on the peer and scheme, made once.
    pub forwarding: forwarded::PeerValues,
}

impl ConnContext {
    /// Counts and reports a client the gateway refused or cut.
    pub fn report(&self, abuse: Abuse, detail: &str) {
        crate::abuse::report(
            &self.shared,
            &self.metrics,
            &self.listener,
            self.peer,
            abuse,
            detail,
        );
    }
}

/// Counts a request against its server and connection until released or dropped.
#[derive(Debug)]
pub struct InFlight {
    server: Option<Arc<ServerState>>,
    activity: Option<Arc<Activity>>,
}

impl InFlight {
    /// Counts now.
    pub fn new(server: Option<Arc<ServerState>>, activity: Option<Arc<Activity>>) -> Self {
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

/// Why a request could not be served by a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No server could be reached (connect errors): 502.
    Unreachable,
    /// The exchange failed after the request may have reached the server: 502.
    Exchange,
    /// No response headers in time: 504.
    Timeout,
}

impl Failure {
    /// The status for a failure; `None` (no server available) is 503.
    pub fn status(f: Option<Failure>) -> u16 {
        match f {
            None => 503,
            Some(Failure::Unreachable | Failure::Exchange) => 502,
            Some(Failure::Timeout) => 504,
        }
    }
}

/// Asks the request filter; `Some((status, retry_after, delay))` refuses the request.
pub fn check_filter(
    filter: &dyn RequestFilter,
    listener: &str,
    route: Option<&str>,
    peer: SocketAddr,
    method: &Method,
    path: &str,
    headers: &dyn route::HeaderLookup,
) -> Option<(StatusCode, Option<u32>, Option<std::time::Duration>)> {
    let info = RequestInfo {
        listener,
        route,
        peer,
        method,
        path,
        headers,
    };
    match filter.check(&info) {
        RequestVerdict::Continue => None,
        RequestVerdict::Respond {
            status,
            retry_after,
            delay,
        } => Some((status, retry_after, delay)),
    }
}

/// The `Location` of a redirect, from the request's host (`Host` or authority, with
/// its port) and path-and-query.
pub fn redirect_location(
    r: &Redirect,
    scheme: &str,
    raw_host: Option<&str>,
    pq: &str,
) -> Result<String, &'static str> {
    let raw_host = raw_host.unwrap_or("");
    let (req_host, req_port) = match raw_host.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            if p.bytes().all(|b| b.is_ascii_digit()) && !h.is_empty() {
                (h, Some(p))
            } else {
                (raw_host, None)
            }
        }
        _ => (raw_host, None),
    };
    let new_scheme = r.scheme.as_deref().unwrap_or(scheme);
    let host = r.host.as_deref().unwrap_or(req_host);
    if host.is_empty() {
        return Err("missing host");
    }
    let port = match r.port {
        Some(p) => Some(p.to_string()),
        None if new_scheme != scheme => None,
        None => req_port.map(str::to_owned),
    };
    let pq = if pq.is_empty() { "/" } else { pq };
    let location = match port {
        Some(p) => format!("{new_scheme}://{host}:{p}{pq}"),
        None => format!("{new_scheme}://{host}{pq}"),
    };
    if HeaderValue::from_str(&location).is_err() {
        return Err("bad location");
    }
    Ok(location)
}

/// Gets a connection to server `si`: an idle pooled one, or a new one. The flag says
/// whether it may go back to the pool afterwards.
pub async fn connection(
    ctx: &ConnContext,
    rt: &Runtime,
    bi: usize,
    si: usize,
    now_ms: u64,
) -> Option<(ServerConn, bool)> {
    let backend = &rt.backends[bi];
    let bcfg = &rt.config.backends[bi];
    if bcfg.proxy_protocol {
        // A connection carries one client's address: never pooled.
        let header = crate::proxy_protocol::encode(ctx.peer, ctx.local);
        let open = Box::pin(ServerConn::open(
            &backend.connector,
            backend.addrs[si],
            Some(&header),
        ));
        return open.await.ok().map(|u| (u, false));
    }
    if let Some(up) = backend.pools[si].checkout(now_ms) {
        return Some((up, true));
    }
    // Opening is the cold path: boxed, so that the futures of requests on pooled
    // connections (moved as they are boxed and polled) stay small.
    // (A statement of its own: a temporary in the `match` would keep its space in
    // this future across the await.)
    let open = Box::pin(ServerConn::open(
        &backend.connector,
        backend.addrs[si],
        None,
    ));
    match open.await {
        Ok(up) => Some((up, true)),
        Err(e) => {
            tracing::debug!(error = %e, server = %backend.addrs[si], "connect failed");
            None
        }
    }
}

/// Tells the balancer how server `si` of backend `bi` did.
pub fn report_server(rt: &Runtime, bi: usize, si: usize, ok: bool) {
    let backend = &rt.backends[bi];
    // The time matters only for an ejection.
    let now = if ok { 0 } else { now_ms() };
    if backend.balancer.report(si, ok, now) {
        tracing::warn!(backend = %rt.config.backends[bi].name, server = %backend.addrs[si], "server ejected after consecutive failures");
    }
}

/// A response body: made here, read in full, or streamed from a server.
#[derive(Debug)]
pub enum ProxyBody {
    /// Made by the gateway, or a server's body read in full.
    Local(Option<Bytes>),
    /// Streamed from a server.
    Upstream(Box<Streamed>),
}

/// A server's response body, with the connection it arrives on (driven while the body
/// is read, returned to its pool once the body is complete).
#[derive(Debug)]
pub struct Streamed {
    up: Option<ServerConn>,
    pool: Option<Arc<crate::upstream::ServerPool>>,
    framing: StreamFraming,
    guard: InFlight,
    progress: Option<Arc<crate::h2::StreamProgress>>,
}

#[derive(Debug)]
enum StreamFraming {
    Length(u64),
    Chunked(Decoder),
    UntilClose,
}

impl Streamed {
    fn finish(&mut self) {
        self.guard.release();
        if let (Some(up), Some(pool)) = (self.up.take(), self.pool.take()) {
            pool.checkin(up, now_ms());
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            ProxyBody::Local(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Upstream(s) => {
                if let Some(p) = &s.progress {
                    p.polled();
                }
                let r = s.poll_data(cx);
                if let (Poll::Ready(Some(Ok(f))), Some(p)) = (&r, &s.progress)
                    && let Some(d) = f.data_ref()
                {
                    p.sent(d.len());
                }
                r
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Local(b) => b.is_none(),
            ProxyBody::Upstream(s) => s.up.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Local(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ProxyBody::Local(None) => SizeHint::with_exact(0),
            ProxyBody::Upstream(s) => match s.framing {
                StreamFraming::Length(n) => SizeHint::with_exact(n),
                _ => SizeHint::default(),
            },
        }
    }
}

impl Streamed {
    fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let s = self;
        loop {
            let Some(up) = s.up.as_mut() else {
                return Poll::Ready(None);
            };
            if !up.buf.is_empty() {
                match &mut s.framing {
                    StreamFraming::Length(left) => {
                        let n = usize::try_from(*left)
                            .unwrap_or(usize::MAX)
                            .min(up.buf.len());
                        // Copied: the read buffer stays unshared, for the next exchange.
                        let data = Bytes::copy_from_slice(&up.buf[..n]);
                        up.buf.advance(n);
                        *left -= n as u64;
                        if *left == 0 {
                            s.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    StreamFraming::Chunked(d) => {
                        let step = d.decode(&up.buf).map_err(|e| {
                            std::io::Error::new(std::io::ErrorKind::InvalidData, e.0)
                        })?;
                        let (start, n) = step.data;
                        let data =
                            (n > 0).then(|| Bytes::copy_from_slice(&up.buf[start..start + n]));
                        up.buf.advance(step.consumed);
                        if step.done {
                            s.finish();
                            return Poll::Ready(data.map(|d| Ok(Frame::data(d))));
                        }
                        if let Some(data) = data {
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                        if step.consumed > 0 {
                            continue;
                        }
                    }
                    StreamFraming::UntilClose => {
                        let data = up.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
            }
            match ready!(up.poll_read_more(cx)) {
                Ok(0) => {
                    if matches!(s.framing, StreamFraming::UntilClose) {
                        s.up = None;
                        s.guard.release();
                        return Poll::Ready(None);
                    }
                    s.up = None;
                    return Poll::Ready(Some(Err(std::io::ErrorKind::UnexpectedEof.into())));
                }
                Ok(_) => {}
                Err(e) => {
                    s.up = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }
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

fn status_text(status: u16) -> &'static str {
    match status {
        413 => "content too large\n",
        414 => "uri too long\n",
        431 => "request header fields too large\n",
        408 => "request timeout\n",
        400 => "bad request\n",
        501 => "not implemented\n",
        502 => "bad gateway\n",
        503 => "no server available\n",
        504 => "gateway timeout\n",
        _ => "request refused\n",
    }
}

/// Serves one HTTP/2 request.
pub async fn serve(
    ctx: Arc<ConnContext>,
    req: Request<RequestBody>,
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
    let limits = &rt.config.limits;
    // Limits the HTTP/2 layer does not check itself.
    let refuse = |status: u16, abuse: Abuse, detail: &str| {
        ctx.report(abuse, detail);
        Ok(local(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            status_text(status),
        ))
    };
    if req.method() == Method::CONNECT {
        return refuse(501, Abuse::MalformedRequest, "CONNECT is not proxied");
    }
    let pq_len = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    if pq_len > limits.max_uri_bytes {
        return refuse(414, Abuse::UriTooLong, "request target too long");
    }
    if req.headers().len() > limits.max_headers {
        return refuse(431, Abuse::TooManyHeaders, "too many header fields");
    }
    let host = route::request_host(req.uri(), req.headers())
        .map(|h| route::lowercase_host(h).into_owned());
    let found = match route::route_request(
        &lcfg.http_routes,
        host.as_deref(),
        req.uri().path(),
        req.method(),
        req.headers(),
    ) {
        Ok(found) => found,
        Err(why) => return refuse(400, Abuse::MalformedRequest, why.detail()),
    };
    let filter = ctx.shared.hooks.request.as_ref();
    if let Some(f) = filter
        && let Some((status, retry_after, delay)) = check_filter(
            f.as_ref(),
            &lcfg.name,
            found.map(|ri| lcfg.http_routes[ri].name.as_str()),
            ctx.peer,
            req.method(),
            req.uri().path(),
            req.headers(),
        )
    {
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let mut r = local(status, "request refused\n");
        if let Some(s) = retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        return Ok(r);
    }
    let Some(ri) = found else {
        ctx.shared.metrics.unrouted.fetch_add(1, Ordering::Relaxed);
        if let Some(filter) = filter {
            filter.responded(&lcfg.name, None, ctx.peer, StatusCode::NOT_FOUND);
        }
        return Ok(local(StatusCode::NOT_FOUND, "no route\n"));
    };
    let route = &lcfg.http_routes[ri];
    if pq_len > route.limits.max_uri_bytes {
        return refuse(414, Abuse::UriTooLong, "request target too long");
    }
    if req.headers().len() > route.limits.max_headers {
        return refuse(431, Abuse::TooManyHeaders, "too many header fields");
    }
    let route_metrics = &rt.listeners[li].route_metrics[ri];
    let scheme = rt.listeners[li].scheme;
    let (response, upstream) = match &route.action {
        RouteAction::Redirect(r) => {
            let raw_host = req.uri().authority().map(|a| a.as_str()).or_else(|| {
                req.headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
            });
            let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
            match redirect_location(r, scheme, raw_host, pq) {
                Ok(location) => {
                    let mut resp = local(
                        StatusCode::from_u16(r.status).unwrap_or(StatusCode::MOVED_PERMANENTLY),
                        "redirecting\n",
                    );
                    if let Ok(v) = HeaderValue::from_str(&location) {
                        resp.headers_mut().insert(header::LOCATION, v);
                    }
                    (resp, None)
                }
                Err(_) => (local(StatusCode::BAD_REQUEST, "bad request\n"), None),
            }
        }
        RouteAction::Backend(bi) => {
            // Boxed in a statement of its own: a temporary boxed in the `.await`
            // expression would keep its space in this future too.
            let forwarding = Box::pin(forward(&ctx, &rt, route, *bi, req));
            forwarding.await
        }
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

/// Largest response body read in full before the response goes out (sent with its
/// headers in one go).
const SMALL_BODY: u64 = 16 * 1024;

/// How the request body is sent to the server.
fn request_framing(req: &Request<RequestBody>) -> Result<BodyOut, ()> {
    let mut lengths = req.headers().get_all(header::CONTENT_LENGTH).iter();
    match lengths.next() {
        Some(v) => {
            let v = v.to_str().map_err(|_| ())?.trim();
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) || v.len() > 18 {
                return Err(());
            }
            let n: u64 = v.parse().map_err(|_| ())?;
            if lengths.any(|o| o.as_bytes().trim_ascii() != v.as_bytes()) {
                return Err(());
            }
            Ok(BodyOut::Length(n))
        }
        None if req.body().is_end_stream() => Ok(BodyOut::None),
        None => Ok(BodyOut::Chunked),
    }
}

async fn forward(
    ctx: &ConnContext,
    rt: &Runtime,
    route: &HttpRoute,
    bi: usize,
    req: Request<RequestBody>,
) -> (Response<ProxyBody>, Option<SocketAddr>) {
    let backend = &rt.backends[bi];
    let bcfg = &rt.config.backends[bi];
    let cfg = &rt.config;
    let Ok(body_out) = request_framing(&req) else {
        ctx.report(Abuse::Smuggling, "invalid content-length");
        return (local(StatusCode::BAD_REQUEST, "bad request\n"), None);
    };
    if let BodyOut::Length(n) = body_out
        && n > route.limits.max_body_bytes
    {
        ctx.report(Abuse::BodyTooLarge, "request body too large");
        return (
            local(StatusCode::PAYLOAD_TOO_LARGE, "content too large\n"),
            None,
        );
    }
    let (parts, mut body) = req.into_parts();
    let is_head = parts.method == Method::HEAD;
    let host: Option<&[u8]> = match parts.uri.authority() {
        Some(a) => Some(a.as_str().as_bytes()),
        None => parts.headers.get(header::HOST).map(HeaderValue::as_bytes),
    };
    let trusted = crate::config::Cidr::any_contains(&cfg.trusted_proxies, ctx.peer.ip());
    let target = parts
        .uri
        .path_and_query()
        .map_or(&b"/"[..], |p| p.as_str().as_bytes());
    let mut out = Vec::with_capacity(1024);
    encode::request_head(
        &mut out,
        &RequestOut {
            method: parts.method.as_str().as_bytes(),
            target,
            host,
            peer: &ctx.forwarding,
            trusted,
            edits: &route.request_headers,
            body: body_out,
        },
        &parts.headers,
    );

    let mut tried: [usize; 11] = [usize::MAX; 11];
    let mut ntried = 0;
    let mut failure = None;
    let attempts = (bcfg.retries as usize + 1).min(tried.len());
    let mut stale_retries = 2;
    let mut chosen = None;
    while ntried < attempts {
        let now = now_ms();
        let Some(si) = backend.balancer.pick(
            now,
            Some(ctx.peer.ip()),
            rand::random::<u64>(),
            &tried[..ntried],
        ) else {
            break;
        };
        let Some((mut up, poolable)) = connection(ctx, rt, bi, si, now).await else {
            tried[ntried] = si;
            ntried += 1;
            failure = Some(Failure::Unreachable);
            report_server(rt, bi, si, false);
            continue;
        };
        let guard = InFlight::new(Some(backend.balancer.servers()[si].clone()), None);
        match up.write_all(&out).await {
            Ok(()) => {
                chosen = Some((si, up, poolable, guard));
                break;
            }
            Err(e) if !e.sent_any && stale_retries > 0 => stale_retries -= 1,
            Err(e) => {
                tracing::debug!(error = %e.error, server = %backend.addrs[si], "write to server failed");
                report_server(rt, bi, si, false);
                let f = if e.sent_any {
                    Failure::Exchange
                } else {
                    Failure::Unreachable
                };
                return (fail(Some(f)), Some(backend.addrs[si]));
            }
        }
    }
    let Some((si, mut up, poolable, guard)) = chosen else {
        return (fail(failure), None);
    };
    let addr = backend.addrs[si];
    up.uses += 1;

    // The request body, as the client sends it.
    if !body.is_end_stream() && body_out != BodyOut::None {
        let sending = Box::pin(send_body(ctx, rt, route, &mut body, body_out, &mut up));
        match sending.await {
            Ok(()) => {}
            Err(SendFail::Client(Some((abuse, status)))) => {
                ctx.report(abuse, status_text(status).trim_end());
                return (
                    local(
                        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                        status_text(status),
                    ),
                    Some(addr),
                );
            }
            Err(SendFail::Client(None)) => {
                return (local(StatusCode::BAD_REQUEST, "bad request\n"), Some(addr));
            }
            Err(SendFail::Server) => {
                report_server(rt, bi, si, false);
                if up.buf.is_empty() {
                    return (fail(Some(Failure::Exchange)), Some(addr));
                }
            }
        }
    }

    // The response head.
    let deadline = tokio::time::Instant::now() + cfg.timeouts.server_response;
    let mut fields = Vec::new();
    let resp = loop {
        let r = tokio::time::timeout_at(deadline, read_head(&mut up, is_head, &mut fields)).await;
        match r {
            Ok(Ok(h)) if (100..200).contains(&h.status) && h.status != 101 => {
                up.buf.advance(h.len);
            }
            Ok(Ok(h)) if h.status == 101 => break Err(Failure::Exchange),
            Ok(Ok(h)) => break Ok(h),
            Ok(Err(())) => break Err(Failure::Exchange),
            Err(_) => break Err(Failure::Timeout),
        }
    };
    let resp = match resp {
        Ok(r) => r,
        Err(f) => {
            report_server(rt, bi, si, false);
            return (fail(Some(f)), Some(addr));
        }
    };
    report_server(rt, bi, si, !matches!(resp.status, 502..=504));
    let mut response = Response::new(ProxyBody::Local(None));
    *response.status_mut() = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = response.headers_mut();
    headers.reserve(fields.len() + route.response_headers.add.len());
    // One copy of the head, which the header values share (the read buffer stays
    // unshared for the next exchange).
    let head = Bytes::copy_from_slice(&up.buf[..resp.len]);
    up.buf.advance(resp.len);
    for f in &fields {
        let keep = match f.known {
            Known::ContentLength => matches!(resp.framing, Framing::Length(_) | Framing::Empty),
            Known::TransferEncoding | Known::Connection | Known::HopByHop => false,
            _ => true,
        };
        if !keep {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(&head[f.name.clone()]),
            HeaderValue::from_maybe_shared(head.slice(f.value.clone())),
        ) {
            headers.append(n, v);
        }
    }
    drop(head);
    if !route.response_headers.is_empty() {
        route.response_headers.apply(headers);
    }
    let reusable = !resp.close && poolable;
    let pool = reusable.then(|| backend.pools[si].clone());
    match resp.framing {
        Framing::Empty | Framing::Length(0) => {
            if let Some(p) = pool {
                p.checkin(up, now_ms());
            }
        }
        Framing::Length(n) if n <= SMALL_BODY => {
            // Small: read it all, so that headers and data leave together and the
            // server connection goes back to the pool at once.
            let n = n as usize;
            while up.buf.len() < n {
                match tokio::time::timeout_at(deadline, up.read_more()).await {
                    Ok(Ok(k)) if k > 0 => {}
                    _ => {
                        report_server(rt, bi, si, false);
                        return (fail(Some(Failure::Exchange)), Some(addr));
                    }
                }
            }
            let data = up.buf.split_to(n).freeze();
            if let Some(p) = pool {
                p.checkin(up, now_ms());
            }
            *response.body_mut() = ProxyBody::Local(Some(data));
        }
        framing => {
            let framing = match framing {
                Framing::Length(n) => StreamFraming::Length(n),
                Framing::Chunked => StreamFraming::Chunked(Decoder::new(16 * 1024)),
                _ => StreamFraming::UntilClose,
            };
            *response.body_mut() = ProxyBody::Upstream(Box::new(Streamed {
                up: Some(up),
                pool,
                framing,
                guard,
                progress: ctx.read_watch.as_ref().map(|w| w.register()),
            }));
        }
    }
    (response, Some(addr))
}

async fn read_head(
    up: &mut ServerConn,
    is_head: bool,
    fields: &mut Vec<head::Field>,
) -> Result<head::ResponseHead, ()> {
    let mut scanned = 0;
    loop {
        if let Some(end) = head::find_head_end(&up.buf, scanned) {
            return head::parse_response(&up.buf, end, is_head, fields).map_err(|e| {
                tracing::debug!(why = e.0, "bad response");
            });
        }
        scanned = up.buf.len();
        if up.buf.len() > 64 * 1024 {
            return Err(());
        }
        match up.read_more().await {
            Ok(n) if n > 0 => {}
            _ => return Err(()),
        }
    }
}

enum SendFail {
    Client(Option<(Abuse, u16)>),
    Server,
}

/// Streams an HTTP/2 request body to the server, re-framed, under the body limit and
/// the minimum body rate.
async fn send_body(
    _ctx: &ConnContext,
    rt: &Runtime,
    route: &HttpRoute,
    body: &mut RequestBody,
    framing: BodyOut,
    up: &mut ServerConn,
) -> Result<(), SendFail> {
    let t = &rt.config.timeouts;
    let window = t.client_body;
    let min_bytes = rt
        .config
        .limits
        .min_body_rate
        .saturating_mul(window.as_millis() as u64)
        / 1000;
    let mut window_end = tokio::time::Instant::now() + window;
    let mut window_bytes = 0u64;
    let mut seen = 0u64;
    let chunked = framing == BodyOut::Chunked;
    let mut out = Vec::new();
    loop {
        let frame = tokio::time::timeout_at(
            window_end,
            std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)),
        )
        .await;
        let frame = match frame {
            Err(_) => {
                if window_bytes < min_bytes {
                    return Err(SendFail::Client(Some((Abuse::SlowBody, 408))));
                }
                window_end = tokio::time::Instant::now() + window;
                window_bytes = 0;
                continue;
            }
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(SendFail::Client(None)),
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len() as u64;
        window_bytes += data.len() as u64;
        if seen > route.limits.max_body_bytes {
            return Err(SendFail::Client(Some((Abuse::BodyTooLarge, 413))));
        }
        if data.is_empty() {
            continue;
        }
        out.clear();
        if chunked {
            chunked::encode_header(&mut out, data.len());
            out.extend_from_slice(&data);
            out.extend_from_slice(chunked::CHUNK_END);
        } else {
            out.extend_from_slice(&data);
        }
        let deadline = tokio::time::Instant::now() + t.server_response;
        match tokio::time::timeout_at(deadline, up.write_all(&out)).await {
            Ok(Ok(())) => {}
            _ => return Err(SendFail::Server),
        }
    }
    if chunked {
        let deadline = tokio::time::Instant::now() + t.server_response;
        match tokio::time::timeout_at(deadline, up.write_all(chunked::LAST_CHUNK)).await {
            Ok(Ok(())) => {}
            _ => return Err(SendFail::Server),
        }
    }
    Ok(())
}

fn fail(failure: Option<Failure>) -> Response<ProxyBody> {
    let status = Failure::status(failure);
    local(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
        status_text(status),
    )
}
