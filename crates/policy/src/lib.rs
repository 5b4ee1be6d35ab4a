//! Rampart's policy engine: exact Kubernetes NetworkPolicy semantics with the
//! AdminNetworkPolicy and BaselineAdminNetworkPolicy tiers, over a cluster's workloads.
//!
//! What it does:
//! - [`eval`]: the reference evaluator, the semantics written out rule by rule, with a
//!   full account of each decision (`rampart policy explain`);
//! - [`index`]: policies compiled once against a cluster into classes of pods that no
//!   policy tells apart, for verdicts in nanoseconds and whole reachability matrices
//!   computed class by class (`rampart policy matrix`);
//! - [`matrix`]: the matrix output formats;
//! - [`lint`]: findings that an auditor asks about (isolation by default, dead rules,
//!   allows from anywhere, shadowed policies).
//!
//! What it does not do: no parsing (see `rampart-resources`), no I/O, no clock, no
//! enforcement (the node agent compiles the same policies into kernel rules).

mod bitset;
pub mod eval;
pub mod index;
pub mod ir;
pub mod lint;
pub mod matrix;
pub mod synth;

pub use eval::{Endpoint, Evaluator, Explanation};
pub use index::{ClassMatrix, FlowEnd, Index, PodId, PodMatrix};
