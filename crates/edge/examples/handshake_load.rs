//! A TLS handshake load generator for benchmarks (not part of the gateway).
//!
//! Opens connections to `ADDR` for `SECONDS` with `CONCURRENCY` clients; on each: a TLS
//! 1.3 handshake (ECDHE X25519, SNI `localhost`, ALPN http/1.1), one
//! `GET / HTTP/1.1` with `Connection: close`, the whole response, close. Prints the
//! completed connections per second and how many handshakes were resumed.
//!
//! `full` mode never resumes (no session store); in `resumed` mode each client keeps its
//! own session store, so that each connection after a client's first resumes with a
//! ticket from its previous one.
//! The client does not verify the server certificate: its cost should stay small so
//! that the server, not the client, limits the rate. Never use this verifier elsewhere.
//!
//! usage: handshake_load ADDR SECONDS CONCURRENCY full|resumed

#[path = "support/dangerous_verifier.rs"]
mod dangerous_verifier;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use dangerous_verifier::DangerousAcceptAnyCertificate;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        return Err("usage: handshake_load ADDR SECONDS CONCURRENCY full|resumed".into());
    }
    let addr: SocketAddr = args[1].parse()?;
    let seconds: u64 = args[2].parse()?;
    let concurrency: usize = args[3].parse()?;
    let resume = match args[4].as_str() {
        "full" => false,
        "resumed" => true,
        _ => return Err("mode must be full or resumed".into()),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(DangerousAcceptAnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    let done = Arc::new(AtomicU64::new(0));
    let resumed = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            // A config per client: its own session store.
            let mut config = config.clone();
            if resume {
                config.resumption = rustls::client::Resumption::in_memory_sessions(16);
            }
            let config = Arc::new(config);
            let (done, resumed, errors) = (done.clone(), resumed.clone(), errors.clone());
            tasks.push(tokio::spawn(async move {
                let connector = tokio_rustls::TlsConnector::from(config);
                while tokio::time::Instant::now() < deadline {
                    let one = async {
                        let tcp = tokio::net::TcpStream::connect(addr).await?;
                        tcp.set_nodelay(true)?;
                        let name =
                            ServerName::try_from("localhost").map_err(std::io::Error::other)?;
                        let mut tls = connector.connect(name, tcp).await?;
                        let was_resumed = matches!(
                            tls.get_ref().1.handshake_kind(),
                            Some(rustls::HandshakeKind::Resumed)
                        );
                        tls.write_all(
                            b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                        )
                        .await?;
                        let mut buf = Vec::with_capacity(512);
                        tls.read_to_end(&mut buf).await?;
                        if !buf.starts_with(b"HTTP/1.1 200") {
                            return Err(std::io::Error::other("not a 200"));
                        }
                        Ok::<bool, std::io::Error>(was_resumed)
                    };
                    match tokio::time::timeout(Duration::from_secs(10), one).await {
                        Ok(Ok(r)) => {
                            done.fetch_add(1, Ordering::Relaxed);
                            if r {
                                resumed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "connections {n} per_second {:.0} resumed {} errors {}",
        n as f64 / secs,
        resumed.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed)
    )?;
    Ok(())
}
