//! Request-level protection of the HTTP/1.1 engine, end to end: exact bytes written on
//! raw TCP and TLS sockets to a running gateway, each asserting the exact status line
//! or the closed connection, that nothing of a refused request reached the server
//! (a smuggled second request never does), and the rejection counted by reason on the
//! admin `/metrics`. Covers request smuggling vectors, malformed heads, size limits
//! (global and per route), slow clients (header deadline, minimum body rate, idle
//! keep-alive, slow readers), the offences reported to the abuse hook, and the bans
//! protection issues for them (listed on the admin listener).
//!
//! Each attack comes from its own loopback source address (127.1.x.y), so that a
//! source banned by protection never changes another test's outcome.

#![expect(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rampart_edge::hooks::{Abuse, AbuseObserver, Hooks};
use rampart_edge::{ConfigSource, Gateway};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use common::{Cert, tempdir, write_cert};

/// Size of the response to `/big` (far more than socket buffers hold).
const BIG: usize = 32 << 20;

/// The bound on every wait for the gateway in these tests.
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------
// A server that records every byte it receives.
// ---------------------------------------------------------------------------------

/// A request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    version: http::Version,
    headers: http::HeaderMap,
    body: Vec<u8>,
    /// The whole body arrived.
    complete: bool,
}

/// A server behind the gateway: keeps every byte received on every connection, and
/// every request it parsed; answers `ok` (or `BIG` bytes on `/big`).
#[derive(Clone)]
struct Recorder {
    addr: SocketAddr,
    raw: Arc<Mutex<Vec<u8>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    conns: Arc<AtomicUsize>,
}

/// Copies what is read into a shared log.
struct Tee<IO> {
    io: IO,
    log: Arc<Mutex<Vec<u8>>>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tee<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if r.is_ready() {
            let new = buf.filled()[before..].to_vec();
            self.log.lock().unwrap().extend_from_slice(&new);
        }
        r
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tee<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let rec = Recorder {
            addr: listener.local_addr().unwrap(),
            raw: Arc::default(),
            seen: Arc::default(),
            conns: Arc::default(),
        };
        let r = rec.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                r.conns.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                tokio::spawn(async move {
                    let io = Tee {
                        io: stream,
                        log: r.raw.clone(),
                    };
                    let seen = r.seen.clone();
                    let svc = service_fn(move |req: http::Request<Incoming>| {
                        let seen = seen.clone();
                        async move { Ok::<_, Infallible>(answer(&seen, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(io), svc)
                        .await;
                });
            }
        });
        rec
    }

    fn raw(&self) -> Vec<u8> {
        self.raw.lock().unwrap().clone()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn answer(
    seen: &Mutex<Vec<Seen>>,
    req: http::Request<Incoming>,
) -> http::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes().to_vec());
    let complete = body.is_ok();
    seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        target: parts.uri.to_string(),
        version: parts.version,
        headers: parts.headers,
        body: body.unwrap_or_default(),
        complete,
    });
    if !complete {
        // The body was cut: nothing to answer.
        return http::Response::new(Full::new(Bytes::new()));
    }
    if parts.uri.path() == "/big" {
        return http::Response::new(Full::new(Bytes::from(vec![b'x'; BIG])));
    }
    http::Response::new(Full::new(Bytes::from_static(b"ok\n")))
}

// ---------------------------------------------------------------------------------
// A gateway in front of it.
// ---------------------------------------------------------------------------------

/// The gateway's limits in these tests (each route may differ).
const LIMITS: &str =
    "  limits: {maxHeaderBytes: 4096, maxHeaders: 16, maxUriBytes: 256, maxBodyBytes: 1024}\n";

struct Rig {
    _dir: tempfile::TempDir,
    gw: Gateway,
    server: Recorder,
    web: SocketAddr,
    tls: SocketAddr,
    admin: SocketAddr,
    cert: Cert,
}

/// A gateway with a plain listener `web` and a TLS listener `tls`, both to one
/// recording server. `spec` is added to the spec (timeouts, limits, protection).
async fn rig_with(spec: &str, hooks: Hooks) -> Rig {
    let server = Recorder::start().await;
    let dir = tempdir();
    let cert = write_cert(dir.path(), "tls", &["localhost"]);
    let path = dir.path().join("edge.yaml");
    std::fs::write(
        &path,
        format!(
            r#"apiVersion: rampart.dev/v1alpha1
kind: EdgeGateway
metadata: {{name: abuse}}
spec:
  admin: {{address: "127.0.0.1:0"}}
  accessLog: false
{spec}
  listeners:
    - name: web
      address: "127.0.0.1:0"
      httpRoutes:
        - name: small
          match: {{pathPrefix: /small}}
          backend: app
          limits: {{maxHeaderBytes: 1024, maxHeaders: 8, maxUriBytes: 64, maxBodyBytes: 16}}
        - name: upload
          match: {{pathPrefix: /upload}}
          backend: app
          limits: {{maxBodyBytes: 4096}}
        - name: abs
          match: {{hosts: [abs.test]}}
          backend: app
          requestHeaders: {{set: {{x-route: abs}}}}
        - name: all
          backend: app
    - name: tls
      address: "127.0.0.1:0"
      tls:
        certificates: [{{certFile: "{}", keyFile: "{}"}}]
        alpn: [http/1.1]
      httpRoutes:
        - {{name: secure, backend: app}}
  backends:
    - name: app
      servers: [{{address: "{}"}}]
"#,
            cert.cert.display(),
            cert.key.display(),
            server.addr
        ),
    )
    .unwrap();
    let gw = match Gateway::start_with(ConfigSource::File(path), hooks, 1).await {
        Ok(g) => g,
        Err(rampart_edge::StartError::Invalid(d)) => panic!("invalid config:\n{d}"),
        Err(e) => panic!("{e}"),
    };
    let a = gw.bound_addresses();
    Rig {
        web: a["web"],
        tls: a["tls"],
        admin: a["admin"],
        _dir: dir,
        gw,
        server,
        cert,
    }
}

async fn rig(spec: &str) -> Rig {
    rig_with(spec, Hooks::default()).await
}

/// A loopback source address no other connection in this process uses.
fn fresh_source() -> IpAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    IpAddr::from([127, 1, (n / 250) as u8, (n % 250 + 1) as u8])
}

async fn connect_from(src: IpAddr, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(src, 0)).unwrap();
    s.connect(to).await.unwrap()
}

/// What the client saw: the bytes received, and whether the gateway closed the
/// connection (EOF or reset) within [`WAIT`].
#[derive(Debug)]
struct Outcome {
    bytes: Vec<u8>,
    closed: bool,
}

impl Outcome {
    fn status_line(&self) -> String {
        let text = String::from_utf8_lossy(&self.bytes);
        text.split("\r\n").next().unwrap_or("").to_owned()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    fn header(&self, name: &str) -> Option<String> {
        let text = self.text();
        let head = text.split("\r\n\r\n").next()?.to_owned();
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// Reads until the peer closes (or resets), at most [`WAIT`].
async fn read_to_close<S: AsyncRead + Unpin>(s: &mut S) -> Outcome {
    let mut bytes = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Outcome {
                    bytes,
                    closed: true,
                };
            }
            Ok(Ok(n)) => bytes.extend_from_slice(&chunk[..n]),
            Err(_) => {
                return Outcome {
                    bytes,
                    closed: false,
                };
            }
        }
    }
}

/// Reads one response (head and `Content-Length` body) from a connection that stays
/// open.
async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> Outcome {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let o = Outcome {
                bytes: bytes.clone(),
                closed: false,
            };
            let len: usize = o
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if bytes.len() >= end + 4 + len {
                return o;
            }
        }
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Outcome {
                    bytes,
                    closed: true,
                };
            }
            Ok(Ok(n)) => bytes.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("no complete response within {WAIT:?}: {bytes:?}"),
        }
    }
}

/// Sends `request` from a fresh source in one write, and reads until the gateway
/// closes.
async fn exchange(to: SocketAddr, request: &[u8]) -> Outcome {
    let mut s = connect_from(fresh_source(), to).await;
    // The gateway may close before taking everything; what it answered still counts.
    let _ = s.write_all(request).await;
    read_to_close(&mut s).await
}

/// The same over TLS (ALPN http/1.1).
async fn exchange_tls(rig: &Rig, request: &[u8]) -> Outcome {
    let mut s = tls_connect(rig).await;
    let _ = s.write_all(request).await;
    read_to_close(&mut s).await
}

async fn tls_connect(rig: &Rig) -> tokio_rustls::client::TlsStream<TcpStream> {
    let config = common::client_config(&[&rig.cert.pem], &["http/1.1"]);
    let tcp = connect_from(fresh_source(), rig.tls).await;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(
        WAIT,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .unwrap()
    .unwrap()
}

/// The value of `rampart_edge_rejections_total` for `reason` on listener `listener`.
async fn rejections(rig: &Rig, listener: &str, reason: &str) -> u64 {
    let page = admin_get(rig.admin, "/metrics").await;
    let want =
        format!("rampart_edge_rejections_total{{listener=\"{listener}\",reason=\"{reason}\"}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(&want).map(|v| v.trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("no {want} in /metrics"))
}

/// Every rejection counter of a listener that is not zero.
async fn nonzero_rejections(rig: &Rig, listener: &str) -> Vec<(String, u64)> {
    let page = admin_get(rig.admin, "/metrics").await;
    let prefix = format!("rampart_edge_rejections_total{{listener=\"{listener}\",reason=\"");
    page.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (reason, value) = rest.split_once("\"} ")?;
            let v: u64 = value.trim().parse().ok()?;
            (v > 0).then(|| (reason.to_owned(), v))
        })
        .collect()
}

async fn admin_get(admin: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(admin).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let o = read_to_close(&mut s).await;
    let text = o.text();
    text.split_once("\r\n\r\n")
        .map(|x| x.1.to_owned())
        .unwrap_or_default()
}

/// A valid request on its own connection, answered 200 by the server: proves the
/// server is reachable before an attack.
async fn control(rig: &Rig) {
    let o = exchange(
        rig.web,
        b"GET /control HTTP/1.1\r\nHost: t.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(o.status_line(), "HTTP/1.1 200 OK", "{}", o.text());
    assert!(o.closed);
    assert!(rig.server.seen().iter().any(|s| s.target == "/control"));
}

/// What of a refused request may have reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reached {
    /// Not one byte.
    Nothing,
    /// The head may have (the body was refused while streaming), but no complete
    /// request.
    NoCompleteRequest,
}

/// Sends `request` (after a control request) and checks: the exact status line, the
/// closed connection, what reached the server, no smuggled request, and the
/// rejection counted under `reason`.
async fn refused(request: &[u8], status_line: &str, reason: &str, reached: Reached) {
    let rig = rig(LIMITS).await;
    control(&rig).await;
    let raw_before = rig.server.raw().len();
    let seen_before = rig.server.seen().len();
    let o = exchange(rig.web, request).await;
    assert_eq!(
        o.status_line(),
        status_line,
        "request {:?} got {:?}",
        String::from_utf8_lossy(request),
        o.text()
    );
    assert!(o.closed, "the connection stays open after {status_line}");
    assert_eq!(o.header("connection").as_deref(), Some("close"));
    check_nothing_reached(&rig, raw_before, seen_before, reached);
    assert_eq!(rejections(&rig, "web", reason).await, 1, "{reason}");
    // Nothing else was counted.
    assert_eq!(
        nonzero_rejections(&rig, "web").await,
        vec![(reason.to_owned(), 1)]
    );
}

fn check_nothing_reached(rig: &Rig, raw_before: usize, seen_before: usize, reached: Reached) {
    let raw = rig.server.raw();
    assert!(
        !raw.windows(9).any(|w| w == b"/smuggled"),
        "a smuggled request reached the server: {:?}",
        String::from_utf8_lossy(&raw)
    );
    match reached {
        Reached::Nothing => assert_eq!(
            raw.len(),
            raw_before,
            "bytes reached the server: {:?}",
            String::from_utf8_lossy(&raw[raw_before..])
        ),
        Reached::NoCompleteRequest => {
            let complete = rig.server.seen()[seen_before..]
                .iter()
                .filter(|s| s.complete)
                .count();
            assert_eq!(complete, 0, "{:?}", rig.server.seen());
        }
    }
}

macro_rules! refused {
    ($(#[$doc:meta])* $name:ident, $request:expr, $status:literal, $reason:literal) => {
        refused!($(#[$doc])* $name, $request, $status, $reason, Reached::Nothing);
    };
    ($(#[$doc:meta])* $name:ident, $request:expr, $status:literal, $reason:literal, $reached:expr) => {
        $(#[$doc])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            refused($request, $status, $reason, $reached).await;
        }
    };
}

// ---------------------------------------------------------------------------------
// Request smuggling.
// ---------------------------------------------------------------------------------

refused!(
    /// CL.TE: a front that trusts Content-Length and a back that trusts chunked (or the
    /// other way round) disagree on where the request ends.
    content_length_with_transfer_encoding,
    b"POST / HTTP/1.1\r\nHost: t.test\r\nContent-Length: 37\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "smuggling"
);

refused!(
    /// TE.CL: the same fields in the other order.
    transfer_encoding_with_content_length,
    b"POST / HTTP/1.1\r\nHost: t.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGET /smuggled HTTP/1.1\r\nHost: t.test\r\nContent-Length: 15\r\n\r\nx=1\r\n0\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "smuggling"
);

refused!(
    /// Two Content-Length fields that disagree.
    conflicting_content_lengths,
    b"POST / HTTP/1.1\r\nHost: t.test\r\nContent-Length: 0\r\nContent-Length: 37\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "smuggling"
);

refused!(
    /// One Content-Length field holding a list of different values.
    content_length_list_of_different_values,
    b"POST / HTTP/1.1\r\nHost: t.test\r\nContent-Length: 0, 37\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "smuggling"
);

refused!(
    /// A Content-Length that is not a plain decimal.
    content_length_with_a_sign,
    b"POST / HTTP/1.1\r\nHost: t.test\r\nContent-Length: +37\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "malformed_request"
);

refused!(
    content_length_in_hexadecimal,
    b"POST / HTTP/1.1\r\nHost: t.test\r\nContent-Length: 0x25\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "malformed_request"
);

refused!(
    content_length_with_inner_space,
    b"POST / HTTP/1.1\r\nHost: t.test\r\nContent-Length: 3 7\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "malformed_request"
);

refused!(
    /// A length that overflows 64 bits.
    content_length_overflow,
    b"POST / HTTP/1.1\r\nHost: t.test\r\nContent-Length: 18446744073709551653\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "malformed_request"
);

refused!(
    content_length_empty,
    b"POST / HTTP/1.1\r\nHost: t.test\r\nContent-Length: \r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "malformed_request"
);

refused!(
    /// `chunked` not the final coding: the length cannot be known (RFC 9112 §6.3: 400,
    /// then close).
    chunked_not_last,
    b"POST / HTTP/1.1\r\nHost: t.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "smuggling"
);

refused!(
    /// No `chunked` at all.
    transfer_coding_without_chunked,
    b"POST / HTTP/1.1\r\nHost: t.test\r\nTransfer-Encoding: identity\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "smuggling"
);

refused!(
    /// A look-alike of `chunked`.
    transfer_coding_look_alike,
    b"POST / HTTP/1.1\r\nHost: t.test\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "smuggling"
);

refused!(
    /// `chunked` applied twice (RFC 9112 §6.1 forbids it), in one field.
    chunked_twice,
    b"POST / HTTP/1.1\r\nHost: t.test\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "smuggling"
);

refused!(
    /// The same in two fields.
    chunked_in_two_fields,
    b"POST / HTTP/1.1\r\nHost: t.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "smuggling"
);

refused!(
    /// A coding the gateway does not implement before `chunked`: 501 (RFC 9112 §6.1),
    /// and the connection closes.
    unknown_coding_before_chunked,
    b"POST / HTTP/1.1\r\nHost: t.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n",
    "HTTP/1.1 501 Not Implemented",
    "smuggling"
);

refused!(
    /// Transfer-Encoding in HTTP/1.0, where it does not exist: framing is faulty.
    transfer_encoding_in_http10,
    b"POST / HTTP/1.0\r\nHost: t.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "smuggling"
);

refused!(
    /// A vertical tab after `chunked`: some parsers trim it, others do not.
    transfer_encoding_with_control_byte,
    b"POST / HTTP/1.1\r\nHost: t.test\r\nTransfer-Encoding: chunked\x0b\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "malformed_request"
);

refused!(
    /// Transfer-Encoding hidden by obsolete line folding.
    transfer_encoding_folded,
    b"POST / HTTP/1.1\r\nHost: t.test\r\nContent-Length: 37\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "malformed_request"
);

refused!(
    /// Whitespace between a field name and its colon (RFC 9112 §5.1: 400).
    whitespace_before_colon,
    b"POST / HTTP/1.1\r\nHost: t.test\r\nContent-Length: 37\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "malformed_request"
);

refused!(
    tab_before_colon,
    b"POST / HTTP/1.1\r\nHost: t.test\r\nContent-Length\t: 37\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "malformed_request"
);

// ---------------------------------------------------------------------------------
// Bad chunked encoding.
// ---------------------------------------------------------------------------------

refused!(
    /// 17 hexadecimal digits: more than 64 bits; a parser that wraps reads a small size.
    chunk_size_overflow,
    b"POST / HTTP/1.1\r\nHost: t.test\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000025\r\nGET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n\r\n0\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "smuggling"
);

refused!(
    chunk_size_not_hexadecimal,
    b"POST / HTTP/1.1\r\nHost: t.test\r\nTransfer-Encoding: chunked\r\n\r\n0x25\r\nGET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n\r\n0\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "smuggling"
);

refused!(
    /// A size line ended by a bare LF.
    chunk_size_bare_lf,
    b"POST / HTTP/1.1\r\nHost: t.test\r\nTransfer-Encoding: chunked\r\n\r\n25\nGET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n\r\n0\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "smuggling"
);

refused!(
    /// Chunk data longer than its size (no CRLF where the size says it ends).
    chunk_data_without_crlf,
    b"POST / HTTP/1.1\r\nHost: t.test\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxGET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n0\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "smuggling"
);

refused!(
    /// A bare LF inside a chunk extension.
    chunk_extension_with_lf,
    b"POST / HTTP/1.1\r\nHost: t.test\r\nTransfer-Encoding: chunked\r\n\r\n1;a\nb\r\nx\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "smuggling"
);

/// One chunk size line with a 4000-byte extension before each byte of data.
fn extension_flood(chunks: usize) -> Vec<u8> {
    let mut req = b"POST / HTTP/1.1\r\nHost: t.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..chunks {
        req.extend_from_slice(b"1;");
        req.extend(std::iter::repeat_n(b'e', 4000));
        req.extend_from_slice(b"\r\nx\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    req
}

refused!(
    /// Chunk extensions far larger than the data they come with (RFC 9112 §7.1.1: limit
    /// them): the body limit counts data only, so unbounded extensions would let a
    /// client send gigabytes through a small limit.
    chunk_extension_flood,
    &extension_flood(64),
    "HTTP/1.1 400 Bad Request",
    "smuggling",
    Reached::NoCompleteRequest
);

refused!(
    /// A chunk announcing more than the body limit is refused when announced.
    chunk_larger_than_the_body_limit,
    b"POST / HTTP/1.1\r\nHost: t.test\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nxx",
    "HTTP/1.1 413 Payload Too Large",
    "body_too_large"
);

// ---------------------------------------------------------------------------------
// Malformed heads.
// ---------------------------------------------------------------------------------

refused!(
    obsolete_line_folding,
    b"GET / HTTP/1.1\r\nHost: t.test\r\nX-A: 1\r\n 2\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "malformed_request"
);

refused!(
    /// Whitespace before the first field: a field some parsers glue to the request line.
    whitespace_before_first_field,
    b"GET / HTTP/1.1\r\n Host: t.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "malformed_request"
);

refused!(
    /// A bare CR inside a field value (RFC 9110 §5.5).
    bare_cr_in_field,
    b"GET / HTTP/1.1\r\nHost: t.test\r\nX-A: 1\rTransfer-Encoding: chunked\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "malformed_request"
);

refused!(
    /// A CR before the CRLF.
    bare_cr_before_line_end,
    b"GET / HTTP/1.1\r\nHost: t.test\r\nX-A: 1\r\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "malformed_request"
);

refused!(
    /// A bare LF ends a line here as everywhere in the head, so it cannot hide a field
    /// from the gateway that the server would see.
    bare_lf_cannot_hide_transfer_encoding,
    b"POST / HTTP/1.1\r\nHost: t.test\r\nX-A: 1\nTransfer-Encoding: chunked\r\nContent-Length: 37\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "smuggling"
);

refused!(
    nul_in_field,
    b"GET / HTTP/1.1\r\nHost: t.test\r\nX-A: 1\x002\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "malformed_request"
);

refused!(
    invalid_field_name,
    b"GET / HTTP/1.1\r\nHost: t.test\r\nX(A): 1\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "malformed_request"
);

refused!(
    empty_field_name,
    b"GET / HTTP/1.1\r\nHost: t.test\r\n: 1\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "malformed_request"
);

refused!(
    non_ascii_field_name,
    b"GET / HTTP/1.1\r\nHost: t.test\r\nX-\xc3\xa9: 1\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "malformed_request"
);

refused!(
    missing_host,
    b"GET / HTTP/1.1\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "malformed_request"
);

refused!(
    two_hosts,
    b"GET / HTTP/1.1\r\nHost: t.test\r\nHost: abs.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "malformed_request"
);

refused!(
    invalid_host,
    b"GET / HTTP/1.1\r\nHost: t.test/x\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "malformed_request"
);

refused!(
    double_space_in_request_line,
    b"GET  / HTTP/1.1\r\nHost: t.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "malformed_request"
);

refused!(
    control_byte_in_target,
    b"GET /a\x7fb HTTP/1.1\r\nHost: t.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "malformed_request"
);

refused!(
    fragment_in_target,
    b"GET /a#b HTTP/1.1\r\nHost: t.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "malformed_request"
);

refused!(
    /// Userinfo in an absolute-form target (RFC 9110 §4.2.4).
    absolute_form_with_userinfo,
    b"GET http://user@abs.test/ HTTP/1.1\r\nHost: abs.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "malformed_request"
);

refused!(
    unknown_http_version,
    b"GET / HTTP/2.0\r\nHost: t.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "malformed_request"
);

refused!(
    unsupported_expectation,
    b"POST / HTTP/1.1\r\nHost: t.test\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx",
    "HTTP/1.1 417 Expectation Failed",
    "malformed_request"
);

refused!(
    connect_is_not_proxied,
    b"CONNECT abs.test:443 HTTP/1.1\r\nHost: abs.test:443\r\n\r\n",
    "HTTP/1.1 501 Not Implemented",
    "malformed_request"
);

// ---------------------------------------------------------------------------------
// Size limits, global (4096 header bytes, 16 fields, 256-byte targets, 1024-byte
// bodies) and per route.
// ---------------------------------------------------------------------------------

fn get_with_field(path: &str, value_len: usize) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: t.test\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "v".repeat(value_len)
    )
    .into_bytes()
}

fn get_with_fields(path: &str, n: usize) -> Vec<u8> {
    let mut s = format!("GET {path} HTTP/1.1\r\nHost: t.test\r\nConnection: close\r\n");
    for i in 0..n {
        s.push_str(&format!("X-F{i}: {i}\r\n"));
    }
    s.push_str("\r\n");
    s.into_bytes()
}

fn get_path(path_len: usize, prefix: &str) -> Vec<u8> {
    format!(
        "GET {prefix}{} HTTP/1.1\r\nHost: t.test\r\nConnection: close\r\n\r\n",
        "p".repeat(path_len - prefix.len())
    )
    .into_bytes()
}

fn post(path: &str, body_len: usize) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: t.test\r\nConnection: close\r\nContent-Length: {body_len}\r\n\r\n{}",
        "b".repeat(body_len)
    )
    .into_bytes()
}

fn post_chunked(path: &str, chunks: usize, chunk: usize) -> Vec<u8> {
    let mut s = format!(
        "POST {path} HTTP/1.1\r\nHost: t.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    for _ in 0..chunks {
        s.push_str(&format!("{chunk:x}\r\n{}\r\n", "c".repeat(chunk)));
    }
    s.push_str("0\r\n\r\n");
    s.into_bytes()
}

refused!(
    header_bytes_over_the_limit,
    &get_with_field("/", 5000),
    "HTTP/1.1 431 Request Header Fields Too Large",
    "header_too_large"
);

refused!(
    header_count_over_the_limit,
    &get_with_fields("/", 17),
    "HTTP/1.1 431 Request Header Fields Too Large",
    "too_many_headers"
);

refused!(
    uri_over_the_limit,
    &get_path(300, "/"),
    "HTTP/1.1 414 URI Too Long",
    "uri_too_long"
);

refused!(
    /// A request line that never ends is cut at the target limit, not buffered.
    unterminated_request_line,
    format!("GET /{}", "p".repeat(2000)).as_bytes(),
    "HTTP/1.1 414 URI Too Long",
    "uri_too_long"
);

refused!(
    /// Announced by Content-Length: refused before a byte of the body is read.
    body_over_the_limit,
    format!(
        "POST / HTTP/1.1\r\nHost: t.test\r\nContent-Length: 1025\r\n\r\n{}",
        "b".repeat(16)
    )
    .as_bytes(),
    "HTTP/1.1 413 Payload Too Large",
    "body_too_large"
);

refused!(
    /// With `Expect: 100-continue`, the client hears 413 instead of 100 and never sends
    /// the body.
    body_over_the_limit_with_expect_continue,
    b"POST / HTTP/1.1\r\nHost: t.test\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n",
    "HTTP/1.1 413 Payload Too Large",
    "body_too_large"
);

refused!(
    /// Chunked: refused when the data passes the limit. Bodies stream, so the server
    /// may have had the head and the first chunks, never a complete request.
    chunked_body_over_the_limit,
    &post_chunked("/", 5, 256),
    "HTTP/1.1 413 Payload Too Large",
    "body_too_large",
    Reached::NoCompleteRequest
);

refused!(
    route_header_bytes_over_its_limit,
    &get_with_field("/small", 1100),
    "HTTP/1.1 431 Request Header Fields Too Large",
    "header_too_large"
);

refused!(
    route_header_count_over_its_limit,
    &get_with_fields("/small", 9),
    "HTTP/1.1 431 Request Header Fields Too Large",
    "too_many_headers"
);

refused!(
    route_uri_over_its_limit,
    &get_path(65, "/small/"),
    "HTTP/1.1 414 URI Too Long",
    "uri_too_long"
);

refused!(
    route_body_over_its_limit,
    &post("/small", 17),
    "HTTP/1.1 413 Payload Too Large",
    "body_too_large"
);

refused!(
    route_chunked_body_over_its_limit,
    &post_chunked("/small", 2, 9),
    "HTTP/1.1 413 Payload Too Large",
    "body_too_large"
);

refused!(
    /// A route may allow more than the gateway's default, and no more than it says.
    larger_route_body_limit_still_bounded,
    &post("/upload", 4097),
    "HTTP/1.1 413 Payload Too Large",
    "body_too_large"
);

/// Requests at the limits pass, and what a route refuses passes elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_within_the_limits_pass_on_each_route() {
    let rig = rig(LIMITS).await;
    let ok = [
        get_with_field("/", 3900),
        get_with_fields("/", 14),
        get_path(256, "/"),
        post("/", 1024),
        post_chunked("/", 4, 256),
        // What /small refuses, / accepts.
        get_with_field("/other", 1100),
        get_with_fields("/other", 9),
        get_path(65, "/other/"),
        post("/other", 17),
        // At /small's limits.
        get_with_fields("/small", 6),
        get_path(64, "/small/"),
        post("/small", 16),
        // /upload allows more than the gateway's default.
        post("/upload", 4096),
        post_chunked("/upload", 4, 1024),
    ];
    for (i, req) in ok.iter().enumerate() {
        let o = exchange(rig.web, req).await;
        assert_eq!(
            o.status_line(),
            "HTTP/1.1 200 OK",
            "request {i}: {}",
            o.text()
        );
    }
    let seen = rig.server.seen();
    assert_eq!(seen.len(), ok.len());
    assert_eq!(seen[3].method, "POST");
    assert_eq!(seen[3].body.len(), 1024);
    assert_eq!(seen[4].body.len(), 1024);
    assert_eq!(seen[12].body.len(), 4096);
    assert_eq!(seen[13].body.len(), 4096);
    assert!(nonzero_rejections(&rig, "web").await.is_empty());
}

/// curl, a real client, sees the same answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_sees_414_413_and_431() {
    let rig = rig(LIMITS).await;
    let dir = tempdir();
    let body = dir.path().join("body");
    std::fs::write(&body, vec![b'b'; 2048]).unwrap();
    let web = rig.web;
    let curl = |args: Vec<String>| async move {
        let out = tokio::process::Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "10",
            ])
            .args(args)
            .output()
            .await
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let long = format!("http://{web}/{}", "u".repeat(300));
    assert_eq!(curl(vec![long]).await, "414");
    assert_eq!(
        curl(vec![
            "--data-binary".into(),
            format!("@{}", body.display()),
            format!("http://{web}/")
        ])
        .await,
        "413"
    );
    let mut many = Vec::new();
    for i in 0..20 {
        many.push("-H".to_owned());
        many.push(format!("x-f{i}: {i}"));
    }
    many.push(format!("http://{web}/"));
    assert_eq!(curl(many).await, "431");
    assert_eq!(curl(vec![format!("http://{web}/fine")]).await, "200");
    assert_eq!(rig.server.seen().len(), 1);
}

// ---------------------------------------------------------------------------------
// Over TLS.
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_over_tls_is_refused_the_same_way() {
    let rig = rig(LIMITS).await;
    let o = exchange_tls(
        &rig,
        b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 37\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n",
    )
    .await;
    assert_eq!(o.status_line(), "HTTP/1.1 400 Bad Request");
    assert!(o.closed);
    assert!(rig.server.raw().is_empty());
    assert_eq!(rejections(&rig, "tls", "smuggling").await, 1);
    let o = exchange_tls(&rig, &get_with_fields("/", 17)).await;
    assert_eq!(
        o.status_line(),
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    assert!(o.closed);
    assert_eq!(rejections(&rig, "tls", "too_many_headers").await, 1);
    let o = exchange_tls(
        &rig,
        b"GET /fine HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(o.status_line(), "HTTP/1.1 200 OK");
    assert_eq!(rig.server.seen().len(), 1);
}

// ---------------------------------------------------------------------------------
// How the engine reads what it accepts: HTTP/1.0, absolute form, bare LF, pipelining.
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_without_host_is_served_and_closed() {
    let rig = rig(LIMITS).await;
    let o = exchange(rig.web, b"GET /ten HTTP/1.0\r\n\r\n").await;
    assert_eq!(o.status_line(), "HTTP/1.1 200 OK", "{}", o.text());
    assert_eq!(o.header("connection").as_deref(), Some("close"));
    assert!(o.closed);
    let seen = rig.server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/ten");
    // Forwarded as HTTP/1.1, with the empty Host a request without an authority has
    // (RFC 9110 §7.2).
    assert_eq!(seen[0].version, http::Version::HTTP_11);
    assert_eq!(
        seen[0].headers.get("host").map(|h| h.as_bytes()),
        Some(&b""[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_keep_alive_is_honoured() {
    let rig = rig(LIMITS).await;
    let mut s = connect_from(fresh_source(), rig.web).await;
    for i in 0..2 {
        s.write_all(
            format!("GET /ka{i} HTTP/1.0\r\nHost: t.test\r\nConnection: keep-alive\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let o = read_response(&mut s).await;
        assert_eq!(o.status_line(), "HTTP/1.1 200 OK");
        assert_eq!(o.header("connection").as_deref(), Some("keep-alive"));
    }
    assert_eq!(rig.server.seen().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_expect_continue_is_ignored() {
    let rig = rig(LIMITS).await;
    let mut s = connect_from(fresh_source(), rig.web).await;
    s.write_all(
        b"POST /e HTTP/1.0\r\nHost: t.test\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
    )
    .await
    .unwrap();
    // An HTTP/1.0 client gets no 100 Continue (RFC 9110 §10.1.1); it sends its body
    // when it wants.
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.write_all(b"abc").await.unwrap();
    let o = read_to_close(&mut s).await;
    assert_eq!(o.status_line(), "HTTP/1.1 200 OK", "{}", o.text());
    assert_eq!(rig.server.seen()[0].body, b"abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_routes_by_its_authority() {
    let rig = rig(LIMITS).await;
    let o = exchange(
        rig.web,
        b"GET http://ABS.test/p?q=1 HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(o.status_line(), "HTTP/1.1 200 OK", "{}", o.text());
    let seen = rig.server.seen();
    // The target's authority wins over Host (RFC 9112 §3.2.2); the server gets the
    // origin form.
    assert_eq!(seen[0].target, "/p?q=1");
    assert_eq!(seen[0].headers["host"], "ABS.test");
    assert_eq!(seen[0].headers["x-route"], "abs");
}

// ---------------------------------------------------------------------------------
// Paths that would take one route at the gateway and another at the server.
// ---------------------------------------------------------------------------------

refused!(
    /// `/upload/../small` matches `/upload`'s prefix but names `/small`: its limits
    /// would not apply.
    dot_dot_segment_is_refused,
    b"GET /upload/../small HTTP/1.1\r\nHost: t.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "malformed_request"
);

refused!(
    /// Percent-encoded dots are dots to the server.
    encoded_dot_segment_is_refused,
    b"GET /upload/%2E%2e/small HTTP/1.1\r\nHost: t.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "malformed_request"
);

refused!(
    /// `/%73mall` is `/small` to a server that decodes unreserved characters, but
    /// would take the catch-all route here.
    encoded_path_that_changes_route_is_refused,
    b"GET /%73mall HTTP/1.1\r\nHost: t.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "malformed_request"
);

refused!(
    /// `//small` is `/small` to a server that merges slashes.
    doubled_slash_that_changes_route_is_refused,
    b"GET //small HTTP/1.1\r\nHost: t.test\r\n\r\n",
    "HTTP/1.1 400 Bad Request",
    "malformed_request"
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_paths_that_keep_their_route_are_served_unchanged() {
    let rig = rig(LIMITS).await;
    let o = exchange(
        rig.web,
        b"GET /small/%7Euser//a%2Fb HTTP/1.1\r\nHost: t.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(o.status_line(), "HTTP/1.1 200 OK", "{}", o.text());
    assert_eq!(rig.server.seen()[0].target, "/small/%7Euser//a%2Fb");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_lf_line_ends_are_read_and_sent_on_as_crlf() {
    let rig = rig(LIMITS).await;
    let o = exchange(
        rig.web,
        b"POST /lf HTTP/1.1\nHost: t.test\nContent-Length: 2\nConnection: close\n\nhi",
    )
    .await;
    assert_eq!(o.status_line(), "HTTP/1.1 200 OK", "{}", o.text());
    let raw = String::from_utf8(rig.server.raw()).unwrap();
    assert!(raw.starts_with("POST /lf HTTP/1.1\r\n"), "{raw}");
    assert!(!raw.replace("\r\n", "").contains('\n'), "{raw:?}");
    assert_eq!(rig.server.seen()[0].body, b"hi");
}

/// h2c upgrade smuggling: a proxy that passes `Upgrade: h2c` on lets the client talk
/// HTTP/2 to the server past every rule. The gateway drops the upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upgrade_is_not_passed_on() {
    let rig = rig(LIMITS).await;
    let o = exchange(
        rig.web,
        b"GET / HTTP/1.1\r\nHost: t.test\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings, close\r\n\r\n",
    )
    .await;
    assert_eq!(o.status_line(), "HTTP/1.1 200 OK", "{}", o.text());
    let seen = rig.server.seen();
    for name in ["upgrade", "http2-settings", "connection"] {
        assert!(!seen[0].headers.contains_key(name), "{name} was forwarded");
    }
}

/// Names that read as the gateway's own fields once `_` is read as `-` are not passed
/// on: CGI-style interfaces (WSGI, PHP) map `X_Forwarded_For` and `X-Forwarded-For` to
/// one variable, so a client could spoof its address or the framing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn underscore_aliases_of_forwarding_and_framing_fields_are_dropped() {
    let rig = rig(LIMITS).await;
    let o = exchange(
        rig.web,
        b"POST / HTTP/1.1\r\nHost: t.test\r\nX_Forwarded_For: 203.0.113.1\r\nX_Real_IP: 203.0.113.1\r\nTransfer_Encoding: chunked\r\nContent-Length: 2\r\nConnection: close\r\nX_Custom: kept\r\n\r\nhi",
    )
    .await;
    assert_eq!(o.status_line(), "HTTP/1.1 200 OK", "{}", o.text());
    let raw = String::from_utf8(rig.server.raw())
        .unwrap()
        .to_ascii_lowercase();
    assert!(!raw.contains("x_forwarded_for"), "{raw}");
    assert!(!raw.contains("x_real_ip"), "{raw}");
    assert!(!raw.contains("transfer_encoding"), "{raw}");
    assert!(raw.contains("x_custom: kept"), "{raw}");
    assert!(!raw.contains("203.0.113.1"), "{raw}");
    assert_eq!(rig.server.seen()[0].body, b"hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_after_a_refused_one_are_dropped() {
    let rig = rig(LIMITS).await;
    let o = exchange(
        rig.web,
        b"GET /first HTTP/1.1\r\nHost: t.test\r\n\r\nGET /bad HTTP/1.1\r\nHost: t.test\r\nX(A): 1\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n",
    )
    .await;
    let text = o.text();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert_eq!(
        text.matches("HTTP/1.1 400 Bad Request\r\n").count(),
        1,
        "{text}"
    );
    assert!(o.closed);
    let seen = rig.server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/first");
    assert!(!rig.server.raw().windows(9).any(|w| w == b"/smuggled"));
}

// ---------------------------------------------------------------------------------
// Slow clients. Short deadlines keep these fast; only outcomes are asserted.
// ---------------------------------------------------------------------------------

const SLOW: &str = "  timeouts: {clientHeader: 1s, idle: 1s, clientBody: 500ms, clientWrite: 500ms}\n  limits: {maxHeaderBytes: 4096, maxHeaders: 16, maxUriBytes: 256, maxBodyBytes: 1048576, minBodyRate: 1024, minReadRate: 1024}\n";

/// Slowloris: a head that trickles in a byte at a time never gets past the deadline
/// for the whole head, however steadily it trickles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_at_the_header_deadline() {
    let rig = rig(SLOW).await;
    let mut s = connect_from(fresh_source(), rig.web).await;
    let head = b"GET / HTTP/1.1\r\nHost: t.test\r\nX-Slow: 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz";
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    for &b in head.iter() {
        if s.write_all(&[b]).await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                got.extend_from_slice(&buf[..n]);
                break;
            }
            Err(_) => {}
        }
    }
    let rest = read_to_close(&mut s).await;
    got.extend_from_slice(&rest.bytes);
    let o = Outcome {
        bytes: got,
        closed: rest.closed,
    };
    assert_eq!(
        o.status_line(),
        "HTTP/1.1 408 Request Timeout",
        "{}",
        o.text()
    );
    assert!(o.closed);
    assert!(rig.server.raw().is_empty());
    assert_eq!(rejections(&rig, "web", "slow_header").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_over_tls_is_cut_at_the_header_deadline() {
    let rig = rig(SLOW).await;
    let mut s = tls_connect(&rig).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1\r\n")
        .await
        .unwrap();
    s.flush().await.unwrap();
    let o = read_to_close(&mut s).await;
    assert_eq!(
        o.status_line(),
        "HTTP/1.1 408 Request Timeout",
        "{}",
        o.text()
    );
    assert!(o.closed);
    assert!(rig.server.raw().is_empty());
    assert_eq!(rejections(&rig, "tls", "slow_header").await, 1);
}

/// The next request on a keep-alive connection has the same deadline, from its first
/// byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_second_request_is_cut_too() {
    let rig = rig(SLOW).await;
    let mut s = connect_from(fresh_source(), rig.web).await;
    s.write_all(b"GET /one HTTP/1.1\r\nHost: t.test\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut s).await.status_line(), "HTTP/1.1 200 OK");
    s.write_all(b"GET /two HTTP/1.1\r\nHost: t.test\r\n")
        .await
        .unwrap();
    let o = read_to_close(&mut s).await;
    assert_eq!(
        o.status_line(),
        "HTTP/1.1 408 Request Timeout",
        "{}",
        o.text()
    );
    assert!(o.closed);
    assert_eq!(rig.server.seen().len(), 1);
    assert_eq!(rejections(&rig, "web", "slow_header").await, 1);
}

/// Slow POST: a body slower than `minBodyRate` is cut with 408; the server never gets
/// a complete request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_body_is_cut_below_the_minimum_rate() {
    let rig = rig(SLOW).await;
    let mut s = connect_from(fresh_source(), rig.web).await;
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: t.test\r\nContent-Length: 4000\r\n\r\nstart")
        .await
        .unwrap();
    // 10 bytes a second, far below 1024: at most 100 writes before the cut.
    let mut cut = None;
    let mut buf = [0u8; 1024];
    for _ in 0..100 {
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(n)) => {
                cut = Some(buf[..n].to_vec());
                break;
            }
            Ok(Err(_)) => {
                cut = Some(Vec::new());
                break;
            }
            Err(_) => {}
        }
        if s.write_all(b"b").await.is_err() {
            break;
        }
    }
    let mut got = cut.expect("the slow body was not cut");
    let rest = read_to_close(&mut s).await;
    got.extend_from_slice(&rest.bytes);
    let o = Outcome {
        bytes: got,
        closed: rest.closed,
    };
    assert_eq!(
        o.status_line(),
        "HTTP/1.1 408 Request Timeout",
        "{}",
        o.text()
    );
    assert!(o.closed);
    assert_eq!(rejections(&rig, "web", "slow_body").await, 1);
    // The server got the head but never the whole body.
    assert!(
        common::eventually(WAIT, || async {
            rig.server.seen().iter().all(|s| s.body.len() < 4000)
        })
        .await
    );
}

/// Between requests, a keep-alive connection waits `idle` at most, then is closed
/// without a response (nothing is wrong with it: not counted as a rejection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_silently() {
    let rig = rig(SLOW).await;
    let mut s = connect_from(fresh_source(), rig.web).await;
    s.write_all(b"GET /one HTTP/1.1\r\nHost: t.test\r\n\r\n")
        .await
        .unwrap();
    let o = read_response(&mut s).await;
    assert_eq!(o.status_line(), "HTTP/1.1 200 OK");
    assert!(o.header("connection").is_none());
    let after = read_to_close(&mut s).await;
    assert!(after.closed, "the idle connection was not closed");
    assert!(after.bytes.is_empty(), "{}", after.text());
    assert_eq!(rig.server.seen().len(), 1);
    assert!(nonzero_rejections(&rig, "web").await.is_empty());
}

/// A connection that never sends a byte (a browser's unused preconnection) is closed at
/// the header deadline without a response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_speaks_is_closed_at_the_header_deadline() {
    let rig = rig(SLOW).await;
    let mut s = connect_from(fresh_source(), rig.web).await;
    let o = read_to_close(&mut s).await;
    assert!(o.closed);
    assert!(o.bytes.is_empty(), "{}", o.text());
    assert!(rig.server.raw().is_empty());
}

/// Slow read: a client that stops reading a large response is cut once the gateway
/// has waited `clientWrite` without it taking `minReadRate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_is_cut_after_the_write_deadline() {
    let rig = rig(SLOW).await;
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(fresh_source(), 0)).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut s = sock.connect(rig.web).await.unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: t.test\r\n\r\n")
        .await
        .unwrap();
    // Not reading: the gateway's writes stall until it gives up on this client.
    assert!(
        common::eventually(WAIT, || async {
            rejections(&rig, "web", "slow_read").await == 1
        })
        .await,
        "the slow reader was not cut"
    );
    let o = read_to_close(&mut s).await;
    assert!(o.closed, "the connection was not closed");
    assert!(o.status_line() == "HTTP/1.1 200 OK", "{}", o.status_line());
    assert!(
        o.bytes.len() < BIG,
        "the whole response arrived ({} bytes)",
        o.bytes.len()
    );
}

// ---------------------------------------------------------------------------------
// Offences go to the abuse hook (protection counts them and bans repeat offenders).
// ---------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Offences(Mutex<Vec<(String, IpAddr, Abuse)>>);

impl AbuseObserver for Offences {
    fn observed(&self, listener: &str, peer: SocketAddr, abuse: Abuse) {
        self.0
            .lock()
            .unwrap()
            .push((listener.to_owned(), peer.ip(), abuse));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_offence_is_reported_to_the_abuse_hook_with_its_source() {
    let offences = Arc::new(Offences::default());
    let hooks = Hooks {
        abuse: Some(offences.clone()),
        ..Hooks::default()
    };
    let rig = rig_with(SLOW, hooks).await;
    let cases: [(&[u8], Abuse); 6] = [
        (
            b"POST / HTTP/1.1\r\nHost: t.test\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            Abuse::Smuggling,
        ),
        (b"GET / HTTP/1.1\r\nHost : t.test\r\n\r\n", Abuse::MalformedRequest),
        (&get_with_fields("/", 17), Abuse::TooManyHeaders),
        (&get_with_field("/", 5000), Abuse::HeaderTooLarge),
        (&get_path(300, "/"), Abuse::UriTooLong),
        (
            b"POST / HTTP/1.1\r\nHost: t.test\r\nContent-Length: 2000000\r\n\r\n",
            Abuse::BodyTooLarge,
        ),
    ];
    let mut want = Vec::new();
    for (req, abuse) in cases {
        let src = fresh_source();
        let mut s = connect_from(src, rig.web).await;
        let _ = s.write_all(req).await;
        let o = read_to_close(&mut s).await;
        assert!(o.closed);
        want.push(("web".to_owned(), src, abuse));
    }
    // A slow header too.
    let src = fresh_source();
    let mut s = connect_from(src, rig.web).await;
    s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    assert!(read_to_close(&mut s).await.closed);
    want.push(("web".to_owned(), src, Abuse::SlowHeader));
    assert_eq!(*offences.0.lock().unwrap(), want);
    // And a good request is no offence.
    let o = exchange(
        rig.web,
        b"GET / HTTP/1.1\r\nHost: t.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(o.status_line(), "HTTP/1.1 200 OK");
    assert_eq!(offences.0.lock().unwrap().len(), want.len());
    drop(rig.gw);
}

// ---------------------------------------------------------------------------------
// Bans: protection (on by default) counts these offences per source and bans repeat
// offenders; the ban shows on the admin listener.
// ---------------------------------------------------------------------------------

/// The bans in force, from the admin listener: (cidr, reason).
async fn bans(rig: &Rig) -> Vec<(String, String)> {
    let body = admin_get(rig.admin, "/bans").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["bans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["cidr"].as_str().unwrap().to_owned(),
                b["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A connection from a banned source is closed at accept: no byte of an answer.
async fn refused_at_accept(from: IpAddr, to: SocketAddr) {
    let mut s = connect_from(from, to).await;
    let _ = s
        .write_all(b"GET / HTTP/1.1\r\nHost: t.test\r\nConnection: close\r\n\r\n")
        .await;
    let o = read_to_close(&mut s).await;
    assert!(o.closed);
    assert!(
        o.bytes.is_empty(),
        "a banned source was answered: {}",
        o.text()
    );
}

/// Malformed requests weigh 10 against a threshold of 50 a minute (the defaults): the
/// fifth bans the source; its next connection is closed at accept, other sources are
/// still served, and the ban is listed on the admin listener with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_malformed_requests_ban_the_source() {
    let rig = rig(&format!(
        "{LIMITS}  protection: {{bans: {{enabled: true}}}}\n"
    ))
    .await;
    let src = fresh_source();
    for i in 0..5 {
        let mut s = connect_from(src, rig.web).await;
        s.write_all(format!("GET /{i} HTTP/1.1\r\nHost : t.test\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let o = read_to_close(&mut s).await;
        assert_eq!(o.status_line(), "HTTP/1.1 400 Bad Request", "request {i}");
        assert!(o.closed);
        if i < 4 {
            assert!(
                bans(&rig).await.is_empty(),
                "banned after {} offences",
                i + 1
            );
        }
    }
    assert_eq!(
        bans(&rig).await,
        vec![(format!("{src}/32"), "malformed_request".to_owned())]
    );
    refused_at_accept(src, rig.web).await;
    refused_at_accept(src, rig.tls).await;
    assert_eq!(rejections(&rig, "web", "malformed_request").await, 5);
    // Another source is served.
    let o = exchange(
        rig.web,
        b"GET /fine HTTP/1.1\r\nHost: t.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(o.status_line(), "HTTP/1.1 200 OK");
    assert_eq!(rig.server.seen().len(), 1);
}

/// One smuggling attempt weighs 50: banned at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_smuggling_attempt_bans_the_source() {
    let rig = rig(LIMITS).await;
    let src = fresh_source();
    let mut s = connect_from(src, rig.web).await;
    s.write_all(b"POST / HTTP/1.1\r\nHost: t.test\r\nContent-Length: 37\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n")
        .await
        .unwrap();
    let o = read_to_close(&mut s).await;
    assert_eq!(o.status_line(), "HTTP/1.1 400 Bad Request");
    assert_eq!(
        bans(&rig).await,
        vec![(format!("{src}/32"), "smuggling".to_owned())]
    );
    refused_at_accept(src, rig.web).await;
    assert!(rig.server.raw().is_empty());
}

/// A client still sending a body the gateway refused (its length is over the limit)
/// reads the refusal: the answer leaves before the gateway closes, and the close does
/// not destroy it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upload_still_being_sent_reads_its_answer() {
    let rig = rig(LIMITS).await;
    let mut s = connect_from(fresh_source(), rig.web).await;
    let mut first = b"POST / HTTP/1.1\r\nHost: t.test\r\nContent-Length: 10000000\r\n\r\n".to_vec();
    first.extend_from_slice(&[b'b'; 64 * 1024]);
    s.write_all(&first).await.unwrap();
    // More of the body after the answer; writes fail once the gateway is gone.
    for _ in 0..16 {
        if s.write_all(&[b'b'; 16 * 1024]).await.is_err() {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let o = read_to_close(&mut s).await;
    assert_eq!(
        o.status_line(),
        "HTTP/1.1 413 Payload Too Large",
        "{}",
        o.text()
    );
}
