//! Applies Rampart's firewall programs to the kernel, and runs the node agent.
//!
//! What it does:
//! - [`nft`]: runs `nft` inside a network namespace: one JSON batch per change, so a
//!   table is replaced atomically (a refused batch leaves the previous rules in force);
//!   reads tables back; removes them. Only tables Rampart names are ever touched.
//! - [`config`]: the agent's `AgentConfig`, including what happens to connections whose
//!   allow is removed.
//! - [`agent`]: plan (inputs to tables), reconcile (one transaction per change, set
//!   updates when only members changed), tries that revert unless confirmed, state.
//! - [`conntrack`]: deletes the tracked connections that new rules no longer allow.
//! - [`diff`]: desired against applied, in the kernel's own words.
//!
//! What it does not do: it decides nothing about what the rules say (see
//! `rampart-policy` and `rampart-firewall`), and it never flushes the whole ruleset.

pub mod agent;
pub mod config;
pub mod conntrack;
pub mod diff;
pub mod nft;

pub use agent::{Agent, AgentError, Plan, Report};
pub use config::{AgentConfig, Revoked, load_config};
pub use nft::{Applied, Netns, NftError};
