//! rustls client configs: for a proxy's upstream connections and for tests.

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::{Identity, MinVersion, TlsError};

/// How a client config is built.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Trust anchors for server certificates.
    pub roots: Arc<RootCertStore>,
    /// ALPN protocols offered, in preference order.
    pub alpn: Vec<Vec<u8>>,
    /// A client certificate to present (mTLS), if any.
    pub identity: Option<Identity>,
    /// Oldest version offered.
    pub min_version: MinVersion,
}

impl ClientSettings {
    /// Settings trusting `roots`, with no ALPN and no client certificate.
    pub fn new(roots: Arc<RootCertStore>) -> Self {
        Self {
            roots,
            alpn: Vec::new(),
            identity: None,
            min_version: MinVersion::Tls12,
        }
    }
}

/// Builds a client config that verifies servers against the settings' roots.
pub fn client_config(settings: &ClientSettings) -> Result<Arc<ClientConfig>, TlsError> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match settings.min_version {
        MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ClientConfig::builder_with_provider(crate::provider())
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(settings.roots.clone());
    let mut config = match &settings.identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain().to_vec(), id.key().clone_key())
            .map_err(|e| TlsError::Config(e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = settings.alpn.clone();
    Ok(Arc::new(config))
}

/// Reads trust anchors from a PEM file of certificates.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_roots(&pem, &path.display().to_string())
}

/// Parses trust anchors from PEM text; `what` names the input in errors.
pub fn parse_roots(pem: &[u8], what: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for item in CertificateDer::pem_slice_iter(pem) {
        let cert = item.map_err(|e| TlsError::Pem {
            what: what.to_owned(),
            message: format!("invalid PEM: {e}"),
        })?;
        roots.add(cert).map_err(|e| TlsError::Certificate {
            what: what.to_owned(),
            message: e.to_string(),
        })?;
    }
    if roots.is_empty() {
        return Err(TlsError::Pem {
            what: what.to_owned(),
            message: "no CERTIFICATE block found".to_owned(),
        });
    }
    Ok(roots)
}
