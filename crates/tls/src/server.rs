//! rustls server configs with Rampart's defaults.
//!
//! Defaults: TLS 1.2 minimum (TLS 1.3 only on request), the aws-lc-rs provider's cipher
//! suites (AEAD only, forward secret only), the client's cipher order ignored in favour
//! of the server's, ALPN as given (`h2`, `http/1.1` for an HTTP edge), a bounded session
//! cache for TLS 1.2 session ids, and session tickets from a [`RotatingTicketer`] when
//! one is given.

use std::sync::Arc;

use rustls::server::{ResolvesServerCert, ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};

use crate::{RotatingTicketer, TlsError};

/// The oldest TLS version accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MinVersion {
    /// TLS 1.2 and 1.3 (the default, as HAProxy's).
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// Whether clients must present a certificate.
#[derive(Debug, Clone, Default)]
pub enum ClientAuth {
    /// No client certificates are asked for.
    #[default]
    None,
    /// Clients may present a certificate signed by these roots; one that does not
    /// verify fails the handshake.
    Optional(Arc<RootCertStore>),
    /// Clients must present a certificate signed by these roots (mTLS).
    Required(Arc<RootCertStore>),
}

/// How a server config is built.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Oldest version accepted.
    pub min_version: MinVersion,
    /// ALPN protocols in preference order, e.g. `[b"h2", b"http/1.1"]`.
    pub alpn: Vec<Vec<u8>>,
    /// Session tickets (stateless resumption); `None` turns them off.
    pub tickets: Option<Arc<RotatingTicketer>>,
    /// Entries of the in-memory session-id cache (TLS 1.2 resumption and TLS 1.3 when
    /// tickets are off); 0 turns it off.
    pub session_cache_entries: usize,
    /// TLS 1.3 tickets sent after each full handshake.
    pub tls13_tickets: usize,
    /// Client certificate verification.
    pub client_auth: ClientAuth,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            min_version: MinVersion::Tls12,
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            tickets: None,
            session_cache_entries: 20_000,
            tls13_tickets: 2,
            client_auth: ClientAuth::None,
        }
    }
}

/// Builds a server config around a certificate resolver (usually a
/// [`crate::SniResolver`]).
pub fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
    settings: &ServerSettings,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = crate::provider();
    let versions: &[&'static rustls::SupportedProtocolVersion] = match settings.min_version {
        MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &settings.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Optional(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        ClientAuth::Required(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider)
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = settings.alpn.clone();
    config.ignore_client_order = true;
    config.session_storage = if settings.session_cache_entries == 0 {
        Arc::new(rustls::server::NoServerSessionStorage {})
    } else {
        ServerSessionMemoryCache::new(settings.session_cache_entries)
    };
    match &settings.tickets {
        Some(ticketer) => {
            config.ticketer = ticketer.clone();
            config.send_tls13_tickets = settings.tls13_tickets;
        }
        None => config.send_tls13_tickets = 0,
    }
    Ok(Arc::new(config))
}
