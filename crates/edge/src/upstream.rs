//! Connections to backend servers: TCP with a connect deadline, optional TLS verified
//! against the backend's CA, optional PROXY protocol v2, and pools of idle HTTP/1.1
//! connections per server.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

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

/// The request body sent upstream: the client's, streamed.
pub type RequestBody = hyper::body::Incoming;

/// One HTTP/1.1 connection to a server. The connection future is not spawned: the
/// request that uses the connection drives it in its own task (no cross-task wake-ups
/// per request), and an idle connection waits in its server's [`ServerPool`].
pub struct Upstream {
    sender: hyper::client::conn::http1::SendRequest<RequestBody>,
    conn: hyper::client::conn::http1::Connection<TokioIo<UpstreamIo>, RequestBody>,
    done: bool,
    since_ms: u64,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// Why an exchange failed, and whether the request can be tried again.
#[derive(Debug)]
pub enum ExchangeError {
    /// The request never left: it comes back for another try.
    NotSent(Box<http::Request<RequestBody>>),
    /// The request may have reached the server.
    Failed(hyper::Error),
}

impl Upstream {
    /// Opens a connection (TCP, optional PROXY header, optional TLS, HTTP/1.1
    /// handshake) within the connector's deadline.
    pub async fn open(
        connector: &Connector,
        addr: SocketAddr,
        proxy_header: Option<&[u8]>,
    ) -> io::Result<Upstream> {
        let io = connector.connect(addr, proxy_header).await?;
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(256 * 1024)
            .handshake(TokioIo::new(io))
            .await
            .map_err(io::Error::other)?;
        Ok(Upstream {
            sender,
            conn,
            done: false,
            since_ms: 0,
        })
    }

    /// Drives the connection; true while it is open.
    pub fn poll_conn(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.done && Pin::new(&mut self.conn).poll(cx).is_ready() {
            self.done = true;
        }
        !self.done
    }

    /// True when the connection is still open and can take a request, checked without
    /// waiting (a server that closed an idle connection is noticed here).
    pub fn usable(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if !self.poll_conn(&mut cx) {
            return false;
        }
        matches!(self.sender.poll_ready(&mut cx), Poll::Ready(Ok(())))
    }

    /// Sends a request and drives the connection until the response headers arrive.
    pub async fn send(
        &mut self,
        req: http::Request<RequestBody>,
    ) -> Result<http::Response<hyper::body::Incoming>, ExchangeError> {
        // Wait until the connection takes a request.
        let ready = std::future::poll_fn(|cx| {
            let open = self.poll_conn(cx);
            match self.sender.poll_ready(cx) {
                Poll::Ready(Ok(())) => Poll::Ready(true),
                Poll::Ready(Err(_)) => Poll::Ready(false),
                Poll::Pending if !open => Poll::Ready(false),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        if !ready {
            return Err(ExchangeError::NotSent(Box::new(req)));
        }
        let Upstream {
            sender, conn, done, ..
        } = self;
        let fut = sender.try_send_request(req);
        let mut fut = std::pin::pin!(fut);
        let result = std::future::poll_fn(|cx| {
            if !*done && Pin::new(&mut *conn).poll(cx).is_ready() {
                *done = true;
            }
            fut.as_mut().poll(cx)
        })
        .await;
        result.map_err(|mut e| match e.take_message() {
            Some(req) => ExchangeError::NotSent(Box::new(req)),
            None => ExchangeError::Failed(e.into_error()),
        })
    }
}

/// Idle connections to one server, most recently used first.
#[derive(Debug)]
pub struct ServerPool {
    idle: std::sync::Mutex<Vec<Upstream>>,
    max_idle: usize,
    idle_timeout_ms: u64,
}

impl ServerPool {
    /// A pool keeping at most `max_idle` connections for at most `idle_timeout`.
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        Self {
            idle: std::sync::Mutex::new(Vec::new()),
            max_idle,
            idle_timeout_ms: idle_timeout.as_millis() as u64,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Upstream>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A usable idle connection, if any.
    pub fn checkout(&self, now_ms: u64) -> Option<Upstream> {
        loop {
            let mut up = self.lock().pop()?;
            if now_ms.saturating_sub(up.since_ms) < self.idle_timeout_ms && up.usable() {
                return Some(up);
            }
        }
    }

    /// Returns a connection after a complete exchange.
    pub fn checkin(&self, mut up: Upstream, now_ms: u64) {
        if up.done || up.sender.is_closed() {
            return;
        }
        up.since_ms = now_ms;
        let mut idle = self.lock();
        if idle.len() < self.max_idle {
            idle.push(up);
        }
    }

    /// Drops expired and closed connections.
    pub fn sweep(&self, now_ms: u64) {
        let mut idle = self.lock();
        let timeout = self.idle_timeout_ms;
        idle.retain_mut(|up| now_ms.saturating_sub(up.since_ms) < timeout && up.usable());
    }

    /// Idle connections held.
    pub fn len(&self) -> usize {
        self.lock().len()
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
