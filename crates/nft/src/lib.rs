//! Renders Rampart's firewall programs (`rampart-ruleset`) for nftables.
//!
//! What it does:
//! - [`replace_batch`]: the JSON batch for `nft -j -f -` that replaces one table
//!   atomically. The batch adds the table, deletes it (so whatever was there goes, and
//!   the delete cannot fail), adds it again with its chains, sets, maps and rules. The
//!   kernel applies a batch as one transaction: either the whole new table is in force
//!   or, if anything in it is refused, the old one stays untouched. Other tables are
//!   never touched: Rampart never flushes the ruleset.
//! - [`delete_batch`]: removes one table, whether or not it exists.
//! - [`text`]: the same table in nft's own syntax, for people and golden files.
//! - [`listing`]: what `nft -j list table` says about a table Rampart applied (its stamp,
//!   drop counters).
//!
//! Every table carries a chain named [`STAMP_CHAIN`] with a comment (the stamp) that
//! names the generation and digest of the program, so that `rampart agent status` can
//! tell which program is in force.
//!
//! What it does not do: it runs no command and needs no privilege (see
//! `rampart-dataplane`).

pub mod listing;
mod render;

pub use render::{
    STAMP_CHAIN, delete_batch, replace_batch, restore_batch, stamp_digest, text, update_batch,
};
