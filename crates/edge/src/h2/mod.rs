//! HTTP/2 client connections on the `h2` crate: a connection's streams run inside the
//! connection's own task (no task per stream; responses that become ready together
//! leave in one write), behind a frame guard ([`guard`]) that cuts floods (rapid
//! reset, PING, SETTINGS, PRIORITY, empty DATA, CONTINUATION), and a watch on streams
//! whose client does not read (slow read).

pub mod guard;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::{HeaderMap, HeaderValue, Request, Response, header};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::hooks::Abuse;
use crate::io::{Activity, now_ms};
use crate::proxy::{self, ConnContext, ProxyBody};
use guard::{Boundaries, Flood, GuardLimits, Scanner};

/// How long a client cut by the guard has to take its GOAWAY.
const CUT_GRACE: Duration = Duration::from_secs(1);

/// Bytes read and dropped, at most, while closing a connection cut by the gateway.
const LINGER_BYTES: usize = 1 << 20;

type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A request body as the proxy reads it: the stream's DATA frames (their flow-control
/// window is given back as they are read), then its trailers.
#[derive(Debug)]
pub struct RequestBody {
    recv: h2::RecvStream,
    data_done: bool,
}

impl RequestBody {
    fn new(recv: h2::RecvStream) -> Self {
        Self {
            recv,
            data_done: false,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let this = self.get_mut();
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => this.data_done = true,
            }
        }
        match ready!(this.recv.poll_trailers(cx)) {
            Ok(Some(t)) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Fields that belong to an HTTP/1.1 connection and are not sent over HTTP/2
/// (RFC 9113 section 8.2.2).
fn remove_connection_fields(headers: &mut HeaderMap) {
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::HeaderName::from_static("keep-alive"),
        header::HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
    if headers
        .get(header::TE)
        .is_some_and(|v| v.as_bytes() != b"trailers")
    {
        headers.remove(header::TE);
    }
}

/// One stream: the request through the proxy, then the response and its body, with
/// the client's flow control. A reset from the client drops the request where it is
/// (its server connection is closed, not reused).
async fn stream(
    ctx: Arc<ConnContext>,
    req: Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) {
    let serving = proxy::serve(ctx, req.map(RequestBody::new));
    let mut serving = std::pin::pin!(serving);
    let response = std::future::poll_fn(|cx| {
        if let Poll::Ready(Ok(response)) = serving.as_mut().poll(cx) {
            return Poll::Ready(Some(response));
        }
        match respond.poll_reset(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    let Some(response) = response else {
        return;
    };
    let (mut parts, mut body) = response.into_parts();
    remove_connection_fields(&mut parts.headers);
    if let Some(n) = body.size_hint().exact()
        && !parts.headers.contains_key(header::CONTENT_LENGTH)
    {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    let end = body.is_end_stream();
    let Ok(mut send) = respond.send_response(Response::from_parts(parts, ()), end) else {
        return;
    };
    if end {
        return;
    }
    if let ProxyBody::Local(Some(data)) = &mut body {
        let _ = send.send_data(std::mem::take(data), true);
        return;
    }
    // Streamed: the next chunk is read from the server only once the client's window
    // has room, so a client that does not read holds back one chunk, no more.
    let mut body = std::pin::pin!(body);
    let _ = std::future::poll_fn(|cx| -> Poll<Result<(), ()>> {
        loop {
            send.reserve_capacity(1);
            if send.capacity() == 0 {
                loop {
                    match ready!(send.poll_capacity(cx)) {
                        Some(Ok(0)) => {}
                        Some(Ok(_)) => break,
                        Some(Err(_)) | None => return Poll::Ready(Err(())),
                    }
                }
            } else if send.poll_reset(cx).is_ready() {
                return Poll::Ready(Err(()));
            }
            match ready!(body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let eos = body.is_end_stream();
                        if send.send_data(data, eos).is_err() || eos {
                            return Poll::Ready(Ok(()));
                        }
                    }
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            let _ = send.send_trailers(t);
                            return Poll::Ready(Ok(()));
                        }
                    }
                },
                Some(Err(_)) => {
                    send.send_reset(h2::Reason::INTERNAL_ERROR);
                    return Poll::Ready(Err(()));
                }
                None => {
                    let _ = send.send_data(Bytes::new(), true);
                    return Poll::Ready(Ok(()));
                }
            }
        }
    })
    .await;
}

/// What a connection's streams tell the connection about the client's reading.
#[derive(Debug, Default)]
pub struct ReadWatch {
    streams: Mutex<Vec<Weak<StreamProgress>>>,
}

/// Progress of one streamed response body.
#[derive(Debug, Default)]
pub struct StreamProgress {
    /// 1 while the body waits for the client to take data (the HTTP/2 layer holds it
    /// back: flow control or a full socket), 0 while it waits for the server.
    waiting_client: AtomicU8,
    /// When the current window started (ms), and bytes taken in it.
    window_start: AtomicU64,
    window_bytes: AtomicU64,
}

impl StreamProgress {
    /// Called when the body hands data to the HTTP/2 layer.
    pub fn sent(&self, n: usize) {
        self.window_bytes.fetch_add(n as u64, Ordering::Relaxed);
        self.waiting_client.store(1, Ordering::Relaxed);
    }

    /// Called when the body is polled again: the HTTP/2 layer wants more, so the
    /// client is taking data.
    pub fn polled(&self) {
        self.waiting_client.store(0, Ordering::Relaxed);
    }
}

impl ReadWatch {
    /// Registers a streamed body.
    pub fn register(&self) -> Arc<StreamProgress> {
        let p = Arc::new(StreamProgress::default());
        p.window_start.store(now_ms(), Ordering::Relaxed);
        let mut s = self
            .streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.retain(|w| w.strong_count() > 0);
        s.push(Arc::downgrade(&p));
        p
    }

    /// True when a stream waited on the client for a whole window and got less than
    /// `min_bytes` through in it.
    fn slow(&self, now: u64, window_ms: u64, min_bytes: u64) -> bool {
        let mut s = self
            .streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.retain(|w| w.strong_count() > 0);
        let mut slow = false;
        for p in s.iter().filter_map(Weak::upgrade) {
            let start = p.window_start.load(Ordering::Relaxed);
            if now.saturating_sub(start) < window_ms {
                continue;
            }
            let bytes = p.window_bytes.swap(0, Ordering::Relaxed);
            p.window_start.store(now, Ordering::Relaxed);
            if p.waiting_client.load(Ordering::Relaxed) == 1 && bytes < min_bytes {
                slow = true;
            }
        }
        slow
    }
}

/// The client stream as hyper sees it: frames are checked by the guard on the way in,
/// and traffic is recorded for the idle timeout. When the guard cuts the client, the
/// connection's reads stop, a GOAWAY (ENHANCE_YOUR_CALM) is put between two of the
/// server's frames, and then reads and writes fail, which ends the connection.
#[derive(Debug)]
struct Guarded<IO> {
    /// Always `Some` until dropped: then it goes to `handoff`, for a lingering close.
    inner: Option<IO>,
    handoff: Arc<Mutex<Option<IO>>>,
    scanner: Scanner,
    out: Boundaries,
    /// After a flood: the GOAWAY and how much of it was written.
    cut: Option<Cut>,
    flood: Arc<Mutex<Option<Flood>>>,
    activity: Arc<Activity>,
}

#[derive(Debug)]
struct Cut {
    why: Flood,
    goaway: [u8; 17],
    written: usize,
}

impl<IO> Drop for Guarded<IO> {
    fn drop(&mut self) {
        if let Some(io) = self.inner.take() {
            *self
                .handoff
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(io);
        }
    }
}

fn gone() -> io::Error {
    io::Error::from(io::ErrorKind::NotConnected)
}

impl<IO: AsyncWrite + Unpin> Guarded<IO> {
    /// Writes the GOAWAY (the caller made sure the stream is between frames) and
    /// flushes it; then the connection is over.
    fn poll_goaway(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let (Some(cut), Some(inner)) = (self.cut.as_mut(), self.inner.as_mut()) else {
            return Poll::Ready(io::Error::other("connection cut"));
        };
        while cut.written < cut.goaway.len() {
            match Pin::new(&mut *inner).poll_write(cx, &cut.goaway[cut.written..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    cut.written = cut.goaway.len();
                    return Poll::Ready(io::Error::other(cut.why.0));
                }
                Poll::Ready(Ok(n)) => cut.written += n,
                Poll::Pending => return Poll::Pending,
            }
        }
        match Pin::new(inner).poll_flush(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => Poll::Ready(io::Error::other(cut.why.0)),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.cut.is_some() {
            if !this.out.at_boundary() {
                // The server's frame in progress is finished by its next write.
                return Poll::Pending;
            }
            return this.poll_goaway(cx).map(Err);
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(gone()));
        };
        let before = buf.filled().len();
        let r = Pin::new(inner).poll_read(cx, buf);
        let got = &buf.filled()[before..];
        if !got.is_empty() {
            let now = now_ms();
            this.activity.touch_at(now);
            if let Err(f) = this.scanner.feed(got, now) {
                // The HTTP/2 layer does not see the flood's bytes.
                buf.set_filled(before);
                *this
                    .flood
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(f);
                this.cut = Some(Cut {
                    why: f,
                    goaway: guard::goaway_calm(this.scanner.last_stream()),
                    written: 0,
                });
                if !this.out.at_boundary() {
                    return Poll::Pending;
                }
                return this.poll_goaway(cx).map(Err);
            }
        }
        r
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let mut buf = buf;
        if this.cut.is_some() {
            if this.out.at_boundary() {
                return this.poll_goaway(cx).map(Err);
            }
            buf = &buf[..buf.len().min(this.out.until_boundary())];
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(gone()));
        };
        let r = Pin::new(inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r
            && n > 0
        {
            this.out.advance(&buf[..n]);
            this.activity.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_flush(cx),
            None => Poll::Ready(Err(gone())),
        }
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_shutdown(cx),
            None => Poll::Ready(Err(gone())),
        }
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.cut.is_some() {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            return self.poll_write(cx, first);
        }
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(gone()));
        };
        let r = Pin::new(inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r
            && n > 0
        {
            let mut left = n;
            for b in bufs {
                let k = left.min(b.len());
                this.out.advance(&b[..k]);
                left -= k;
                if left == 0 {
                    break;
                }
            }
            this.activity.touch();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(AsyncWrite::is_write_vectored)
    }
}

/// Closes a connection the gateway ended with a GOAWAY without resetting it: a close
/// with unread client bytes would make the kernel send a reset, which can destroy the
/// GOAWAY before the client reads it. The gateway's side is shut (TLS close_notify,
/// FIN), then what the client still sends is read and dropped until it closes too,
/// for at most [`CUT_GRACE`] and [`LINGER_BYTES`].
async fn linger<IO: AsyncRead + AsyncWrite + Unpin>(mut io: IO) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(CUT_GRACE, async {
        let _ = io.shutdown().await;
        let mut sink = [0u8; 4096];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// Serves HTTP/2 on `io` until the client leaves, goes idle, floods, reads too slowly,
/// or the gateway drains.
pub(crate) async fn serve<IO>(ctx: Arc<ConnContext>, io: IO)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let rt = ctx.shared.current.load_full();
    let timeouts = rt.config.timeouts;
    let limits = rt.config.limits;
    drop(rt);
    let Some(activity) = ctx.activity.clone() else {
        return;
    };
    let Some(watch) = ctx.read_watch.clone() else {
        return;
    };
    let flood = Arc::new(Mutex::new(None));
    let handoff = Arc::new(Mutex::new(None));
    let io = Guarded {
        inner: Some(io),
        handoff: handoff.clone(),
        scanner: Scanner::new(
            GuardLimits {
                resets_per_second: limits.h2_max_resets_per_second,
                control_per_second: limits.h2_max_control_frames_per_second,
                max_header_block: limits.max_header_bytes,
                max_continuations: 64,
            },
            now_ms(),
        ),
        out: Boundaries::default(),
        cut: None,
        flood: flood.clone(),
        activity: activity.clone(),
    };
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_pending_accept_reset_streams(limits.h2_max_concurrent_streams as usize)
        .max_local_error_reset_streams(Some(limits.h2_max_resets_per_second as usize * 2))
        .initial_window_size(1 << 20)
        .initial_connection_window_size(2 << 20)
        .max_send_buffer_size(256 * 1024);
    let mut conn = Conn::Handshaking(builder.handshake(io));
    let mut running: FuturesUnordered<StreamFuture> = FuturesUnordered::new();
    let mut shutdown = ctx.shared.shutdown.subscribe();
    let mut drain = std::pin::pin!(shutdown.changed());
    let mut idle = std::pin::pin!(activity.idle(timeouts.client_header, timeouts.idle));
    let window_ms = timeouts.client_write.as_millis() as u64;
    let min_bytes = limits.min_read_rate.saturating_mul(window_ms) / 1000;
    let mut check = tokio::time::interval(Duration::from_millis((window_ms / 4).max(50)));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let mut slow = false;
    let mut cut_deadline: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let result: Result<(), h2::Error> = std::future::poll_fn(|cx| {
        // Streams and the connection take turns until neither has more to do in this
        // wake-up: frames queued by streams leave with the connection's next flush.
        for _ in 0..4 {
            // Every stream the client opened, until the connection has nothing more.
            loop {
                match conn.poll_accept(cx) {
                    Poll::Ready(Some(Ok((req, respond)))) => {
                        running.push(Box::pin(stream(ctx.clone(), req, respond)));
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                    Poll::Ready(None) => return Poll::Ready(Ok(())),
                    Poll::Pending => break,
                }
            }
            let mut finished = false;
            while let Poll::Ready(Some(())) = running.poll_next_unpin(cx) {
                finished = true;
            }
            if !finished {
                break;
            }
        }
        // A client cut by the guard gets a moment to take its GOAWAY, no more.
        if cut_deadline.is_none()
            && flood
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .is_some()
        {
            cut_deadline = Some(Box::pin(tokio::time::sleep(CUT_GRACE)));
        }
        if let Some(c) = cut_deadline.as_mut()
            && c.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Ok(()));
        }
        if closing.is_none() {
            let close = drain.as_mut().poll(cx).is_ready() || idle.as_mut().poll(cx).is_ready();
            if !running.is_empty() {
                while check.poll_tick(cx).is_ready() {
                    if watch.slow(now_ms(), window_ms, min_bytes) {
                        slow = true;
                        return Poll::Ready(Ok(()));
                    }
                }
            }
            if close {
                let Conn::Ready(c) = &mut conn else {
                    // No preface yet: nothing to finish.
                    return Poll::Ready(Ok(()));
                };
                c.graceful_shutdown();
                closing = Some(Box::pin(tokio::time::sleep(timeouts.drain)));
                match conn.poll_accept(cx) {
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                    Poll::Ready(_) => return Poll::Ready(Ok(())),
                    Poll::Pending => {}
                }
            }
        }
        if let Some(c) = closing.as_mut()
            && c.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Ok(()));
        }
        Poll::Pending
    })
    .await;
    // Ends the HTTP/2 layer; the stream comes back through the handoff.
    drop(conn);
    drop(running);
    if slow {
        ctx.report(Abuse::SlowRead, "client reads HTTP/2 responses too slowly");
        return;
    }
    let io = handoff
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    let flood = *flood
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (abuse, detail) = if let Some(Flood(why)) = flood {
        (Some(Abuse::Http2Flood), why.to_owned())
    } else if let Err(e) = &result
        && let Some(reason) = h2_reason(e)
    {
        let abuse = match reason {
            h2::Reason::ENHANCE_YOUR_CALM => Some(Abuse::Http2Flood),
            h2::Reason::PROTOCOL_ERROR
            | h2::Reason::FRAME_SIZE_ERROR
            | h2::Reason::COMPRESSION_ERROR
            | h2::Reason::FLOW_CONTROL_ERROR => Some(Abuse::MalformedRequest),
            _ => None,
        };
        (abuse, format!("HTTP/2 connection error: {reason}"))
    } else {
        return;
    };
    if let Some(a) = abuse {
        ctx.report(a, &detail);
    }
    // The gateway sent a GOAWAY with an error: let the client read it.
    if let Some(io) = io {
        linger(io).await;
    }
}

/// The HTTP/2 error code of a connection error the gateway raised itself.
fn h2_reason(e: &h2::Error) -> Option<h2::Reason> {
    (e.is_go_away() && !e.is_remote())
        .then(|| e.reason())
        .flatten()
}

/// A stream the client opened: its request, and where its response goes.
type NewStream = (Request<h2::RecvStream>, h2::server::SendResponse<Bytes>);

/// The HTTP/2 connection: its preface and SETTINGS exchange, then streams.
enum Conn<IO> {
    Handshaking(h2::server::Handshake<IO, Bytes>),
    Ready(h2::server::Connection<IO, Bytes>),
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Conn<IO> {
    /// Drives the connection; the next new stream, if one came.
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<NewStream, h2::Error>>> {
        if let Conn::Handshaking(h) = self {
            match Pin::new(h).poll(cx) {
                Poll::Ready(Ok(c)) => *self = Conn::Ready(c),
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
        match self {
            Conn::Ready(c) => c.poll_accept(cx),
            Conn::Handshaking(_) => Poll::Pending,
        }
    }
}
