//! TLS termination and HTTP routing with real clients: a rustls client over hyper, and

#![expect(clippy::unwrap_used, reason = "test helpers panic on setup failures")]
//! curl.

mod common;

use std::time::Duration;

use common::*;

fn config(
    dir: &std::path::Path,
    a: &Cert,
    w: &Cert,
    api: &Backend,
    web: &Backend,
    extra: &str,
) -> std::path::PathBuf {
    let text = format!(
        r#"apiVersion: rampart.dev/v1alpha1
kind: EdgeGateway
metadata: {{name: test}}
spec:
  admin: {{address: "127.0.0.1:0"}}
  accessLog: false
{extra}
  listeners:
    - name: https
      address: "127.0.0.1:0"
      tls:
        certificates:
          - name: api
            certFile: {ac}
            keyFile: {ak}
          - name: apps
            certFile: {wc}
            keyFile: {wk}
      httpRoutes:
        - name: api-v1-get
          match:
            hosts: [api.example.test]
            pathPrefix: /v1
            methods: [GET]
          backend: api
          requestHeaders:
            set: {{x-route: api-v1}}
            remove: [x-remove-me]
          responseHeaders:
            remove: [x-internal]
            add: {{x-edge: rampart}}
        - name: canary
          match:
            hosts: ["*.apps.test"]
            headers: [{{name: x-canary, value: "1"}}]
          backend: api
        - name: apps
          match:
            hosts: ["*.apps.test"]
          backend: web
        - name: moved
          match:
            hosts: [api.example.test]
            pathPrefix: /old
          redirect: {{pathless: true}}
    - name: plain
      address: "127.0.0.1:0"
      httpRoutes:
        - name: to-https
          redirect: {{scheme: https, port: 8443, status: 308}}
  backends:
    - name: api
      servers: [{{address: "{api}"}}]
    - name: web
      servers: [{{address: "{web}"}}]
"#,
        ac = a.cert.display(),
        ak = a.key.display(),
        wc = w.cert.display(),
        wk = w.key.display(),
        api = api.addr,
        web = web.addr,
    )
    // `pathless` is not a field: replaced below by a valid redirect.
    .replace(
        "redirect: {pathless: true}",
        "redirect: {host: new.example.test, status: 302}",
    );
    let path = dir.join("edge.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A gateway on [`config`]: certificates for api.example.test and *.apps.test, the
/// backends "api" and "web". Fields drop in order: the gateway first, the files last.
struct Edge {
    gw: rampart_edge::Gateway,
    _backends: (Backend, Backend),
    a: Cert,
    w: Cert,
    dir: tempfile::TempDir,
}

async fn edge(extra: &str) -> Edge {
    let dir = tempdir();
    let a = write_cert(dir.path(), "api", &["api.example.test"]);
    let w = write_cert(dir.path(), "apps", &["*.apps.test"]);
    let api = Backend::start("api").await;
    let web = Backend::start("web").await;
    let gw = start(&config(dir.path(), &a, &w, &api, &web, extra)).await;
    Edge {
        gw,
        _backends: (api, web),
        a,
        w,
        dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_alpn_routing_and_headers() {
    let e = edge("").await;
    let edge = addr(&e.gw, "https");
    let both = client_config(&[&e.a.pem, &e.w.pem], &["h2", "http/1.1"]);
    let h1 = client_config(&[&e.a.pem, &e.w.pem], &["http/1.1"]);

    // SNI picks the certificate; ALPN picks the protocol.
    let r = https_get(&both, edge, "api.example.test", "/v1/items").await;
    assert_eq!(r.cert, e.a.fingerprint);
    assert_eq!(r.alpn.as_deref(), Some("h2"));
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-served-by"], "api");
    let r = https_get(&h1, edge, "shop.apps.test", "/").await;
    assert_eq!(r.cert, e.w.fingerprint);
    assert_eq!(r.alpn.as_deref(), Some("http/1.1"));
    assert_eq!(r.headers["x-served-by"], "web");
    // A name no certificate covers, and no default: the handshake is refused.
    assert!(
        https(&both, edge, "other.test", "GET", "/", &[])
            .await
            .is_err()
    );

    // Routing by path prefix on segment boundaries, method and header.
    let r = https_get(&both, edge, "api.example.test", "/v1").await;
    assert_eq!(r.status, 200);
    let r = https_get(&both, edge, "api.example.test", "/v10").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body, "no route\n");
    let r = https(&both, edge, "api.example.test", "POST", "/v1/items", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    let r = https(&both, edge, "x.apps.test", "GET", "/", &[("x-canary", "1")])
        .await
        .unwrap();
    assert_eq!(r.headers["x-served-by"], "api");

    // Header edits and forwarding headers: client-supplied ones are replaced.
    let r = https(
        &h1,
        edge,
        "api.example.test",
        "GET",
        "/v1/h",
        &[
            ("x-remove-me", "1"),
            ("x-forwarded-for", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-proto", "http"),
        ],
    )
    .await
    .unwrap();
    assert!(r.body.contains("x-route: api-v1\n"), "{}", r.body);
    assert!(!r.body.contains("x-remove-me"), "{}", r.body);
    assert!(
        r.body.contains("x-forwarded-for: 127.0.0.1\n"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("6.6.6.6"), "{}", r.body);
    assert!(r.body.contains("x-forwarded-proto: https\n"), "{}", r.body);
    assert!(
        r.body
            .contains("forwarded: for=127.0.0.1;proto=https;host=\"api.example.test\"\n"),
        "{}",
        r.body
    );
    assert!(!r.headers.contains_key("x-internal"));
    assert_eq!(r.headers["x-edge"], "rampart");

    // Redirects: to another host, and http to https.
    let r = https_get(&both, edge, "api.example.test", "/old/page?q=1").await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.headers["location"],
        "https://new.example.test/old/page?q=1"
    );
    let r = http_get(addr(&e.gw, "plain"), "site.test", "/a?b=c", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 308);
    assert_eq!(r.headers["location"], "https://site.test:8443/a?b=c");

    // Metrics count by route and status, and handshakes by kind.
    let m = metrics(&e.gw).await;
    assert!(m.contains("rampart_edge_http_requests_total{listener=\"https\",route=\"api-v1-get\",status=\"200\"}"), "{m}");
    assert!(
        m.contains("rampart_edge_tls_handshakes_total{listener=\"https\",kind=\"failed\"} 1"),
        "{m}"
    );
}

async fn https_get(
    c: &std::sync::Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
    sni: &str,
    path: &str,
) -> Reply {
    https(c, addr, sni, "GET", path, &[]).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxies_extend_the_chain() {
    let e = edge("  trustedProxies: [127.0.0.0/8]").await;
    let c = client_config(&[&e.a.pem], &["http/1.1"]);
    let r = https(
        &c,
        addr(&e.gw, "https"),
        "api.example.test",
        "GET",
        "/v1/x",
        &[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=203.0.113.9"),
        ],
    )
    .await
    .unwrap();
    assert!(
        r.body.contains("x-forwarded-for: 203.0.113.9, 127.0.0.1\n"),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("forwarded: for=203.0.113.9, for=127.0.0.1;proto=https"),
        "{}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumption_with_tickets() {
    let e = edge("").await;
    let c = client_config(&[&e.a.pem], &["http/1.1"]);
    let first = https(
        &c,
        addr(&e.gw, "https"),
        "api.example.test",
        "GET",
        "/v1/a",
        &[],
    )
    .await
    .unwrap();
    assert!(!first.resumed);
    let second = https(
        &c,
        addr(&e.gw, "https"),
        "api.example.test",
        "GET",
        "/v1/a",
        &[],
    )
    .await
    .unwrap();
    assert!(second.resumed);
    let m = metrics(&e.gw).await;
    assert!(m.contains("kind=\"resumed\"} 1"), "{m}");
    assert!(m.contains("kind=\"full\"} 1"), "{m}");
}

/// A response after which the connection closes leaves with the TLS close_notify in
/// one write: the read that brings the response also brings the clean closure. The
/// TLS 1.3 session ticket leaves with the response too, not on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_response_and_close_notify_leave_together() {
    let e = edge("").await;
    let c = client_config(&[&e.a.pem], &["http/1.1"]);
    let edge = addr(&e.gw, "https");
    for (path, status) in [("/v1/a", "200"), ("/v10", "404")] {
        let c = c.clone();
        let (response, closed_with_it) = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut tcp = std::net::TcpStream::connect(edge).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let name = rustls::pki_types::ServerName::try_from("api.example.test").unwrap();
            let mut tls = rustls::ClientConnection::new(c, name).unwrap();
            while tls.is_handshaking() {
                tls.complete_io(&mut tcp).unwrap();
            }
            // The session ticket waits for the response: nothing comes before it.
            tcp.set_nonblocking(true).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            let early = tcp.read(&mut [0u8; 1024]);
            assert!(
                matches!(&early, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
                "bytes before the request: {early:?}"
            );
            tcp.set_nonblocking(false).unwrap();
            write!(
                tls.writer(),
                "GET {path} HTTP/1.1\r\nHost: api.example.test\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            while tls.wants_write() {
                tls.write_tls(&mut tcp).unwrap();
            }
            // Reads until the first one that brings response bytes.
            let mut chunk = vec![0u8; 1 << 16];
            loop {
                let n = tcp.read(&mut chunk).unwrap();
                assert!(n > 0, "closed before the response");
                let mut at = &chunk[..n];
                while !at.is_empty() {
                    tls.read_tls(&mut at).unwrap();
                }
                let state = tls.process_new_packets().unwrap();
                if state.plaintext_bytes_to_read() > 0 {
                    let mut response = String::new();
                    let closed = state.peer_has_closed();
                    let _ = tls.reader().read_to_string(&mut response);
                    return (response, closed);
                }
            }
        })
        .await
        .unwrap();
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status} ")),
            "{response}"
        );
        assert!(
            closed_with_it,
            "close_notify came in a later read: {response}"
        );
    }
}

/// curl, as a user would run it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_over_http1_and_http2() {
    let e = edge("").await;
    let port = addr(&e.gw, "https").port();
    let ca = e.dir.path().join("ca.pem");
    std::fs::write(&ca, format!("{}{}", e.a.pem, e.w.pem)).unwrap();
    let body = e.dir.path().join("body.bin");
    std::fs::write(&body, vec![b'x'; 3 << 20]).unwrap();
    let upload = format!("@{}", body.display());
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let text = curl(flag, &ca, port, "/hello", &[]).await;
        assert!(text.starts_with("GET /hello\n"), "{text}");
        assert!(text.ends_with(&format!("200 {version}")), "{text}");

        // A request body larger than the stream's flow-control window reaches the
        // server whole (the window is given back as the body is read).
        let text = curl(flag, &ca, port, "/upload", &["--data-binary", &upload]).await;
        assert!(text.starts_with("POST /upload\n"), "{text}");
        assert!(
            text.contains(&format!("body-bytes: {}\n", 3 << 20)),
            "{text}"
        );
        assert!(text.ends_with(&format!("200 {version}")), "{text}");
    }
}

/// curl `flag` (the HTTP version) against shop.apps.test on the edge's `port`, with
/// `extra` arguments; what it printed, ending with its status and HTTP version. Fails
/// the test if curl fails.
async fn curl(flag: &str, ca: &std::path::Path, port: u16, path: &str, extra: &[&str]) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", flag, "--cacert"])
            .arg(ca)
            .args(["--resolve", &format!("shop.apps.test:{port}:127.0.0.1")])
            .args(extra)
            .args([
                "-w",
                "\n%{http_code} %{http_version}",
                &format!("https://shop.apps.test:{port}{path}"),
            ])
            .output(),
    )
    .await
    .expect("curl timed out")
    .expect("curl must be installed (scripts/install-deps)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {flag} {path}: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}
