//! Connections to backend servers: TCP with a connect deadline, optional TLS verified
//! against the backend's CA, optional PROXY protocol v2, and a pooled HTTP/1.1 client
//! per backend.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
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

impl Connection for UpstreamIo {
    fn connected(&self) -> Connected {
        Connected::new()
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

type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<TokioIo<UpstreamIo>>> + Send>>;

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<UpstreamIo>;
    type Error = io::Error;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let addr: SocketAddr = uri
                .authority()
                .and_then(|a| a.as_str().parse().ok())
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "server URI is not ip:port")
                })?;
            this.connect(addr, None).await.map(TokioIo::new)
        })
    }
}

/// The pooled client of one backend.
pub type PooledClient = Client<Connector, crate::proxy::UpstreamBody>;

/// Builds a pooled client.
pub fn pooled_client(connector: Connector, max_idle_per_server: usize) -> PooledClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(max_idle_per_server)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .set_host(false)
        .retry_canceled_requests(true)
        .build(connector)
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
