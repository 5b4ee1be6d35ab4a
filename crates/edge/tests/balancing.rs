//! Load balancing, health checks, passive ejection and retries, against real backends.

#![expect(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use std::time::Duration;

use common::*;

fn write(dir: &std::path::Path, backend_yaml: &str, listener_extra: &str) -> std::path::PathBuf {
    let text = format!(
        r#"apiVersion: rampart.dev/v1alpha1
kind: EdgeGateway
metadata: {{name: lb}}
spec:
  admin: {{address: "127.0.0.1:0"}}
  accessLog: false
  listeners:
    - name: web
      address: "127.0.0.1:0"
{listener_extra}
      httpRoutes:
        - name: all
          backend: pool
  backends:
    - name: pool
{backend_yaml}
"#
    );
    let path = dir.join("edge.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn served_by(gw: &rampart_edge::Gateway, path: &str, n: usize) -> Vec<String> {
    let web = addr(gw, "web");
    let mut out = Vec::new();
    for _ in 0..n {
        let r = http_get(web, "lb.test", path, &[]).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        out.push(r.headers["x-served-by"].to_str().unwrap().to_owned());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_is_exact() {
    let dir = tempdir();
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let cfg = format!(
        "      balance: roundRobin\n      servers:\n        - {{address: \"{}\", weight: 3}}\n        - {{address: \"{}\", weight: 1}}",
        a.addr, b.addr
    );
    let gw = start(&write(dir.path(), &cfg, "")).await;
    let ids = served_by(&gw, "/", 200).await;
    let t = tally(ids.iter().map(String::as_str));
    assert_eq!(t["a"], 150);
    assert_eq!(t["b"], 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_and_power_of_two_avoid_busy_servers() {
    for balance in ["leastConnections", "powerOfTwo"] {
        let dir = tempdir();
        let a = Backend::start("a").await;
        let b = Backend::start("b").await;
        let cfg = format!(
            "      balance: {balance}\n      servers:\n        - {{address: \"{}\"}}\n        - {{address: \"{}\"}}",
            a.addr, b.addr
        );
        let gw = start(&write(dir.path(), &cfg, "")).await;
        let web = addr(&gw, "web");
        // Six requests held by the servers, started one at a time, each in flight at
        // its server before the next starts: each goes to the server with fewer.
        let mut slow = Vec::new();
        for i in 0..6u64 {
            slow.push(tokio::spawn(async move {
                http_get(web, "lb.test", "/hold", &[]).await.unwrap()
            }));
            let arrived = eventually(Duration::from_secs(10), || {
                let (a, b) = (a.clone(), b.clone());
                async move {
                    a.held.load(std::sync::atomic::Ordering::SeqCst)
                        + b.held.load(std::sync::atomic::Ordering::SeqCst)
                        == i + 1
                }
            })
            .await;
            assert!(arrived, "{balance}: request {i} did not reach a server");
        }
        // Three and three: neither server took two while the other had fewer.
        assert_eq!(
            a.held.load(std::sync::atomic::Ordering::SeqCst),
            3,
            "{balance}"
        );
        assert_eq!(
            b.held.load(std::sync::atomic::Ordering::SeqCst),
            3,
            "{balance}"
        );
        let quick = served_by(&gw, "/", 20).await;
        a.release();
        b.release();
        let mut slow_ids = Vec::new();
        for s in slow {
            slow_ids.push(
                s.await.unwrap().headers["x-served-by"]
                    .to_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        let slow_t = tally(slow_ids.iter().map(String::as_str));
        assert_eq!(slow_t.get("a"), Some(&3), "{balance}: {slow_t:?}");
        assert_eq!(slow_t.get("b"), Some(&3), "{balance}: {slow_t:?}");
        let quick_t = tally(quick.iter().map(String::as_str));
        // Quick requests (sequential, each finishing before the next) balance too.
        assert_eq!(quick_t.values().sum::<usize>(), 20, "{balance}");
        assert!(quick_t.len() == 2, "{balance}: {quick_t:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_prefers_the_idle_server() {
    let dir = tempdir();
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let cfg = format!(
        "      balance: leastConnections\n      servers:\n        - {{address: \"{}\"}}\n        - {{address: \"{}\"}}",
        a.addr, b.addr
    );
    let gw = start(&write(dir.path(), &cfg, "")).await;
    let web = addr(&gw, "web");
    // One held request pins one server; every quick request meanwhile goes to the other.
    let slow = tokio::spawn(async move { http_get(web, "lb.test", "/hold", &[]).await.unwrap() });
    let (ha, hb) = (a.held.clone(), b.held.clone());
    let arrived = eventually(Duration::from_secs(10), || {
        let (ha, hb) = (ha.clone(), hb.clone());
        async move {
            ha.load(std::sync::atomic::Ordering::SeqCst)
                + hb.load(std::sync::atomic::Ordering::SeqCst)
                == 1
        }
    })
    .await;
    assert!(arrived, "the held request did not reach a server");
    let quick = served_by(&gw, "/", 10).await;
    a.release();
    b.release();
    let busy = slow.await.unwrap().headers["x-served-by"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(quick.iter().all(|q| *q != busy), "{busy} {quick:?}");
}

/// PROXY protocol from a trusted balancer gives each connection its client address;
/// the consistent hash keeps each client on one server and spreads clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_on_client_address() {
    use tokio::io::AsyncWriteExt;
    let dir = tempdir();
    let servers = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let cfg = format!(
        "      balance: consistentHash\n      servers:\n{}",
        servers
            .iter()
            .map(|s| format!("        - {{address: \"{}\"}}\n", s.addr))
            .collect::<String>()
    );
    let gw = start(&write(
        dir.path(),
        &cfg,
        "      acceptProxyProtocol: {from: [127.0.0.1/32]}",
    ))
    .await;
    let web = addr(&gw, "web");
    let mut first = std::collections::HashMap::new();
    for round in 0..3 {
        for i in 0..60u8 {
            let client: std::net::SocketAddr = format!("198.51.100.{i}:40000").parse().unwrap();
            let mut tcp = tokio::net::TcpStream::connect(web).await.unwrap();
            tcp.write_all(&rampart_edge::proxy_protocol::encode(client, web))
                .await
                .unwrap();
            let r = http_get_on(tcp, "lb.test", "/", &[]).await.unwrap();
            assert!(
                r.body
                    .contains(&format!("x-forwarded-for: 198.51.100.{i}\n")),
                "{}",
                r.body
            );
            let id = r.headers["x-served-by"].to_str().unwrap().to_owned();
            if round == 0 {
                first.insert(i, id);
            } else {
                assert_eq!(first[&i], id, "client {i} moved");
            }
        }
    }
    let t = tally(first.values().map(String::as_str));
    assert_eq!(t.len(), 3, "{t:?}");
    assert!(t.values().all(|n| *n >= 8), "{t:?}");
    // Without a PROXY header the trusted-only listener refuses the connection.
    assert!(http_get(web, "lb.test", "/", &[]).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_eject_and_restore() {
    let dir = tempdir();
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let cfg = format!(
        "      servers:\n        - {{address: \"{}\"}}\n        - {{address: \"{}\"}}\n      healthCheck:\n        http: {{path: /healthz, expectStatus: [200]}}\n        interval: 100ms\n        timeout: 500ms\n        rise: 2\n        fall: 2",
        a.addr, b.addr
    );
    let gw = start(&write(dir.path(), &cfg, "")).await;
    b.health.store(503, std::sync::atomic::Ordering::Relaxed);
    let label = b.addr.to_string();
    let down = eventually(Duration::from_secs(5), || async {
        metrics(&gw).await.contains(&format!(
            "rampart_edge_backend_server_healthy{{backend=\"pool\",server=\"{label}\"}} 0"
        ))
    })
    .await;
    assert!(down, "b never marked unhealthy");
    let ids = served_by(&gw, "/", 20).await;
    assert!(ids.iter().all(|i| i == "a"), "{ids:?}");
    b.health.store(200, std::sync::atomic::Ordering::Relaxed);
    let up = eventually(Duration::from_secs(5), || async {
        metrics(&gw).await.contains(&format!(
            "rampart_edge_backend_server_healthy{{backend=\"pool\",server=\"{label}\"}} 1"
        ))
    })
    .await;
    assert!(up, "b never recovered");
    let ids = served_by(&gw, "/", 20).await;
    assert_eq!(tally(ids.iter().map(String::as_str)).len(), 2, "{ids:?}");
    // Both unhealthy: fail closed with 503.
    a.health.store(500, std::sync::atomic::Ordering::Relaxed);
    b.health.store(500, std::sync::atomic::Ordering::Relaxed);
    let web = addr(&gw, "web");
    let closed = eventually(Duration::from_secs(5), || async {
        http_get(web, "lb.test", "/", &[]).await.unwrap().status == 503
    })
    .await;
    assert!(closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_and_passive_ejection_on_a_dead_server() {
    let dir = tempdir();
    let a = Backend::start("a").await;
    // A port that refuses connections: bound then closed.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let cfg = format!(
        "      retries: 1\n      passiveEjection: {{consecutiveFailures: 3, ejectFor: 30s}}\n      servers:\n        - {{address: \"{}\"}}\n        - {{address: \"{dead}\"}}",
        a.addr
    );
    let gw = start(&write(dir.path(), &cfg, "")).await;
    // Every GET succeeds: a connect failure is retried on the other server.
    let ids = served_by(&gw, "/", 20).await;
    assert!(ids.iter().all(|i| i == "a"));
    let m = metrics(&gw).await;
    assert!(
        m.contains(&format!(
            "rampart_edge_backend_server_ejections_total{{backend=\"pool\",server=\"{dead}\"}} 1"
        )),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "rampart_edge_backend_server_healthy{{backend=\"pool\",server=\"{dead}\"}} 0"
        )),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_retry_without_budget_gives_502() {
    let dir = tempdir();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let cfg = format!("      retries: 0\n      servers:\n        - {{address: \"{dead}\"}}");
    let gw = start(&write(dir.path(), &cfg, "")).await;
    let r = http_get(addr(&gw, "web"), "lb.test", "/", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 502);
    assert_eq!(r.body, "bad gateway\n");
}

/// A server that closes every connection right after its response (without saying so):
/// the pooled connection is dead when the next request comes, and the gateway must
/// notice and use a fresh one rather than fail the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_closed_by_the_server_are_not_reused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nx-served-by: closer\r\n\r\nok\n",
                    )
                    .await;
                // Close without "Connection: close".
            });
        }
    });
    let dir = tempdir();
    let cfg = format!("      servers:\n        - {{address: \"{server}\"}}");
    let gw = start(&write(dir.path(), &cfg, "")).await;
    let web = addr(&gw, "web");
    // Sequential requests on one client connection, so that each finds the previous
    // (now closed) server connection in the pool.
    let tcp = tokio::net::TcpStream::connect(web).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    for _ in 0..20 {
        send.ready().await.unwrap();
        let req = http::Request::get("/")
            .header("host", "lb.test")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::Relaxed), 20);
}

/// A keep-alive server: its connections are pooled and reused across client
/// connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_connections_are_reused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                loop {
                    while let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        got.drain(..end + 4);
                        if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n")
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    let dir = tempdir();
    let cfg = format!("      servers:\n        - {{address: \"{server}\"}}");
    let gw = start(&write(dir.path(), &cfg, "")).await;
    let web = addr(&gw, "web");
    for _ in 0..30 {
        // A new client connection each time, one request each, one after another.
        assert_eq!(
            http_get(web, "lb.test", "/", &[]).await.unwrap().status,
            200
        );
    }
    // One pool per server, shared by the worker threads: a handful of server
    // connections at most, far fewer than 30.
    let n = accepted.load(std::sync::atomic::Ordering::Relaxed);
    assert!(n <= 3, "{n} server connections for 30 sequential requests");
}
