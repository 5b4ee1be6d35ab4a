//! Raw documents to validated configs.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use rampart_resources::{Diagnostic, Diagnostics, Document, FieldPath, ObjectErrors, Source};

use super::raw::*;
use super::types::*;

/// The `apiVersion` of an `EdgeGateway`.
pub const API_VERSION: &str = "rampart.dev/v1alpha1";
/// The `kind`.
pub const KIND: &str = "EdgeGateway";

/// Longest timeout accepted anywhere (one day).
const MAX_TIMEOUT: Duration = Duration::from_secs(86_400);

/// Finds the single `EdgeGateway` in `sources` and validates it. Other kinds are
/// refused: a gateway config file holds exactly one gateway.
pub fn load(sources: &[Source]) -> Result<EdgeConfig, Diagnostics> {
    let (docs, mut errors) = rampart_resources::parse_sources(sources);
    let mut found = Vec::new();
    for doc in &docs {
        if doc.kind == KIND {
            found.push(doc);
        } else {
            errors.push(doc.error(
                &FieldPath::root().field("kind"),
                format!("expected kind {KIND}, found {}", doc.kind),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    match found.as_slice() {
        [doc] => decode(doc),
        [] => Err(Diagnostic::error(format!("no {KIND} document found")).into()),
        [_, second, ..] => Err(second
            .error(
                &FieldPath::root(),
                format!("only one {KIND} per configuration"),
            )
            .into()),
    }
}

/// Decodes and validates one `EdgeGateway` document.
pub fn decode(doc: &Document) -> Result<EdgeConfig, Diagnostics> {
    let raw: RawEdgeGateway = doc.decode().map_err(Diagnostics::from)?;
    let mut errs = ObjectErrors::new(Some(&doc.location), doc.object_ref());
    let root = FieldPath::root();
    if raw.api_version != API_VERSION {
        errs.push(
            &root.field("apiVersion"),
            format!("expected {API_VERSION}, found {}", raw.api_version),
        );
    }
    let name = raw
        .metadata
        .name
        .clone()
        .unwrap_or_else(|| "edge".to_owned());
    let spec_path = root.field("spec");
    let mut config = validate_spec(name, &raw.spec, &spec_path, &mut errs);
    config.location = Some(doc.location.clone());
    errs.finish().into_result(config)
}

fn validate_spec(
    name: String,
    spec: &RawSpec,
    path: &FieldPath,
    errs: &mut ObjectErrors<'_>,
) -> EdgeConfig {
    let admin = spec
        .admin
        .as_ref()
        .and_then(|a| socket_addr(&a.address, &path.field("admin").field("address"), errs));
    let timeouts = timeouts(&spec.timeouts, &path.field("timeouts"), errs);
    let limits = limits(&spec.limits, &path.field("limits"), errs);
    let trusted_proxies = cidrs(&spec.trusted_proxies, &path.field("trustedProxies"), errs);

    // Backends first, so that routes can refer to them by index.
    let mut backend_index = HashMap::new();
    let mut backends = Vec::new();
    for (i, rb) in spec.backends.iter().enumerate() {
        let p = path.field("backends").index(i);
        if !valid_name(&rb.name) {
            errs.push(&p.field("name"), name_message());
        }
        if backend_index.insert(rb.name.clone(), i).is_some() {
            errs.push(
                &p.field("name"),
                format!("duplicate backend name {:?}", rb.name),
            );
        }
        backends.push(backend(rb, &p, errs));
    }

    let mut listeners = Vec::new();
    let mut listener_names = HashSet::new();
    let mut addresses: HashMap<SocketAddr, usize> = HashMap::new();
    if spec.listeners.is_empty() {
        errs.push(
            &path.field("listeners"),
            "at least one listener is required",
        );
    }
    for (i, rl) in spec.listeners.iter().enumerate() {
        let p = path.field("listeners").index(i);
        if !valid_name(&rl.name) {
            errs.push(&p.field("name"), name_message());
        }
        if !listener_names.insert(rl.name.clone()) {
            errs.push(
                &p.field("name"),
                format!("duplicate listener name {:?}", rl.name),
            );
        }
        if let Some(l) = listener(rl, &p, &backend_index, &limits, errs) {
            if rl.name == crate::ADMIN {
                errs.push(
                    &p.field("name"),
                    "\"admin\" is reserved for the admin listener",
                );
            }
            // Port 0 (any free port) never collides.
            let fixed = l.address.port() != 0;
            if !fixed {
            } else if let Some(first) = addresses.insert(l.address, i) {
                errs.push(
                    &p.field("address"),
                    format!(
                        "address {} is already used by listeners[{first}]",
                        l.address
                    ),
                );
            }
            if fixed && admin == Some(l.address) {
                errs.push(&p.field("address"), "address is the admin listener's");
            }
            listeners.push(l);
        }
    }
    // TCP routes forward bytes as they come: TLS towards the servers cannot apply.
    for (li, l) in listeners.iter().enumerate() {
        for (ri, r) in l.tcp_routes.iter().enumerate() {
            if backends
                .get(r.backend)
                .is_some_and(|b: &Backend| b.tls.is_some())
            {
                errs.push(
                    &path.field("listeners").index(li).field("tcpRoutes").index(ri).field("backend"),
                    "a tcp route forwards bytes untouched; its backend cannot have tls (that is for http routes)",
                );
            }
        }
    }
    let protection = super::protection::validate(
        &spec.protection,
        &path.field("protection"),
        &listeners,
        errs,
    );
    EdgeConfig {
        protection,
        name,
        location: None,
        admin,
        timeouts,
        limits,
        trusted_proxies,
        access_log: spec.access_log.unwrap_or(true),
        listeners,
        backends,
    }
}

fn name_message() -> &'static str {
    "must be 1 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit"
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

fn timeouts(raw: &RawTimeouts, p: &FieldPath, errs: &mut ObjectErrors<'_>) -> Timeouts {
    let d = Timeouts::default();
    let mut one = |v: &Option<String>, field: &str, default: Duration| match v {
        None => default,
        Some(s) => duration(s, &p.field(field), errs).unwrap_or(default),
    };
    Timeouts {
        connect: one(&raw.connect, "connect", d.connect),
        client_header: one(&raw.client_header, "clientHeader", d.client_header),
        idle: one(&raw.idle, "idle", d.idle),
        server_response: one(&raw.server_response, "serverResponse", d.server_response),
        client_body: one(&raw.client_body, "clientBody", d.client_body),
        client_write: one(&raw.client_write, "clientWrite", d.client_write),
        tls_handshake: one(&raw.tls_handshake, "tlsHandshake", d.tls_handshake),
        tcp_idle: one(&raw.tcp_idle, "tcpIdle", d.tcp_idle),
        drain: one(&raw.drain, "drain", d.drain),
    }
}

fn limits(raw: &RawLimits, p: &FieldPath, errs: &mut ObjectErrors<'_>) -> Limits {
    let d = Limits::default();
    let mut bounded = |v: Option<u64>, field: &str, min: u64, max: u64, default: usize| match v {
        None => default,
        Some(n) if (min..=max).contains(&n) => usize::try_from(n).unwrap_or(default),
        Some(n) => {
            errs.push(
                &p.field(field),
                format!("{n} is out of range {min}..={max}"),
            );
            default
        }
    };
    Limits {
        max_header_bytes: bounded(
            raw.max_header_bytes,
            "maxHeaderBytes",
            1024,
            1 << 20,
            d.max_header_bytes,
        ),
        max_headers: bounded(raw.max_headers, "maxHeaders", 8, 1000, d.max_headers),
        max_uri_bytes: bounded(
            raw.max_uri_bytes,
            "maxUriBytes",
            256,
            65_000,
            d.max_uri_bytes,
        ),
        max_body_bytes: bounded(
            raw.max_body_bytes,
            "maxBodyBytes",
            0,
            MAX_BODY_LIMIT,
            usize::try_from(d.max_body_bytes).unwrap_or(usize::MAX),
        ) as u64,
        min_body_rate: bounded(
            raw.min_body_rate,
            "minBodyRate",
            1,
            1 << 30,
            d.min_body_rate as usize,
        ) as u64,
        min_read_rate: bounded(
            raw.min_read_rate,
            "minReadRate",
            1,
            1 << 30,
            d.min_read_rate as usize,
        ) as u64,
        max_connections: bounded(
            raw.max_connections,
            "maxConnections",
            1,
            10_000_000,
            d.max_connections,
        ),
        h2_max_concurrent_streams: u32::try_from(bounded(
            raw.h2_max_concurrent_streams,
            "h2MaxConcurrentStreams",
            1,
            10_000,
            d.h2_max_concurrent_streams as usize,
        ))
        .unwrap_or(d.h2_max_concurrent_streams),
        h2_max_resets_per_second: u32::try_from(bounded(
            raw.h2_max_resets_per_second,
            "h2MaxResetsPerSecond",
            1,
            100_000,
            d.h2_max_resets_per_second as usize,
        ))
        .unwrap_or(d.h2_max_resets_per_second),
        h2_max_control_frames_per_second: u32::try_from(bounded(
            raw.h2_max_control_frames_per_second,
            "h2MaxControlFramesPerSecond",
            1,
            100_000,
            d.h2_max_control_frames_per_second as usize,
        ))
        .unwrap_or(d.h2_max_control_frames_per_second),
    }
}

/// Parses `500ms`, `10s`, `5m`, `1h`, or a combination such as `1m30s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".to_owned());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return Err(format!(
                "invalid duration {s:?}: expected e.g. 500ms, 10s, 5m, 1h"
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            _ => {
                return Err(format!(
                    "invalid duration {s:?}: unit must be ms, s, m or h"
                ));
            }
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

fn duration(s: &str, p: &FieldPath, errs: &mut ObjectErrors<'_>) -> Option<Duration> {
    match parse_duration(s) {
        Ok(d) if d.is_zero() => {
            errs.push(
                p,
                "must be greater than zero (timeouts cannot be turned off)",
            );
            None
        }
        Ok(d) if d > MAX_TIMEOUT => {
            errs.push(p, "must be at most 24h");
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            errs.push(p, e);
            None
        }
    }
}

fn socket_addr(s: &str, p: &FieldPath, errs: &mut ObjectErrors<'_>) -> Option<SocketAddr> {
    match SocketAddr::from_str(s) {
        Ok(a) => Some(a),
        Err(_) => {
            errs.push(
                p,
                format!("{s:?} is not an IP:port address (e.g. 0.0.0.0:443, [::]:443)"),
            );
            None
        }
    }
}

/// Parses `10.0.0.0/8`, `::1/128`, or a bare address (a /32 or /128).
pub fn parse_cidr(s: &str) -> Result<Cidr, String> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{s:?} is not an IP prefix (e.g. 10.0.0.0/8)"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("{s:?}: prefix length must be 0 to {max}"))?,
    };
    let cidr = Cidr { addr, prefix };
    // Refuse host bits: `10.1.2.3/8` is almost always a typo.
    let canonical = match addr {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    };
    if canonical != addr {
        return Err(format!(
            "{s:?} has host bits set; did you mean {canonical}/{prefix}?"
        ));
    }
    Ok(cidr)
}

fn cidrs(list: &[String], p: &FieldPath, errs: &mut ObjectErrors<'_>) -> Vec<Cidr> {
    let mut out = Vec::new();
    for (i, s) in list.iter().enumerate() {
        match parse_cidr(s) {
            Ok(c) => out.push(c),
            Err(e) => errs.push(&p.index(i), e),
        }
    }
    out
}

/// A DNS name or `*.` wildcard, lower-cased.
fn host_pattern(s: &str, wildcard_ok: bool) -> Result<HostMatch, String> {
    let lower = s.trim_end_matches('.').to_ascii_lowercase();
    let (wild, name) = match lower.strip_prefix("*.") {
        Some(rest) if wildcard_ok => (true, rest.to_owned()),
        Some(_) => return Err(format!("{s:?}: wildcards are not allowed here")),
        None => (false, lower),
    };
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !ok {
        return Err(format!(
            "{s:?} is not a host name (letters, digits, '-', dots; optionally starting with '*.')"
        ));
    }
    Ok(if wild {
        HostMatch::Wildcard(name)
    } else {
        HostMatch::Exact(name)
    })
}

fn hosts(list: &[String], p: &FieldPath, errs: &mut ObjectErrors<'_>) -> Vec<HostMatch> {
    let mut out = Vec::new();
    for (i, s) in list.iter().enumerate() {
        match host_pattern(s, true) {
            Ok(h) => out.push(h),
            Err(e) => errs.push(&p.index(i), e),
        }
    }
    out
}

fn listener(
    rl: &RawListener,
    p: &FieldPath,
    backends: &HashMap<String, usize>,
    limits: &Limits,
    errs: &mut ObjectErrors<'_>,
) -> Option<Listener> {
    let address = socket_addr(&rl.address, &p.field("address"), errs);
    let mode = match rl.mode.as_deref() {
        None | Some("http") => Mode::Http,
        Some("tcp") => Mode::Tcp,
        Some(other) => {
            errs.push(&p.field("mode"), format!("{other:?}: must be http or tcp"));
            Mode::Http
        }
    };
    let tls = rl
        .tls
        .as_ref()
        .and_then(|t| listener_tls(t, &p.field("tls"), errs));
    if mode == Mode::Tcp && rl.tls.is_some() {
        errs.push(
            &p.field("tls"),
            "a tcp listener passes TLS through untouched; use mode http to terminate TLS",
        );
    }
    let accept_proxy_from = rl.accept_proxy_protocol.as_ref().map(|a| {
        let pp = p.field("acceptProxyProtocol").field("from");
        if a.from.is_empty() {
            errs.push(&pp, "list the L4 balancers allowed to send PROXY headers");
        }
        cidrs(&a.from, &pp, errs)
    });

    let mut tcp_routes = Vec::new();
    let mut catch_all = None;
    let mut sni_seen: HashMap<String, usize> = HashMap::new();
    for (i, rt) in rl.tcp_routes.iter().enumerate() {
        let rp = p.field("tcpRoutes").index(i);
        let backend = backend_ref(&rt.backend, &rp.field("backend"), backends, errs);
        let sni = hosts(&rt.sni, &rp.field("sni"), errs);
        for h in &sni {
            let key = format!("{h:?}");
            if let Some(first) = sni_seen.insert(key, i) {
                errs.push(
                    &rp.field("sni"),
                    format!("name also routed by tcpRoutes[{first}]"),
                );
            }
        }
        if sni.is_empty() {
            if mode == Mode::Http {
                errs.push(
                    &rp.field("sni"),
                    "on an http listener, tcp routes pass TLS through by SNI: list the names",
                );
            }
            if let Some(first) = catch_all.replace(i) {
                errs.push(
                    &rp,
                    format!("only one route without sni per listener (tcpRoutes[{first}] is one)"),
                );
            }
        }
        let name = rt
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-tcp-{i}", rl.name));
        if let Some(backend) = backend {
            tcp_routes.push(TcpRoute { name, sni, backend });
        }
    }
    if mode == Mode::Tcp && !rl.http_routes.is_empty() {
        errs.push(&p.field("httpRoutes"), "a tcp listener has no http routes");
    }
    if mode == Mode::Tcp && rl.tcp_routes.is_empty() {
        errs.push(
            &p.field("tcpRoutes"),
            "a tcp listener needs at least one tcp route",
        );
    }
    if mode == Mode::Http && rl.http_routes.is_empty() {
        errs.push(
            &p.field("httpRoutes"),
            "an http listener needs at least one http route",
        );
    }
    if mode == Mode::Http && !rl.tcp_routes.is_empty() && rl.tls.is_none() {
        errs.push(
            &p.field("tcpRoutes"),
            "SNI passthrough on an http listener needs tls (the SNI is read from the TLS ClientHello)",
        );
    }

    let mut http_routes = Vec::new();
    let mut route_names = HashSet::new();
    for (i, rr) in rl.http_routes.iter().enumerate() {
        let rp = p.field("httpRoutes").index(i);
        let name = rr
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-{i}", rl.name));
        if rr.name.is_some() && !valid_name(&name) {
            errs.push(&rp.field("name"), name_message());
        }
        if !route_names.insert(name.clone()) {
            errs.push(&rp.field("name"), format!("duplicate route name {name:?}"));
        }
        if let Some(r) = http_route(rr, name, &rp, backends, limits, errs) {
            http_routes.push(r);
        }
    }
    Some(Listener {
        name: rl.name.clone(),
        address: address?,
        mode,
        tls,
        accept_proxy_from,
        tcp_routes,
        http_routes,
    })
}

fn backend_ref(
    name: &str,
    p: &FieldPath,
    backends: &HashMap<String, usize>,
    errs: &mut ObjectErrors<'_>,
) -> Option<usize> {
    match backends.get(name) {
        Some(i) => Some(*i),
        None => {
            errs.push(p, format!("no backend named {name:?}"));
            None
        }
    }
}

fn listener_tls(
    t: &RawListenerTls,
    p: &FieldPath,
    errs: &mut ObjectErrors<'_>,
) -> Option<ListenerTls> {
    let mut certificates = Vec::new();
    if t.certificates.is_empty() {
        errs.push(
            &p.field("certificates"),
            "at least one certificate is required",
        );
    }
    let mut names = HashSet::new();
    for (i, rc) in t.certificates.iter().enumerate() {
        let cp = p.field("certificates").index(i);
        let name = rc.name.clone().unwrap_or_else(|| format!("cert-{i}"));
        if !names.insert(name.clone()) {
            errs.push(
                &cp.field("name"),
                format!("duplicate certificate name {name:?}"),
            );
        }
        let kind = match (&rc.cert_file, &rc.key_file, &rc.self_signed) {
            (Some(c), Some(k), None) => {
                if c.is_empty() {
                    errs.push(&cp.field("certFile"), "must not be empty");
                }
                if k.is_empty() {
                    errs.push(&cp.field("keyFile"), "must not be empty");
                }
                Some(CertKind::Files {
                    cert: PathBuf::from(c),
                    key: PathBuf::from(k),
                })
            }
            (None, None, Some(names)) => {
                if names.is_empty() {
                    errs.push(&cp.field("selfSigned"), "list at least one name");
                }
                for (j, n) in names.iter().enumerate() {
                    if n.parse::<IpAddr>().is_err()
                        && let Err(e) = host_pattern(n, true)
                    {
                        errs.push(&cp.field("selfSigned").index(j), e);
                    }
                }
                Some(CertKind::SelfSigned(names.clone()))
            }
            _ => {
                errs.push(&cp, "give either certFile and keyFile, or selfSigned");
                None
            }
        };
        let mut server_names = Vec::new();
        for (j, n) in rc.server_names.iter().enumerate() {
            match host_pattern(n, true) {
                Ok(HostMatch::Exact(h)) => server_names.push(h),
                Ok(HostMatch::Wildcard(h)) => server_names.push(format!("*.{h}")),
                Err(e) => errs.push(&cp.field("serverNames").index(j), e),
            }
        }
        if let Some(kind) = kind {
            certificates.push(CertSource {
                name,
                kind,
                server_names,
            });
        }
    }
    let default_certificate = match &t.default_certificate {
        None => None,
        Some(n) => match certificates.iter().position(|c| &c.name == n) {
            Some(i) => Some(i),
            None => {
                errs.push(
                    &p.field("defaultCertificate"),
                    format!("no certificate named {n:?}"),
                );
                None
            }
        },
    };
    let min_version = match t.min_version.as_deref() {
        None | Some("1.2") => rampart_tls::MinVersion::Tls12,
        Some("1.3") => rampart_tls::MinVersion::Tls13,
        Some(other) => {
            errs.push(
                &p.field("minVersion"),
                format!("{other:?}: must be \"1.2\" or \"1.3\""),
            );
            rampart_tls::MinVersion::Tls12
        }
    };
    let alpn = match &t.alpn {
        None => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        Some(list) => {
            let mut out = Vec::new();
            for (i, a) in list.iter().enumerate() {
                match a.as_str() {
                    "h2" | "http/1.1" => out.push(a.as_bytes().to_vec()),
                    other => errs.push(
                        &p.field("alpn").index(i),
                        format!("{other:?}: must be h2 or http/1.1"),
                    ),
                }
            }
            if list.is_empty() {
                errs.push(&p.field("alpn"), "list at least one protocol");
            }
            out
        }
    };
    let ticket_key_rotation = match &t.ticket_key_rotation {
        None => Duration::from_secs(3600),
        Some(s) => {
            duration(s, &p.field("ticketKeyRotation"), errs).unwrap_or(Duration::from_secs(3600))
        }
    };
    Some(ListenerTls {
        certificates,
        default_certificate,
        min_version,
        alpn,
        session_tickets: t.session_tickets.unwrap_or(true),
        ticket_key_rotation,
    })
}

fn header_name(s: &str, p: &FieldPath, errs: &mut ObjectErrors<'_>) -> Option<HeaderName> {
    match HeaderName::from_bytes(s.as_bytes()) {
        Ok(n) => Some(n),
        Err(_) => {
            errs.push(p, format!("{s:?} is not a valid header name"));
            None
        }
    }
}

fn header_value(s: &str, p: &FieldPath, errs: &mut ObjectErrors<'_>) -> Option<HeaderValue> {
    match HeaderValue::from_str(s) {
        Ok(v) => Some(v),
        Err(_) => {
            errs.push(
                p,
                "not a valid header value (visible ASCII, spaces and tabs)",
            );
            None
        }
    }
}

/// Headers the gateway manages itself; routes may not edit them.
const MANAGED_HEADERS: [&str; 8] = [
    "host",
    "connection",
    "transfer-encoding",
    "content-length",
    "upgrade",
    "te",
    "keep-alive",
    "proxy-connection",
];

fn header_edits(raw: &RawHeaderEdits, p: &FieldPath, errs: &mut ObjectErrors<'_>) -> HeaderEdits {
    let mut edits = HeaderEdits::default();
    let managed = |n: &HeaderName, p: &FieldPath, errs: &mut ObjectErrors<'_>| {
        if MANAGED_HEADERS.contains(&n.as_str()) {
            errs.push(
                p,
                format!("{n} is managed by the gateway and cannot be edited"),
            );
            true
        } else {
            false
        }
    };
    for (k, v) in &raw.set {
        let fp = p.field("set").key(k);
        if let (Some(n), Some(v)) = (header_name(k, &fp, errs), header_value(v, &fp, errs))
            && !managed(&n, &fp, errs)
        {
            edits.set.push((n, v));
        }
    }
    for (k, v) in &raw.add {
        let fp = p.field("add").key(k);
        if let (Some(n), Some(v)) = (header_name(k, &fp, errs), header_value(v, &fp, errs))
            && !managed(&n, &fp, errs)
        {
            edits.add.push((n, v));
        }
    }
    for (i, k) in raw.remove.iter().enumerate() {
        let fp = p.field("remove").index(i);
        if let Some(n) = header_name(k, &fp, errs)
            && !managed(&n, &fp, errs)
        {
            edits.remove.push(n);
        }
    }
    edits
}

fn http_route(
    rr: &RawHttpRoute,
    name: String,
    p: &FieldPath,
    backends: &HashMap<String, usize>,
    global: &Limits,
    errs: &mut ObjectErrors<'_>,
) -> Option<HttpRoute> {
    let mp = p.field("match");
    let hosts_list = hosts(&rr.matches.hosts, &mp.field("hosts"), errs);
    let path_prefix = match &rr.matches.path_prefix {
        None => None,
        Some(s) if s.starts_with('/') && !s.contains(['?', '#']) && !s.contains("/../") => {
            // `/api/` and `/api` mean the same prefix.
            let trimmed = s.trim_end_matches('/');
            Some(if trimmed.is_empty() {
                "/".to_owned()
            } else {
                trimmed.to_owned()
            })
        }
        Some(s) => {
            errs.push(
                &mp.field("pathPrefix"),
                format!("{s:?}: must start with '/' and hold no '?', '#' or '/../'"),
            );
            None
        }
    };
    let mut methods = Vec::new();
    for (i, m) in rr.matches.methods.iter().enumerate() {
        match Method::from_bytes(m.as_bytes()) {
            Ok(method) if m.bytes().all(|b| b.is_ascii_uppercase()) => methods.push(method),
            _ => errs.push(
                &mp.field("methods").index(i),
                format!("{m:?} is not an upper-case HTTP method"),
            ),
        }
    }
    let mut headers = Vec::new();
    for (i, h) in rr.matches.headers.iter().enumerate() {
        let hp = mp.field("headers").index(i);
        let name = header_name(&h.name, &hp.field("name"), errs);
        let value = match &h.value {
            None => None,
            Some(v) => header_value(v, &hp.field("value"), errs),
        };
        if let Some(name) = name {
            headers.push(HeaderMatch { name, value });
        }
    }
    let action = match (&rr.backend, &rr.redirect) {
        (Some(b), None) => {
            backend_ref(b, &p.field("backend"), backends, errs).map(RouteAction::Backend)
        }
        (None, Some(r)) => redirect(r, &p.field("redirect"), errs).map(RouteAction::Redirect),
        _ => {
            errs.push(p, "give either backend or redirect");
            None
        }
    };
    let request_headers = header_edits(&rr.request_headers, &p.field("requestHeaders"), errs);
    let response_headers = header_edits(&rr.response_headers, &p.field("responseHeaders"), errs);
    let limits = route_limits(&rr.limits, global, &p.field("limits"), errs);
    Some(HttpRoute {
        name,
        hosts: hosts_list,
        path_prefix,
        methods,
        headers,
        action: action?,
        request_headers,
        response_headers,
        limits,
    })
}

/// A route's limits: head limits may only be stricter than the gateway's (the head is
/// read before routing); the body limit is free.
fn route_limits(
    raw: &RawRouteLimits,
    global: &Limits,
    p: &FieldPath,
    errs: &mut ObjectErrors<'_>,
) -> RouteLimits {
    let mut out = RouteLimits::from_global(global);
    let mut head = |v: Option<u64>,
                    field: &str,
                    min: u64,
                    max: usize,
                    global_field: &str|
     -> Option<usize> {
        let n = v?;
        if n < min || n > max as u64 {
            errs.push(
                &p.field(field),
                format!("{n} is out of range {min}..={max} (at most spec.limits.{global_field}: the head is read before routing)"),
            );
            return None;
        }
        usize::try_from(n).ok()
    };
    if let Some(n) = head(
        raw.max_header_bytes,
        "maxHeaderBytes",
        1024,
        global.max_header_bytes,
        "maxHeaderBytes",
    ) {
        out.max_header_bytes = n;
    }
    if let Some(n) = head(
        raw.max_headers,
        "maxHeaders",
        1,
        global.max_headers,
        "maxHeaders",
    ) {
        out.max_headers = n;
    }
    if let Some(n) = head(
        raw.max_uri_bytes,
        "maxUriBytes",
        16,
        global.max_uri_bytes,
        "maxUriBytes",
    ) {
        out.max_uri_bytes = n;
    }
    match raw.max_body_bytes {
        None => {}
        Some(n) if n <= MAX_BODY_LIMIT => out.max_body_bytes = n,
        Some(n) => errs.push(
            &p.field("maxBodyBytes"),
            format!("{n} is out of range 0..={MAX_BODY_LIMIT}"),
        ),
    }
    out
}

/// The largest body limit that can be configured (1 TiB).
const MAX_BODY_LIMIT: u64 = 1 << 40;

fn redirect(r: &RawRedirect, p: &FieldPath, errs: &mut ObjectErrors<'_>) -> Option<Redirect> {
    let scheme = match r.scheme.as_deref() {
        None => None,
        Some(s @ ("http" | "https")) => Some(s.to_owned()),
        Some(other) => {
            errs.push(
                &p.field("scheme"),
                format!("{other:?}: must be http or https"),
            );
            None
        }
    };
    let host = match &r.host {
        None => None,
        Some(h) => match host_pattern(h, false) {
            Ok(HostMatch::Exact(h)) => Some(h),
            Ok(HostMatch::Wildcard(_)) => None,
            Err(e) => {
                errs.push(&p.field("host"), e);
                None
            }
        },
    };
    if r.port == Some(0) {
        errs.push(&p.field("port"), "must be 1 to 65535");
    }
    let status = r.status.unwrap_or(301);
    if ![301, 302, 303, 307, 308].contains(&status) {
        errs.push(
            &p.field("status"),
            format!("{status}: must be 301, 302, 303, 307 or 308"),
        );
    }
    if scheme.is_none() && host.is_none() && r.port.is_none() {
        errs.push(p, "a redirect changes at least one of scheme, host, port");
    }
    Some(Redirect {
        scheme,
        host,
        port: r.port,
        status,
    })
}

fn backend(rb: &RawBackend, p: &FieldPath, errs: &mut ObjectErrors<'_>) -> Backend {
    let balance = match rb.balance.as_deref() {
        None | Some("roundRobin") => Balance::RoundRobin,
        Some("leastConnections") => Balance::LeastConnections,
        Some("powerOfTwo") => Balance::PowerOfTwo,
        Some("consistentHash") => Balance::ConsistentHash,
        Some(other) => {
            errs.push(
                &p.field("balance"),
                format!(
                    "{other:?}: must be roundRobin, leastConnections, powerOfTwo or consistentHash"
                ),
            );
            Balance::RoundRobin
        }
    };
    if rb.servers.is_empty() {
        errs.push(&p.field("servers"), "at least one server is required");
    }
    if rb.servers.len() > 1024 {
        errs.push(&p.field("servers"), "at most 1024 servers");
    }
    let mut servers = Vec::new();
    for (i, rs) in rb.servers.iter().enumerate() {
        let sp = p.field("servers").index(i);
        let weight = rs.weight.unwrap_or(1);
        if !(1..=256).contains(&weight) {
            errs.push(&sp.field("weight"), "must be 1 to 256");
        }
        match server_address(&rs.address) {
            Ok(address) => servers.push(Server { address, weight }),
            Err(e) => errs.push(&sp.field("address"), e),
        }
    }
    let health_check = rb
        .health_check
        .as_ref()
        .and_then(|h| health_check(h, &p.field("healthCheck"), errs));
    let passive = match &rb.passive_ejection {
        None => PassiveEjection::default(),
        Some(rp) => {
            let d = PassiveEjection::default();
            PassiveEjection {
                consecutive_failures: rp.consecutive_failures.unwrap_or(d.consecutive_failures),
                eject_for: match &rp.eject_for {
                    None => d.eject_for,
                    Some(s) => duration(s, &p.field("passiveEjection").field("ejectFor"), errs)
                        .unwrap_or(d.eject_for),
                },
            }
        }
    };
    let retries = rb.retries.unwrap_or(1);
    if retries > 10 {
        errs.push(&p.field("retries"), "must be at most 10");
    }
    let tls = rb.tls.as_ref().and_then(|t| {
        let tp = p.field("tls");
        let server_name = match &t.server_name {
            None => None,
            Some(n) => match host_pattern(n, false) {
                Ok(HostMatch::Exact(h)) => Some(h),
                Ok(HostMatch::Wildcard(_)) => None,
                Err(e) => {
                    errs.push(&tp.field("serverName"), e);
                    None
                }
            },
        };
        match &t.ca_file {
            Some(f) if !f.is_empty() => Some(BackendTls {
                server_name,
                ca_file: PathBuf::from(f),
            }),
            _ => {
                errs.push(
                    &tp.field("caFile"),
                    "required: the CA bundle that signs the servers' certificates",
                );
                None
            }
        }
    });
    let max_idle = rb.max_idle_per_server.unwrap_or(1024);
    if max_idle > 10_000 {
        errs.push(&p.field("maxIdlePerServer"), "must be at most 10000");
    }
    Backend {
        name: rb.name.clone(),
        balance,
        servers,
        health_check,
        passive,
        retries: retries.min(10),
        tls,
        proxy_protocol: rb.proxy_protocol.unwrap_or(false),
        max_idle_per_server: max_idle as usize,
    }
}

fn server_address(s: &str) -> Result<ServerAddress, String> {
    if let Ok(a) = SocketAddr::from_str(s) {
        return Ok(ServerAddress::Socket(a));
    }
    let bad = || format!("{s:?} is not IP:port or host:port");
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?;
    match host_pattern(host, false) {
        Ok(HostMatch::Exact(h)) => Ok(ServerAddress::Name { host: h, port }),
        _ => Err(bad()),
    }
}

fn health_check(
    h: &RawHealthCheck,
    p: &FieldPath,
    errs: &mut ObjectErrors<'_>,
) -> Option<HealthCheck> {
    let kind = match (&h.http, &h.tcp) {
        (Some(http), None) => {
            if !http.path.starts_with('/') {
                errs.push(&p.field("http").field("path"), "must start with '/'");
            }
            if http.path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
                errs.push(
                    &p.field("http").field("path"),
                    "must not hold spaces or control characters",
                );
            }
            let expect_status = http.expect_status.clone().unwrap_or_else(|| vec![200]);
            for (i, s) in expect_status.iter().enumerate() {
                if !(100..=599).contains(s) {
                    errs.push(
                        &p.field("http").field("expectStatus").index(i),
                        "must be 100 to 599",
                    );
                }
            }
            let host = match &http.host {
                None => None,
                Some(n) => match host_pattern(n, false) {
                    Ok(HostMatch::Exact(h)) => Some(h),
                    _ => {
                        errs.push(&p.field("http").field("host"), "must be a host name");
                        None
                    }
                },
            };
            HealthCheckKind::Http {
                path: http.path.clone(),
                host,
                expect_status,
            }
        }
        (None, Some(_)) => HealthCheckKind::Tcp,
        _ => {
            errs.push(p, "give exactly one of http or tcp");
            return None;
        }
    };
    let interval = match &h.interval {
        None => Duration::from_secs(2),
        Some(s) => duration(s, &p.field("interval"), errs).unwrap_or(Duration::from_secs(2)),
    };
    let timeout = match &h.timeout {
        None => Duration::from_secs(1).min(interval),
        Some(s) => duration(s, &p.field("timeout"), errs).unwrap_or(Duration::from_secs(1)),
    };
    let rise = h.rise.unwrap_or(2);
    let fall = h.fall.unwrap_or(3);
    if !(1..=100).contains(&rise) {
        errs.push(&p.field("rise"), "must be 1 to 100");
    }
    if !(1..=100).contains(&fall) {
        errs.push(&p.field("fall"), "must be 1 to 100");
    }
    Some(HealthCheck {
        kind,
        interval,
        timeout,
        rise: rise.clamp(1, 100),
        fall: fall.clamp(1, 100),
    })
}
