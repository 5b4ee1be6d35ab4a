//! The L4 front: accept, limits and the connection filter, PROXY protocol from a
//! trusted balancer, SNI peek, then TCP passthrough or TLS termination and HTTP.
//!
//! Order of work on a new connection, cheapest first:
//! 1. accept; refuse at once above the listener's connection cap or when the
//!    connection filter says so (no buffer allocated, no TLS state);
//! 2. PROXY header (only from listed balancers), under the handshake deadline;
//! 3. ClientHello peek when SNI routes exist (passthrough needs the name before any
//!    TLS work), under the same deadline;
//! 4. TLS handshake (deadline), then HTTP/1.1 or HTTP/2 by ALPN.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::config::{Cidr, Listener, Mode};
use crate::hooks::{Abuse, Admission};
use crate::io::{Activity, ClientTransport, Prefixed, Tracked, now_ms};
use crate::metrics::ListenerMetrics;
use crate::proxy::ConnContext;
use crate::runtime::Runtime;
use crate::{Shared, proxy_protocol, sni};

/// Accepts connections on `listener` until the gateway stops listening.
pub(crate) async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    key: Arc<str>,
    mut removed: tokio::sync::watch::Receiver<bool>,
) {
    let mut stop = shared.stop_accepting.subscribe();
    let slots = shared.protection.slots().clone();
    // A connection's local address is the listener's, unless the listener is bound
    // to the unspecified address (then each connection is asked).
    let bound = listener
        .local_addr()
        .ok()
        .filter(|a| !a.ip().is_unspecified());
    loop {
        // The global connection cap: at the cap, stop accepting (connections wait in
        // the kernel's queue) until one closes.
        let paused = &shared.protection.metrics.accept_paused;
        tokio::select! {
            _ = slots.wait_for_room(paused) => {}
            _ = stop.changed() => break,
            _ = removed.changed() => break,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => break,
            _ = removed.changed() => break,
        };
        // Another accept loop may have taken the room: this connection (at most one
        // per loop) waits for the next.
        let slot = match slots.try_acquire() {
            Some(s) => s,
            None => tokio::select! {
                s = slots.acquire(paused) => s,
                _ = stop.changed() => break,
                _ = removed.changed() => break,
            },
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, listener = %key, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let rt = shared.current.load_full();
        let Some(&li) = rt.by_name.get(&key) else {
            // The listener left the config; it is closing.
            break;
        };
        let lm = rt.listeners[li].metrics.clone();
        lm.accepted.fetch_add(1, Ordering::Relaxed);
        let limit = rt.config.limits.max_connections as i64;
        if lm.active_connections.load(Ordering::Relaxed) >= limit {
            lm.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let lcfg = &rt.config.listeners[li];
        // Without a PROXY header to wait for, the filter decides now.
        let token = if lcfg.accept_proxy_from.is_none() {
            match admit(&shared, &lcfg.name, peer) {
                Some(t) => Some(t),
                None => {
                    lm.refused.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
        } else {
            None
        };
        let Some(local) = bound.or_else(|| stream.local_addr().ok()) else {
            continue;
        };
        let conn_guard = shared.connections.enter();
        let shared = shared.clone();
        let key = key.clone();
        let fut = async move {
            lm.active_connections.fetch_add(1, Ordering::Relaxed);
            let _slot = slot;
            let _token = token;
            handle(shared, rt, li, stream, (peer, local), key, lm.clone()).await;
            lm.active_connections.fetch_sub(1, Ordering::Relaxed);
            drop(conn_guard);
        };
        tokio::spawn(fut);
    }
}

type Token = Option<Box<dyn Send + Sync + std::fmt::Debug>>;

fn admit(shared: &Shared, listener: &str, peer: SocketAddr) -> Option<Token> {
    match &shared.hooks.connection {
        None => Some(None),
        Some(f) => match f.admit(listener, peer) {
            Admission::Accept(t) => Some(t),
            Admission::Refuse => None,
        },
    }
}

async fn handle(
    shared: Arc<Shared>,
    rt: Arc<Runtime>,
    li: usize,
    mut stream: TcpStream,
    (mut peer, local): (SocketAddr, SocketAddr),
    key: Arc<str>,
    lm: Arc<ListenerMetrics>,
) {
    // TCP_NODELAY comes from the listening socket (accepted sockets inherit it).
    let lcfg: &Listener = &rt.config.listeners[li];
    let deadline = tokio::time::Instant::now() + rt.config.timeouts.tls_handshake;
    let mut buf: Vec<u8> = Vec::new();
    let mut _late_token = None;
    if let Some(trusted) = &lcfg.accept_proxy_from {
        if !Cidr::any_contains(trusted, peer.ip()) {
            lm.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let reading = Box::pin(read_proxy_header(&mut stream, &mut buf, deadline));
        match reading.await {
            Some(Some((client, _))) => peer = client,
            Some(None) => {}
            None => {
                lm.refused.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        match admit(&shared, &lcfg.name, peer) {
            Some(t) => _late_token = t,
            None => {
                lm.refused.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }

    let needs_sni = !lcfg.tcp_routes.is_empty()
        && (lcfg.mode == Mode::Http || lcfg.tcp_routes.iter().any(|r| !r.sni.is_empty()));
    if needs_sni {
        let peeking = Box::pin(peek_sni(&mut stream, &mut buf, deadline));
        let name = match peeking.await {
            Some(name) => name,
            None if lcfg.mode == Mode::Tcp => None,
            None => {
                lm.handshakes_failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let chosen = lcfg.tcp_routes.iter().position(|r| match &name {
            Some(n) => r.sni.iter().any(|m| m.matches(n)),
            None => false,
        });
        let chosen = chosen.or_else(|| {
            if lcfg.mode == Mode::Tcp {
                lcfg.tcp_routes.iter().position(|r| r.sni.is_empty())
            } else {
                None
            }
        });
        if let Some(ri) = chosen {
            lm.passthrough.fetch_add(1, Ordering::Relaxed);
            let piping = Box::pin(passthrough(
                &rt,
                lcfg.tcp_routes[ri].backend,
                stream,
                buf,
                peer,
                local,
            ));
            piping.await;
            return;
        }
        if lcfg.mode == Mode::Tcp {
            // No route for this name: refuse.
            lm.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
    } else if lcfg.mode == Mode::Tcp {
        if let Some(route) = lcfg.tcp_routes.first() {
            lm.passthrough.fetch_add(1, Ordering::Relaxed);
            let piping = Box::pin(passthrough(&rt, route.backend, stream, buf, peer, local));
            piping.await;
        }
        return;
    }

    let ctx_base = (shared.clone(), key.clone(), lm.clone(), peer, local);
    let io = Prefixed::new(buf, stream);
    match &rt.listeners[li].tls {
        Some(tls) => {
            // The handshake future owns the socket: keep it until the failure is
            // counted, so that the count is there when the client sees the close.
            let mut handshake = Box::pin(tokio::time::timeout_at(
                deadline,
                crate::tls_server::accept(tls.config.clone(), io),
            ));
            let tls_stream = match handshake.as_mut().await {
                Ok(Ok(s)) => s,
                Ok(Err((e, stream))) => {
                    lm.handshakes_failed.fetch_add(1, Ordering::Relaxed);
                    crate::abuse::report(
                        &shared,
                        &lm,
                        &key,
                        peer,
                        Abuse::TlsHandshake,
                        &e.to_string(),
                    );
                    drop(stream);
                    drop(handshake);
                    return;
                }
                Err(_) => {
                    lm.handshakes_failed.fetch_add(1, Ordering::Relaxed);
                    crate::abuse::report(
                        &shared,
                        &lm,
                        &key,
                        peer,
                        Abuse::TlsHandshake,
                        "handshake not finished in time",
                    );
                    drop(handshake);
                    return;
                }
            };
            drop(handshake);
            let conn = tls_stream.conn();
            match conn.handshake_kind() {
                Some(rustls::HandshakeKind::Resumed) => {
                    lm.handshakes_resumed.fetch_add(1, Ordering::Relaxed)
                }
                _ => lm.handshakes_full.fetch_add(1, Ordering::Relaxed),
            };
            let h2 = conn.alpn_protocol() == Some(b"h2");
            drop(rt);
            let serving = Box::pin(serve_http(ctx_base, tls_stream, h2, "https"));
            serving.await;
        }
        None => {
            drop(rt);
            let serving = Box::pin(serve_http_plain(ctx_base, io));
            serving.await;
        }
    }
}

/// Reads a PROXY v2 header; `Some(None)` for LOCAL, `None` on error or timeout.
async fn read_proxy_header(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: tokio::time::Instant,
) -> Option<Option<(SocketAddr, SocketAddr)>> {
    loop {
        match proxy_protocol::parse(buf) {
            proxy_protocol::Parse::Header(h) => {
                buf.drain(..h.len);
                return Some(h.addresses);
            }
            proxy_protocol::Parse::Invalid(why) => {
                tracing::debug!(why, "bad PROXY header");
                return None;
            }
            proxy_protocol::Parse::NeedMore => {}
        }
        let mut chunk = [0u8; 512];
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

/// Reads until a whole ClientHello is buffered; the server name, or `None` for a
/// hello without one or for a stream that is not TLS (logged).
async fn peek_sni(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: tokio::time::Instant,
) -> Option<Option<String>> {
    loop {
        match sni::peek(buf) {
            sni::Peek::Hello { server_name } => return Some(server_name),
            sni::Peek::NotTls(why) => {
                tracing::debug!(why, "not a TLS ClientHello");
                return None;
            }
            sni::Peek::NeedMore => {}
        }
        if buf.len() > sni::MAX_HELLO + 1024 {
            return None;
        }
        let mut chunk = [0u8; 2048];
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

async fn passthrough(
    rt: &Runtime,
    bi: usize,
    client: TcpStream,
    prefix: Vec<u8>,
    peer: SocketAddr,
    local: SocketAddr,
) {
    let backend = &rt.backends[bi];
    let bcfg = &rt.config.backends[bi];
    let header = bcfg
        .proxy_protocol
        .then(|| proxy_protocol::encode(peer, local));
    let mut tried = Vec::new();
    let mut upstream = None;
    for _ in 0..=bcfg.retries {
        let Some(si) = backend
            .balancer
            .pick(now_ms(), Some(peer.ip()), rand::random(), &tried)
        else {
            break;
        };
        tried.push(si);
        // Passthrough connects in plain TCP: the client's TLS goes through untouched.
        let plain = crate::upstream::Connector {
            timeout: rt.config.timeouts.connect,
            tls: None,
        };
        match plain.connect(backend.addrs[si], header.as_deref()).await {
            Ok(crate::upstream::UpstreamIo::Plain(s)) => {
                backend.balancer.report(si, true, now_ms());
                upstream = Some((si, s));
                break;
            }
            Ok(_) => break,
            Err(e) => {
                tracing::debug!(error = %e, server = %backend.addrs[si], "passthrough connect failed");
                backend.balancer.report(si, false, now_ms());
            }
        }
    }
    let Some((si, mut server)) = upstream else {
        return;
    };
    let state = backend.balancer.servers()[si].clone();
    state.in_flight.fetch_add(1, Ordering::Relaxed);
    let idle = rt.config.timeouts.tcp_idle;
    if !prefix.is_empty() && server.write_all(&prefix).await.is_err() {
        state.in_flight.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    let activity = Activity::new();
    activity.requests.fetch_add(1, Ordering::Relaxed);
    let mut a = Tracked::new(client, activity.clone());
    let mut b = Tracked::new(server, activity.clone());
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
        _ = activity.idle(idle, idle) => {}
    }
    state.in_flight.fetch_sub(1, Ordering::Relaxed);
}

type CtxBase = (
    Arc<Shared>,
    Arc<str>,
    Arc<ListenerMetrics>,
    SocketAddr,
    SocketAddr,
);

async fn serve_http<IO>(base: CtxBase, io: IO, h2: bool, scheme: &'static str)
where
    IO: ClientTransport + Send + 'static,
{
    let (shared, listener, metrics, peer, local) = base;
    if h2 {
        let ctx = Arc::new(ConnContext {
            shared: shared.clone(),
            listener: listener.clone(),
            metrics,
            peer,
            local,
            activity: Some(Activity::new()),
            read_watch: Some(Arc::default()),
            forwarding: crate::forwarded::PeerValues::new(peer.ip(), scheme),
        });
        crate::h2::serve(ctx, io).await;
    } else {
        let ctx = ConnContext {
            shared: shared.clone(),
            listener,
            metrics,
            peer,
            local,
            activity: None,
            read_watch: None,
            forwarding: crate::forwarded::PeerValues::new(peer.ip(), scheme),
        };
        crate::h1::server::serve(&ctx, io).await;
    }
}

async fn serve_http_plain<IO>(base: CtxBase, io: IO)
where
    IO: ClientTransport + Send + 'static,
{
    // Plain HTTP listeners speak HTTP/1.1 (h2c is not offered).
    serve_http(base, io, false, "http").await;
}
