//! Applies Rampart's firewall programs to the kernel.
//!
//! What it does:
//! - [`nft`]: runs `nft` inside a network namespace: one JSON batch per change, so a
//!   table is replaced atomically (a refused batch leaves the previous rules in force);
//!   reads tables back; removes them. Only tables Rampart names are ever touched.
//!
//! What it does not do: it decides nothing about what the rules say (see
//! `rampart-policy` and `rampart-firewall`), and it never flushes the whole ruleset.

pub mod nft;

pub use nft::{Applied, Netns, NftError};
