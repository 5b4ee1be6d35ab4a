//! The HTTP/1.1 side of a client connection: one task reads requests, decides, and
//! forwards them over pooled server connections, streaming bodies by their framing.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures_util::FutureExt;
use tokio::time::{Instant, Sleep};

use crate::config::{HttpRoute, RouteAction};
use crate::h1::chunked::{self, Decoder};
use crate::h1::encode::{self, BodyOut, LocalOut, Parsed, RequestOut, ResponseOut};
use crate::h1::head::{self, BadResponse, Field, Framing, HeadError, HeadLimits, RequestHead};
use crate::hooks::Abuse;
use crate::io::{ClientTransport, keep_spare, ms_at, take_spare};
use crate::proxy::{self, ConnContext, Failure, InFlight};
use crate::runtime::Runtime;
use crate::upstream::ServerConn;

/// First read buffer of a connection: enough for most request heads.
const HEAD_CHUNK: usize = 2048;
/// Read buffer size while a body streams.
const BODY_CHUNK: usize = 16 * 1024;
/// Bytes of body copied next to a head before the first write.
const INLINE_BODY: usize = 16 * 1024;
/// The longest response head accepted from a server.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Response bytes a connection streams before it lets the other connections of its
/// worker run: while a server answers fast and the client's socket buffer has room
/// (the kernel grows it to megabytes, even for a client that reads nothing), a big
/// response would otherwise be encrypted and copied a megabyte at a time (tokio's
/// budget) while every other request on the worker waits.
const FAIR_SLICE: usize = 64 * 1024;
/// Trailer bytes accepted in a chunked body (then dropped).
const MAX_TRAILERS: usize = 16 * 1024;
/// Time given to the last write before a close.
const LINGER: Duration = Duration::from_secs(1);

thread_local! {
    /// Buffers of this thread's idle connections (which hold none), for the next
    /// request that arrives.
    static RBUFS: std::cell::RefCell<Vec<BytesMut>> = const { std::cell::RefCell::new(Vec::new()) };
    static WBUFS: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
    static FIELDS: std::cell::RefCell<Vec<Vec<Field>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Keeps an idle connection's buffers, emptied, for reuse on this thread; buffers
/// grown beyond the usual sizes (large heads or bodies) are freed.
fn keep_spares(mut rbuf: BytesMut, mut wbuf: Vec<u8>, mut fields: Vec<Field>) {
    rbuf.clear();
    // Consumed bytes count against a BytesMut's capacity until it is reserved again.
    if rbuf.capacity() > 0 {
        rbuf.reserve(HEAD_CHUNK);
    }
    wbuf.clear();
    fields.clear();
    if (HEAD_CHUNK..=2 * HEAD_CHUNK).contains(&rbuf.capacity()) {
        keep_spare(&RBUFS, rbuf);
    }
    if (1..=INLINE_BODY + 1024).contains(&wbuf.capacity()) {
        keep_spare(&WBUFS, wbuf);
    }
    if (1..=128).contains(&fields.capacity()) {
        keep_spare(&FIELDS, fields);
    }
}

/// Buffers for a connection whose next request started: this thread's spares, or
/// empty ones.
fn take_spares() -> (BytesMut, Vec<u8>, Vec<Field>) {
    (take_spare(&RBUFS), take_spare(&WBUFS), take_spare(&FIELDS))
}

/// What happens after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    KeepAlive,
    Close,
}

/// Why waiting for a request head ended without one.
#[derive(Debug)]
enum HeadWait {
    /// The client closed, went idle too long, or the gateway is draining.
    Closed,
    /// The head did not arrive in time.
    Slow,
    /// The head was refused.
    Bad(HeadError),
}

/// Why writing to a client failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteFail {
    /// The connection broke.
    Gone,
    /// The client took bytes slower than the minimum rate.
    Slow,
}

/// A minimum data rate over consecutive windows: each window in which the peer was
/// waited for must move at least `min_bytes` bytes.
#[derive(Debug)]
struct Window {
    len: Duration,
    min_bytes: u64,
    deadline: Option<Instant>,
    bytes: u64,
}

impl Window {
    fn new(len: Duration, min_rate: u64) -> Self {
        Self {
            len,
            min_bytes: min_rate.saturating_mul(len.as_millis() as u64) / 1000,
            deadline: None,
            bytes: 0,
        }
    }

    fn progress(&mut self, n: usize) {
        self.bytes += n as u64;
    }

    /// Called when a wait on the peer is pending: true when the current window is over
    /// with too few bytes.
    fn poll_expired(&mut self, timer: &mut Pin<Box<Sleep>>, cx: &mut Context<'_>) -> bool {
        loop {
            let now = Instant::now();
            match self.deadline {
                Some(d) if now >= d => {
                    if self.bytes < self.min_bytes {
                        return true;
                    }
                    self.deadline = Some(now + self.len);
                    self.bytes = 0;
                }
                Some(_) => {}
                None => {
                    self.deadline = Some(now + self.len);
                    self.bytes = 0;
                }
            }
            let d = self.deadline.unwrap_or(now + self.len);
            if timer.deadline() != d {
                timer.as_mut().reset(d);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return false;
            }
        }
    }
}

/// One client connection speaking HTTP/1.x.
struct Conn<'a, IO> {
    ctx: &'a ConnContext,
    io: IO,
    /// Bytes from the client not consumed yet.
    rbuf: BytesMut,
    /// Output: the head for a server, then the response for the client.
    wbuf: Vec<u8>,
    fields: Vec<Field>,
    timer: Pin<Box<Sleep>>,
    born: Instant,
    /// When the last response was sent, if the clock was read then: the idle wait
    /// for the next request starts from it.
    idle_since: Option<Instant>,
    /// The config revision and this connection's listener index in it (revisions
    /// start at 1).
    listener_at: (u64, usize),
}

/// The gateway's drain signal as a connection waits for it: ready once when draining
/// starts, pending before and after.
type Drain<'a> = Pin<&'a mut (dyn std::future::Future<Output = ()> + Send)>;

/// A connection's view of the running config.
type RuntimeCache<'a> = arc_swap::Cache<&'a arc_swap::ArcSwap<Runtime>, Arc<Runtime>>;

/// Serves HTTP/1.x requests on `io` until the client leaves, a limit cuts it, or the
/// gateway drains.
pub(crate) async fn serve<IO>(ctx: &ConnContext, io: IO)
where
    IO: ClientTransport,
{
    let now = Instant::now();
    let mut c = Conn {
        ctx,
        io,
        rbuf: BytesMut::new(),
        wbuf: Vec::new(),
        fields: Vec::new(),
        timer: Box::pin(tokio::time::sleep_until(now + Duration::from_secs(3600))),
        born: now,
        idle_since: None,
        listener_at: (0, 0),
    };
    // The drain signal is registered once for the connection, not once per idle
    // wait; it stays pending after it fired (the flag in `read_head` then decides).
    let mut shutdown = ctx.shared.shutdown.subscribe();
    let mut drain = std::pin::pin!(
        async move {
            let _ = shutdown.changed().await;
        }
        .fuse()
    );
    // The running config, held across requests while no reload replaces it (checked
    // with one load per request rather than a reference count taken and dropped).
    let mut current = arc_swap::Cache::new(&ctx.shared.current);
    let mut first = true;
    loop {
        let next = c.request(&mut current, first, drain.as_mut()).await;
        first = false;
        if next == Next::Close {
            break;
        }
    }
    keep_spares(
        std::mem::take(&mut c.rbuf),
        std::mem::take(&mut c.wbuf),
        std::mem::take(&mut c.fields),
    );
    c.close().await;
}

fn abuse_of(e: HeadError) -> Abuse {
    match e {
        HeadError::Malformed(_) | HeadError::Expectation | HeadError::NotImplemented(_) => {
            Abuse::MalformedRequest
        }
        HeadError::Smuggling(_) | HeadError::UnknownCoding => Abuse::Smuggling,
        HeadError::TooLarge => Abuse::HeaderTooLarge,
        HeadError::TooManyFields => Abuse::TooManyHeaders,
        HeadError::TargetTooLong => Abuse::UriTooLong,
    }
}

fn text_of(status: u16) -> &'static str {
    match status {
        400 => "bad request\n",
        404 => "no route\n",
        408 => "request timeout\n",
        413 => "content too large\n",
        414 => "uri too long\n",
        417 => "expectation failed\n",
        431 => "request header fields too large\n",
        501 => "not implemented\n",
        502 => "bad gateway\n",
        503 => "no server available\n",
        504 => "gateway timeout\n",
        _ => "request refused\n",
    }
}

/// What the gateway decided for a request before any server is involved.
enum Decision {
    Local {
        status: u16,
        text: &'static str,
        retry_after: Option<u32>,
        abuse: Option<Abuse>,
        /// Hold the answer this long first (a tarpit).
        delay: Option<std::time::Duration>,
    },
    Redirect {
        ri: usize,
        status: u16,
        location: String,
    },
    Forward {
        ri: usize,
        bi: usize,
    },
}

impl<IO> Conn<'_, IO>
where
    IO: ClientTransport,
{
    /// This connection's listener in `rt`, looked up once per config revision.
    fn listener_index(&mut self, rt: &Runtime) -> Option<usize> {
        if self.listener_at.0 != rt.revision {
            self.listener_at = (rt.revision, *rt.by_name.get(&self.ctx.listener)?);
        }
        Some(self.listener_at.1)
    }

    fn report(&self, abuse: Abuse, detail: &str) {
        crate::abuse::report(
            &self.ctx.shared,
            &self.ctx.metrics,
            &self.ctx.listener,
            self.ctx.peer,
            abuse,
            detail,
        );
    }

    async fn request(
        &mut self,
        current: &mut RuntimeCache<'_>,
        first: bool,
        drain: Drain<'_>,
    ) -> Next {
        // The wait for the head follows the config of when it started; the request
        // is served by the config of when its head is complete.
        let rt = current.load();
        if self.listener_index(rt).is_none() {
            return Next::Close;
        }
        let cfg = &rt.config;
        let limits = HeadLimits {
            max_head_bytes: cfg.limits.max_header_bytes,
            max_fields: cfg.limits.max_headers,
            max_target_bytes: cfg.limits.max_uri_bytes,
        };
        let head = match self.read_head(rt, &limits, first, drain).await {
            Ok(h) => h,
            Err(HeadWait::Closed) => return Next::Close,
            Err(HeadWait::Slow) => {
                self.report(Abuse::SlowHeader, "request head not received in time");
                self.local_and_close(408).await;
                return Next::Close;
            }
            Err(HeadWait::Bad(e)) => {
                self.report(abuse_of(e), e.detail());
                self.local_and_close(e.status()).await;
                return Next::Close;
            }
        };
        let rt = current.load();
        let Some(li) = self.listener_index(rt) else {
            return Next::Close;
        };
        let started = Instant::now();
        let decision = self.decide(rt, li, &head);
        match decision {
            Decision::Local {
                status,
                text,
                retry_after,
                abuse,
                delay,
            } => {
                if let Some(a) = abuse {
                    self.report(a, text.trim_end());
                }
                if let Some(d) = delay {
                    tokio::time::sleep(d).await;
                }
                let ra = retry_after.map(|s| s.to_string());
                let extra: Vec<(&str, &[u8])> = ra
                    .as_deref()
                    .map(|s| ("retry-after", s.as_bytes()))
                    .into_iter()
                    .collect();
                // A filter verdict closes the connection, as before routing nothing
                // else about the client is known.
                let force_close = retry_after.is_some() || status == 429 || abuse.is_some();
                self.local(&head, status, text, &extra, force_close).await
            }
            Decision::Redirect {
                ri,
                status,
                location,
            } => {
                let next = self
                    .local(
                        &head,
                        status,
                        "redirecting\n",
                        &[("location", location.as_bytes())],
                        false,
                    )
                    .await;
                self.log(rt, li, ri, status, None, started);
                next
            }
            Decision::Forward { ri, bi } => {
                let (next, status, upstream) = self.forward(rt, li, ri, bi, &head, started).await;
                if let Some(status) = status {
                    self.log(rt, li, ri, status, upstream, started);
                }
                next
            }
        }
    }

    /// Counts a response and logs it (when access logs are on); the request is done,
    /// and the connection idle from now.
    fn log(
        &mut self,
        rt: &Runtime,
        li: usize,
        ri: usize,
        status: u16,
        upstream: Option<SocketAddr>,
        started: Instant,
    ) {
        let now = Instant::now();
        self.idle_since = Some(now);
        let elapsed = now - started;
        rt.listeners[li].route_metrics[ri].record(status, elapsed);
        let lcfg = &rt.config.listeners[li];
        if let Some(filter) = &self.ctx.shared.hooks.request
            && let Ok(code) = http::StatusCode::from_u16(status)
        {
            filter.responded(
                &lcfg.name,
                Some(&lcfg.http_routes[ri].name),
                self.ctx.peer,
                code,
            );
        }
        if rt.config.access_log {
            tracing::info!(
                target: "rampart_edge::access",
                listener = %lcfg.name,
                route = %lcfg.http_routes[ri].name,
                peer = %self.ctx.peer,
                status,
                upstream = upstream.map(tracing::field::display),
                micros = elapsed.as_micros() as u64,
                "request"
            );
        }
    }

    /// Filter, route, limits, redirect: everything decided from the head alone.
    fn decide(&self, rt: &Runtime, li: usize, head: &RequestHead) -> Decision {
        let buf = &self.rbuf[..];
        let lcfg = &rt.config.listeners[li];
        let Ok(method) = http::Method::from_bytes(&buf[head.method.clone()]) else {
            return Decision::Local {
                status: 400,
                text: text_of(400),
                retry_after: None,
                abuse: Some(Abuse::MalformedRequest),
                delay: None,
            };
        };
        let target = &buf[head.origin_target()];
        let target = if target.is_empty() { b"/" } else { target };
        let path_end = target
            .iter()
            .position(|&b| b == b'?')
            .unwrap_or(target.len());
        // Targets and hosts were checked to be ASCII.
        let path = std::str::from_utf8(&target[..path_end]).unwrap_or("/");
        let raw_host = head
            .host
            .clone()
            .and_then(|r| std::str::from_utf8(&buf[r]).ok());
        let fields = Parsed {
            buf,
            fields: &self.fields,
        };
        let host =
            raw_host.map(|h| crate::route::lowercase_host(crate::route::host_without_port(h)));
        let found = match crate::route::route_request(
            &lcfg.http_routes,
            host.as_deref(),
            path,
            &method,
            &fields,
        ) {
            Ok(found) => found,
            Err(_) => {
                return Decision::Local {
                    status: 400,
                    text: text_of(400),
                    retry_after: None,
                    abuse: Some(Abuse::MalformedRequest),
                    delay: None,
                };
            }
        };
        let filter = self.ctx.shared.hooks.request.as_ref();
        if let Some(filter) = filter
            && let Some((status, retry_after, delay)) = proxy::check_filter(
                filter.as_ref(),
                &lcfg.name,
                found.map(|ri| lcfg.http_routes[ri].name.as_str()),
                self.ctx.peer,
                &method,
                path,
                &fields,
            )
        {
            return Decision::Local {
                status: status.as_u16(),
                text: "request refused\n",
                retry_after,
                abuse: None,
                delay,
            };
        }
        let Some(ri) = found else {
            self.ctx
                .shared
                .metrics
                .unrouted
                .fetch_add(1, Ordering::Relaxed);
            if let Some(filter) = filter {
                filter.responded(&lcfg.name, None, self.ctx.peer, http::StatusCode::NOT_FOUND);
            }
            return Decision::Local {
                status: 404,
                text: text_of(404),
                retry_after: None,
                abuse: None,
                delay: None,
            };
        };
        let route = &lcfg.http_routes[ri];
        if let Some(d) = route_limits(route, head, self.fields.len()) {
            return d;
        }
        match &route.action {
            RouteAction::Redirect(r) => {
                let pq = std::str::from_utf8(target).unwrap_or("/");
                match proxy::redirect_location(r, rt.listeners[li].scheme, raw_host, pq) {
                    Ok(location) => Decision::Redirect {
                        ri,
                        status: r.status,
                        location,
                    },
                    Err(_) => Decision::Local {
                        status: 400,
                        text: text_of(400),
                        retry_after: None,
                        abuse: None,
                        delay: None,
                    },
                }
            }
            RouteAction::Backend(bi) => Decision::Forward { ri, bi: *bi },
        }
    }

    /// Waits for a whole request head. Before its first byte the connection is idle
    /// (buffers released); from the first byte (from the handshake for a connection's
    /// first request) the header deadline runs.
    async fn read_head(
        &mut self,
        rt: &Runtime,
        limits: &HeadLimits,
        first: bool,
        drain: Drain<'_>,
    ) -> Result<RequestHead, HeadWait> {
        let t = &rt.config.timeouts;
        // Taken for this wait only: a pipelined request skips the idle wait, and the
        // time must not serve a later one.
        let idle_since = self.idle_since.take();
        let deadline;
        if self.rbuf.is_empty() {
            if self.ctx.shared.draining.load(Ordering::Relaxed) {
                return Err(HeadWait::Closed);
            }
            // Idle: no buffer is held while waiting.
            keep_spares(
                std::mem::take(&mut self.rbuf),
                std::mem::take(&mut self.wbuf),
                std::mem::take(&mut self.fields),
            );
            let wait_until = if first {
                self.born + t.client_header
            } else {
                idle_since.unwrap_or_else(Instant::now) + t.idle
            };
            match self.read_first(wait_until, drain).await {
                Some(Ok(n)) if n > 0 => {}
                // Nothing arrived in time: a connection opened ahead of need (browsers
                // preconnect) or an idle keep-alive one. It is closed without a
                // response and is no offence: only clients that started a request are
                // held to the header deadline.
                Some(_) | None => return Err(HeadWait::Closed),
            }
            deadline = if first {
                self.born + t.client_header
            } else {
                Instant::now() + t.client_header
            };
        } else {
            deadline = Instant::now() + t.client_header;
        }
        let mut scanned = 0;
        loop {
            if let Some(end) = head::find_head_end(&self.rbuf, scanned) {
                return head::parse_request(&self.rbuf, end, limits, &mut self.fields)
                    .map_err(HeadWait::Bad);
            }
            scanned = self.rbuf.len();
            head::check_partial(&self.rbuf, limits).map_err(HeadWait::Bad)?;
            match self.read_client(deadline, HEAD_CHUNK).await {
                Some(Ok(n)) if n > 0 => {}
                Some(_) => return Err(HeadWait::Closed),
                None => return Err(HeadWait::Slow),
            }
        }
    }

    /// The idle wait: reads the first bytes of the next request, or gives up at
    /// `deadline` (`None`) or when the gateway starts draining.
    async fn read_first(
        &mut self,
        deadline: Instant,
        mut drain: Drain<'_>,
    ) -> Option<std::io::Result<usize>> {
        let Conn {
            io,
            rbuf,
            wbuf,
            fields,
            timer,
            ..
        } = self;
        std::future::poll_fn(|cx| {
            // No buffer while idle: the first bytes land on the stack, and only then is a
            // buffer allocated for them.
            let mut first = [0u8; 1024];
            let mut rb = tokio::io::ReadBuf::new(&mut first);
            match Pin::new(&mut *io).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n > 0 {
                        if rbuf.capacity() == 0 {
                            (*rbuf, *wbuf, *fields) = take_spares();
                        }
                        rbuf.reserve(HEAD_CHUNK.max(n));
                        rbuf.extend_from_slice(rb.filled());
                    }
                    return Poll::Ready(Some(Ok(n)));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                Poll::Pending => {}
            }
            if drain.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Some(Ok(0)));
            }
            match poll_deadline(timer, deadline, cx) {
                Poll::Ready(()) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Reads more client bytes into `rbuf` until `deadline` (`None` when it passes).
    async fn read_client(
        &mut self,
        deadline: Instant,
        chunk: usize,
    ) -> Option<std::io::Result<usize>> {
        let Conn {
            io, rbuf, timer, ..
        } = self;
        if rbuf.capacity() - rbuf.len() < 256 {
            rbuf.reserve(chunk.max(rbuf.len()));
        }
        std::future::poll_fn(|cx| {
            match tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, rbuf) {
                Poll::Ready(r) => return Poll::Ready(Some(r)),
                Poll::Pending => {}
            }
            match poll_deadline(timer, deadline, cx) {
                Poll::Ready(()) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Writes all of `data` to the client, at no less than the window's rate while it
    /// has to wait.
    async fn write_client(&mut self, data: &[u8], w: &mut Window) -> Result<(), WriteFail> {
        let Conn { io, timer, .. } = self;
        let mut done = 0;
        while done < data.len() {
            let r =
                std::future::poll_fn(
                    |cx| match Pin::new(&mut *io).poll_write(cx, &data[done..]) {
                        Poll::Ready(r) => Poll::Ready(Some(r)),
                        Poll::Pending if w.poll_expired(timer, cx) => Poll::Ready(None),
                        Poll::Pending => Poll::Pending,
                    },
                )
                .await;
            match r {
                Some(Ok(0)) | Some(Err(_)) => return Err(WriteFail::Gone),
                Some(Ok(n)) => {
                    done += n;
                    w.progress(n);
                }
                None => return Err(WriteFail::Slow),
            }
        }
        Ok(())
    }

    async fn flush_client(&mut self, w: &mut Window) -> Result<(), WriteFail> {
        let Conn { io, timer, .. } = self;
        let r = std::future::poll_fn(|cx| match Pin::new(&mut *io).poll_flush(cx) {
            Poll::Ready(r) => Poll::Ready(Some(r)),
            Poll::Pending if w.poll_expired(timer, cx) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        })
        .await;
        match r {
            Some(Ok(())) => Ok(()),
            Some(Err(_)) => Err(WriteFail::Gone),
            None => Err(WriteFail::Slow),
        }
    }

    /// Writes `wbuf` to the client and flushes; reports a slow reader. `last`: the
    /// connection closes after it (TLS close_notify leaves in the same write).
    async fn send_wbuf(&mut self, window: &mut Window, last: bool) -> Result<(), WriteFail> {
        let out = std::mem::take(&mut self.wbuf);
        let taken = if last { self.io.take_last(&out) } else { 0 };
        let r = self.write_client(&out[taken..], window).await;
        self.wbuf = out;
        self.wbuf.clear();
        match r {
            Ok(()) => self.flush_client(window).await,
            Err(e) => Err(e),
        }
        .inspect_err(|e| {
            if *e == WriteFail::Slow {
                self.report(Abuse::SlowRead, "client reads the response too slowly");
            }
        })
    }

    fn write_window(&self) -> Window {
        let rt = self.ctx.shared.current.load();
        Window::new(
            rt.config.timeouts.client_write,
            rt.config.limits.min_read_rate,
        )
    }

    /// Answers with a local response and closes, best effort, within a short time.
    async fn local_and_close(&mut self, status: u16) {
        self.wbuf.clear();
        encode::local_response(
            &mut self.wbuf,
            &LocalOut {
                status,
                text: text_of(status),
                extra: &[],
                head: false,
                close: true,
                keep_alive: false,
            },
        );
        let mut w = Window::new(LINGER, u64::MAX);
        let _ = self.send_wbuf(&mut w, true).await;
    }

    /// Answers with a local response. The connection stays open when the request's
    /// body (if any) is already here to be skipped and nobody asked to close.
    async fn local(
        &mut self,
        head: &RequestHead,
        status: u16,
        text: &str,
        extra: &[(&str, &[u8])],
        force_close: bool,
    ) -> Next {
        let is_head = &self.rbuf[head.method.clone()] == b"HEAD";
        let body_here = match head.framing {
            Framing::Empty => Some(0),
            Framing::Length(n) => usize::try_from(n)
                .ok()
                .filter(|&n| self.rbuf.len() - head.len >= n),
            _ => None,
        };
        let draining = self.ctx.shared.draining.load(Ordering::Relaxed);
        let close = force_close || head.close || body_here.is_none() || draining;
        match body_here {
            Some(n) if !close => self.rbuf.advance(head.len + n),
            _ => self.rbuf.clear(),
        }
        self.wbuf.clear();
        encode::local_response(
            &mut self.wbuf,
            &LocalOut {
                status,
                text,
                extra,
                head: is_head,
                close,
                keep_alive: head.minor == 0 && !close,
            },
        );
        let mut w = self.write_window();
        if self.send_wbuf(&mut w, close).await.is_err() || close {
            return Next::Close;
        }
        Next::KeepAlive
    }

    /// Flushes and shuts the connection down (TLS close_notify), within a short time.
    async fn close(&mut self) {
        let _ = tokio::time::timeout(
            LINGER,
            std::future::poll_fn(|cx| Pin::new(&mut self.io).poll_shutdown(cx)),
        )
        .await;
    }

    /// Forwards a request to backend `bi`: the head and body to a server, the
    /// response back. Returns what to do next, the status sent (if any) and the
    /// server used.
    async fn forward(
        &mut self,
        rt: &Runtime,
        li: usize,
        ri: usize,
        bi: usize,
        head: &RequestHead,
        started: Instant,
    ) -> (Next, Option<u16>, Option<SocketAddr>) {
        let ctx = self.ctx;
        // The clock as read when the head was complete, for the balancer and the
        // pool (which count in milliseconds).
        let now_ms = ms_at(started.into_std());
        let route: &HttpRoute = &rt.config.listeners[li].http_routes[ri];
        let backend = &rt.backends[bi];
        let bcfg = &rt.config.backends[bi];
        let cfg = &rt.config;
        let is_head = &self.rbuf[head.method.clone()] == b"HEAD";
        let minor = head.minor;

        // The request head for the server, then whatever body bytes are here already.
        let body_out = match head.framing {
            Framing::Empty => BodyOut::None,
            Framing::Length(n) => BodyOut::Length(n),
            Framing::Chunked | Framing::UntilClose => BodyOut::Chunked,
        };
        let trusted = crate::config::Cidr::any_contains(&cfg.trusted_proxies, ctx.peer.ip());
        self.wbuf.clear();
        self.wbuf.reserve(1024);
        {
            let buf = &self.rbuf[..];
            encode::request_head(
                &mut self.wbuf,
                &RequestOut {
                    method: &buf[head.method.clone()],
                    target: &buf[head.origin_target()],
                    host: head.host.clone().map(|r| &buf[r]),
                    peer: &ctx.forwarding,
                    trusted,
                    edits: &route.request_headers,
                    body: body_out,
                },
                &Parsed {
                    buf,
                    fields: &self.fields,
                },
            );
        }
        self.rbuf.advance(head.len);
        let mut body = BodyIn::new(head.framing, route.limits.max_body_bytes);
        if let Err(e) = body.take(&mut self.rbuf, &mut self.wbuf, INLINE_BODY) {
            return self.body_refused(e).await;
        }

        // A server connection, with retries of requests that never left.
        let mut tried: [usize; 11] = [usize::MAX; 11];
        let mut ntried = 0;
        let mut failure = None;
        let attempts = (bcfg.retries as usize + 1).min(tried.len());
        let mut stale_retries = 2;
        let mut chosen = None;
        while ntried < attempts {
            let Some(si) = backend.balancer.pick(
                now_ms,
                Some(ctx.peer.ip()),
                rand::random::<u64>(),
                &tried[..ntried],
            ) else {
                break;
            };
            let Some((mut up, poolable)) = proxy::connection(ctx, rt, bi, si, now_ms).await else {
                tried[ntried] = si;
                ntried += 1;
                failure = Some(Failure::Unreachable);
                proxy::report_server(rt, bi, si, false);
                continue;
            };
            let guard = InFlight::new(Some(backend.balancer.servers()[si].clone()), None);
            match up.write_all(&self.wbuf).await {
                Ok(()) => {
                    chosen = Some((si, up, poolable, guard));
                    break;
                }
                Err(e) if !e.sent_any && stale_retries > 0 => {
                    // Closed before anything left: the request goes on a fresh
                    // connection (not counted against the server or the budget).
                    stale_retries -= 1;
                }
                Err(e) => {
                    tracing::debug!(error = %e.error, server = %backend.addrs[si], "write to server failed");
                    proxy::report_server(rt, bi, si, false);
                    failure = Some(if e.sent_any {
                        Failure::Exchange
                    } else {
                        Failure::Unreachable
                    });
                    let next = self.failed(head, is_head, &body, failure).await;
                    return (
                        next,
                        Some(Failure::status(failure)),
                        Some(backend.addrs[si]),
                    );
                }
            }
        }
        let Some((si, mut up, poolable, _guard)) = chosen else {
            let next = self.failed(head, is_head, &body, failure).await;
            return (next, Some(Failure::status(failure)), None);
        };
        let addr = backend.addrs[si];
        // A pooled connection and a request without more body to send: the request
        // left microseconds after `started`, which then starts the response deadline
        // too (one clock read fewer per request).
        let sent_at_start = up.uses > 0 && body.done();
        up.uses += 1;
        self.wbuf.clear();

        // The rest of the body, unless the server answers first.
        let mut early = false;
        if !body.done() {
            if head.expect_continue {
                self.wbuf
                    .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                let mut w = self.write_window();
                if self.send_wbuf(&mut w, false).await.is_err() {
                    return (Next::Close, None, Some(addr));
                }
            }
            match self.pump_body(rt, &mut body, &mut up).await {
                Ok(answered) => early = answered,
                Err(PumpFail::Client(abuse)) => {
                    if let Some((a, status)) = abuse {
                        self.report(a, text_of(status).trim_end());
                        self.local_and_close(status).await;
                        return (Next::Close, Some(status), Some(addr));
                    }
                    return (Next::Close, None, Some(addr));
                }
                Err(PumpFail::Server) => {
                    proxy::report_server(rt, bi, si, false);
                    if up.buf.is_empty() {
                        self.local_and_close(502).await;
                        return (Next::Close, Some(502), Some(addr));
                    }
                    // The server stopped reading but may have answered.
                    early = true;
                }
            }
        }

        // The response head (1xx skipped).
        let sent_at = if sent_at_start {
            started
        } else {
            Instant::now()
        };
        let deadline = sent_at + cfg.timeouts.server_response;
        let resp = loop {
            match self.read_response_head(&mut up, deadline, is_head).await {
                Ok(r) if (100..200).contains(&r.status) => {
                    if r.status == 101 {
                        break Err(ResponseFail::Bad(BadResponse(
                            "protocol switch not requested",
                        )));
                    }
                    up.buf.advance(r.len);
                }
                other => break other,
            }
        };
        let resp = match resp {
            Ok(r) => r,
            Err(f) => {
                proxy::report_server(rt, bi, si, false);
                let failure = match f {
                    ResponseFail::Timeout => Failure::Timeout,
                    ResponseFail::Bad(BadResponse(why)) => {
                        tracing::debug!(why, server = %addr, "bad response");
                        Failure::Exchange
                    }
                    ResponseFail::Io => Failure::Exchange,
                };
                let next = self.failed(head, is_head, &body, Some(failure)).await;
                return (next, Some(Failure::status(Some(failure))), Some(addr));
            }
        };
        proxy::report_server(rt, bi, si, !matches!(resp.status, 502..=504));

        // The response head for the client, then the body as it comes.
        let draining = ctx.shared.draining.load(Ordering::Relaxed);
        let (out, until_close_out) = match resp.framing {
            Framing::Empty => (BodyOut::None, false),
            Framing::Length(n) => (BodyOut::Length(n), false),
            Framing::Chunked | Framing::UntilClose if minor == 1 => (BodyOut::Chunked, false),
            Framing::Chunked | Framing::UntilClose => (BodyOut::None, true),
        };
        let close = head.close || !body.done() || early || draining || until_close_out;
        self.wbuf.clear();
        self.wbuf.reserve(512 + up.buf.len().min(INLINE_BODY));
        encode::response_head(
            &mut self.wbuf,
            &ResponseOut {
                status: resp.status,
                reason: &up.buf[resp.reason.clone()],
                edits: &route.response_headers,
                body: out,
                close,
                keep_alive: minor == 0 && !close,
            },
            &Parsed {
                buf: &up.buf,
                fields: &self.fields,
            },
        );
        up.buf.advance(resp.len);
        let status = resp.status;
        let mut w = self.write_window();
        let complete = match self
            .stream_response(
                &mut up,
                resp.framing,
                out == BodyOut::Chunked,
                cfg.timeouts.server_response,
                &mut w,
                close,
            )
            .await
        {
            Ok(()) => true,
            Err(StreamFail::Client) => return (Next::Close, Some(status), Some(addr)),
            Err(StreamFail::Server) => {
                proxy::report_server(rt, bi, si, false);
                return (Next::Close, Some(status), Some(addr));
            }
        };
        if complete && !resp.close && body.done() && !early && poolable {
            // Idle since the request started, on the safe side: the connection is
            // retired a little early rather than used after the server's timeout.
            backend.pools[si].checkin(up, now_ms);
        }
        (
            if close { Next::Close } else { Next::KeepAlive },
            Some(status),
            Some(addr),
        )
    }

    /// A request body refused while reading it (too large, bad chunking).
    async fn body_refused(&mut self, e: BodyError) -> (Next, Option<u16>, Option<SocketAddr>) {
        let (abuse, status) = e.abuse();
        self.report(abuse, e.detail());
        self.local_and_close(status).await;
        (Next::Close, Some(status), None)
    }

    /// Answers a failed exchange (502, 503, 504).
    async fn failed(
        &mut self,
        head: &RequestHead,
        is_head: bool,
        body: &BodyIn,
        failure: Option<Failure>,
    ) -> Next {
        let status = Failure::status(failure);
        let draining = self.ctx.shared.draining.load(Ordering::Relaxed);
        let close = head.close || !body.done() || draining;
        self.wbuf.clear();
        encode::local_response(
            &mut self.wbuf,
            &LocalOut {
                status,
                text: text_of(status),
                extra: &[],
                head: is_head,
                close,
                keep_alive: head.minor == 0 && !close,
            },
        );
        let mut w = self.write_window();
        if self.send_wbuf(&mut w, close).await.is_err() || close {
            return Next::Close;
        }
        Next::KeepAlive
    }

    /// Streams the rest of a request body to the server. `Ok(true)` when the server
    /// answered before the body was all sent (the rest is not sent).
    async fn pump_body(
        &mut self,
        rt: &Runtime,
        body: &mut BodyIn,
        up: &mut ServerConn,
    ) -> Result<bool, PumpFail> {
        let t = &rt.config.timeouts;
        let mut window = Window::new(t.client_body, rt.config.limits.min_body_rate);
        loop {
            if !self.wbuf.is_empty() {
                let deadline = Instant::now() + t.server_response;
                match write_server(up, &self.wbuf, &mut self.timer, deadline).await {
                    Ok(()) => self.wbuf.clear(),
                    Err(_) => return Err(PumpFail::Server),
                }
            }
            if body.done() {
                return Ok(false);
            }
            // More body from the client, unless the server speaks first.
            let Conn {
                io, rbuf, timer, ..
            } = self;
            if rbuf.capacity() - rbuf.len() < 1024 {
                rbuf.reserve(BODY_CHUNK);
            }
            let r = std::future::poll_fn(|cx| {
                match tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, rbuf) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Got::ClientEof),
                    Poll::Ready(Ok(n)) => {
                        window.progress(n);
                        return Poll::Ready(Got::Client);
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(Got::ClientEof),
                    Poll::Pending => {}
                }
                match up.poll_read_more(cx) {
                    Poll::Ready(Ok(n)) if n > 0 => return Poll::Ready(Got::Server),
                    Poll::Ready(_) => return Poll::Ready(Got::ServerClosed),
                    Poll::Pending => {}
                }
                if window.poll_expired(timer, cx) {
                    return Poll::Ready(Got::Slow);
                }
                Poll::Pending
            })
            .await;
            match r {
                Got::Client => {
                    if let Err(e) = body.take(&mut self.rbuf, &mut self.wbuf, BODY_CHUNK) {
                        let (abuse, status) = e.abuse();
                        tracing::debug!(detail = e.detail(), "request body refused");
                        return Err(PumpFail::Client(Some((abuse, status))));
                    }
                }
                Got::ClientEof => return Err(PumpFail::Client(None)),
                Got::Server => return Ok(true),
                Got::ServerClosed => return Err(PumpFail::Server),
                Got::Slow => {
                    return Err(PumpFail::Client(Some((Abuse::SlowBody, 408))));
                }
            }
        }
    }

    /// Reads and parses the next response head from the server.
    async fn read_response_head(
        &mut self,
        up: &mut ServerConn,
        deadline: Instant,
        is_head: bool,
    ) -> Result<head::ResponseHead, ResponseFail> {
        let mut scanned = 0;
        loop {
            if let Some(end) = head::find_head_end(&up.buf, scanned) {
                return head::parse_response(&up.buf, end, is_head, &mut self.fields)
                    .map_err(ResponseFail::Bad);
            }
            scanned = up.buf.len();
            if up.buf.len() > MAX_RESPONSE_HEAD {
                return Err(ResponseFail::Bad(BadResponse("response head too large")));
            }
            match read_server(up, &mut self.timer, deadline).await {
                Some(Ok(n)) if n > 0 => {}
                Some(_) => return Err(ResponseFail::Io),
                None => return Err(ResponseFail::Timeout),
            }
        }
    }

    /// Sends the head in `wbuf` and the response body after it: the bytes already read
    /// go in the same write as the head; the rest is copied as it arrives.
    async fn stream_response(
        &mut self,
        up: &mut ServerConn,
        framing: Framing,
        chunked_out: bool,
        gap: Duration,
        w: &mut Window,
        last: bool,
    ) -> Result<(), StreamFail> {
        let mut dec = match framing {
            Framing::Chunked => Some(Decoder::new(MAX_TRAILERS)),
            _ => None,
        };
        let mut left = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        let until_close = framing == Framing::UntilClose;
        let mut done = matches!(framing, Framing::Empty | Framing::Length(0));
        let mut eof = false;
        let mut slice = 0;
        loop {
            // Move what the server sent into the output, by framing.
            if !done {
                match &mut dec {
                    Some(d) => {
                        while !up.buf.is_empty() && self.wbuf.len() < BODY_CHUNK * 4 {
                            let step = d.decode(&up.buf).map_err(|e| {
                                tracing::debug!(why = e.0, "bad chunked response body");
                                StreamFail::Server
                            })?;
                            let (start, n) = step.data;
                            if n > 0 {
                                copy_out(&mut self.wbuf, &up.buf[start..start + n], chunked_out);
                            }
                            up.buf.advance(step.consumed);
                            if step.done {
                                done = true;
                                break;
                            }
                            if step.consumed == 0 {
                                break;
                            }
                        }
                    }
                    None if until_close => {
                        let n = up.buf.len();
                        if n > 0 {
                            copy_out(&mut self.wbuf, &up.buf[..n], chunked_out);
                            up.buf.advance(n);
                        }
                        if eof {
                            done = true;
                        }
                    }
                    None => {
                        let n = usize::try_from(left)
                            .unwrap_or(usize::MAX)
                            .min(up.buf.len());
                        if n > 0 {
                            if self.wbuf.len() + n <= INLINE_BODY {
                                self.wbuf.extend_from_slice(&up.buf[..n]);
                            } else {
                                // Large: straight from the server's buffer.
                                if !self.wbuf.is_empty() {
                                    let out = std::mem::take(&mut self.wbuf);
                                    let r = self.write_client(&out, w).await;
                                    self.wbuf = out;
                                    self.wbuf.clear();
                                    r.map_err(|e| self.stream_client_fail(e))?;
                                }
                                self.write_client(&up.buf[..n], w)
                                    .await
                                    .map_err(|e| self.stream_client_fail(e))?;
                            }
                            up.buf.advance(n);
                            left -= n as u64;
                        }
                        if left == 0 {
                            done = true;
                        }
                    }
                }
                if done && chunked_out {
                    self.wbuf.extend_from_slice(chunked::LAST_CHUNK);
                }
            }
            if !self.wbuf.is_empty() || done {
                let out = std::mem::take(&mut self.wbuf);
                let taken = if done && last {
                    self.io.take_last(&out)
                } else {
                    0
                };
                let r = self.write_client(&out[taken..], w).await;
                self.wbuf = out;
                self.wbuf.clear();
                r.map_err(|e| self.stream_client_fail(e))?;
            }
            if done {
                return self
                    .flush_client(w)
                    .await
                    .map_err(|e| self.stream_client_fail(e));
            }
            if eof {
                // The server closed before the body's end.
                return Err(StreamFail::Server);
            }
            if slice >= FAIR_SLICE {
                slice = 0;
                tokio::task::yield_now().await;
            }
            let deadline = Instant::now() + gap;
            match read_server(up, &mut self.timer, deadline).await {
                Some(Ok(0)) => eof = true,
                Some(Ok(n)) => slice += n,
                Some(Err(_)) | None => return Err(StreamFail::Server),
            }
        }
    }

    fn stream_client_fail(&self, e: WriteFail) -> StreamFail {
        if e == WriteFail::Slow {
            self.report(Abuse::SlowRead, "client reads the response too slowly");
        }
        StreamFail::Client
    }
}

/// Checks a routed request against its route's limits (stricter head limits, field
/// count, body size announced by `Content-Length`).
fn route_limits(route: &HttpRoute, head: &RequestHead, fields: usize) -> Option<Decision> {
    let l = &route.limits;
    let refuse = |status: u16, abuse: Abuse| {
        Some(Decision::Local {
            status,
            text: text_of(status),
            retry_after: None,
            abuse: Some(abuse),
            delay: None,
        })
    };
    if head.target.len() > l.max_uri_bytes {
        return refuse(414, Abuse::UriTooLong);
    }
    if head.len > l.max_header_bytes {
        return refuse(431, Abuse::HeaderTooLarge);
    }
    if fields > l.max_headers {
        return refuse(431, Abuse::TooManyHeaders);
    }
    if let Framing::Length(n) = head.framing
        && n > l.max_body_bytes
    {
        return refuse(413, Abuse::BodyTooLarge);
    }
    None
}

fn copy_out(out: &mut Vec<u8>, data: &[u8], chunked_out: bool) {
    if chunked_out {
        chunked::encode_header(out, data.len());
        out.extend_from_slice(data);
        out.extend_from_slice(chunked::CHUNK_END);
    } else {
        out.extend_from_slice(data);
    }
}

/// The request body as it comes from the client, re-framed for the server.
#[derive(Debug)]
struct BodyIn {
    kind: BodyKind,
    /// Payload bytes so far.
    seen: u64,
    max: u64,
}

#[derive(Debug)]
enum BodyKind {
    None,
    Length { left: u64 },
    Chunked(Decoder),
}

#[derive(Debug, Clone, Copy)]
enum BodyError {
    TooLarge,
    BadChunk(&'static str),
}

impl BodyError {
    fn abuse(self) -> (Abuse, u16) {
        match self {
            BodyError::TooLarge => (Abuse::BodyTooLarge, 413),
            BodyError::BadChunk(_) => (Abuse::Smuggling, 400),
        }
    }

    fn detail(self) -> &'static str {
        match self {
            BodyError::TooLarge => "request body too large",
            BodyError::BadChunk(why) => why,
        }
    }
}

impl BodyIn {
    fn new(framing: Framing, max: u64) -> Self {
        let kind = match framing {
            Framing::Empty | Framing::Length(0) => BodyKind::None,
            Framing::Length(n) => BodyKind::Length { left: n },
            Framing::Chunked | Framing::UntilClose => BodyKind::Chunked(Decoder::new(MAX_TRAILERS)),
        };
        Self { kind, seen: 0, max }
    }

    fn done(&self) -> bool {
        match &self.kind {
            BodyKind::None => true,
            BodyKind::Length { left } => *left == 0,
            BodyKind::Chunked(d) => d.is_done(),
        }
    }

    /// Moves body bytes from `input` to `out` (re-encoded), up to about `budget` bytes
    /// of output.
    fn take(
        &mut self,
        input: &mut BytesMut,
        out: &mut Vec<u8>,
        budget: usize,
    ) -> Result<(), BodyError> {
        match &mut self.kind {
            BodyKind::None => Ok(()),
            BodyKind::Length { left } => {
                let n = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(input.len())
                    .min(budget.max(BODY_CHUNK));
                out.extend_from_slice(&input[..n]);
                input.advance(n);
                *left -= n as u64;
                Ok(())
            }
            BodyKind::Chunked(d) => {
                while !input.is_empty() && out.len() < budget.max(BODY_CHUNK) {
                    let step = d.decode(input).map_err(|e| BodyError::BadChunk(e.0))?;
                    let (start, n) = step.data;
                    if n > 0 {
                        self.seen += n as u64;
                        if self.seen > self.max {
                            return Err(BodyError::TooLarge);
                        }
                        copy_out(out, &input[start..start + n], true);
                    }
                    input.advance(step.consumed);
                    // A chunk announcing more than the limit allows is refused as
                    // soon as its size is read.
                    if self.seen.saturating_add(d.data_left()) > self.max {
                        return Err(BodyError::TooLarge);
                    }
                    if step.done {
                        out.extend_from_slice(chunked::LAST_CHUNK);
                        break;
                    }
                    if step.consumed == 0 {
                        break;
                    }
                }
                Ok(())
            }
        }
    }
}

enum Got {
    Client,
    ClientEof,
    Server,
    ServerClosed,
    Slow,
}

enum PumpFail {
    /// The client left, or broke a rule (abuse and status to answer).
    Client(Option<(Abuse, u16)>),
    /// The server connection failed.
    Server,
}

enum ResponseFail {
    Timeout,
    Io,
    Bad(BadResponse),
}

enum StreamFail {
    Client,
    Server,
}

/// How far before a deadline the connection's timer may stay armed: deadlines that move
/// forward by less leave the timer alone (one timer-wheel update per request costs
/// more than an early wake-up, which re-arms it, now and then).
const TIMER_SLACK: Duration = Duration::from_secs(1);

/// Polls the connection's timer for `deadline`: `Ready` once `deadline` has passed.
/// The timer is moved only when it would fire after `deadline` or more than
/// [`TIMER_SLACK`] before it.
fn poll_deadline(timer: &mut Pin<Box<Sleep>>, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
    let armed = timer.deadline();
    if armed > deadline || deadline - armed > TIMER_SLACK {
        timer.as_mut().reset(deadline);
    }
    loop {
        std::task::ready!(timer.as_mut().poll(cx));
        // The timer's precision is a millisecond.
        if Instant::now() + Duration::from_millis(1) >= deadline {
            return Poll::Ready(());
        }
        timer.as_mut().reset(deadline);
    }
}

/// Reads from a server into its buffer until `deadline` (`None` when it passes).
async fn read_server(
    up: &mut ServerConn,
    timer: &mut Pin<Box<Sleep>>,
    deadline: Instant,
) -> Option<std::io::Result<usize>> {
    std::future::poll_fn(|cx| {
        match up.poll_read_more(cx) {
            Poll::Ready(r) => return Poll::Ready(Some(r)),
            Poll::Pending => {}
        }
        match poll_deadline(timer, deadline, cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Writes all of `data` to a server and flushes, until `deadline`.
async fn write_server(
    up: &mut ServerConn,
    data: &[u8],
    timer: &mut Pin<Box<Sleep>>,
    deadline: Instant,
) -> std::io::Result<()> {
    let mut done = 0;
    let mut flushed = false;
    std::future::poll_fn(|cx| {
        loop {
            let r = if done < data.len() {
                up.poll_write(cx, &data[done..]).map_ok(|n| {
                    done += n;
                    n
                })
            } else if !flushed {
                up.poll_flush(cx).map_ok(|()| {
                    flushed = true;
                    1
                })
            } else {
                return Poll::Ready(Ok(()));
            };
            match r {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(_)) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if poll_deadline(timer, deadline, cx).is_ready() {
                        return Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()));
                    }
                    return Poll::Pending;
                }
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::SPARE_BUFFERS;

    fn poll_once(timer: &mut Pin<Box<Sleep>>, deadline: Instant) -> Poll<()> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        poll_deadline(timer, deadline, &mut cx)
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_fires_at_its_time_however_lazily_the_timer_follows_it() {
        let start = Instant::now();
        let mut timer = Box::pin(tokio::time::sleep_until(start + Duration::from_secs(3600)));
        // Earlier than the armed timer: re-armed at once.
        let first = start + Duration::from_secs(10);
        assert!(poll_once(&mut timer, first).is_pending());
        assert_eq!(timer.deadline(), first);
        // A little later: the timer stays where it is.
        let later = first + Duration::from_millis(500);
        assert!(poll_once(&mut timer, later).is_pending());
        assert_eq!(timer.deadline(), first);
        // The timer fires before `later`: not expired, re-armed for `later`.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(poll_once(&mut timer, later).is_pending());
        assert_eq!(timer.deadline(), later);
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(poll_once(&mut timer, later).is_ready());
        // Much later than the armed timer: moved.
        let far = Instant::now() + Duration::from_secs(60);
        assert!(poll_once(&mut timer, far).is_pending());
        assert_eq!(timer.deadline(), far);
    }

    #[test]
    fn an_idle_connections_buffers_serve_the_next_request_on_the_thread() {
        std::thread::spawn(|| {
            let mut rbuf = BytesMut::with_capacity(HEAD_CHUNK);
            rbuf.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            rbuf.advance(rbuf.len());
            let (r, w, f) = (
                rbuf.as_ptr(),
                Vec::<u8>::with_capacity(1024),
                Vec::<Field>::with_capacity(16),
            );
            let (wp, fp) = (w.as_ptr(), f.as_ptr());
            keep_spares(rbuf, w, f);
            let (rbuf, w, f) = take_spares();
            // The same allocations, emptied, the read buffer whole again.
            assert!(rbuf.is_empty() && w.is_empty() && f.is_empty());
            assert_eq!(rbuf.as_ptr(), r.wrapping_sub(18));
            assert!(rbuf.capacity() >= HEAD_CHUNK);
            assert_eq!((w.as_ptr(), f.as_ptr()), (wp, fp));
            // None left: the next connection gets empty buffers.
            let (rbuf, w, f) = take_spares();
            assert_eq!((rbuf.capacity(), w.capacity(), f.capacity()), (0, 0, 0));
            // Buffers grown by large heads or bodies are freed, not kept.
            keep_spares(
                BytesMut::with_capacity(BODY_CHUNK),
                Vec::with_capacity(4 * INLINE_BODY),
                Vec::with_capacity(1024),
            );
            let (rbuf, w, f) = take_spares();
            assert_eq!((rbuf.capacity(), w.capacity(), f.capacity()), (0, 0, 0));
            // At most SPARE_BUFFERS of each are kept.
            for _ in 0..SPARE_BUFFERS + 5 {
                keep_spares(
                    BytesMut::with_capacity(HEAD_CHUNK),
                    Vec::with_capacity(64),
                    Vec::with_capacity(4),
                );
            }
            RBUFS.with(|s| assert_eq!(s.borrow().len(), SPARE_BUFFERS));
        })
        .join()
        .unwrap();
    }
}
