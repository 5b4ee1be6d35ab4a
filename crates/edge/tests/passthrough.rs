//! TCP routes: TLS passed through by SNI (the client verifies the backend's own

#![expect(clippy::unwrap_used, reason = "test helpers panic on setup failures")]
//! certificate end to end), by port, and PROXY protocol v2 towards servers.

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TLS server with its own certificate (the "API server").
async fn tls_backend(
    names: &[&str],
    id: &'static str,
) -> (std::net::SocketAddr, String, rampart_tls::Fingerprint) {
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    let ss = rampart_tls::self_signed(&names).unwrap();
    let store =
        rampart_tls::CertStore::new(&[rampart_tls::CertEntry::new(ss.identity.clone())], Some(0))
            .unwrap();
    let config = rampart_tls::server_config(
        rampart_tls::SniResolver::new(store),
        &rampart_tls::ServerSettings {
            alpn: vec![b"http/1.1".to_vec()],
            ..Default::default()
        },
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |_req| async move {
                    let mut r = http::Response::new(http_body_util::Full::new(
                        bytes::Bytes::from_static(b"from the api server\n"),
                    ));
                    r.headers_mut()
                        .insert("x-served-by", http::HeaderValue::from_static(id));
                    Ok::<_, std::convert::Infallible>(r)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, ss.cert_pem, ss.identity.fingerprint())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_passthrough_beside_termination_and_by_port() {
    let dir = tempdir();
    let edge_cert = write_cert(dir.path(), "edge", &["www.example.test"]);
    let (kube, kube_pem, kube_fp) = tls_backend(&["kube.example.test"], "apiserver").await;
    let web = Backend::start("web").await;
    let text = format!(
        r#"apiVersion: rampart.dev/v1alpha1
kind: EdgeGateway
metadata: {{name: pt}}
spec:
  accessLog: false
  listeners:
    - name: https
      address: "127.0.0.1:0"
      tls:
        certificates: [{{certFile: {c}, keyFile: {k}}}]
      tcpRoutes:
        - name: kube-by-sni
          sni: [kube.example.test]
          backend: apiserver
      httpRoutes:
        - name: web
          backend: web
    - name: kube
      address: "127.0.0.1:0"
      mode: tcp
      tcpRoutes:
        - name: kube-by-port
          backend: apiserver
  backends:
    - name: apiserver
      servers: [{{address: "{kube}"}}]
      healthCheck: {{tcp: {{}}, interval: 1s}}
    - name: web
      servers: [{{address: "{web}"}}]
"#,
        c = edge_cert.cert.display(),
        k = edge_cert.key.display(),
        kube = kube,
        web = web.addr
    );
    let path = dir.path().join("edge.yaml");
    std::fs::write(&path, text).unwrap();
    let gw = start(&path).await;

    // The client trusts only the API server's certificate: passthrough keeps TLS end to
    // end, so verification succeeds and the certificate is the backend's, not the edge's.
    let kube_only = client_config(&[&kube_pem], &["http/1.1"]);
    for listener in ["https", "kube"] {
        let r = https(
            &kube_only,
            addr(&gw, listener),
            "kube.example.test",
            "GET",
            "/version",
            &[],
        )
        .await
        .unwrap();
        assert_eq!(r.cert, kube_fp, "{listener}");
        assert_eq!(r.headers["x-served-by"], "apiserver");
    }
    // Other names on the https listener are terminated by the edge.
    let edge_only = client_config(&[&edge_cert.pem], &["h2", "http/1.1"]);
    let r = https(
        &edge_only,
        addr(&gw, "https"),
        "www.example.test",
        "GET",
        "/",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(r.cert, edge_cert.fingerprint);
    assert_eq!(r.headers["x-served-by"], "web");
    // A client trusting only the edge cannot be fooled into the API server: it fails.
    assert!(
        https(
            &edge_only,
            addr(&gw, "https"),
            "kube.example.test",
            "GET",
            "/",
            &[]
        )
        .await
        .is_err()
    );

    // Plain bytes on the SNI-routing listener are not TLS: closed.
    let mut raw = tokio::net::TcpStream::connect(addr(&gw, "https"))
        .await
        .unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let n =
        tokio::time::timeout(std::time::Duration::from_secs(5), raw.read_to_end(&mut buf)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "{n:?} {buf:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_v2_to_servers() {
    // A server that reads a PROXY header and answers with the client address it names.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 256];
                loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    match rampart_edge::proxy_protocol::parse(&buf) {
                        rampart_edge::proxy_protocol::Parse::NeedMore => continue,
                        rampart_edge::proxy_protocol::Parse::Header(h)
                            if buf.len() >= h.len + 5 =>
                        {
                            let (src, _) = h.addresses.unwrap();
                            let rest = String::from_utf8_lossy(&buf[h.len..]).into_owned();
                            let _ = s
                                .write_all(format!("client={} first={rest}", src.ip()).as_bytes())
                                .await;
                            return;
                        }
                        rampart_edge::proxy_protocol::Parse::Header(_) => continue,
                        rampart_edge::proxy_protocol::Parse::Invalid(_) => return,
                    }
                }
            });
        }
    });
    let dir = tempdir();
    let text = format!(
        "apiVersion: rampart.dev/v1alpha1\nkind: EdgeGateway\nmetadata: {{name: pp}}\nspec:\n  listeners:\n    - name: l4\n      address: \"127.0.0.1:0\"\n      mode: tcp\n      tcpRoutes: [{{backend: s}}]\n  backends:\n    - name: s\n      proxyProtocol: true\n      servers: [{{address: \"{server}\"}}]\n"
    );
    let path = dir.path().join("edge.yaml");
    std::fs::write(&path, text).unwrap();
    let gw = start(&path).await;
    let mut c = tokio::net::TcpStream::connect(addr(&gw, "l4"))
        .await
        .unwrap();
    c.write_all(b"hello").await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        c.read_to_string(&mut out),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(out, "client=127.0.0.1 first=hello");
}

/// TLS towards servers: verified against the backend's CA, with the configured name;
/// a server whose certificate the CA did not sign is not used (502).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_servers_is_verified() {
    let dir = tempdir();
    let (server, server_pem, _) = tls_backend(&["api.internal"], "tls-server").await;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &server_pem).unwrap();
    let other = write_cert(dir.path(), "other", &["api.internal"]);
    let text = format!(
        "apiVersion: rampart.dev/v1alpha1\nkind: EdgeGateway\nmetadata: {{name: up}}\nspec:\n  listeners:\n    - name: web\n      address: \"127.0.0.1:0\"\n      httpRoutes:\n        - {{name: good, match: {{pathPrefix: /good}}, backend: good}}\n        - {{name: bad, backend: bad}}\n  backends:\n    - name: good\n      tls: {{caFile: {ca}, serverName: api.internal}}\n      servers: [{{address: \"{server}\"}}]\n    - name: bad\n      retries: 0\n      tls: {{caFile: {other}, serverName: api.internal}}\n      servers: [{{address: \"{server}\"}}]\n",
        ca = ca.display(),
        other = other.cert.display(),
    );
    let path = dir.path().join("edge.yaml");
    std::fs::write(&path, text).unwrap();
    let gw = start(&path).await;
    let web = addr(&gw, "web");
    for _ in 0..3 {
        let r = http_get(web, "site.test", "/good", &[]).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.headers["x-served-by"], "tls-server");
    }
    let r = http_get(web, "site.test", "/other", &[]).await.unwrap();
    assert_eq!(r.status, 502);
}

/// PROXY v2 in from a trusted balancer and out to an HTTP server: the server learns the
/// original client's address through both hops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_through_http_routes() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let rampart_edge::proxy_protocol::Parse::Header(h) =
                        rampart_edge::proxy_protocol::parse(&buf)
                        && buf[h.len..].windows(4).any(|w| w == b"\r\n\r\n")
                    {
                        let (src, _) = h.addresses.unwrap();
                        let body = format!("client={}\n", src.ip());
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = s.write_all(resp.as_bytes()).await;
                        return;
                    }
                }
            });
        }
    });
    let dir = tempdir();
    let text = format!(
        "apiVersion: rampart.dev/v1alpha1\nkind: EdgeGateway\nmetadata: {{name: pp}}\nspec:\n  listeners:\n    - name: web\n      address: \"127.0.0.1:0\"\n      acceptProxyProtocol: {{from: [127.0.0.1/32]}}\n      httpRoutes: [{{backend: s}}]\n  backends:\n    - name: s\n      proxyProtocol: true\n      servers: [{{address: \"{server}\"}}]\n"
    );
    let path = dir.path().join("edge.yaml");
    std::fs::write(&path, text).unwrap();
    let gw = start(&path).await;
    let web = addr(&gw, "web");
    for i in 1..=3u8 {
        let client: std::net::SocketAddr = format!("203.0.113.{i}:5000").parse().unwrap();
        let mut tcp = tokio::net::TcpStream::connect(web).await.unwrap();
        tcp.write_all(&rampart_edge::proxy_protocol::encode(client, web))
            .await
            .unwrap();
        let r = http_get_on(tcp, "site.test", "/", &[]).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, format!("client=203.0.113.{i}\n"));
    }
}
