//! Helpers for the edge integration tests: real backends, real TLS clients, and
//! gateways on loopback with port 0 listeners.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test file uses a different subset of these helpers"
)]
#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rampart_edge::{ConfigSource, Gateway, hooks::Hooks};
use tokio::net::{TcpListener, TcpStream};

/// A test backend: answers with `x-served-by: <id>` and a body listing the request's
/// method, path and headers; `/big` is 4 MiB; `/slow` waits 400 ms; `/hold` waits until
/// [`Backend::release`] (at most 20 s), counted in `held` meanwhile; `/healthz`
/// answers `health`.
#[derive(Debug, Clone)]
pub struct Backend {
    pub id: &'static str,
    pub addr: SocketAddr,
    pub health: Arc<AtomicU16>,
    pub hits: Arc<AtomicU64>,
    pub held: Arc<AtomicU64>,
    gate: Arc<tokio::sync::watch::Sender<bool>>,
    stop: Arc<tokio::sync::Notify>,
}

impl Backend {
    pub async fn start(id: &'static str) -> Backend {
        Self::start_on("127.0.0.1:0".parse().unwrap(), id).await
    }

    pub async fn start_on(addr: SocketAddr, id: &'static str) -> Backend {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let health = Arc::new(AtomicU16::new(200));
        let hits = Arc::new(AtomicU64::new(0));
        let held = Arc::new(AtomicU64::new(0));
        let gate = Arc::new(tokio::sync::watch::channel(false).0);
        let stop = Arc::new(tokio::sync::Notify::new());
        let (h, c, s) = (health.clone(), hits.clone(), stop.clone());
        let hold = Hold {
            held: held.clone(),
            gate: gate.clone(),
        };
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                    _ = s.notified() => return,
                };
                let (h, c, hold) = (h.clone(), c.clone(), hold.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<Incoming>| {
                        let (h, c, hold) = (h.clone(), c.clone(), hold.clone());
                        async move { Ok::<_, Infallible>(answer(id, &h, &c, &hold, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Backend {
            id,
            addr,
            health,
            hits,
            held,
            gate,
            stop,
        }
    }

    /// Lets every `/hold` request (now and later) finish.
    pub fn release(&self) {
        self.gate.send_replace(true);
    }

    /// Stops accepting (open connections finish).
    pub fn stop(&self) {
        self.stop.notify_one();
    }
}

#[derive(Debug, Clone)]
struct Hold {
    held: Arc<AtomicU64>,
    gate: Arc<tokio::sync::watch::Sender<bool>>,
}

async fn answer(
    id: &'static str,
    health: &AtomicU16,
    hits: &AtomicU64,
    hold: &Hold,
    req: http::Request<Incoming>,
) -> http::Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    if path == "/healthz" {
        let status = health.load(Ordering::Relaxed);
        let mut r = http::Response::new(Full::new(Bytes::from_static(b"health\n")));
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        return r;
    }
    hits.fetch_add(1, Ordering::Relaxed);
    if path.starts_with("/slow") {
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    if path.starts_with("/hold") {
        let mut gate = hold.gate.subscribe();
        hold.held.fetch_add(1, Ordering::SeqCst);
        let _ = tokio::time::timeout(Duration::from_secs(20), gate.wait_for(|open| *open)).await;
        hold.held.fetch_sub(1, Ordering::SeqCst);
    }
    if path.starts_with("/big") {
        // 4 MiB, for clients that read slowly or not at all.
        let mut r = http::Response::new(Full::new(Bytes::from(vec![b'x'; 4 << 20])));
        r.headers_mut()
            .insert("x-served-by", http::HeaderValue::from_static(id));
        return r;
    }
    let mut text = format!("{} {}\n", req.method(), req.uri());
    for (k, v) in req.headers() {
        text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    text.push_str(&format!("body-bytes: {}\n", body.len()));
    let mut r = http::Response::new(Full::new(Bytes::from(text)));
    r.headers_mut()
        .insert("x-served-by", http::HeaderValue::from_static(id));
    r.headers_mut()
        .insert("x-internal", http::HeaderValue::from_static("secret"));
    r
}

/// A directory removed at drop.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rampart-edge-test-")
        .tempdir()
        .unwrap()
}

/// A certificate written to PEM files.
pub struct Cert {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub pem: String,
    pub fingerprint: rampart_tls::Fingerprint,
}

pub fn write_cert(dir: &std::path::Path, file: &str, names: &[&str]) -> Cert {
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    let ss = rampart_tls::self_signed(&names).unwrap();
    let cert = dir.join(format!("{file}.crt"));
    let key = dir.join(format!("{file}.key"));
    std::fs::write(&cert, &ss.cert_pem).unwrap();
    std::fs::write(&key, &ss.key_pem).unwrap();
    Cert {
        cert,
        key,
        pem: ss.cert_pem,
        fingerprint: ss.identity.fingerprint(),
    }
}

/// Starts a gateway from a config file.
pub async fn start(path: &std::path::Path) -> Gateway {
    match Gateway::start(ConfigSource::File(path.to_owned()), Hooks::default()).await {
        Ok(g) => g,
        Err(rampart_edge::StartError::Invalid(d)) => panic!("invalid config:\n{d}"),
        Err(e) => panic!("{e}"),
    }
}

pub async fn start_with_hooks(path: &std::path::Path, hooks: Hooks) -> Gateway {
    match Gateway::start(ConfigSource::File(path.to_owned()), hooks).await {
        Ok(g) => g,
        Err(rampart_edge::StartError::Invalid(d)) => panic!("invalid config:\n{d}"),
        Err(e) => panic!("{e}"),
    }
}

/// The bound address of a listener.
pub fn addr(gw: &Gateway, name: &str) -> SocketAddr {
    gw.bound_addresses()[name]
}

/// A rustls client config trusting `pems`, offering `alpn`.
pub fn client_config(pems: &[&str], alpn: &[&str]) -> Arc<rustls::ClientConfig> {
    let roots = rampart_tls::parse_roots(pems.join("").as_bytes(), "test roots").unwrap();
    let mut settings = rampart_tls::ClientSettings::new(Arc::new(roots));
    settings.alpn = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    rampart_tls::client_config(&settings).unwrap()
}

/// What a TLS request saw.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
    pub alpn: Option<String>,
    pub cert: rampart_tls::Fingerprint,
    pub resumed: bool,
}

/// One HTTPS request over a fresh connection: TLS with `sni`, HTTP/2 when negotiated.
pub async fn https(
    config: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    sni: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    let name =
        rustls::pki_types::ServerName::try_from(sni.to_owned()).map_err(|e| e.to_string())?;
    let tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .map_err(|_| "handshake timeout".to_owned())?
        .map_err(|e| e.to_string())?;
    let (_, conn) = tls.get_ref();
    let alpn = conn
        .alpn_protocol()
        .map(|a| String::from_utf8_lossy(a).into_owned());
    let cert = rampart_tls::Fingerprint::of(conn.peer_certificates().unwrap()[0].as_ref());
    let resumed = matches!(conn.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
    let mut builder = http::Request::builder().method(method);
    builder = if alpn.as_deref() == Some("h2") {
        builder.uri(format!("https://{sni}{path}"))
    } else {
        builder.uri(path).header("host", sni)
    };
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let req = builder.body(Empty::<Bytes>::new()).unwrap();
    let resp = if alpn.as_deref() == Some("h2") {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        send.send_request(req).await.map_err(|e| e.to_string())?
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        send.send_request(req).await.map_err(|e| e.to_string())?
    };
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        alpn,
        cert,
        resumed,
    })
}

/// A keep-alive HTTP/1.1 client over TLS (one connection, many requests).
pub struct KeepAlive {
    send: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    host: String,
}

impl KeepAlive {
    pub async fn connect(
        config: &Arc<rustls::ClientConfig>,
        addr: SocketAddr,
        sni: &str,
    ) -> Result<Self, String> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let connector = tokio_rustls::TlsConnector::from(config.clone());
        let name =
            rustls::pki_types::ServerName::try_from(sni.to_owned()).map_err(|e| e.to_string())?;
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(Self {
            send,
            host: sni.to_owned(),
        })
    }

    pub async fn get(&mut self, path: &str) -> Result<(u16, http::HeaderMap), String> {
        self.send.ready().await.map_err(|e| e.to_string())?;
        let req = http::Request::get(path)
            .header("host", &self.host)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = self
            .send
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        resp.into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok((status, headers))
    }
}

/// A plain HTTP/1.1 request over a fresh connection.
pub async fn http_get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Reply2, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    http_get_on(tcp, host, path, headers).await
}

#[derive(Debug)]
pub struct Reply2 {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

pub async fn http_get_on<IO>(
    io: IO,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Reply2, String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut b = http::Request::get(path).header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = send
        .send_request(b.body(Empty::<Bytes>::new()).unwrap())
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Reply2 {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Counts `x-served-by` over replies.
pub fn tally<'a>(ids: impl IntoIterator<Item = &'a str>) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for id in ids {
        *m.entry(id.to_owned()).or_insert(0) += 1;
    }
    m
}

/// Polls `f` every 50 ms until it is true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Fetches the admin `/metrics` page.
pub async fn metrics(gw: &Gateway) -> String {
    http_get(addr(gw, "admin"), "admin", "/metrics", &[])
        .await
        .unwrap()
        .body
}

pub fn timer() -> TokioTimer {
    TokioTimer::new()
}
