//! Stream adapters: replaying bytes already read (after a ClientHello or PROXY header
//! peek), tracking activity for idle timeouts, a monotonic millisecond clock, the
//! per-thread spare buffers of idle connections, and [`ClientTransport`], what the
//! HTTP/1.1 engine asks of a client stream (a last write that carries the transport's
//! own closure).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Emptied buffers kept per worker thread for reuse, at most this many of a kind: an
/// idle connection holds none, and a busy worker does not allocate and free them on
/// every request.
pub const SPARE_BUFFERS: usize = 32;

/// A thread's stack of spare buffers of one kind (see [`SPARE_BUFFERS`]).
pub type Spares<T> = std::thread::LocalKey<std::cell::RefCell<Vec<T>>>;

/// Keeps `item` (emptied by the caller) in this thread's `spares` while they have room.
pub fn keep_spare<T>(spares: &'static Spares<T>, item: T) {
    spares.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < SPARE_BUFFERS {
            s.push(item);
        }
    });
}

/// One of this thread's `spares`, or an empty one.
pub fn take_spare<T: Default>(spares: &'static Spares<T>) -> T {
    spares.with(|s| s.borrow_mut().pop()).unwrap_or_default()
}

/// Milliseconds since the first call, on a monotonic clock.
pub fn now_ms() -> u64 {
    ms_at(Instant::now())
}

/// `at` on the clock of [`now_ms`] (0 for instants before its start): callers that
/// have just read the time need not read it again.
pub fn ms_at(at: Instant) -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    at.saturating_duration_since(*START.get_or_init(Instant::now))
        .as_millis() as u64
}

/// A stream that first yields `prefix`, then reads from `inner`.
#[derive(Debug)]
pub struct Prefixed<T> {
    prefix: Vec<u8>,
    pos: usize,
    inner: T,
}

impl<T> Prefixed<T> {
    /// Wraps `inner`, replaying `prefix` first.
    pub fn new(prefix: Vec<u8>, inner: T) -> Self {
        Self {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A client connection's transport as the HTTP/1.1 engine writes to it.
pub trait ClientTransport: AsyncRead + AsyncWrite + Unpin {
    /// Takes the start of `data` as the last bytes of the connection, to leave with
    /// the end of the transport's own framing (TLS close_notify) in the next flush:
    /// a response and the closure in one write and one segment. Returns how many
    /// bytes were taken; the caller writes the rest. The default takes nothing.
    fn take_last(&mut self, data: &[u8]) -> usize {
        let _ = data;
        0
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> ClientTransport for Prefixed<T> {}

/// Activity of one connection: last traffic and requests in flight.
#[derive(Debug, Default)]
pub struct Activity {
    last_ms: AtomicU64,
    /// Requests in flight on the connection.
    pub in_flight: AtomicU32,
    /// Requests seen on the connection.
    pub requests: AtomicU64,
}

impl Activity {
    /// A fresh record, active now.
    pub fn new() -> Arc<Self> {
        let a = Arc::new(Self::default());
        a.touch();
        a
    }

    /// Marks traffic now.
    pub fn touch(&self) {
        self.last_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Marks traffic at `now_ms` (from [`now_ms`]).
    pub fn touch_at(&self, now_ms: u64) {
        self.last_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Resolves when the connection has had no traffic and no request in flight for
    /// `idle` (and, before its first request, for `first`).
    pub async fn idle(&self, first: Duration, idle: Duration) {
        loop {
            let limit = if self.requests.load(Ordering::Relaxed) == 0 {
                first
            } else {
                idle
            };
            let limit_ms = limit.as_millis() as u64;
            let last = self.last_ms.load(Ordering::Relaxed);
            let now = now_ms();
            let busy = self.in_flight.load(Ordering::Relaxed) > 0;
            if !busy && now.saturating_sub(last) >= limit_ms {
                return;
            }
            let wait = if busy {
                limit_ms
            } else {
                limit_ms - now.saturating_sub(last)
            };
            tokio::time::sleep(Duration::from_millis(wait.max(10))).await;
        }
    }
}

/// A stream that records its traffic in an [`Activity`].
#[derive(Debug)]
pub struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Tracked<T> {
    /// Wraps `inner`.
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
