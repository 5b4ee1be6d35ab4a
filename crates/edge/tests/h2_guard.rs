//! The HTTP/2 frame guard against real clients: a client doing rapid reset (the `h2`
//! crate as a client) and one flooding PINGs (raw frames over rustls) are cut with a
//! GOAWAY (ENHANCE_YOUR_CALM), counted as `http2_flood`, while an ordinary HTTP/2
//! client on another connection is served; a client that stops reading a large
//! response is cut after the write window (`slow_read`).

#![expect(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn config(dir: &std::path::Path, c: &Cert, backend: &Backend) -> std::path::PathBuf {
    let text = format!(
        r#"apiVersion: rampart.dev/v1alpha1
kind: EdgeGateway
metadata: {{name: h2-guard}}
spec:
  admin: {{address: "127.0.0.1:0"}}
  accessLog: false
  timeouts: {{clientWrite: 1s}}
  limits:
    h2MaxResetsPerSecond: 50
    h2MaxControlFramesPerSecond: 50
  listeners:
    - name: https
      address: "127.0.0.1:0"
      tls:
        certificates:
          - name: site
            certFile: {cert}
            keyFile: {key}
      httpRoutes:
        - name: all
          backend: web
  backends:
    - name: web
      servers: [{{address: "{addr}"}}]
"#,
        cert = c.cert.display(),
        key = c.key.display(),
        addr = backend.addr,
    );
    let path = dir.join("edge.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A TLS connection with ALPN h2 from `source` (attackers come from their own loopback
/// address: the gateway bans sources that flood, and the ordinary client is on
/// 127.0.0.1).
async fn tls(
    config: &Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
    source: &str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let tcp = sock.connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    let name = rustls::pki_types::ServerName::try_from("site.test").unwrap();
    let s = connector.connect(name, tcp).await.unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    s
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Reads frames until a GOAWAY (its error code) or the end of the connection (`None`).
async fn goaway_code<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> Option<u32> {
    loop {
        let mut head = [0u8; 9];
        r.read_exact(&mut head).await.ok()?;
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        r.read_exact(&mut payload).await.ok()?;
        if head[3] == 0x7 && len >= 8 {
            return Some(u32::from_be_bytes([
                payload[4], payload[5], payload[6], payload[7],
            ]));
        }
    }
}

/// An ordinary client on its own connection is served.
async fn served(cc: &Arc<rustls::ClientConfig>, addr: std::net::SocketAddr) {
    let r = https(cc, addr, "site.test", "GET", "/fine", &[])
        .await
        .unwrap();
    assert_eq!(r.alpn.as_deref(), Some("h2"));
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-served-by"], "web");
}

async fn floods_counted(gw: &rampart_edge::Gateway) -> u64 {
    rejections(gw, "http2_flood").await
}

async fn rejections(gw: &rampart_edge::Gateway, reason: &str) -> u64 {
    let m = metrics(gw).await;
    let prefix = format!("rampart_edge_rejections_total{{listener=\"https\",reason=\"{reason}\"}}");
    m.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn rapid_reset_is_cut_with_goaway_and_others_are_served() {
    let dir = tempdir();
    let c = write_cert(dir.path(), "site", &["site.test"]);
    let web = Backend::start("web").await;
    let gw = start(&config(dir.path(), &c, &web)).await;
    let addr = addr(&gw, "https");
    let cc = client_config(&[&c.pem], &["h2"]);

    served(&cc, addr).await;

    let io = tls(&cc, addr, "127.0.0.2").await;
    let (send, conn) = h2::client::handshake(io).await.unwrap();
    let conn = tokio::spawn(async move {
        tokio::time::timeout(Duration::from_secs(10), conn)
            .await
            .expect("the gateway did not close the connection")
    });
    // Open and cancel streams as fast as the client can: bounded in count.
    let mut opened = 0;
    for _ in 0..5_000 {
        let Ok(mut ready) = send.clone().ready().await else {
            break;
        };
        let req = http::Request::get("https://site.test/slow")
            .body(())
            .unwrap();
        let Ok((_resp, mut stream)) = ready.send_request(req, false) else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
        opened += 1;
        tokio::task::yield_now().await;
    }
    let err = conn
        .await
        .unwrap()
        .expect_err("the connection ended without an error");
    assert!(err.is_go_away(), "not a GOAWAY: {err:?}");
    assert_eq!(err.reason(), Some(h2::Reason::ENHANCE_YOUR_CALM), "{err:?}");
    assert!(opened < 5_000, "all {opened} streams were accepted");

    assert!(floods_counted(&gw).await >= 1);
    served(&cc, addr).await;
    gw.drain().await;
}

#[tokio::test]
async fn ping_and_settings_floods_are_cut_with_goaway() {
    let dir = tempdir();
    let c = write_cert(dir.path(), "site", &["site.test"]);
    let web = Backend::start("web").await;
    let gw = start(&config(dir.path(), &c, &web)).await;
    let addr = addr(&gw, "https");
    let cc = client_config(&[&c.pem], &["h2"]);

    for (kind, payload, source) in [
        (0x6u8, vec![0u8; 8], "127.0.0.3"),
        (0x4, vec![], "127.0.0.4"),
    ] {
        let mut io = tls(&cc, addr, source).await;
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(0x4, 0, 0, &[]));
        // 1,000 frames: far above a burst of 100 at 50 per second.
        for _ in 0..1_000 {
            bytes.extend(frame(kind, 0, 0, &payload));
        }
        // The gateway may cut the connection before it has read everything.
        let _ = io.write_all(&bytes).await;
        let _ = io.flush().await;
        let code = tokio::time::timeout(Duration::from_secs(10), goaway_code(&mut io))
            .await
            .expect("the gateway did not close the connection");
        assert_eq!(code, Some(ENHANCE_YOUR_CALM), "frame type {kind}");
        // And then the connection ends.
        let mut rest = Vec::new();
        let end = tokio::time::timeout(Duration::from_secs(5), io.read_to_end(&mut rest)).await;
        assert!(end.is_ok(), "the connection stayed open after the GOAWAY");
        served(&cc, addr).await;
    }
    assert!(floods_counted(&gw).await >= 2);
    gw.drain().await;
}

#[tokio::test]
async fn an_ordinary_client_with_many_streams_is_not_cut() {
    let dir = tempdir();
    let c = write_cert(dir.path(), "site", &["site.test"]);
    let web = Backend::start("web").await;
    let gw = start(&config(dir.path(), &c, &web)).await;
    let addr = addr(&gw, "https");
    let cc = client_config(&[&c.pem], &["h2"]);

    let io = tls(&cc, addr, "127.0.0.1").await;
    let (send, conn) = h2::client::handshake(io).await.unwrap();
    let conn = tokio::spawn(conn);
    // 500 requests, 50 at a time, each read to its end.
    for _ in 0..10 {
        let mut waits = Vec::new();
        for i in 0..50 {
            let mut ready = send.clone().ready().await.unwrap();
            let req = http::Request::get(format!("https://site.test/n{i}"))
                .body(())
                .unwrap();
            let (resp, _) = ready.send_request(req, true).unwrap();
            waits.push(resp);
        }
        for w in waits {
            let resp = w.await.unwrap();
            assert_eq!(resp.status(), 200);
            let mut body = resp.into_body();
            while let Some(d) = body.data().await {
                let d = d.unwrap();
                body.flow_control().release_capacity(d.len()).unwrap();
            }
        }
    }
    drop(send);
    assert!(!conn.is_finished());
    assert_eq!(floods_counted(&gw).await, 0);
    gw.drain().await;
}

/// Paths with dot segments are refused over HTTP/2 as over HTTP/1.1, before routing.
#[tokio::test]
async fn dot_segments_are_refused_over_http2() {
    let dir = tempdir();
    let c = write_cert(dir.path(), "site", &["site.test"]);
    let web = Backend::start("web").await;
    let gw = start(&config(dir.path(), &c, &web)).await;
    let addr = addr(&gw, "https");
    let cc = client_config(&[&c.pem], &["h2"]);
    for path in ["/a/../fine", "/a/%2e%2E/fine", "/./fine"] {
        let r = https(&cc, addr, "site.test", "GET", path, &[])
            .await
            .unwrap();
        assert_eq!(r.alpn.as_deref(), Some("h2"));
        assert_eq!(r.status, 400, "{path}");
        assert!(!r.headers.contains_key("x-served-by"), "{path}");
    }
    served(&cc, addr).await;
    gw.drain().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut() {
    let dir = tempdir();
    let c = write_cert(dir.path(), "site", &["site.test"]);
    let web = Backend::start("web").await;
    let gw = start(&config(dir.path(), &c, &web)).await;
    let addr = addr(&gw, "https");
    let cc = client_config(&[&c.pem], &["h2"]);

    // A 16 kB window that the client never opens again: the gateway has 4 MiB for it.
    let io = tls(&cc, addr, "127.0.0.5").await;
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(16 * 1024)
        .handshake::<_, bytes::Bytes>(io)
        .await
        .unwrap();
    let conn = tokio::spawn(async move {
        tokio::time::timeout(Duration::from_secs(15), conn)
            .await
            .expect("the gateway kept a client that does not read")
    });
    let mut ready = send.ready().await.unwrap();
    let req = http::Request::get("https://site.test/big")
        .body(())
        .unwrap();
    let (resp, _) = ready.send_request(req, true).unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    // Hold the body without reading it (no capacity is released).
    let _body = resp.into_body();
    let _ = conn.await.unwrap();
    assert!(rejections(&gw, "slow_read").await >= 1);
    served(&cc, addr).await;
    gw.drain().await;
}
