//! The admin listener: `/metrics` (Prometheus text format), `/healthz`, `/config`
//! (the running revision), and the protection endpoints (`/bans`, `/protection`: see
//! [`crate::protect::admin`]). It serves on its own address, plain HTTP/1.1, and should be
//! bound to loopback or a management network.

use std::convert::Infallible;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::Shared;
use crate::io::now_ms;

/// Serves the admin endpoints until the gateway stops listening.
pub async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let mut stop = shared.stop_accepting.subscribe();
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let shared = shared.clone();
                async move {
                    if crate::protect::admin::handles(req.uri().path()) {
                        return Ok::<_, Infallible>(
                            crate::protect::admin::handle(&shared.protection, req).await,
                        );
                    }
                    Ok::<_, Infallible>(handle(&shared, &req))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

fn handle(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".to_owned(),
        );
    }
    match req.uri().path() {
        "/healthz" => {
            if shared.draining.load(Ordering::Relaxed) {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "draining\n".to_owned(),
                )
            } else {
                text(StatusCode::OK, "text/plain", "ok\n".to_owned())
            }
        }
        "/metrics" => text(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            render_metrics(shared),
        ),
        "/config" => {
            let rt = shared.current.load();
            let listeners: Vec<serde_json::Value> = rt
                .config
                .listeners
                .iter()
                .map(|l| {
                    serde_json::json!({
                        "name": l.name,
                        "address": l.address.to_string(),
                        "mode": match l.mode { crate::config::Mode::Http => "http", crate::config::Mode::Tcp => "tcp" },
                        "tls": l.tls.is_some(),
                        "httpRoutes": l.http_routes.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
                        "tcpRoutes": l.tcp_routes.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let certs: Vec<serde_json::Value> = rt
                .certificates
                .iter()
                .map(|(l, names, fp, generated)| {
                    serde_json::json!({"listener": l, "names": names, "sha256": fp.to_string(), "selfSigned": generated})
                })
                .collect();
            let body = serde_json::json!({
                "name": rt.config.name,
                "revision": rt.revision,
                "sha256": rt.digest,
                "listeners": listeners,
                "backends": rt.config.backends.iter().map(|b| b.name.clone()).collect::<Vec<_>>(),
                "certificates": certs,
            });
            text(StatusCode::OK, "application/json", format!("{body:#}\n"))
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    }
}

/// The whole `/metrics` page.
pub fn render_metrics(shared: &Shared) -> String {
    let mut out = String::with_capacity(8192);
    shared.metrics.render(&mut out);
    crate::protect::render(&shared.protection, &mut out);
    let rt = shared.current.load();
    let now = now_ms();
    out.push_str("# HELP rampart_edge_backend_server_healthy 1 when the server is available (healthy and not ejected).\n# TYPE rampart_edge_backend_server_healthy gauge\n");
    for (bi, b) in rt.backends.iter().enumerate() {
        let name = &rt.config.backends[bi].name;
        for s in b.balancer.servers() {
            let _ = writeln!(
                out,
                "rampart_edge_backend_server_healthy{{backend=\"{name}\",server=\"{}\"}} {}",
                s.label,
                u8::from(s.is_available(now))
            );
        }
    }
    out.push_str("# HELP rampart_edge_backend_server_in_flight Requests or connections in flight to the server.\n# TYPE rampart_edge_backend_server_in_flight gauge\n");
    for (bi, b) in rt.backends.iter().enumerate() {
        let name = &rt.config.backends[bi].name;
        for s in b.balancer.servers() {
            let _ = writeln!(
                out,
                "rampart_edge_backend_server_in_flight{{backend=\"{name}\",server=\"{}\"}} {}",
                s.label,
                s.in_flight.load(Ordering::Relaxed)
            );
        }
    }
    out.push_str("# HELP rampart_edge_backend_server_ejections_total Passive ejections of the server.\n# TYPE rampart_edge_backend_server_ejections_total counter\n");
    for (bi, b) in rt.backends.iter().enumerate() {
        let name = &rt.config.backends[bi].name;
        for s in b.balancer.servers() {
            let _ = writeln!(
                out,
                "rampart_edge_backend_server_ejections_total{{backend=\"{name}\",server=\"{}\"}} {}",
                s.label,
                s.ejections.load(Ordering::Relaxed)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP rampart_edge_config_revision The running configuration's revision.\n# TYPE rampart_edge_config_revision gauge\nrampart_edge_config_revision{{sha256=\"{}\"}} {}",
        rt.digest, rt.revision
    );
    out
}
