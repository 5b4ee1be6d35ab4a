//! Rampart's rate limiting algebra, with no clock, no sockets and no threads: every
//! function takes the time it is asked at ([`Time`], nanoseconds on the caller's
//! monotonic clock), so every decision can be replayed in a test.
//!
//! What it has:
//! - [`Quota`]: a sustained rate with a burst, checked with GCRA ([`GcraState`], 8
//!   bytes per key) or as a [`TokenBucket`] ([`BucketState`]); both make the same
//!   decisions, denials change no state and carry an exact `retry_after`;
//! - [`RateCounter`]: events over a sliding [`Period`] (current and previous period,
//!   weighted), 12 bytes;
//! - [`BoundedLru`]: a map with a hard size bound that evicts the least recently seen
//!   key, with pinning for keys that must not be forgotten (open connections) and
//!   expiry; keyed hashing so that attackers cannot aim at one bucket;
//! - [`StickTable`]: per-key counters in the spirit of HAProxy's stick tables
//!   (`conn_cur`, `conn_rate`, `handshake_rate`, `http_req_rate`, `http_err_rate`,
//!   `offence_rate`) in a `BoundedLru`: millions of source addresses cannot make it
//!   grow past its capacity;
//! - [`BanList`]: bans of address prefixes until a time, bounded, with lookups by
//!   longest covering prefix.
//!
//! What it does not do: locking (callers shard and lock), reading clocks, deciding
//! policy (which limits apply to what, how long a ban lasts: the edge's `protect`
//! module does that), I/O of any kind.

mod ban;
mod bucket;
mod gcra;
mod lru;
mod stick;
mod time;
mod window;

pub use ban::{Added, Ban, BanError, BanList};
pub use bucket::{BucketState, TokenBucket};
pub use gcra::{Decision, GcraState, Quota, QuotaError};
pub use lru::{Access, BoundedLru, Full};
pub use stick::{ConnectionAttempt, Counters, Periods, Snapshot, StickTable};
pub use time::Time;
pub use window::{Period, RateCounter};

#[cfg(test)]
mod algebra;
