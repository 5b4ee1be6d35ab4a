//! Loading of Rampart's inputs: Kubernetes-style documents (`apiVersion`, `kind`,
//! `metadata`, `spec`) in YAML or JSON, from files, directories and standard input.
//!
//! What it does:
//! - [`source`] reads texts (the only file-system access, read-only, size-capped);
//! - [`document`] splits a text into documents (multi-document YAML, JSON streams,
//!   `kind: List` as `kubectl get -o yaml|json` prints it);
//! - [`diag`] reports every problem at once, each with its file, document index, line,
//!   object and field path.
//!
//! What it does not do: it opens no sockets, spawns no tasks and reads no clock. Typed
//! decoding of each kind lives with the kind (the cluster and policy kinds in
//! [`cluster`]; other roles decode their own kinds from [`document::Document`]s).

pub mod cluster;
pub mod diag;
pub mod document;
mod raw;
pub mod source;

pub use cluster::{ClusterInput, Skipped, decode_cluster, load_cluster};
pub use diag::{Diagnostic, Diagnostics, FieldPath, Location, ObjectErrors, Severity};
pub use document::{Document, parse_source, parse_sources};
pub use source::{Source, read_sources};
