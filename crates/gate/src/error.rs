//! The gateway's errors.

/// Why the gateway cannot start or reload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GateError {
    /// A certificate, key or CA file is unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// The configuration or a manifest is invalid.
    #[error("invalid input:\n{0}")]
    Invalid(#[from] rampart_resources::Diagnostics),
    /// A file cannot be read or written, or a socket cannot be bound.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl GateError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
