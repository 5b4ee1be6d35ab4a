//! Connections to backend servers: TCP with a connect deadline, optional TLS verified
//! against the backend's CA, optional PROXY protocol v2, and pools of idle HTTP/1.1
//! connections per server and worker thread. The HTTP/1.1 exchange itself is in
//! [`crate::h1`].

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::worker::PerWorker;

/// A connection to a server, plain or TLS.
#[derive(Debug)]
pub enum UpstreamIo {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamIo::Plain(s) => s.is_write_vectored(),
            UpstreamIo::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// TLS towards a backend's servers.
#[derive(Clone)]
pub struct UpstreamTls {
    /// Client config (roots = the backend's CA).
    pub connector: tokio_rustls::TlsConnector,
    /// Name sent and verified; `None` uses the server's IP address.
    pub server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// Opens connections to servers given as `ip:port` URIs.
#[derive(Clone, Debug)]
pub struct Connector {
    /// Connect deadline (TCP plus TLS).
    pub timeout: Duration,
    /// TLS, if the backend uses it.
    pub tls: Option<UpstreamTls>,
}

impl Connector {
    /// Connects to `addr`, writing `proxy_header` first when given.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        proxy_header: Option<&[u8]>,
    ) -> io::Result<UpstreamIo> {
        let fut = async {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            if let Some(h) = proxy_header {
                use tokio::io::AsyncWriteExt;
                let mut stream = stream;
                stream.write_all(h).await?;
                return self.wrap(addr, stream).await;
            }
            self.wrap(addr, stream).await
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
        }
    }

    async fn wrap(&self, addr: SocketAddr, stream: TcpStream) -> io::Result<UpstreamIo> {
        match &self.tls {
            None => Ok(UpstreamIo::Plain(stream)),
            Some(tls) => {
                let name = tls
                    .server_name
                    .clone()
                    .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
                let s = tls.connector.connect(name, stream).await?;
                Ok(UpstreamIo::Tls(Box::new(s)))
            }
        }
    }
}

/// One HTTP/1.1 connection to a server: the stream and the bytes read from it that
/// were not used yet. The request that uses the connection drives it in its own task;
/// an idle connection waits in its server's [`ServerPool`], without a read buffer.
#[derive(Debug)]
pub struct ServerConn {
    io: UpstreamIo,
    /// Bytes read from the server and not consumed yet.
    pub buf: BytesMut,
    since_ms: u64,
    /// Requests sent on this connection.
    pub uses: u64,
}

/// Read size for server connections.
pub const READ_CHUNK: usize = 16 * 1024;

thread_local! {
    /// Read buffers of idle server connections (which hold none), for the next exchange.
    static SPARE: std::cell::RefCell<Vec<BytesMut>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A read buffer from this thread's spares, or an empty one.
fn spare_buffer() -> BytesMut {
    crate::io::take_spare(&SPARE)
}

/// Keeps an empty read buffer of the usual size for reuse on this thread.
fn keep_spare(mut buf: BytesMut) {
    buf.clear();
    // Consumed bytes still count against the capacity: reserving on the empty,
    // unshared buffer takes its whole allocation back without allocating.
    buf.reserve(READ_CHUNK);
    if (READ_CHUNK..=2 * READ_CHUNK).contains(&buf.capacity()) {
        crate::io::keep_spare(&SPARE, buf);
    }
}

impl ServerConn {
    /// Opens a connection (TCP, optional PROXY header, optional TLS) within the
    /// connector's deadline.
    pub async fn open(
        connector: &Connector,
        addr: SocketAddr,
        proxy_header: Option<&[u8]>,
    ) -> io::Result<ServerConn> {
        let io = connector.connect(addr, proxy_header).await?;
        Ok(ServerConn {
            io,
            buf: BytesMut::new(),
            since_ms: 0,
            uses: 0,
        })
    }

    /// True when the connection is still open and quiet, checked without waiting: a
    /// server that closed an idle connection, or sent bytes nobody asked for, is
    /// noticed here.
    pub fn usable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut probe = [0u8; 1];
        let mut rb = ReadBuf::new(&mut probe);
        matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut rb),
            Poll::Pending
        )
    }

    /// Reads more bytes from the server into [`Self::buf`]; `Ok(0)` at end of stream.
    pub fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() == 0 {
            self.buf = spare_buffer();
        }
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }

    /// Reads more bytes from the server into [`Self::buf`].
    pub async fn read_more(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_read_more(cx)).await
    }

    /// Writes some of `data`.
    pub fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    /// Flushes what the TLS layer holds.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Writes all of `data` and flushes. The error says whether any byte was accepted.
    pub async fn write_all(&mut self, data: &[u8]) -> Result<(), WriteError> {
        let mut done = 0;
        while done < data.len() {
            match std::future::poll_fn(|cx| self.poll_write(cx, &data[done..])).await {
                Ok(0) => {
                    return Err(WriteError {
                        sent_any: done > 0,
                        error: io::ErrorKind::WriteZero.into(),
                    });
                }
                Ok(n) => done += n,
                Err(error) => {
                    return Err(WriteError {
                        sent_any: done > 0,
                        error,
                    });
                }
            }
        }
        std::future::poll_fn(|cx| self.poll_flush(cx))
            .await
            .map_err(|error| WriteError {
                sent_any: true,
                error,
            })
    }
}

/// A failed write to a server.
#[derive(Debug)]
pub struct WriteError {
    /// Whether some bytes were accepted before the error (the request may have left).
    pub sent_any: bool,
    /// The error.
    pub error: io::Error,
}

/// Idle connections to one server, most recently used first, kept per worker thread:
/// a connection is registered with the I/O driver of the worker that opened it, so it
/// is only ever reused by that worker (no cross-thread wake-ups per request).
#[derive(Debug)]
pub struct ServerPool {
    slots: PerWorker<std::sync::Mutex<Vec<ServerConn>>>,
    max_idle_per_slot: usize,
    idle_timeout_ms: u64,
}

impl ServerPool {
    /// A pool for `workers` worker threads keeping at most `max_idle` connections in
    /// total for at most `idle_timeout`.
    pub fn new(max_idle: usize, idle_timeout: Duration, workers: usize) -> Self {
        Self {
            slots: PerWorker::new(workers.max(1), || std::sync::Mutex::new(Vec::new())),
            max_idle_per_slot: max_idle.div_ceil(workers.max(1)),
            idle_timeout_ms: idle_timeout.as_millis() as u64,
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Vec<ServerConn>> {
        self.slots
            .local()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A usable idle connection of this worker, if any.
    pub fn checkout(&self, now_ms: u64) -> Option<ServerConn> {
        loop {
            let mut up = self.slot().pop()?;
            if now_ms.saturating_sub(up.since_ms) < self.idle_timeout_ms && up.usable() {
                return Some(up);
            }
        }
    }

    /// Returns a connection after a complete exchange; its read buffer is released
    /// while it waits.
    pub fn checkin(&self, mut up: ServerConn, now_ms: u64) {
        if !up.buf.is_empty() {
            return;
        }
        keep_spare(std::mem::take(&mut up.buf));
        up.since_ms = now_ms;
        let mut idle = self.slot();
        if idle.len() < self.max_idle_per_slot {
            idle.push(up);
        }
    }

    /// Drops expired and closed connections.
    pub fn sweep(&self, now_ms: u64) {
        let timeout = self.idle_timeout_ms;
        for slot in self.slots.iter() {
            let mut idle = slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            idle.retain_mut(|up| now_ms.saturating_sub(up.since_ms) < timeout && up.usable());
        }
    }

    /// Idle connections held.
    pub fn len(&self) -> usize {
        self.slots
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
            .sum()
    }

    /// True when no idle connection is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Builds the TLS part of a connector from a CA file.
pub fn upstream_tls(
    ca_file: &std::path::Path,
    server_name: Option<&str>,
) -> Result<UpstreamTls, String> {
    let roots = rampart_tls::load_roots(ca_file).map_err(|e| e.to_string())?;
    let mut settings = rampart_tls::ClientSettings::new(Arc::new(roots));
    settings.alpn = vec![b"http/1.1".to_vec()];
    let config = rampart_tls::client_config(&settings).map_err(|e| e.to_string())?;
    let server_name = match server_name {
        None => None,
        Some(n) => Some(ServerName::try_from(n.to_owned()).map_err(|e| format!("{n}: {e}"))?),
    };
    Ok(UpstreamTls {
        connector: tokio_rustls::TlsConnector::from(config),
        server_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;

    #[test]
    fn a_read_buffer_is_kept_whole_after_its_bytes_were_consumed() {
        std::thread::spawn(|| {
            let mut buf = BytesMut::with_capacity(READ_CHUNK);
            buf.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            let start = buf.as_ptr();
            buf.advance(buf.len());
            keep_spare(buf);
            let again = spare_buffer();
            assert_eq!(again.as_ptr(), start);
            assert!(again.is_empty() && again.capacity() >= READ_CHUNK);
            assert_eq!(spare_buffer().capacity(), 0);
        })
        .join()
        .unwrap();
    }
}
