//! `spec.protection`: connection filtering, per-source limits, request rate limits and
//! bans. Decoding (serde, unknown fields refused) and validation, with no I/O; the
//! edge's `protect` module applies the result.
//!
//! Every field has a safe default (see [`Protection::default`]): protection is on
//! unless `dangerousDisabled: true` says otherwise.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use http::HeaderName;
use rampart_model::net::Cidr;
use rampart_ratelimit::Quota;
use rampart_resources::{FieldPath, ObjectErrors};
use serde::Deserialize;

use super::types::Listener;
use super::validate::parse_duration;
use crate::hooks::Abuse;

/// The serde form of `spec.protection`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawProtection {
    #[serde(default)]
    pub dangerous_disabled: Option<bool>,
    #[serde(default)]
    pub source_prefix: Option<RawSourcePrefix>,
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
    #[serde(default)]
    pub exempt: Vec<String>,
    #[serde(default)]
    pub listeners: Vec<RawListenerProtection>,
    #[serde(default)]
    pub connections: RawConnections,
    #[serde(default)]
    pub table: RawTable,
    #[serde(default)]
    pub request_limits: Option<Vec<RawRequestLimit>>,
    #[serde(default)]
    pub max_tarpitted: Option<u32>,
    #[serde(default)]
    pub bans: RawBans,
    #[serde(default)]
    pub log_rejections_per_second: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSourcePrefix {
    #[serde(default)]
    pub ipv4: Option<u8>,
    #[serde(default)]
    pub ipv6: Option<u8>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawListenerProtection {
    pub name: String,
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawConnections {
    #[serde(default)]
    pub max_total: Option<u64>,
    #[serde(default)]
    pub per_source: Option<u32>,
    #[serde(default)]
    pub rate_per_source: Option<String>,
    #[serde(default)]
    pub tls_handshakes_per_source: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawTable {
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub expire: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawRequestLimit {
    pub name: String,
    #[serde(default)]
    pub key: Option<String>,
    pub rate: String,
    #[serde(default)]
    pub burst: Option<u32>,
    #[serde(default)]
    pub listeners: Vec<String>,
    #[serde(default)]
    pub routes: Vec<String>,
    #[serde(default)]
    pub tarpit: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawBans {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub threshold: Option<u32>,
    #[serde(default)]
    pub window: Option<String>,
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub max_duration: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub http_error_rate: Option<String>,
    #[serde(default)]
    pub weights: BTreeMap<String, u32>,
}

/// A rate such as `100/s` or `300/10s`: `count` events per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Events.
    pub count: u32,
    /// Per this long.
    pub period: Duration,
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}ms", self.count, self.period.as_millis())
    }
}

/// Parses `100/s`, `300/10s`, `5/m`, `1000/1h`: a count, a slash, and a duration (a
/// bare unit means one of it).
pub fn parse_rate(s: &str) -> Result<Rate, String> {
    let bad = || format!("{s:?} is not a rate such as 100/s or 300/10s");
    let (count, period) = s.trim().split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    let period = period.trim();
    let period = if period.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
        parse_duration(period)?
    } else {
        parse_duration(&format!("1{period}"))?
    };
    if count == 0 {
        return Err(format!("{s:?}: the count must be at least 1"));
    }
    if period < Duration::from_millis(100) || period > Duration::from_secs(86_400) {
        return Err(format!("{s:?}: the period must be 100ms to 24h"));
    }
    Ok(Rate { count, period })
}

/// What a request limit counts requests by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    /// The client's address (its source prefix).
    Client,
    /// A request header's value (requests without it count by client address).
    Header(HeaderName),
    /// The request path (without the query).
    Path,
}

/// A request rate limit.
#[derive(Debug, Clone)]
pub struct RequestLimit {
    /// Name for metrics and logs.
    pub name: String,
    /// What requests are counted by.
    pub key: LimitKey,
    /// Sustained rate and burst.
    pub quota: Quota,
    /// The rate as written.
    pub rate: Rate,
    /// Listeners it applies to (empty: all).
    pub listeners: Vec<String>,
    /// Routes it applies to, by name (empty: all, unrouted requests included).
    pub routes: Vec<String>,
    /// Hold the 429 this long before answering (a tarpit).
    pub tarpit: Option<Duration>,
}

/// Allow and deny lists of one listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerFilter {
    /// Listener name.
    pub name: String,
    /// Only these may connect (empty: anyone not denied).
    pub allow: Vec<Cidr>,
    /// These may not connect.
    pub deny: Vec<Cidr>,
}

/// Connection limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open client connections across all listeners; at the cap the gateway stops
    /// accepting (new connections wait in the kernel's queue). `None`: half the
    /// process's file-descriptor limit (each proxied connection may use two).
    pub max_total: Option<usize>,
    /// Open connections per source.
    pub per_source: u32,
    /// New connections per source.
    pub rate_per_source: Rate,
    /// New connections per source to listeners that terminate TLS.
    pub tls_handshakes_per_source: Rate,
}

/// Temporary bans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bans {
    /// Offences lead to bans.
    pub enabled: bool,
    /// Offence weight within `window` that bans a source.
    pub threshold: u32,
    /// The sliding window offences are counted over.
    pub window: Duration,
    /// First ban's length; each later ban of the same source doubles it.
    pub duration: Duration,
    /// Longest ban.
    pub max_duration: Duration,
    /// Most bans held.
    pub size: usize,
    /// 4xx answers per source above this rate count as offences (`http_errors`).
    pub http_error_rate: Rate,
    /// Weight of each offence kind.
    pub weights: Weights,
}

/// Weight of each kind of offence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weights {
    /// A request refused by a request limit (429).
    pub rate_limited: u32,
    /// A connection refused by a per-source connection limit.
    pub connection_limit: u32,
    /// 4xx answers beyond `httpErrorRate`.
    pub http_errors: u32,
    /// Offences the gateway reports itself, by [`Abuse`] kind.
    pub malformed_request: u32,
    /// Request smuggling vectors.
    pub smuggling: u32,
    /// Headers too large, too many headers, URI too long.
    pub oversized: u32,
    /// Body too large.
    pub body_too_large: u32,
    /// Slowloris, slow body, slow read.
    pub slow: u32,
    /// Failed TLS handshakes.
    pub tls_handshake: u32,
    /// HTTP/2 floods (rapid reset, CONTINUATION, SETTINGS, PING).
    pub http2_flood: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            rate_limited: 1,
            connection_limit: 1,
            http_errors: 1,
            malformed_request: 10,
            smuggling: 50,
            oversized: 10,
            body_too_large: 5,
            slow: 10,
            tls_handshake: 2,
            http2_flood: 50,
        }
    }
}

impl Weights {
    /// The weight of an offence the gateway reported.
    pub fn of(&self, abuse: Abuse) -> u32 {
        match abuse {
            Abuse::MalformedRequest => self.malformed_request,
            Abuse::Smuggling => self.smuggling,
            Abuse::HeaderTooLarge | Abuse::TooManyHeaders | Abuse::UriTooLong => self.oversized,
            Abuse::BodyTooLarge => self.body_too_large,
            Abuse::SlowHeader | Abuse::SlowBody | Abuse::SlowRead => self.slow,
            Abuse::TlsHandshake => self.tls_handshake,
            Abuse::Http2Flood => self.http2_flood,
        }
    }
}

/// The whole `spec.protection`.
#[derive(Debug, Clone)]
pub struct Protection {
    /// False only with `dangerousDisabled: true`: no filter, limit or ban applies.
    pub enabled: bool,
    /// Prefix length that makes one IPv4 source (32).
    pub source_prefix_v4: u8,
    /// Prefix length that makes one IPv6 source (64: one subnet is one source).
    pub source_prefix_v6: u8,
    /// Only these may connect to any listener (empty: anyone not denied).
    pub allow: Vec<Cidr>,
    /// These may not connect to any listener.
    pub deny: Vec<Cidr>,
    /// Never limited nor banned (allow and deny lists still apply).
    pub exempt: Vec<Cidr>,
    /// Per-listener lists.
    pub listeners: Vec<ListenerFilter>,
    /// Connection limits.
    pub connections: ConnectionLimits,
    /// Sources tracked at most (per-source counters, and keys per request limit).
    pub table_size: usize,
    /// A source with no open connection is forgotten after this long unseen.
    pub table_expire: Duration,
    /// Request rate limits, checked in order; the first that refuses answers.
    pub request_limits: Vec<RequestLimit>,
    /// Requests held in tarpits at once; more are answered at once.
    pub max_tarpitted: u32,
    /// Bans.
    pub bans: Bans,
    /// Log lines about refused clients per second (the rest are counted, not logged).
    pub log_rejections_per_second: u32,
}

fn rate(count: u32, secs: u64) -> Rate {
    Rate {
        count,
        period: Duration::from_secs(secs),
    }
}

/// The default request limit: per client, 1000/s with a burst of 2000.
fn default_request_limit() -> RequestLimit {
    let r = rate(1000, 1);
    RequestLimit {
        name: "per-client".to_owned(),
        key: LimitKey::Client,
        quota: Quota::new(r.count, r.period, 2000).unwrap_or_else(|_| unreachable_quota()),
        rate: r,
        listeners: Vec::new(),
        routes: Vec::new(),
        tarpit: None,
    }
}

#[expect(clippy::unwrap_used, reason = "a constant quota that is valid")]
fn unreachable_quota() -> Quota {
    Quota::new(1, Duration::from_secs(1), 1).unwrap()
}

impl Default for Protection {
    fn default() -> Self {
        Self {
            enabled: true,
            source_prefix_v4: 32,
            source_prefix_v6: 64,
            allow: Vec::new(),
            deny: Vec::new(),
            exempt: Vec::new(),
            listeners: Vec::new(),
            connections: ConnectionLimits {
                max_total: None,
                per_source: 500,
                rate_per_source: rate(1000, 10),
                tls_handshakes_per_source: rate(1000, 10),
            },
            table_size: 100_000,
            table_expire: Duration::from_secs(600),
            request_limits: vec![default_request_limit()],
            max_tarpitted: 1000,
            bans: Bans {
                enabled: true,
                threshold: 50,
                window: Duration::from_secs(60),
                duration: Duration::from_secs(600),
                max_duration: Duration::from_secs(86_400),
                size: 100_000,
                http_error_rate: rate(100, 10),
                weights: Weights::default(),
            },
            log_rejections_per_second: 10,
        }
    }
}

fn cidr_list(list: &[String], p: &FieldPath, errs: &mut ObjectErrors<'_>) -> Vec<Cidr> {
    let mut out = Vec::new();
    for (i, s) in list.iter().enumerate() {
        match super::validate::parse_cidr(s).map(|c| Cidr::new(c.addr, c.prefix)) {
            Ok(Ok(c)) => out.push(c),
            Ok(Err(e)) => errs.push(&p.index(i), e.to_string()),
            Err(e) => errs.push(&p.index(i), e),
        }
    }
    out
}

fn duration_in(
    s: &Option<String>,
    default: Duration,
    min: Duration,
    max: Duration,
    p: &FieldPath,
    errs: &mut ObjectErrors<'_>,
) -> Duration {
    let Some(s) = s else { return default };
    match parse_duration(s) {
        Ok(d) if d >= min && d <= max => d,
        Ok(_) => {
            errs.push(p, format!("must be {} to {}", show(min), show(max)));
            default
        }
        Err(e) => {
            errs.push(p, e);
            default
        }
    }
}

fn show(d: Duration) -> String {
    if d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else if d.as_secs().is_multiple_of(3600) {
        format!("{}h", d.as_secs() / 3600)
    } else {
        format!("{}s", d.as_secs())
    }
}

fn rate_field(
    s: &Option<String>,
    default: Rate,
    p: &FieldPath,
    errs: &mut ObjectErrors<'_>,
) -> Rate {
    match s {
        None => default,
        Some(s) => parse_rate(s).unwrap_or_else(|e| {
            errs.push(p, e);
            default
        }),
    }
}

/// Validates `spec.protection` against the listeners and routes of the config.
pub(crate) fn validate(
    raw: &RawProtection,
    p: &FieldPath,
    listeners: &[Listener],
    errs: &mut ObjectErrors<'_>,
) -> Protection {
    let d = Protection::default();
    let prefix = raw.source_prefix.as_ref();
    let source_prefix_v4 = prefix.and_then(|s| s.ipv4).unwrap_or(d.source_prefix_v4);
    let source_prefix_v6 = prefix.and_then(|s| s.ipv6).unwrap_or(d.source_prefix_v6);
    if !(8..=32).contains(&source_prefix_v4) {
        errs.push(&p.field("sourcePrefix").field("ipv4"), "must be 8 to 32");
    }
    if !(32..=128).contains(&source_prefix_v6) {
        errs.push(&p.field("sourcePrefix").field("ipv6"), "must be 32 to 128");
    }
    let allow = cidr_list(&raw.allow, &p.field("allow"), errs);
    let deny = cidr_list(&raw.deny, &p.field("deny"), errs);
    let exempt = cidr_list(&raw.exempt, &p.field("exempt"), errs);

    let listener_names: HashSet<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
    let mut seen = HashSet::new();
    let mut per_listener = Vec::new();
    for (i, rl) in raw.listeners.iter().enumerate() {
        let lp = p.field("listeners").index(i);
        if !listener_names.contains(rl.name.as_str()) {
            errs.push(
                &lp.field("name"),
                format!("no listener named {:?}", rl.name),
            );
        }
        if !seen.insert(rl.name.clone()) {
            errs.push(&lp.field("name"), format!("{:?} is listed twice", rl.name));
        }
        per_listener.push(ListenerFilter {
            name: rl.name.clone(),
            allow: cidr_list(&rl.allow, &lp.field("allow"), errs),
            deny: cidr_list(&rl.deny, &lp.field("deny"), errs),
        });
    }

    let cp = p.field("connections");
    let rc = &raw.connections;
    let max_total = match rc.max_total {
        None => None,
        Some(n) if (1..=10_000_000).contains(&n) => Some(n as usize),
        Some(n) => {
            errs.push(
                &cp.field("maxTotal"),
                format!("{n} is out of range 1..=10000000"),
            );
            None
        }
    };
    let per_source = rc.per_source.unwrap_or(d.connections.per_source);
    if per_source == 0 {
        errs.push(&cp.field("perSource"), "must be at least 1");
    }
    let connections = ConnectionLimits {
        max_total,
        per_source: per_source.max(1),
        rate_per_source: rate_field(
            &rc.rate_per_source,
            d.connections.rate_per_source,
            &cp.field("ratePerSource"),
            errs,
        ),
        tls_handshakes_per_source: rate_field(
            &rc.tls_handshakes_per_source,
            d.connections.tls_handshakes_per_source,
            &cp.field("tlsHandshakesPerSource"),
            errs,
        ),
    };

    let tp = p.field("table");
    let table_size = match raw.table.size {
        None => d.table_size,
        Some(n) if (1_000..=10_000_000).contains(&n) => n as usize,
        Some(n) => {
            errs.push(
                &tp.field("size"),
                format!("{n} is out of range 1000..=10000000"),
            );
            d.table_size
        }
    };
    if let Some(m) = max_total
        && m > table_size / 2
    {
        errs.push(
            &cp.field("maxTotal"),
            format!(
                "must be at most half of table.size ({table_size}): every source with open connections stays tracked"
            ),
        );
    }
    let table_expire = duration_in(
        &raw.table.expire,
        d.table_expire,
        Duration::from_secs(1),
        Duration::from_secs(86_400),
        &tp.field("expire"),
        errs,
    );

    let routes: HashSet<&str> = listeners
        .iter()
        .flat_map(|l| l.http_routes.iter().map(|r| r.name.as_str()))
        .collect();
    let request_limits = match &raw.request_limits {
        None => d.request_limits.clone(),
        Some(list) => {
            let mut out = Vec::new();
            let mut names = HashSet::new();
            for (i, rl) in list.iter().enumerate() {
                let lp = p.field("requestLimits").index(i);
                if !names.insert(rl.name.clone()) {
                    errs.push(
                        &lp.field("name"),
                        format!("duplicate limit name {:?}", rl.name),
                    );
                }
                if rl.name.is_empty()
                    || rl.name.len() > 63
                    || !rl
                        .name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                {
                    errs.push(
                        &lp.field("name"),
                        "must be 1 to 63 characters of a-z, 0-9 and '-'",
                    );
                }
                if let Some(l) = request_limit(rl, &lp, &listener_names, &routes, errs) {
                    out.push(l);
                }
            }
            out
        }
    };
    if raw.request_limits.as_ref().is_some_and(|l| l.len() > 64) {
        errs.push(&p.field("requestLimits"), "at most 64 limits");
    }
    let max_tarpitted = raw.max_tarpitted.unwrap_or(d.max_tarpitted);
    if max_tarpitted > 100_000 {
        errs.push(&p.field("maxTarpitted"), "must be at most 100000");
    }

    let bans = bans(&raw.bans, &p.field("bans"), &d.bans, errs);
    let log = raw
        .log_rejections_per_second
        .unwrap_or(d.log_rejections_per_second);
    if !(1..=10_000).contains(&log) {
        errs.push(&p.field("logRejectionsPerSecond"), "must be 1 to 10000");
    }
    Protection {
        enabled: !raw.dangerous_disabled.unwrap_or(false),
        source_prefix_v4,
        source_prefix_v6,
        allow,
        deny,
        exempt,
        listeners: per_listener,
        connections,
        table_size,
        table_expire,
        request_limits,
        max_tarpitted: max_tarpitted.min(100_000),
        bans,
        log_rejections_per_second: log.clamp(1, 10_000),
    }
}

fn request_limit(
    rl: &RawRequestLimit,
    p: &FieldPath,
    listeners: &HashSet<&str>,
    routes: &HashSet<&str>,
    errs: &mut ObjectErrors<'_>,
) -> Option<RequestLimit> {
    let key = match rl.key.as_deref() {
        None | Some("client") => Some(LimitKey::Client),
        Some("path") => Some(LimitKey::Path),
        Some(k) => match k.strip_prefix("header:") {
            Some(h) => match HeaderName::from_bytes(h.trim().as_bytes()) {
                Ok(n) => Some(LimitKey::Header(n)),
                Err(_) => {
                    errs.push(&p.field("key"), format!("{h:?} is not a header name"));
                    None
                }
            },
            None => {
                errs.push(
                    &p.field("key"),
                    format!("{k:?}: must be client, path or header:<name>"),
                );
                None
            }
        },
    };
    let rate = match parse_rate(&rl.rate) {
        Ok(r) => Some(r),
        Err(e) => {
            errs.push(&p.field("rate"), e);
            None
        }
    };
    let quota = rate.and_then(|r| {
        let burst = rl.burst.unwrap_or(r.count);
        match Quota::new(r.count, r.period, burst) {
            Ok(q) => Some(q),
            Err(e) => {
                errs.push(&p.field("burst"), e.to_string());
                None
            }
        }
    });
    for (i, l) in rl.listeners.iter().enumerate() {
        if !listeners.contains(l.as_str()) {
            errs.push(
                &p.field("listeners").index(i),
                format!("no listener named {l:?}"),
            );
        }
    }
    for (i, r) in rl.routes.iter().enumerate() {
        if !routes.contains(r.as_str()) {
            errs.push(
                &p.field("routes").index(i),
                format!("no http route named {r:?}"),
            );
        }
    }
    let tarpit = rl.tarpit.as_ref().map(|_| {
        duration_in(
            &rl.tarpit,
            Duration::from_secs(1),
            Duration::from_millis(10),
            Duration::from_secs(60),
            &p.field("tarpit"),
            errs,
        )
    });
    Some(RequestLimit {
        name: rl.name.clone(),
        key: key?,
        quota: quota?,
        rate: rate?,
        listeners: rl.listeners.clone(),
        routes: rl.routes.clone(),
        tarpit,
    })
}

const WEIGHT_NAMES: [&str; 10] = [
    "rateLimited",
    "connectionLimit",
    "httpErrors",
    "malformedRequest",
    "smuggling",
    "oversized",
    "bodyTooLarge",
    "slow",
    "tlsHandshake",
    "http2Flood",
];

fn bans(raw: &RawBans, p: &FieldPath, d: &Bans, errs: &mut ObjectErrors<'_>) -> Bans {
    let threshold = raw.threshold.unwrap_or(d.threshold);
    if !(1..=1_000_000).contains(&threshold) {
        errs.push(&p.field("threshold"), "must be 1 to 1000000");
    }
    let window = duration_in(
        &raw.window,
        d.window,
        Duration::from_secs(1),
        Duration::from_secs(86_400),
        &p.field("window"),
        errs,
    );
    let duration = duration_in(
        &raw.duration,
        d.duration,
        Duration::from_secs(1),
        Duration::from_secs(30 * 86_400),
        &p.field("duration"),
        errs,
    );
    let max_duration = duration_in(
        &raw.max_duration,
        d.max_duration.max(duration),
        Duration::from_secs(1),
        Duration::from_secs(30 * 86_400),
        &p.field("maxDuration"),
        errs,
    );
    if max_duration < duration {
        errs.push(&p.field("maxDuration"), "must be at least bans.duration");
    }
    let size = match raw.size {
        None => d.size,
        Some(n) if (100..=10_000_000).contains(&n) => n as usize,
        Some(n) => {
            errs.push(
                &p.field("size"),
                format!("{n} is out of range 100..=10000000"),
            );
            d.size
        }
    };
    let mut weights = d.weights;
    for (k, v) in &raw.weights {
        let slot = match k.as_str() {
            "rateLimited" => &mut weights.rate_limited,
            "connectionLimit" => &mut weights.connection_limit,
            "httpErrors" => &mut weights.http_errors,
            "malformedRequest" => &mut weights.malformed_request,
            "smuggling" => &mut weights.smuggling,
            "oversized" => &mut weights.oversized,
            "bodyTooLarge" => &mut weights.body_too_large,
            "slow" => &mut weights.slow,
            "tlsHandshake" => &mut weights.tls_handshake,
            "http2Flood" => &mut weights.http2_flood,
            _ => {
                errs.push(
                    &p.field("weights").key(k),
                    format!("unknown offence; one of {}", WEIGHT_NAMES.join(", ")),
                );
                continue;
            }
        };
        if *v > 1_000_000 {
            errs.push(&p.field("weights").key(k), "must be at most 1000000");
        }
        *slot = (*v).min(1_000_000);
    }
    Bans {
        enabled: raw.enabled.unwrap_or(d.enabled),
        threshold: threshold.clamp(1, 1_000_000),
        window,
        duration,
        max_duration: max_duration.max(duration),
        size,
        http_error_rate: rate_field(
            &raw.http_error_rate,
            d.http_error_rate,
            &p.field("httpErrorRate"),
            errs,
        ),
        weights,
    }
}
