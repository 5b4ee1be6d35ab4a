//! TLS for the gateway, built with `rampart-tls`: the listener's server configuration
//! (its certificate behind a hot-swappable resolver) and the client configurations used
//! towards the API server and the issuers.

use std::path::Path;
use std::sync::Arc;

use rampart_tls::{CertEntry, CertStore, ClientSettings, Identity, ServerSettings, SniResolver};

use crate::error::GateError;

fn tls_error(e: rampart_tls::TlsError) -> GateError {
    GateError::Tls(e.to_string())
}

/// Loads the listener's certificate into a store answering every handshake.
pub fn cert_store(cert: &Path, key: &Path) -> Result<CertStore, GateError> {
    let identity = Identity::load(cert, key).map_err(tls_error)?;
    CertStore::new(&[CertEntry::new(identity)], Some(0)).map_err(tls_error)
}

/// The listener's configuration: TLS 1.2 and 1.3, HTTP/1.1 only (it carries the SPDY
/// and WebSocket upgrades kubectl uses for exec, attach and port-forward). The
/// resolver can be given a new certificate without a restart.
pub fn server_config(resolver: Arc<SniResolver>) -> Result<Arc<rustls::ServerConfig>, GateError> {
    let settings = ServerSettings {
        alpn: vec![b"http/1.1".to_vec()],
        ..ServerSettings::default()
    };
    rampart_tls::server_config(resolver, &settings).map_err(tls_error)
}

/// A client configuration trusting the CA bundle at `ca`, optionally presenting a
/// client certificate. ALPN is left to the HTTP connector (HTTP/1.1).
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, GateError> {
    let roots = rampart_tls::load_roots(ca).map_err(tls_error)?;
    let mut settings = ClientSettings::new(Arc::new(roots));
    if let Some((cert, key)) = identity {
        settings.identity = Some(Identity::load(cert, key).map_err(tls_error)?);
    }
    let config = rampart_tls::client_config(&settings).map_err(tls_error)?;
    Ok(Arc::unwrap_or_clone(config))
}
