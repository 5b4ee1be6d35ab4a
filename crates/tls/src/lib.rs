//! Rampart's TLS material and configuration, on rustls with the aws-lc-rs provider.
//!
//! What it does:
//! - [`identity`]: certificate chains and private keys from PEM (ECDSA P-256/P-384,
//!   Ed25519 and RSA keys), with the names the leaf certificate is valid for, its expiry
//!   and its SHA-256 [`Fingerprint`];
//! - [`self_signed`]: fresh self-signed ECDSA P-256 identities (rcgen) for quick starts
//!   and tests;
//! - [`resolver`]: a server certificate resolver choosing among several certificates by
//!   SNI (exact names, then `*.` wildcards, then an optional default) and by the key
//!   types the client accepts, whose certificate set can be swapped atomically while
//!   connections are being accepted;
//! - [`tickets`]: session-ticket keys rotated on the caller's schedule (the current key
//!   seals, the previous one still opens);
//! - [`server`] and [`client`]: rustls configs with Rampart's defaults (TLS 1.2 minimum
//!   or TLS 1.3 only, ALPN, optional client-certificate verification, root stores from
//!   PEM).
//!
//! What it does not do: it opens no sockets, spawns no tasks and reads no clock (the
//! caller decides when ticket keys rotate). Reading PEM files is the only I/O, in
//! [`identity::Identity::load`] and [`client::load_roots`].

pub mod client;
pub mod identity;
pub mod resolver;
pub mod self_signed;
pub mod server;
pub mod tickets;

use std::path::PathBuf;
use std::sync::Arc;

pub use client::{ClientSettings, client_config, load_roots, parse_roots};
pub use identity::{Fingerprint, Identity};
pub use resolver::{CertEntry, CertStore, SniResolver};
pub use self_signed::{KeyKind, SelfSigned, self_signed, self_signed_with};
pub use server::{ClientAuth, MinVersion, ServerSettings, server_config};
pub use tickets::RotatingTicketer;

/// The crypto provider every Rampart TLS config uses: rustls's aws-lc-rs provider with
/// its cipher suites in Mozilla's "modern"/"intermediate" order: AES-128-GCM first,
/// then AES-256-GCM, then ChaCha20-Poly1305 (TLS 1.3, then the ECDHE suites of TLS
/// 1.2). AES-128-GCM is as strong as needed for TLS and its SHA-256 key schedule costs
/// less per handshake than AES-256-GCM's SHA-384 one. Servers apply this order (their
/// preference wins over the client's).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::aws_lc_rs::cipher_suite as cs;
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    p.cipher_suites = vec![
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(p)
}

/// What went wrong while loading TLS material or building a config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// PEM text that is not valid PEM, or holds no item of the expected kind.
    #[error("{what}: {message}")]
    Pem {
        /// Which input (a file path or a description).
        what: String,
        /// What is wrong.
        message: String,
    },
    /// A certificate that cannot be parsed as X.509.
    #[error("{what}: invalid certificate: {message}")]
    Certificate {
        /// Which input.
        what: String,
        /// What is wrong.
        message: String,
    },
    /// A private key rustls cannot use, or one that does not match the certificate.
    #[error("{what}: {message}")]
    Key {
        /// Which input.
        what: String,
        /// What is wrong.
        message: String,
    },
    /// A certificate could not be generated.
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
    /// rustls refused the configuration.
    #[error("invalid TLS configuration: {0}")]
    Config(String),
    /// The system random number generator failed.
    #[error("random number generator failed")]
    Random,
}
