//! Extension points on the data path, for connection filtering and rate limiting.
//!
//! Two decisions are asked for, both plain synchronous functions so that the policy
//! behind them stays pure and testable:
//! - [`ConnectionFilter::admit`] runs right after `accept` (and after a PROXY header from
//!   a trusted balancer gave the real client address), before any TLS work or buffer
//!   allocation: the cheapest place to drop a flood.
//! - [`RequestFilter::check`] runs for every HTTP request once its route is known
//!   (before it is forwarded; unrouted requests are checked too, with no route), and
//!   [`RequestFilter::responded`] is told the status of each answer.
//!
//! And one notification: [`AbuseObserver::observed`] is told every time the gateway
//! itself refuses or cuts a client for misbehaving (a malformed or smuggling request, a
//! size limit, a slow-attack deadline, an HTTP/2 flood), so that a protection policy can
//! count offences per source and ban repeat offenders.
//!
//! The gateway itself applies its built-in limits (connection cap per listener,
//! timeouts, header sizes) whether or not a filter is installed.

use std::net::SocketAddr;

use http::{Method, StatusCode};

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

/// What the request filter sees: views into the request as the protocol engine holds
/// it, so that looking at a request costs no copies.
pub struct RequestInfo<'a> {
    /// Listener name.
    pub listener: &'a str,
    /// The route that matched, by name (`None`: no route matched).
    pub route: Option<&'a str>,
    /// Client address (after PROXY protocol).
    pub peer: SocketAddr,
    /// Method.
    pub method: &'a Method,
    /// Path as received (no query), already checked by the engine (see
    /// [`crate::route::route_request`]).
    pub path: &'a str,
    /// Header fields as received.
    pub headers: &'a dyn crate::route::HeaderLookup,
}

impl std::fmt::Debug for RequestInfo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestInfo")
            .field("listener", &self.listener)
            .field("route", &self.route)
            .field("peer", &self.peer)
            .field("method", &self.method)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestVerdict {
    /// Route it.
    Continue,
    /// Answer with this status (e.g. 429), with `Retry-After` in seconds when given,
    /// after `delay` when given (a tarpit), and close the connection.
    Respond {
        /// Status.
        status: StatusCode,
        /// `Retry-After` seconds.
        retry_after: Option<u32>,
        /// Hold the answer this long first.
        delay: Option<std::time::Duration>,
    },
}

/// Decides on requests before routing.
pub trait RequestFilter: Send + Sync + std::fmt::Debug {
    /// The verdict for one request.
    fn check(&self, request: &RequestInfo<'_>) -> RequestVerdict;

    /// The status the gateway answered a request with (after the server's answer, or
    /// its own), for error-rate accounting. Not called for answers made from a
    /// [`RequestVerdict::Respond`].
    fn responded(&self, listener: &str, route: Option<&str>, peer: SocketAddr, status: StatusCode) {
        let _ = (listener, route, peer, status);
    }
}

/// Why the gateway refused or cut a client on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Abuse {
    /// A request that does not parse (bad request line, bad header syntax, bad chunked
    /// encoding, obsolete line folding, whitespace before a colon).
    MalformedRequest,
    /// A request smuggling vector: Content-Length with Transfer-Encoding, conflicting
    /// Content-Lengths, an unknown or repeated transfer coding.
    Smuggling,
    /// Request line and headers larger than allowed.
    HeaderTooLarge,
    /// More headers than allowed.
    TooManyHeaders,
    /// A URI longer than allowed.
    UriTooLong,
    /// A body larger than allowed.
    BodyTooLarge,
    /// The request header did not arrive within its deadline (slowloris).
    SlowHeader,
    /// The body arrived slower than the minimum data rate (slow POST).
    SlowBody,
    /// The client read the response slower than its write deadline allows (slow read).
    SlowRead,
    /// The TLS handshake failed or missed its deadline.
    TlsHandshake,
    /// HTTP/2 abuse: rapid resets, CONTINUATION, SETTINGS or PING floods, too many
    /// streams or too large a header list.
    Http2Flood,
}

impl Abuse {
    /// Every reason, in a fixed order (the index of each is [`Abuse::index`]).
    pub const ALL: [Abuse; 11] = [
        Abuse::MalformedRequest,
        Abuse::Smuggling,
        Abuse::HeaderTooLarge,
        Abuse::TooManyHeaders,
        Abuse::UriTooLong,
        Abuse::BodyTooLarge,
        Abuse::SlowHeader,
        Abuse::SlowBody,
        Abuse::SlowRead,
        Abuse::TlsHandshake,
        Abuse::Http2Flood,
    ];

    /// This reason's position in [`Abuse::ALL`].
    pub fn index(self) -> usize {
        match self {
            Abuse::MalformedRequest => 0,
            Abuse::Smuggling => 1,
            Abuse::HeaderTooLarge => 2,
            Abuse::TooManyHeaders => 3,
            Abuse::UriTooLong => 4,
            Abuse::BodyTooLarge => 5,
            Abuse::SlowHeader => 6,
            Abuse::SlowBody => 7,
            Abuse::SlowRead => 8,
            Abuse::TlsHandshake => 9,
            Abuse::Http2Flood => 10,
        }
    }

    /// A stable label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Abuse::MalformedRequest => "malformed_request",
            Abuse::Smuggling => "smuggling",
            Abuse::HeaderTooLarge => "header_too_large",
            Abuse::TooManyHeaders => "too_many_headers",
            Abuse::UriTooLong => "uri_too_long",
            Abuse::BodyTooLarge => "body_too_large",
            Abuse::SlowHeader => "slow_header",
            Abuse::SlowBody => "slow_body",
            Abuse::SlowRead => "slow_read",
            Abuse::TlsHandshake => "tls_handshake",
            Abuse::Http2Flood => "http2_flood",
        }
    }
}

/// Told about every client the gateway refuses or cuts on its own.
pub trait AbuseObserver: Send + Sync + std::fmt::Debug {
    /// `listener` is the listener's name, `peer` the client (after PROXY protocol).
    fn observed(&self, listener: &str, peer: SocketAddr, abuse: Abuse);
}

/// The installed filters.
#[derive(Debug, Default, Clone)]
pub struct Hooks {
    /// At accept.
    pub connection: Option<std::sync::Arc<dyn ConnectionFilter>>,
    /// Before routing.
    pub request: Option<std::sync::Arc<dyn RequestFilter>>,
    /// Offences the gateway itself detected.
    pub abuse: Option<std::sync::Arc<dyn AbuseObserver>>,
}
