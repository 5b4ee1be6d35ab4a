//! The `EdgeGateway` resource: decoding and validation, with no I/O.
//!
//! Stages: a document (from `rampart-resources`) decodes into [`raw::RawEdgeGateway`]
//! (serde; unknown fields refused), which [`decode`] turns into a validated
//! [`EdgeConfig`], reporting every problem at once with its file, document and field
//! path. Files named in the config (certificates, CA bundles) are not read here; the
//! runtime reads them when it applies a config, and a failure there rejects the config
//! like a validation error.
//!
//! Defaults and precedence: a field left out takes the default written on its type
//! ([`Timeouts`], [`Limits`], [`PassiveEjection`], ...); nothing is inherited between
//! listeners or backends.

pub mod protection;
pub mod raw;
mod types;
mod validate;

pub use types::*;
pub use validate::{API_VERSION, KIND, decode, load, parse_cidr, parse_duration};

#[cfg(test)]
mod protection_tests;
#[cfg(test)]
mod tests;
