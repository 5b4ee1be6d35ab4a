//! TLS for the gateway: the listener's server configuration and the client
//! configurations used towards the API server and the issuers, all with rustls and the
//! aws-lc-rs provider.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::GateError;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads a PEM certificate chain.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, GateError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| GateError::Tls(format!("{}: {e}", path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| GateError::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(GateError::Tls(format!(
            "{}: no certificate found",
            path.display()
        )));
    }
    Ok(certs)
}

/// Reads a PEM private key.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, GateError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| GateError::Tls(format!("{}: no usable private key: {e}", path.display())))
}

/// Reads a CA bundle into a root store.
pub fn load_roots(path: &Path) -> Result<RootCertStore, GateError> {
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(load_certs(path)?);
    if added == 0 {
        return Err(GateError::Tls(format!(
            "{}: no usable CA certificate",
            path.display()
        )));
    }
    Ok(roots)
}

/// The listener's configuration: TLS 1.2 and 1.3, HTTP/1.1 (which carries the SPDY and
/// WebSocket upgrades kubectl uses for exec, attach and port-forward).
pub fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, GateError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| GateError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| GateError::Tls(format!("{}: {e}", cert.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A client configuration trusting the CA bundle at `ca`, optionally presenting a
/// client certificate. ALPN is left to the HTTP connector (HTTP/1.1).
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, GateError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| GateError::Tls(e.to_string()))?
        .with_root_certificates(load_roots(ca)?);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| GateError::Tls(format!("{}: {e}", cert.display())))?,
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}
