//! Self-signed ECDSA P-256 identities, for quick starts and tests.

use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::{Identity, TlsError};

/// A freshly generated self-signed identity and its PEM texts. Its `Debug` form leaves
/// the key out.
#[derive(Clone)]
pub struct SelfSigned {
    /// The identity (one certificate, its key).
    pub identity: Identity,
    /// The certificate as PEM.
    pub cert_pem: String,
    /// The private key as PKCS#8 PEM. Secret: never log it.
    pub key_pem: String,
}

impl std::fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfSigned")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// The key type of a generated identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyKind {
    /// ECDSA on P-256 with SHA-256: fast handshakes, the edge's default.
    #[default]
    EcdsaP256,
    /// RSA 2048 (PKCS#1 v1.5 / PSS signatures), for old clients and comparisons.
    Rsa2048,
}

/// Generates a self-signed certificate for `names` (DNS names or IP addresses) with a
/// new ECDSA P-256 key.
pub fn self_signed(names: &[String]) -> Result<SelfSigned, TlsError> {
    self_signed_with(names, KeyKind::EcdsaP256)
}

/// Generates a self-signed certificate for `names` with a new key of the given kind.
pub fn self_signed_with(names: &[String], kind: KeyKind) -> Result<SelfSigned, TlsError> {
    let alg = match kind {
        KeyKind::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyKind::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
    };
    let key = rcgen::KeyPair::generate_for(alg).map_err(|e| TlsError::Generate(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(
        rcgen::DnType::CommonName,
        names.first().map_or("rampart", String::as_str),
    );
    dn.push(rcgen::DnType::OrganizationName, "Rampart self-signed");
    params.distinguished_name = dn;
    let cert = params
        .self_signed(&key)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let der: CertificateDer<'static> = cert.der().clone();
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let identity =
        Identity::from_der(vec![der], key_der, "generated certificate", "generated key")?;
    Ok(SelfSigned {
        identity,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}
