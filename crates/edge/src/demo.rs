//! A small built-in HTTP service for `rampart up` and tests: it answers every request
//! with a short text describing what it received (method, path, host and the
//! forwarding headers the gateway set), so a first user can see the gateway at work.

use std::convert::Infallible;
use std::fmt::Write;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// Binds `addr` and serves the demo service in the background; returns the bound
/// address.
pub async fn spawn(addr: SocketAddr, name: &'static str) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc =
                    service_fn(move |req| async move { Ok::<_, Infallible>(answer(name, &req)) });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(bound)
}

fn answer(name: &'static str, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let mut body = String::with_capacity(256);
    let _ = writeln!(body, "Hello from {name}, behind the Rampart edge.");
    let _ = writeln!(body, "{} {}", req.method(), req.uri().path());
    for h in ["host", "x-forwarded-for", "x-forwarded-proto", "forwarded"] {
        if let Some(v) = req.headers().get(h).and_then(|v| v.to_str().ok()) {
            let _ = writeln!(body, "{h}: {v}");
        }
    }
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut().insert(
        http::HeaderName::from_static("x-served-by"),
        http::HeaderValue::from_static(name),
    );
    r
}
