//! Proxy overhead of `rampart gate` against a direct connection to the same HTTPS
//! server standing in for the API server, side by side in one run.
//!
//! The bench process serves the issuer's discovery and JWKS documents and a 1 KiB
//! pod list over HTTPS; the gateway (the release binary) verifies a real RS256 ID token,
//! decides RBAC and forwards with impersonation headers. Measured per round, direct and
//! through the gateway alternately: latency of sequential requests on one keep-alive
//! connection (p50, p99), and throughput of 16 concurrent keep-alive connections.
//! When `haproxy` is installed, HAProxy as a plain TLS-terminating proxy to the same
//! server is measured in the same rounds as the peer (`apt-get install haproxy`).
//! Medians of the rounds are printed. Run:
//! `cargo bench -p rampart --bench gate_proxy`.

#![expect(
    clippy::unwrap_used,
    reason = "benchmark setup: any failure aborts the run"
)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

const ROUNDS: usize = 5;
const SEQUENTIAL: usize = 2_000;
const CONNECTIONS: usize = 16;
const PER_CONNECTION: usize = 300;

struct Gate(Child);

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    issuer: String,
    jwks: String,
) {
    let pods = Bytes::from(format!(
        "{{\"kind\":\"PodList\",\"apiVersion\":\"v1\",\"metadata\":{{}},\"items\":[{}]}}",
        (0..4)
            .map(|i| format!("{{\"metadata\":{{\"name\":\"web-{i}\",\"namespace\":\"default\",\"uid\":\"8f6c1e8e-0000-0000-0000-00000000000{i}\"}},\"spec\":{{\"containers\":[{{\"name\":\"app\",\"image\":\"registry.example/app:1.0\"}}]}},\"status\":{{\"phase\":\"Running\",\"podIP\":\"10.0.0.{i}\"}}}}"))
            .collect::<Vec<_>>()
            .join(",")
    ));
    let discovery = Bytes::from(format!(
        "{{\"issuer\":\"{issuer}\",\"jwks_uri\":\"{issuer}/jwks\"}}"
    ));
    let jwks = Bytes::from(jwks);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let (pods, discovery, jwks) = (pods.clone(), discovery.clone(), jwks.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let body = match req.uri().path() {
                    "/.well-known/openid-configuration" => discovery.clone(),
                    "/jwks" => jwks.clone(),
                    _ => pods.clone(),
                };
                async move {
                    Ok::<_, std::convert::Infallible>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(body))
                            .unwrap(),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(connector: &tokio_rustls::TlsConnector, port: u16) -> Sender {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tcp.set_nodelay(true).unwrap();
    let tls = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn get(sender: &mut Sender, port: u16, token: &str) {
    sender.ready().await.unwrap();
    let req = Request::get("/api/v1/namespaces/default/pods?limit=500")
        .header("host", format!("127.0.0.1:{port}"))
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "application/json")
        .body(Empty::new())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert!(res.status().is_success(), "HTTP {}", res.status());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(body.len() > 500);
}

struct Round {
    p50_us: f64,
    p99_us: f64,
    rps: f64,
}

async fn round(connector: &tokio_rustls::TlsConnector, port: u16, token: &str) -> Round {
    let mut sender = connect(connector, port).await;
    for _ in 0..200 {
        get(&mut sender, port, token).await;
    }
    let mut samples = Vec::with_capacity(SEQUENTIAL);
    for _ in 0..SEQUENTIAL {
        let start = Instant::now();
        get(&mut sender, port, token).await;
        samples.push(start.elapsed().as_nanos() as u64);
    }
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    let (p50_us, p99_us) = (pct(0.5), pct(0.99));

    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let connector = connector.clone();
        let token = token.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(&connector, port).await;
            for _ in 0..PER_CONNECTION {
                get(&mut sender, port, &token).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rps = (CONNECTIONS * PER_CONNECTION) as f64 / start.elapsed().as_secs_f64();
    Round {
        p50_us,
        p99_us,
        rps,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = std::env::temp_dir().join(format!("rampart-gate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // PKI.
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "bench CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer_ca = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let mut sp = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    sp.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let server_cert = sp.signed_by(&server_key, &issuer_ca).unwrap();
    let ca_path = write(&dir, "ca.pem", &ca_cert.pem());
    let cert_path = write(&dir, "server.pem", &server_cert.pem());
    let key_path = write(&dir, "server-key.pem", &server_key.serialize_pem());

    // The stand-in API server, which also serves the issuer's documents.
    let server_config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            CertificateDer::pem_file_iter(&cert_path)
                .unwrap()
                .map(Result::unwrap)
                .collect(),
            PrivateKeyDer::from_pem_file(&key_path).unwrap(),
        )
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_port = listener.local_addr().unwrap().port();
    let issuer = format!("https://127.0.0.1:{up_port}");

    // An RS256 signing key (Zitadel's default) and an ID token with MFA.
    let signing = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let enc = EncodingKey::from_rsa_pem(signing.serialize_pem().as_bytes()).unwrap();
    let mut jwk =
        serde_json::to_value(Jwk::from_encoding_key(&enc, Algorithm::RS256).unwrap()).unwrap();
    jwk["kid"] = serde_json::json!("bench");
    let jwks = serde_json::json!({"keys": [jwk]}).to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("bench".into());
    let token = jsonwebtoken::encode(
        &header,
        &serde_json::json!({"iss": issuer, "sub": "alice", "aud": "kube", "iat": now, "exp": now + 3600,
            "amr": ["pwd", "otp", "mfa"], "urn:zitadel:iam:org:project:roles": {"dev": {"1": "acme.test"}}}),
        &enc,
    )
    .unwrap();
    tokio::spawn(serve(
        listener,
        tokio_rustls::TlsAcceptor::from(Arc::new(server_config)),
        issuer.clone(),
        jwks,
    ));

    // The gateway.
    let gate_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    write(&dir, "gateway-token", "gateway-service-account-token");
    write(
        &dir,
        "rbac.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: dev, namespace: default}\nrules: [{apiGroups: [\"\"], resources: [pods], verbs: [get, list, watch]}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: dev, namespace: default}\nroleRef: {kind: Role, name: dev}\nsubjects: [{kind: Group, name: \"zitadel:dev\"}]\n",
    );
    let config = write(
        &dir,
        "gate.yaml",
        &format!(
            "apiVersion: rampart.dev/v1alpha1\nkind: AccessGateway\nmetadata: {{name: bench}}\nspec:\n  listen: 127.0.0.1:{gate_port}\n  tls: {{certFile: server.pem, keyFile: server-key.pem}}\n  upstream: {{url: \"https://127.0.0.1:{up_port}\", caFile: ca.pem, tokenFile: gateway-token}}\n  issuers:\n  - url: {issuer}\n    caFile: ca.pem\n    audiences: [kube]\n    claims:\n      username: {{claim: sub, prefix: \"zitadel:\"}}\n      groups: [{{claim: \"urn:zitadel:iam:org:project:roles\", prefix: \"zitadel:\"}}]\n  rbac: {{files: [rbac.yaml]}}\n  audit: {{path: audit.jsonl}}\n"
        ),
    );
    let _gate = Gate(
        Command::new(env!("CARGO_BIN_EXE_rampart"))
            .args(["gate", "--config"])
            .arg(&config)
            .env("RAMPART_LOG", "warn")
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", gate_port)).is_err() {
        assert!(Instant::now() < deadline, "the gateway did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(
        CertificateDer::pem_file_iter(&ca_path)
            .unwrap()
            .map(Result::unwrap),
    );
    let mut client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));

    // The peer: HAProxy as a plain TLS-terminating, re-encrypting proxy (no
    // authentication, no authorization), when it is installed.
    let haproxy_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    write(
        &dir,
        "haproxy.pem",
        &format!("{}{}", server_cert.pem(), server_key.serialize_pem()),
    );
    let haproxy_cfg = write(
        &dir,
        "haproxy.cfg",
        &format!(
            "global\n  maxconn 4096\n  nbthread 2\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n  http-reuse always\nfrontend fe\n  bind 127.0.0.1:{haproxy_port} ssl crt {dir}/haproxy.pem alpn http/1.1\n  default_backend be\nbackend be\n  server up 127.0.0.1:{up_port} ssl verify required ca-file {dir}/ca.pem\n",
            dir = dir.display()
        ),
    );
    let haproxy = Command::new("haproxy")
        .arg("-f")
        .arg(&haproxy_cfg)
        .arg("-db")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
        .map(Gate);
    if haproxy.is_some() {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", haproxy_port)).is_err() {
            assert!(Instant::now() < deadline, "haproxy did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let mut direct = Vec::new();
    let mut gated = Vec::new();
    let mut peer = Vec::new();
    for _ in 0..ROUNDS {
        direct.push(round(&connector, up_port, &token).await);
        gated.push(round(&connector, gate_port, &token).await);
        if haproxy.is_some() {
            peer.push(round(&connector, haproxy_port, &token).await);
        }
    }
    let summary = |rounds: &[Round]| {
        (
            median(rounds.iter().map(|r| r.p50_us).collect()),
            median(rounds.iter().map(|r| r.p99_us).collect()),
            median(rounds.iter().map(|r| r.rps).collect()),
        )
    };
    let (d50, d99, drps) = summary(&direct);
    let (g50, g99, grps) = summary(&gated);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "GET 1 KiB pod list over HTTPS keep-alive; medians of {ROUNDS} rounds"
    )
    .ok();
    writeln!(
        out,
        "| path | p50 latency | p99 latency | throughput ({CONNECTIONS} connections) |"
    )
    .ok();
    writeln!(out, "|---|---|---|---|").ok();
    writeln!(
        out,
        "| direct to the API server stand-in | {d50:.0} us | {d99:.0} us | {drps:.0} req/s |"
    )
    .ok();
    if !peer.is_empty() {
        let (h50, h99, hrps) = summary(&peer);
        writeln!(
            out,
            "| through HAProxy (TLS proxy only: no authentication, no RBAC) | {h50:.0} us | {h99:.0} us | {hrps:.0} req/s |"
        )
        .ok();
    }
    writeln!(
        out,
        "| through rampart gate (OIDC, MFA, RBAC, audit, impersonation) | {g50:.0} us | {g99:.0} us | {grps:.0} req/s |"
    )
    .ok();
    writeln!(
        out,
        "| rampart gate vs direct | +{:.0} us (x{:.2}) | +{:.0} us (x{:.2}) | x{:.2} |",
        g50 - d50,
        g50 / d50,
        g99 - d99,
        g99 / d99,
        grps / drps
    )
    .ok();
    if let Some(h) = &peer.first().map(|_| summary(&peer)) {
        writeln!(
            out,
            "| rampart gate vs HAProxy | {:+.0} us (x{:.2}) | {:+.0} us (x{:.2}) | x{:.2} |",
            g50 - h.0,
            g50 / h.0,
            g99 - h.1,
            g99 / h.1,
            grps / h.2
        )
        .ok();
    }
    drop(haproxy);
    let _ = std::fs::remove_dir_all(&dir);
}
