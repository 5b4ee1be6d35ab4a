//! Full handshakes between a rustls client and a server built by rampart-tls, in memory.

#![expect(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

use std::sync::Arc;

use rampart_tls::{
    CertEntry, CertStore, ClientSettings, MinVersion, RotatingTicketer, ServerSettings,
    SniResolver, client_config, parse_roots, self_signed, server_config,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ServerConnection};

struct Outcome {
    leaf_names_fp: rampart_tls::Fingerprint,
    alpn: Option<Vec<u8>>,
    version: Option<rustls::ProtocolVersion>,
    suite: Option<rustls::CipherSuite>,
    resumed: bool,
}

fn handshake(
    server: &Arc<rustls::ServerConfig>,
    client: &Arc<rustls::ClientConfig>,
    name: &str,
) -> Result<Outcome, rustls::Error> {
    let mut c = ClientConnection::new(
        client.clone(),
        ServerName::try_from(name.to_owned()).unwrap(),
    )
    .unwrap();
    let mut s = ServerConnection::new(server.clone()).unwrap();
    for _ in 0..20 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
            s.process_new_packets()?;
        }
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
            c.process_new_packets()?;
        }
        if !c.is_handshaking() && !s.is_handshaking() && !s.wants_write() && !c.wants_write() {
            break;
        }
    }
    let leaf = c.peer_certificates().unwrap()[0].clone();
    Ok(Outcome {
        leaf_names_fp: rampart_tls::Fingerprint::of(leaf.as_ref()),
        alpn: c.alpn_protocol().map(<[u8]>::to_vec),
        version: c.protocol_version(),
        suite: c.negotiated_cipher_suite().map(|s| s.suite()),
        resumed: matches!(c.handshake_kind(), Some(rustls::HandshakeKind::Resumed)),
    })
}

fn client_for(pems: &[&str], alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let roots = parse_roots(pems.join("").as_bytes(), "test roots").unwrap();
    let mut settings = ClientSettings::new(Arc::new(roots));
    settings.alpn = alpn.iter().map(|p| p.to_vec()).collect();
    client_config(&settings).unwrap()
}

#[test]
fn sni_alpn_and_resumption() {
    let a = self_signed(&["a.test".to_owned()]).unwrap();
    let w = self_signed(&["*.apps.test".to_owned()]).unwrap();
    let store = CertStore::new(
        &[
            CertEntry::new(a.identity.clone()),
            CertEntry::new(w.identity.clone()),
        ],
        None,
    )
    .unwrap();
    let resolver = SniResolver::new(store);
    let ticketer = Arc::new(RotatingTicketer::new(3600).unwrap());
    let settings = ServerSettings {
        tickets: Some(ticketer.clone()),
        ..ServerSettings::default()
    };
    let server = server_config(resolver.clone(), &settings).unwrap();
    let client = client_for(&[&a.cert_pem, &w.cert_pem], &[b"h2", b"http/1.1"]);

    let first = handshake(&server, &client, "a.test").unwrap();
    assert_eq!(first.leaf_names_fp, a.identity.fingerprint());
    assert_eq!(first.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(first.version, Some(rustls::ProtocolVersion::TLSv1_3));
    assert!(!first.resumed);
    assert_eq!(
        first.suite,
        Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
    );

    let wild = handshake(&server, &client, "shop.apps.test").unwrap();
    assert_eq!(wild.leaf_names_fp, w.identity.fingerprint());

    // The client kept a ticket for a.test: the second handshake resumes, also across
    // one ticket-key rotation.
    ticketer.rotate().unwrap();
    let again = handshake(&server, &client, "a.test").unwrap();
    assert!(again.resumed);

    // Unknown name and no default: refused.
    assert!(handshake(&server, &client, "other.test").is_err());

    // Swapping the store takes effect for the next handshake.
    let b = self_signed(&["a.test".to_owned()]).unwrap();
    resolver.replace(CertStore::new(&[CertEntry::new(b.identity.clone())], None).unwrap());
    let client_b = client_for(&[&b.cert_pem], &[b"http/1.1"]);
    let swapped = handshake(&server, &client_b, "a.test").unwrap();
    assert_eq!(swapped.leaf_names_fp, b.identity.fingerprint());
    assert_eq!(swapped.alpn.as_deref(), Some(&b"http/1.1"[..]));
}

#[test]
fn tls13_only_refuses_tls12_clients() {
    let a = self_signed(&["a.test".to_owned()]).unwrap();
    let resolver =
        SniResolver::new(CertStore::new(&[CertEntry::new(a.identity.clone())], None).unwrap());
    let server = server_config(
        resolver,
        &ServerSettings {
            min_version: MinVersion::Tls13,
            ..ServerSettings::default()
        },
    )
    .unwrap();
    let roots = parse_roots(a.cert_pem.as_bytes(), "roots").unwrap();
    let tls12_only = Arc::new(
        rustls::ClientConfig::builder_with_provider(rampart_tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    assert!(handshake(&server, &tls12_only, "a.test").is_err());
    let modern = client_for(&[&a.cert_pem], &[]);
    assert!(handshake(&server, &modern, "a.test").is_ok());
}

#[test]
fn tls12_with_rsa_certificate() {
    let rsa = rampart_tls::self_signed_with(&["a.test".to_owned()], rampart_tls::KeyKind::Rsa2048)
        .unwrap();
    let resolver =
        SniResolver::new(CertStore::new(&[CertEntry::new(rsa.identity.clone())], None).unwrap());
    let server = server_config(resolver, &ServerSettings::default()).unwrap();
    let roots = parse_roots(rsa.cert_pem.as_bytes(), "roots").unwrap();
    let tls12 = Arc::new(
        rustls::ClientConfig::builder_with_provider(rampart_tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let out = handshake(&server, &tls12, "a.test").unwrap();
    assert_eq!(out.version, Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(out.leaf_names_fp, rsa.identity.fingerprint());
}

#[test]
fn required_client_certificates() {
    let server_id = self_signed(&["a.test".to_owned()]).unwrap();
    let client_id = self_signed(&["client.test".to_owned()]).unwrap();
    let resolver = SniResolver::new(
        CertStore::new(&[CertEntry::new(server_id.identity.clone())], None).unwrap(),
    );
    let client_roots = parse_roots(client_id.cert_pem.as_bytes(), "client roots").unwrap();
    let server = server_config(
        resolver,
        &ServerSettings {
            client_auth: rampart_tls::ClientAuth::Required(Arc::new(client_roots)),
            ..ServerSettings::default()
        },
    )
    .unwrap();
    let roots = Arc::new(parse_roots(server_id.cert_pem.as_bytes(), "roots").unwrap());
    let anonymous = client_config(&ClientSettings::new(roots.clone())).unwrap();
    assert!(handshake(&server, &anonymous, "a.test").is_err());
    let mut with_cert = ClientSettings::new(roots);
    with_cert.identity = Some(client_id.identity.clone());
    let with_cert = client_config(&with_cert).unwrap();
    assert!(handshake(&server, &with_cert, "a.test").is_ok());
    // A certificate from another issuer is refused.
    let stranger = self_signed(&["client.test".to_owned()]).unwrap();
    let mut other = ClientSettings::new(Arc::new(
        parse_roots(server_id.cert_pem.as_bytes(), "roots").unwrap(),
    ));
    other.identity = Some(stranger.identity);
    assert!(handshake(&server, &client_config(&other).unwrap(), "a.test").is_err());
}
