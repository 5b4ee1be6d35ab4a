//! The validated configuration: every value here has been checked, so the runtime never
//! meets an impossible one.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};

/// A whole gateway.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// `metadata.name`.
    pub name: String,
    /// Where the document was read, for errors found when the config is applied.
    pub location: Option<rampart_resources::Location>,
    /// The admin listener (`/metrics`, `/healthz`, `/config`), if any.
    pub admin: Option<SocketAddr>,
    /// Timeouts, each with a safe default.
    pub timeouts: Timeouts,
    /// Sizes and counts an attacker controls.
    pub limits: Limits,
    /// Peers whose `X-Forwarded-For`/`Forwarded` headers are kept and extended rather
    /// than replaced.
    pub trusted_proxies: Vec<Cidr>,
    /// Whether one JSON line per request is logged.
    pub access_log: bool,
    /// The listeners, in order.
    pub listeners: Vec<Listener>,
    /// The backends; routes refer to them by index.
    pub backends: Vec<Backend>,
    /// Connection filtering, limits, request rate limits and bans.
    pub protection: super::protection::Protection,
}

/// Timeouts (HAProxy ships none; these are Rampart's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect to a backend server (5 s).
    pub connect: Duration,
    /// For a connection's first request, from the end of the TLS handshake to the last
    /// header byte; for later requests, from their first byte to their last header
    /// byte (10 s): slow-header clients (slowloris) are cut here with 408. A connection
    /// that sent no byte of a request by then is closed without a response.
    pub client_header: Duration,
    /// A connection with no request in progress: HTTP/1.1 between requests (keep-alive),
    /// HTTP/2 with no open stream and no traffic (60 s).
    pub idle: Duration,
    /// The window over which a request body must arrive at [`Limits::min_body_rate`]
    /// at least (10 s): slow-body clients (slow POST) are cut here.
    pub client_body: Duration,
    /// The window over which a client must take response bytes at
    /// [`Limits::min_read_rate`] at least while the gateway has bytes for it (10 s):
    /// slow readers are cut here.
    pub client_write: Duration,
    /// From sending a request to a backend to its response headers (60 s).
    pub server_response: Duration,
    /// From accept to a finished TLS handshake (10 s).
    pub tls_handshake: Duration,
    /// A TCP-proxied connection with no traffic in either direction (1 h).
    pub tcp_idle: Duration,
    /// How long SIGTERM waits for in-flight requests (30 s).
    pub drain: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            client_header: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            client_body: Duration::from_secs(10),
            client_write: Duration::from_secs(10),
            server_response: Duration::from_secs(60),
            tls_handshake: Duration::from_secs(10),
            tcp_idle: Duration::from_secs(3600),
            drain: Duration::from_secs(30),
        }
    }
}

/// Limits on what clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of request line plus headers (64 KiB); larger gets 431.
    pub max_header_bytes: usize,
    /// Number of request headers (100); more gets 431.
    pub max_headers: usize,
    /// Length of a request target (8 KiB); longer gets 414.
    pub max_uri_bytes: usize,
    /// Request body bytes (16 MiB); larger gets 413. Routes may set their own.
    pub max_body_bytes: u64,
    /// Bytes per second a request body must arrive at, over each
    /// [`Timeouts::client_body`] window (1024).
    pub min_body_rate: u64,
    /// Bytes per second a client must take a response at while the gateway has bytes
    /// for it, over each [`Timeouts::client_write`] window (1024).
    pub min_read_rate: u64,
    /// Open client connections per listener (50 000); more are closed at accept.
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams per connection (100).
    pub h2_max_concurrent_streams: u32,
    /// Streams an HTTP/2 client may reset per second, on average, with bursts of twice
    /// as many (100): more is a rapid-reset attack (CVE-2023-44487) and the connection
    /// is closed.
    pub h2_max_resets_per_second: u32,
    /// PING, SETTINGS, PRIORITY, empty DATA and CONTINUATION frames an HTTP/2 client may
    /// send per second, on average, with bursts of twice as many (100): more is a
    /// flood and the connection is closed.
    pub h2_max_control_frames_per_second: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            max_body_bytes: 16 * 1024 * 1024,
            min_body_rate: 1024,
            min_read_rate: 1024,
            max_connections: 50_000,
            h2_max_concurrent_streams: 100,
            h2_max_resets_per_second: 100,
            h2_max_control_frames_per_second: 100,
        }
    }
}

/// An IP prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address (host bits zero).
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// True when `ip` is inside the prefix (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    /// True when any prefix of `set` contains `ip`.
    pub fn any_contains(set: &[Cidr], ip: IpAddr) -> bool {
        set.iter().any(|c| c.contains(ip))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// HTTP (with TLS: HTTPS, HTTP/2 by ALPN), routed by [`HttpRoute`]s. TCP routes by
    /// SNI are checked first, before any termination.
    Http,
    /// Bytes forwarded to a backend, chosen by SNI or, failing that, by the route
    /// without SNI (the listener's port).
    Tcp,
}

/// A listening socket.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Unique name, used in metrics and logs.
    pub name: String,
    /// Where it listens.
    pub address: SocketAddr,
    /// HTTP or TCP.
    pub mode: Mode,
    /// TLS termination (HTTP mode only).
    pub tls: Option<ListenerTls>,
    /// Accept a PROXY protocol v2 header from these peers (and only from them: other
    /// peers are refused when this is set).
    pub accept_proxy_from: Option<Vec<Cidr>>,
    /// Routes by SNI (passthrough, TLS untouched) and the by-port route.
    pub tcp_routes: Vec<TcpRoute>,
    /// HTTP routes, first match wins.
    pub http_routes: Vec<HttpRoute>,
}

/// TLS on a listener.
#[derive(Debug, Clone)]
pub struct ListenerTls {
    /// Certificates; the SNI resolver picks among them.
    pub certificates: Vec<CertSource>,
    /// Index of the certificate used when no name matches; `None` refuses the
    /// handshake.
    pub default_certificate: Option<usize>,
    /// Oldest TLS version.
    pub min_version: rampart_tls::MinVersion,
    /// ALPN protocols offered.
    pub alpn: Vec<Vec<u8>>,
    /// Session tickets on.
    pub session_tickets: bool,
    /// Ticket key rotation interval.
    pub ticket_key_rotation: Duration,
}

/// Where a certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSource {
    /// Name for references (`defaultCertificate`) and logs.
    pub name: String,
    /// Files or generated.
    pub kind: CertKind,
    /// Names it answers for; empty means those in the certificate.
    pub server_names: Vec<String>,
}

/// Kinds of certificate source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertKind {
    /// PEM files (reloaded when they change).
    Files {
        /// Chain.
        cert: std::path::PathBuf,
        /// Key.
        key: std::path::PathBuf,
    },
    /// A self-signed ECDSA P-256 certificate generated at start for these names.
    SelfSigned(Vec<String>),
}

/// A host (or SNI) pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Exactly this name (lower case, no port, no trailing dot).
    Exact(String),
    /// `*.suffix`: any name ending in `.suffix` (one or more labels).
    Wildcard(String),
}

impl HostMatch {
    /// Matches a lower-case host without port.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(h) => h == host,
            HostMatch::Wildcard(suffix) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
        }
    }
}

/// A TCP route.
#[derive(Debug, Clone)]
pub struct TcpRoute {
    /// Name for metrics.
    pub name: String,
    /// SNI patterns; empty means "any connection to this listener" (by port).
    pub sni: Vec<HostMatch>,
    /// Backend index.
    pub backend: usize,
}

/// An HTTP route.
#[derive(Debug, Clone)]
pub struct HttpRoute {
    /// Name for metrics and logs.
    pub name: String,
    /// Host patterns; empty matches any host.
    pub hosts: Vec<HostMatch>,
    /// Path prefix, matched on segment boundaries (`/api` matches `/api` and
    /// `/api/x`, not `/apix`); `None` matches every path.
    pub path_prefix: Option<String>,
    /// Methods; empty matches any.
    pub methods: Vec<Method>,
    /// Header conditions, all must hold.
    pub headers: Vec<HeaderMatch>,
    /// What to do.
    pub action: RouteAction,
    /// Edits to the request before it goes upstream.
    pub request_headers: HeaderEdits,
    /// Edits to the response before it goes to the client.
    pub response_headers: HeaderEdits,
    /// Size limits for requests taking this route.
    pub limits: RouteLimits,
}

/// Size limits of one route. The head is read before routing under the gateway's
/// limits, so a route's head limits can only be stricter; its body limit is free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteLimits {
    /// Request line plus headers.
    pub max_header_bytes: usize,
    /// Number of request headers.
    pub max_headers: usize,
    /// Length of the request target.
    pub max_uri_bytes: usize,
    /// Request body bytes.
    pub max_body_bytes: u64,
}

impl RouteLimits {
    /// The gateway's limits.
    pub fn from_global(l: &Limits) -> Self {
        Self {
            max_header_bytes: l.max_header_bytes,
            max_headers: l.max_headers,
            max_uri_bytes: l.max_uri_bytes,
            max_body_bytes: l.max_body_bytes,
        }
    }
}

/// A header condition.
#[derive(Debug, Clone)]
pub struct HeaderMatch {
    /// Header name.
    pub name: HeaderName,
    /// Exact value; `None` means "present".
    pub value: Option<HeaderValue>,
}

/// What a matched route does.
#[derive(Debug, Clone)]
pub enum RouteAction {
    /// Proxy to a backend (index).
    Backend(usize),
    /// Answer with a redirect.
    Redirect(Redirect),
}

/// A redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// New scheme, or the request's.
    pub scheme: Option<String>,
    /// New host, or the request's.
    pub host: Option<String>,
    /// New port; `None` drops the port when the scheme changes (default port) and
    /// keeps the request's otherwise.
    pub port: Option<u16>,
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
}

/// Header edits.
#[derive(Debug, Clone, Default)]
pub struct HeaderEdits {
    /// Replace (or add) these.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Append these.
    pub add: Vec<(HeaderName, HeaderValue)>,
    /// Remove these.
    pub remove: Vec<HeaderName>,
}

impl HeaderEdits {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// Applies the edits: remove, then set, then add.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// How servers are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Smooth weighted round robin.
    RoundRobin,
    /// Fewest in-flight requests (connections for TCP), weighted.
    LeastConnections,
    /// Two random servers, the less loaded one wins.
    PowerOfTwo,
    /// Consistent hash of the client address (rendezvous hashing, weighted).
    ConsistentHash,
}

/// A backend: a set of servers and how to use them.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Unique name.
    pub name: String,
    /// Algorithm.
    pub balance: Balance,
    /// Servers.
    pub servers: Vec<Server>,
    /// Active health checking.
    pub health_check: Option<HealthCheck>,
    /// Passive ejection.
    pub passive: PassiveEjection,
    /// Extra tries on another server when a request could not be sent (a failed
    /// connect); requests that may have reached a server are never retried.
    pub retries: u32,
    /// TLS to the servers.
    pub tls: Option<BackendTls>,
    /// Send a PROXY protocol v2 header on each new server connection.
    pub proxy_protocol: bool,
    /// Idle pooled connections kept per server (1024).
    pub max_idle_per_server: usize,
}

/// A server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Address.
    pub address: ServerAddress,
    /// Weight, 1 to 256.
    pub weight: u32,
}

/// A server address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAddress {
    /// An IP address and port.
    Socket(SocketAddr),
    /// A host name and port, resolved when the config is applied.
    Name {
        /// Host.
        host: String,
        /// Port.
        port: u16,
    },
}

impl std::fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerAddress::Socket(a) => write!(f, "{a}"),
            ServerAddress::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// Active health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// TCP connect or HTTP GET.
    pub kind: HealthCheckKind,
    /// Time between checks.
    pub interval: Duration,
    /// Time one check may take.
    pub timeout: Duration,
    /// Consecutive successes to become healthy.
    pub rise: u32,
    /// Consecutive failures to become unhealthy.
    pub fall: u32,
}

/// Kinds of check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheckKind {
    /// The connection opens.
    Tcp,
    /// `GET path` answers one of the expected statuses.
    Http {
        /// Path and query.
        path: String,
        /// Host header; the server address when absent.
        host: Option<String>,
        /// Accepted statuses.
        expect_status: Vec<u16>,
    },
}

/// Passive ejection: a server that fails this many requests in a row (connect errors,
/// timeouts, 502/503/504 from the server) is taken out for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassiveEjection {
    /// Consecutive failures; 0 turns passive ejection off.
    pub consecutive_failures: u32,
    /// How long an ejected server stays out.
    pub eject_for: Duration,
}

impl Default for PassiveEjection {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            eject_for: Duration::from_secs(30),
        }
    }
}

/// TLS to backend servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendTls {
    /// Name sent in SNI and verified in the server certificate; the host of the
    /// address when absent.
    pub server_name: Option<String>,
    /// Trust anchors (PEM).
    pub ca_file: std::path::PathBuf,
}
