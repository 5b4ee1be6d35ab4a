//! HTTP/2 client connections: hyper's HTTP/2 server with its streams run inside the
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
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::hooks::Abuse;
use crate::io::{Activity, now_ms};
use crate::proxy::{self, ConnContext};
use guard::{Boundaries, Flood, GuardLimits, Scanner};

/// How long a client cut by the guard has to take its GOAWAY.
const CUT_GRACE: Duration = Duration::from_secs(1);

/// Bytes read and dropped, at most, while closing a connection cut by the gateway.
const LINGER_BYTES: usize = 1 << 20;

type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// hyper's executor for HTTP/2 streams: streams are queued here and run by the
/// connection's task, not spawned.
#[derive(Clone, Default)]
pub struct InTask {
    inbox: Arc<Mutex<Vec<StreamFuture>>>,
}

impl std::fmt::Debug for InTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InTask").finish_non_exhaustive()
    }
}

impl<F> hyper::rt::Executor<F> for InTask
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        self.inbox
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Box::pin(fut));
    }
}

impl InTask {
    fn take_into(&self, running: &mut FuturesUnordered<StreamFuture>) -> bool {
        let mut inbox = self
            .inbox
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let any = !inbox.is_empty();
        for f in inbox.drain(..) {
            running.push(f);
        }
        any
    }
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
    let exec = InTask::default();
    let svc_ctx = ctx.clone();
    let svc = service_fn(move |req| proxy::serve(svc_ctx.clone(), req));
    let mut builder = hyper::server::conn::http2::Builder::new(exec.clone());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_pending_accept_reset_streams(limits.h2_max_concurrent_streams as usize)
        .max_local_error_reset_streams(Some(limits.h2_max_resets_per_second as usize * 2))
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(2 << 20)
        .max_send_buf_size(256 * 1024)
        .auto_date_header(false);
    let mut conn = Box::pin(builder.serve_connection(TokioIo::new(io), svc));
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
    let result = std::future::poll_fn(|cx| {
        // Streams and the connection take turns until neither has more to do in this
        // wake-up: frames queued by streams leave with the connection's next flush.
        for _ in 0..4 {
            if let Poll::Ready(r) = conn.as_mut().poll(cx) {
                return Poll::Ready(r);
            }
            exec.take_into(&mut running);
            let mut finished = false;
            while let Poll::Ready(Some(())) = running.poll_next_unpin(cx) {
                finished = true;
            }
            if !finished && !exec.take_into(&mut running) {
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
                conn.as_mut().graceful_shutdown();
                closing = Some(Box::pin(tokio::time::sleep(timeouts.drain)));
                if let Poll::Ready(r) = conn.as_mut().poll(cx) {
                    return Poll::Ready(r);
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
fn h2_reason(e: &hyper::Error) -> Option<h2::Reason> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<h2::Error>() {
            return (h.is_go_away() && !h.is_remote())
                .then(|| h.reason())
                .flatten();
        }
        source = s.source();
    }
    None
}
