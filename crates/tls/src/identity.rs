//! Identities: a certificate chain with its private key, loaded from PEM.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::TlsError;

/// The largest PEM file read (a certificate chain or a key is a few kilobytes).
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// A certificate chain (leaf first) and the private key of its leaf. Its `Debug` form
/// shows the names and fingerprint, never the key.
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    names: Vec<String>,
    not_after_unix: i64,
    fingerprint: Fingerprint,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("names", &self.names)
            .field("chain_len", &self.chain.len())
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            names: self.names.clone(),
            not_after_unix: self.not_after_unix,
            fingerprint: self.fingerprint,
        }
    }
}

impl Identity {
    /// Reads a certificate chain and a private key from two PEM files (they may be the
    /// same file). Errors name the file.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let cert_pem = read_capped(cert_path)?;
        let key_pem = read_capped(key_path)?;
        Self::from_pem_named(
            &cert_pem,
            &cert_path.display().to_string(),
            &key_pem,
            &key_path.display().to_string(),
        )
    }

    /// Parses a certificate chain and a private key from PEM text.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        Self::from_pem_named(cert_pem, "certificate", key_pem, "private key")
    }

    fn from_pem_named(
        cert_pem: &[u8],
        cert_what: &str,
        key_pem: &[u8],
        key_what: &str,
    ) -> Result<Self, TlsError> {
        let mut chain = Vec::new();
        for item in CertificateDer::pem_slice_iter(cert_pem) {
            match item {
                Ok(cert) => chain.push(cert),
                Err(e) => {
                    return Err(TlsError::Pem {
                        what: cert_what.to_owned(),
                        message: format!("invalid PEM: {e}"),
                    });
                }
            }
        }
        if chain.is_empty() {
            return Err(TlsError::Pem {
                what: cert_what.to_owned(),
                message: "no CERTIFICATE block found".to_owned(),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Pem {
            what: key_what.to_owned(),
            message: match e {
                rustls_pki_types::pem::Error::NoItemsFound => {
                    "no PRIVATE KEY block found (PKCS#8, SEC1 or PKCS#1)".to_owned()
                }
                other => format!("invalid PEM: {other}"),
            },
        })?;
        Self::from_der(chain, key, cert_what, key_what)
    }

    /// Builds an identity from DER values, checking that the key matches the leaf.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        cert_what: &str,
        key_what: &str,
    ) -> Result<Self, TlsError> {
        let Some(leaf) = chain.first() else {
            return Err(TlsError::Pem {
                what: cert_what.to_owned(),
                message: "empty certificate chain".to_owned(),
            });
        };
        let (names, not_after_unix) = leaf_facts(leaf.as_ref(), cert_what)?;
        let fingerprint = Fingerprint::of(leaf.as_ref());
        let identity = Self {
            chain,
            key,
            names,
            not_after_unix,
            fingerprint,
        };
        // Fail early: a key of an unsupported type or not matching the leaf.
        identity.certified_key_named(key_what)?;
        Ok(identity)
    }

    /// The chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The private key.
    pub fn key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    /// The DNS names the leaf is valid for: its subjectAltName DNS entries, or its
    /// subject common name when it has no such entry. Lower case.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The leaf's expiry, in seconds since the Unix epoch.
    pub fn not_after_unix(&self) -> i64 {
        self.not_after_unix
    }

    /// The SHA-256 fingerprint of the leaf certificate.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The rustls form: chain plus a signing key from the aws-lc-rs provider.
    pub fn certified_key(&self) -> Result<Arc<CertifiedKey>, TlsError> {
        self.certified_key_named("private key")
    }

    fn certified_key_named(&self, key_what: &str) -> Result<Arc<CertifiedKey>, TlsError> {
        let provider = crate::provider();
        let key = provider
            .key_provider
            .load_private_key(self.key.clone_key())
            .map_err(|e| TlsError::Key {
                what: key_what.to_owned(),
                message: format!("unsupported private key: {e}"),
            })?;
        let ck = CertifiedKey::new(self.chain.clone(), key);
        match ck.keys_match() {
            Ok(()) => Ok(Arc::new(ck)),
            // Some key types cannot report their public key; rustls accepts those.
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
                Ok(Arc::new(ck))
            }
            Err(_) => Err(TlsError::Key {
                what: key_what.to_owned(),
                message: "the private key does not match the certificate".to_owned(),
            }),
        }
    }
}

fn read_capped(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut buf = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })?;
    if buf.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError::Pem {
            what: path.display().to_string(),
            message: format!("larger than {MAX_PEM_BYTES} bytes"),
        });
    }
    Ok(buf)
}

/// The leaf's DNS names and expiry.
fn leaf_facts(der: &[u8], what: &str) -> Result<(Vec<String>, i64), TlsError> {
    let invalid = |message: String| TlsError::Certificate {
        what: what.to_owned(),
        message,
    };
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| invalid(e.to_string()))?;
    let mut names = Vec::new();
    let san = cert
        .subject_alternative_name()
        .map_err(|e| invalid(format!("subjectAltName: {e}")))?;
    if let Some(san) = san {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(n) = name {
                names.push(n.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        for cn in cert.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.to_ascii_lowercase());
            }
        }
    }
    Ok((names, cert.validity().not_after.timestamp()))
}

/// A SHA-256 digest of a DER certificate, shown as colon-separated upper-case hex
/// (the form `openssl x509 -fingerprint -sha256` prints).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of `der`.
    pub fn of(der: &[u8]) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Self(out)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_round_trips_through_pem() {
        let ss =
            crate::self_signed(&["Example.test".to_owned(), "*.apps.test".to_owned()]).unwrap();
        let id = Identity::from_pem(ss.cert_pem.as_bytes(), ss.key_pem.as_bytes()).unwrap();
        assert_eq!(id.names(), ["example.test", "*.apps.test"]);
        assert_eq!(id.fingerprint(), ss.identity.fingerprint());
        assert_eq!(id.fingerprint().to_string().len(), 32 * 3 - 1);
        assert!(id.not_after_unix() > 1_700_000_000);
    }

    #[test]
    fn mismatched_key_is_refused() {
        let a = crate::self_signed(&["a.test".to_owned()]).unwrap();
        let b = crate::self_signed(&["b.test".to_owned()]).unwrap();
        let err = Identity::from_pem(a.cert_pem.as_bytes(), b.key_pem.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }

    #[test]
    fn bad_pem_is_reported_not_panicking() {
        for (cert, key) in [
            (&b""[..], &b""[..]),
            (
                b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
                b"",
            ),
            (
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            ),
        ] {
            assert!(Identity::from_pem(cert, key).is_err());
        }
        let ss = crate::self_signed(&["a.test".to_owned()]).unwrap();
        let err = Identity::from_pem(ss.cert_pem.as_bytes(), b"nothing here").unwrap_err();
        assert!(err.to_string().contains("no PRIVATE KEY"), "{err}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = Identity::load(Path::new("/nonexistent/c.pem"), Path::new("/x")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/c.pem: cannot read"),
            "{err}"
        );
    }

    #[test]
    fn fingerprint_matches_known_digest() {
        // SHA-256("abc")
        assert_eq!(
            Fingerprint::of(b"abc").to_string(),
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }
}
