//! Extension points on the data path, for connection filtering and rate limiting.
//!
//! Two decisions are asked for, both plain synchronous functions so that the policy
//! behind them stays pure and testable:
//! - [`ConnectionFilter::admit`] runs right after `accept` (and after a PROXY header from
//!   a trusted balancer gave the real client address), before any TLS work or buffer
//!   allocation: the cheapest place to drop a flood.
//! - [`RequestFilter::check`] runs for every HTTP request before routing.
//!
//! The gateway itself applies its built-in limits (connection cap per listener,
//! timeouts, header sizes) whether or not a filter is installed.

use std::net::SocketAddr;

use http::{HeaderMap, Method, StatusCode, Uri};

/// What to do with a new connection.
#[derive(Debug)]
pub enum Admission {
    /// Serve it. The token, if any, is dropped when the connection closes (for
    /// concurrent-connection accounting).
    Accept(Option<Box<dyn Send + Sync + std::fmt::Debug>>),
    /// Close it at once.
    Refuse,
}

/// Decides on connections at accept.
pub trait ConnectionFilter: Send + Sync + std::fmt::Debug {
    /// `listener` is the listener's name, `peer` the client (after PROXY protocol).
    fn admit(&self, listener: &str, peer: SocketAddr) -> Admission;
}

/// What the request filter sees.
#[derive(Debug)]
pub struct RequestInfo<'a> {
    /// Listener name.
    pub listener: &'a str,
    /// Client address (after PROXY protocol).
    pub peer: SocketAddr,
    /// Method.
    pub method: &'a Method,
    /// URI as received.
    pub uri: &'a Uri,
    /// Headers as received.
    pub headers: &'a HeaderMap,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestVerdict {
    /// Route it.
    Continue,
    /// Answer at once with this status (e.g. 429), with `Retry-After` in seconds when
    /// given.
    Respond {
        /// Status.
        status: StatusCode,
        /// `Retry-After` seconds.
        retry_after: Option<u32>,
    },
}

/// Decides on requests before routing.
pub trait RequestFilter: Send + Sync + std::fmt::Debug {
    /// The verdict for one request.
    fn check(&self, request: &RequestInfo<'_>) -> RequestVerdict;
}

/// The installed filters.
#[derive(Debug, Default, Clone)]
pub struct Hooks {
    /// At accept.
    pub connection: Option<std::sync::Arc<dyn ConnectionFilter>>,
    /// Before routing.
    pub request: Option<std::sync::Arc<dyn RequestFilter>>,
}
