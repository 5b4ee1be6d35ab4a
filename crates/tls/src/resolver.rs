//! Choosing the server certificate by SNI, with a certificate set that can be swapped
//! while connections are accepted.
//!
//! Lookup order for a ClientHello with server name `n` (lower-cased):
//! 1. certificates whose names include `n` exactly;
//! 2. certificates with the wildcard `*.rest` where `n` is `label.rest` (one label only,
//!    as in RFC 6125: `*.example.com` matches `a.example.com`, not `a.b.example.com`
//!    nor `example.com`);
//! 3. the default certificate, if the store has one (also used when the client sends no
//!    SNI).
//!
//! Among the certificates found at the first step that finds any, the first one whose key
//! can sign with a scheme the client offers wins, so an ECDSA and an RSA certificate for
//! the same name serve modern and old clients alike (ECDSA first when listed first).
//! No match: the handshake fails (`unrecognized_name`), fail closed.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::{Fingerprint, Identity, TlsError};

/// One certificate of a store, with the names it answers for.
#[derive(Debug, Clone)]
pub struct CertEntry {
    /// The identity.
    pub identity: Identity,
    /// The names it is chosen for; empty means the names in the certificate.
    pub names: Vec<String>,
}

impl CertEntry {
    /// An entry answering for the names in the certificate.
    pub fn new(identity: Identity) -> Self {
        Self {
            identity,
            names: Vec::new(),
        }
    }
}

/// An immutable set of certificates indexed by name.
#[derive(Debug, Default)]
pub struct CertStore {
    exact: HashMap<String, Vec<Arc<CertifiedKey>>>,
    /// Keyed by the part after `*.`.
    wildcard: HashMap<String, Vec<Arc<CertifiedKey>>>,
    default: Vec<Arc<CertifiedKey>>,
    fingerprints: Vec<(Vec<String>, Fingerprint)>,
}

impl CertStore {
    /// Builds a store. `default_index` picks the entry used when nothing matches (or
    /// when the client sends no SNI); `None` refuses such handshakes.
    pub fn new(entries: &[CertEntry], default_index: Option<usize>) -> Result<Self, TlsError> {
        let mut store = Self::default();
        for (i, entry) in entries.iter().enumerate() {
            let ck = entry.identity.certified_key()?;
            let names: Vec<String> = if entry.names.is_empty() {
                entry.identity.names().to_vec()
            } else {
                entry.names.iter().map(|n| n.to_ascii_lowercase()).collect()
            };
            for name in &names {
                let name = name.trim_end_matches('.');
                match name.strip_prefix("*.") {
                    Some(rest) => store
                        .wildcard
                        .entry(rest.to_owned())
                        .or_default()
                        .push(ck.clone()),
                    None => store
                        .exact
                        .entry(name.to_owned())
                        .or_default()
                        .push(ck.clone()),
                }
            }
            if default_index == Some(i) {
                store.default.push(ck.clone());
            }
            store
                .fingerprints
                .push((names, entry.identity.fingerprint()));
        }
        Ok(store)
    }

    /// The names and fingerprint of every certificate, in order.
    pub fn fingerprints(&self) -> &[(Vec<String>, Fingerprint)] {
        &self.fingerprints
    }

    /// The certificate for a server name whose key can sign with one of `schemes`.
    pub fn select(
        &self,
        server_name: Option<&str>,
        schemes: &[rustls::SignatureScheme],
    ) -> Option<&Arc<CertifiedKey>> {
        self.candidates(server_name)
            .iter()
            .find(|ck| ck.key.choose_scheme(schemes).is_some())
    }

    /// The candidates for a server name, following the lookup order.
    pub fn candidates(&self, server_name: Option<&str>) -> &[Arc<CertifiedKey>] {
        if let Some(name) = server_name {
            let name = name.trim_end_matches('.');
            // Server names in a ClientHello are ASCII; compare case-insensitively
            // without allocating when already lower case.
            let lowered;
            let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
                lowered = name.to_ascii_lowercase();
                lowered.as_str()
            } else {
                name
            };
            if let Some(found) = self.exact.get(name) {
                return found;
            }
            if let Some((_, rest)) = name.split_once('.')
                && let Some(found) = self.wildcard.get(rest)
            {
                return found;
            }
        }
        &self.default
    }
}

/// A [`ResolvesServerCert`] over a [`CertStore`] that can be replaced at any time; a
/// handshake uses the store that was current when its ClientHello arrived.
#[derive(Debug)]
pub struct SniResolver {
    store: ArcSwap<CertStore>,
}

impl SniResolver {
    /// A resolver starting with `store`.
    pub fn new(store: CertStore) -> Arc<Self> {
        Arc::new(Self {
            store: ArcSwap::from_pointee(store),
        })
    }

    /// Replaces the certificate set; handshakes already past certificate selection keep
    /// the certificate they chose.
    pub fn replace(&self, store: CertStore) {
        self.store.store(Arc::new(store));
    }

    /// The current store.
    pub fn current(&self) -> Arc<CertStore> {
        self.store.load_full()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let store = self.store.load();
        store
            .select(client_hello.server_name(), client_hello.signature_schemes())
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(names: &[&str]) -> CertEntry {
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        CertEntry::new(crate::self_signed(&names).unwrap().identity)
    }

    fn pick(store: &CertStore, name: Option<&str>) -> Option<usize> {
        let found = store.candidates(name).first()?;
        store
            .fingerprints()
            .iter()
            .position(|(_, fp)| Fingerprint::of(found.end_entity_cert().unwrap().as_ref()) == *fp)
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let store = CertStore::new(
            &[
                entry(&["api.example.test"]),
                entry(&["*.example.test"]),
                entry(&["fallback.test"]),
            ],
            Some(2),
        )
        .unwrap();
        assert_eq!(pick(&store, Some("api.example.test")), Some(0));
        assert_eq!(pick(&store, Some("API.Example.Test.")), Some(0));
        assert_eq!(pick(&store, Some("www.example.test")), Some(1));
        // One label only.
        assert_eq!(pick(&store, Some("a.b.example.test")), Some(2));
        assert_eq!(pick(&store, Some("example.test")), Some(2));
        assert_eq!(pick(&store, None), Some(2));
    }

    #[test]
    fn key_type_follows_the_client_schemes() {
        use rustls::SignatureScheme as S;
        let names = ["a.test".to_owned()];
        let ec = crate::self_signed(&names).unwrap();
        let rsa = crate::self_signed_with(&names, crate::KeyKind::Rsa2048).unwrap();
        let store = CertStore::new(
            &[
                CertEntry::new(ec.identity.clone()),
                CertEntry::new(rsa.identity.clone()),
            ],
            None,
        )
        .unwrap();
        let fp = |ck: &Arc<CertifiedKey>| Fingerprint::of(ck.end_entity_cert().unwrap().as_ref());
        let modern = [S::ECDSA_NISTP256_SHA256, S::RSA_PSS_SHA256];
        let old = [S::RSA_PKCS1_SHA256];
        assert_eq!(
            fp(store.select(Some("a.test"), &modern).unwrap()),
            ec.identity.fingerprint()
        );
        assert_eq!(
            fp(store.select(Some("a.test"), &old).unwrap()),
            rsa.identity.fingerprint()
        );
        assert!(store.select(Some("a.test"), &[S::ED448]).is_none());
    }

    #[test]
    fn no_default_fails_closed() {
        let store = CertStore::new(&[entry(&["a.test"])], None).unwrap();
        assert_eq!(pick(&store, Some("b.test")), None);
        assert_eq!(pick(&store, None), None);
    }

    #[test]
    fn explicit_names_override_certificate_names() {
        let mut e = entry(&["a.test"]);
        e.names = vec!["Other.Test".to_owned()];
        let store = CertStore::new(&[e], None).unwrap();
        assert_eq!(pick(&store, Some("other.test")), Some(0));
        assert_eq!(pick(&store, Some("a.test")), None);
    }

    #[test]
    fn replace_swaps_the_store() {
        let resolver = SniResolver::new(CertStore::new(&[entry(&["a.test"])], None).unwrap());
        assert_eq!(resolver.current().candidates(Some("a.test")).len(), 1);
        resolver.replace(CertStore::new(&[entry(&["b.test"])], None).unwrap());
        assert!(resolver.current().candidates(Some("a.test")).is_empty());
        assert_eq!(resolver.current().candidates(Some("b.test")).len(), 1);
    }
}
