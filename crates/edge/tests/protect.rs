//! Edge protection end to end: allow and deny lists, per-source connection limits,
//! the global connection cap, request limits (429 with Retry-After, tarpit), bans from
//! offences and on the admin listener, and the bound on tracked sources. Clients bind
//! to distinct 127.x.y.z addresses, so each is its own source.

#![expect(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rampart_edge::Gateway;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use common::*;

async fn connect_from(src: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{src}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

/// Reads one response head (and a short body) from a keep-alive connection; `None`
/// when the gateway closed the connection without answering.
async fn read_response(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => 0,
            Err(_) => panic!("no answer within 10 s"),
        };
        if n == 0 {
            return (!buf.is_empty()).then(|| String::from_utf8_lossy(&buf).into_owned());
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return Some(text);
            }
        }
    }
}

async fn request_on(s: &mut TcpStream, path: &str, extra: &str) -> Option<String> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return None;
    }
    read_response(s).await
}

/// One request on a new connection from `src`.
async fn get(src: &str, to: SocketAddr, path: &str, extra: &str) -> Option<String> {
    let mut s = connect_from(src, to).await;
    request_on(&mut s, path, extra).await
}

fn status(r: &Option<String>) -> Option<u16> {
    r.as_ref()
        .and_then(|t| t.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
}

fn header<'a>(r: &'a Option<String>, name: &str) -> Option<&'a str> {
    r.as_ref()?.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

struct Setup {
    _dir: tempfile::TempDir,
    _backend: Backend,
    gw: Gateway,
    web: SocketAddr,
    admin: SocketAddr,
}

async fn setup(protection: &str) -> Setup {
    let backend = Backend::start("b1").await;
    let dir = tempdir();
    let path = dir.path().join("edge.yaml");
    let cert = write_cert(dir.path(), "tls", &["localhost"]);
    std::fs::write(
        &path,
        format!(
            r#"apiVersion: rampart.dev/v1alpha1
kind: EdgeGateway
metadata: {{name: protect}}
spec:
  admin: {{address: "127.0.0.1:0"}}
  accessLog: false
  listeners:
    - name: web
      address: "127.0.0.1:0"
      httpRoutes:
        - {{name: api, match: {{pathPrefix: /api}}, backend: app}}
        - {{name: other, backend: app}}
    - name: tls
      address: "127.0.0.1:0"
      tls:
        certificates: [{{certFile: "{}", keyFile: "{}"}}]
      httpRoutes:
        - {{name: secure, backend: app}}
  backends:
    - name: app
      servers: [{{address: "{}"}}]
  protection:
{protection}"#,
            cert.cert.display(),
            cert.key.display(),
            backend.addr
        ),
    )
    .unwrap();
    let gw = start(&path).await;
    let web = addr(&gw, "web");
    let admin = addr(&gw, "admin");
    Setup {
        _dir: dir,
        _backend: backend,
        gw,
        web,
        admin,
    }
}

async fn admin_call(
    admin: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    let mut s = TcpStream::connect(admin).await.unwrap();
    let req = match body {
        Some(b) => format!(
            "{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ),
        None => format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"),
    };
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_owned())
        .unwrap_or_default();
    (code, body)
}

async fn metric(admin: SocketAddr, line_start: &str) -> u64 {
    let (_, body) = admin_call(admin, "GET", "/metrics", None).await;
    body.lines()
        .find_map(|l| {
            l.strip_prefix(line_start)
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or_else(|| panic!("no metric {line_start}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_and_allow_lists_close_at_accept() {
    let s = setup(
        "    deny: [127.0.2.1]\n    listeners:\n      - {name: web, allow: [127.0.2.0/24, 127.0.3.0/24], deny: [127.0.3.7]}\n",
    )
    .await;
    assert_eq!(status(&get("127.0.2.2", s.web, "/", "").await), Some(200));
    // Global deny, listener deny, and outside the listener's allow list: closed
    // without a byte.
    assert_eq!(get("127.0.2.1", s.web, "/", "").await, None);
    assert_eq!(get("127.0.3.7", s.web, "/", "").await, None);
    assert_eq!(get("127.0.4.1", s.web, "/", "").await, None);
    assert_eq!(status(&get("127.0.3.8", s.web, "/", "").await), Some(200));
    assert_eq!(
        metric(
            s.admin,
            "rampart_edge_protection_refused_total{reason=\"deny_list\"}"
        )
        .await,
        2
    );
    assert_eq!(
        metric(
            s.admin,
            "rampart_edge_protection_refused_total{reason=\"not_allowed\"}"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_source_connection_cap_and_rate() {
    let s = setup(
        "    connections: {perSource: 2, ratePerSource: 4/10s}\n    bans: {enabled: false}\n",
    )
    .await;
    let mut a = connect_from("127.0.5.1", s.web).await;
    let mut b = connect_from("127.0.5.1", s.web).await;
    assert_eq!(status(&request_on(&mut a, "/", "").await), Some(200));
    assert_eq!(status(&request_on(&mut b, "/", "").await), Some(200));
    // A third open connection from the same source is closed at once.
    assert_eq!(get("127.0.5.1", s.web, "/", "").await, None);
    // Another source is not affected.
    assert_eq!(status(&get("127.0.5.2", s.web, "/", "").await), Some(200));
    // Closing one makes room, but the source's rate (4 per 10 s, refused attempts
    // included) is spent: the fourth attempt passes, the fifth does not.
    drop(a);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        status(&get("127.0.5.1", s.web, "/", "Connection: close\r\n").await),
        Some(200)
    );
    drop(b);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(get("127.0.5.1", s.web, "/", "").await, None);
    assert_eq!(
        metric(
            s.admin,
            "rampart_edge_protection_refused_total{reason=\"conn_per_source\"}"
        )
        .await,
        1
    );
    assert_eq!(
        metric(
            s.admin,
            "rampart_edge_protection_refused_total{reason=\"conn_rate\"}"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_limits_answer_429_with_retry_after_per_route_and_key() {
    let s = setup(
        "    requestLimits:\n      - {name: api, key: client, rate: 2/10s, routes: [api]}\n      - {name: users, key: \"header:x-user\", rate: 1/10s, routes: [other]}\n    bans: {enabled: false}\n",
    )
    .await;
    let mut c = connect_from("127.0.6.1", s.web).await;
    assert_eq!(status(&request_on(&mut c, "/api/a", "").await), Some(200));
    assert_eq!(status(&request_on(&mut c, "/api/b", "").await), Some(200));
    let r = request_on(&mut c, "/api/c", "").await;
    assert_eq!(status(&r), Some(429));
    assert_eq!(header(&r, "retry-after"), Some("5"));
    assert_eq!(header(&r, "connection"), Some("close"));
    // The connection is closed after the 429.
    assert_eq!(request_on(&mut c, "/api/d", "").await, None);
    // Another source has its own budget.
    assert_eq!(
        status(&get("127.0.6.2", s.web, "/api/a", "").await),
        Some(200)
    );
    // Keys by header: each user has one request per 10 s, whatever its address.
    assert_eq!(
        status(&get("127.0.6.3", s.web, "/x", "x-user: alice\r\n").await),
        Some(200)
    );
    assert_eq!(
        status(&get("127.0.6.4", s.web, "/x", "x-user: bob\r\n").await),
        Some(200)
    );
    let r = get("127.0.6.5", s.web, "/x", "x-user: alice\r\n").await;
    assert_eq!(status(&r), Some(429));
    assert_eq!(header(&r, "retry-after"), Some("10"));
    assert_eq!(
        metric(
            s.admin,
            "rampart_edge_protection_rate_limited_total{limit=\"api\"}"
        )
        .await,
        1
    );
    assert_eq!(
        metric(
            s.admin,
            "rampart_edge_protection_rate_limited_total{limit=\"users\"}"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tarpit_holds_the_429() {
    let s = setup("    requestLimits:\n      - {name: slow, rate: 1/10s, tarpit: 400ms}\n    bans: {enabled: false}\n").await;
    assert_eq!(status(&get("127.0.7.1", s.web, "/", "").await), Some(200));
    let started = Instant::now();
    let r = get("127.0.7.1", s.web, "/", "").await;
    assert_eq!(status(&r), Some(429));
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(
        metric(s.admin, "rampart_edge_protection_tarpitted_total").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeat_offenders_are_banned_and_the_ban_list_is_managed_on_the_admin_listener() {
    let s = setup(
        "    requestLimits:\n      - {name: tight, rate: 1/10s}\n    bans: {threshold: 3, duration: 1m}\n",
    )
    .await;
    assert_eq!(status(&get("127.0.8.1", s.web, "/", "").await), Some(200));
    for _ in 0..3 {
        assert_eq!(status(&get("127.0.8.1", s.web, "/", "").await), Some(429));
    }
    // Banned: refused at accept.
    assert_eq!(get("127.0.8.1", s.web, "/", "").await, None);
    let (code, body) = admin_call(s.admin, "GET", "/bans", None).await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["count"], 1);
    assert_eq!(v["bans"][0]["cidr"], "127.0.8.1/32");
    assert_eq!(v["bans"][0]["reason"], "rate_limited");
    assert_eq!(v["bans"][0]["manual"], false);
    let left = v["bans"][0]["secondsLeft"].as_u64().unwrap();
    assert!((55..=60).contains(&left), "{left}");
    assert_eq!(
        metric(s.admin, "rampart_edge_protection_bans_issued_total").await,
        1
    );
    // Lift it.
    let (code, _) = admin_call(s.admin, "DELETE", "/bans/127.0.8.1", None).await;
    assert_eq!(code, 200);
    let (code, _) = admin_call(s.admin, "DELETE", "/bans/127.0.8.1", None).await;
    assert_eq!(code, 404);
    // (Its budget is still spent: 429, not a closed connection.)
    assert_eq!(status(&get("127.0.8.1", s.web, "/", "").await), Some(429));
    // An operator bans a whole prefix.
    let (code, body) = admin_call(
        s.admin,
        "POST",
        "/bans",
        Some(r#"{"cidr": "127.0.9.0/24", "duration": "10m", "reason": "scanner"}"#),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(get("127.0.9.200", s.web, "/", "").await, None);
    assert_eq!(status(&get("127.0.10.1", s.web, "/", "").await), Some(200));
    let (_, body) = admin_call(s.admin, "GET", "/bans/export", None).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ipv4"][0]["cidr"], "127.0.9.0/24");
    assert_eq!(v["ipv4"][0]["timeoutSeconds"], 600);
    assert_eq!(v["ipv6"].as_array().unwrap().len(), 0);
    // Bad input is refused with a reason; changes need a JSON content type.
    let (code, body) = admin_call(
        s.admin,
        "POST",
        "/bans",
        Some(r#"{"cidr": "127.0.9.1/24", "duration": "10m"}"#),
    )
    .await;
    assert_eq!(code, 400);
    assert!(body.contains("host bits"), "{body}");
    let mut raw = TcpStream::connect(s.admin).await.unwrap();
    raw.write_all(b"POST /bans HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}").await.unwrap();
    let mut out = String::new();
    raw.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 415"), "{out}");
    // Bans survive a reload.
    s.gw.reload().await.unwrap();
    assert_eq!(get("127.0.9.1", s.web, "/", "").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_tls_handshakes_reported_by_the_gateway_lead_to_a_ban() {
    let s = setup("    bans: {threshold: 4, weights: {tlsHandshake: 2}}\n").await;
    let tls = addr(&s.gw, "tls");
    for _ in 0..2 {
        let mut c = connect_from("127.0.11.1", tls).await;
        c.write_all(b"GET / HTTP/1.1\r\nHost: not-tls\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut buf)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        metric(
            s.admin,
            "rampart_edge_protection_offences_total{kind=\"tls_handshake\"}"
        )
        .await,
        2
    );
    let (_, body) = admin_call(s.admin, "GET", "/bans", None).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["bans"][0]["cidr"], "127.0.11.1/32");
    assert_eq!(v["bans"][0]["reason"], "tls_handshake");
    assert_eq!(get("127.0.11.1", s.web, "/", "").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_cap_stops_accepting_until_a_connection_closes() {
    let s = setup("    connections: {maxTotal: 2}\n").await;
    let mut a = connect_from("127.0.12.1", s.web).await;
    let mut b = connect_from("127.0.12.2", s.web).await;
    assert_eq!(status(&request_on(&mut a, "/", "").await), Some(200));
    assert_eq!(status(&request_on(&mut b, "/", "").await), Some(200));
    // The third connection is queued by the kernel, not accepted: its request waits.
    let mut c = connect_from("127.0.12.3", s.web).await;
    c.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), c.read(&mut byte))
            .await
            .is_err(),
        "answered above the cap"
    );
    assert!(metric(s.admin, "rampart_edge_protection_accept_paused_total").await >= 1);
    assert_eq!(
        metric(s.admin, "rampart_edge_protection_connections_max").await,
        2
    );
    drop(a);
    let r = read_response(&mut c).await;
    assert_eq!(status(&r), Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_sources_never_grow_the_table_past_its_bound() {
    let s =
        setup("    table: {size: 1000}\n    connections: {maxTotal: 500}\n    requestLimits: []\n")
            .await;
    // A source with an open connection is never evicted.
    let mut held = connect_from("127.0.13.1", s.web).await;
    assert_eq!(status(&request_on(&mut held, "/", "").await), Some(200));
    let mut tasks = Vec::new();
    for chunk in 0..8u32 {
        let web = s.web;
        tasks.push(tokio::spawn(async move {
            for i in 0..375u32 {
                let n = chunk * 375 + i;
                let src = format!("127.1.{}.{}", n / 250, n % 250 + 1);
                let r = get(&src, web, "/", "Connection: close\r\n").await;
                assert_eq!(status(&r), Some(200));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (_, body) = admin_call(s.admin, "GET", "/protection", None).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let tracked = v["trackedSources"].as_u64().unwrap();
    assert!(tracked <= 1000, "{tracked}");
    assert!(v["evictedSources"].as_u64().unwrap() >= 2000, "{body}");
    assert_eq!(status(&request_on(&mut held, "/", "").await), Some(200));
    let (_, body) = admin_call(s.admin, "GET", "/protection", None).await;
    assert!(body.contains("\"source\": \"127.0.13.1/32\""), "{body}");
}
