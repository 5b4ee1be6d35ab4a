//! Rampart's backend-neutral firewall program: what the node agent wants the kernel to
//! do, before it is written in any backend's syntax.
//!
//! A [`Table`] is one concern (security groups, the host firewall, pod policies) that
//! Rampart owns and replaces as a whole. It holds named address and flow sets, verdict
//! maps for constant-time dispatch, and chains of rules; base chains hang off a netfilter
//! [`Hook`]. The shapes are those every stateful packet filter on Linux offers (nftables
//! here, through `rampart-nft`), so that rendering is a translation, not a compilation.
//!
//! [`eval`] runs a packet through a table exactly as the kernel would (first match,
//! jumps, returns, verdict maps, base chain policy). The compilers' tests use it to check
//! a program against the reference semantics without root, and the agent uses it to
//! find the tracked connections a new ruleset no longer allows.
//!
//! What it does not do: no syntax of any backend, no I/O.

pub mod eval;
mod table;

pub use eval::{CtState, Packet, TableVerdict};
pub use table::{
    AddrMatch, BaseChain, Chain, Element, Hook, MapKey, Match, NameMatch, Policy, Rule, Set,
    SetKey, Side, Table, Verdict, VerdictMap, VmapKey, proto,
};
