//! `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host` and `Forwarded`
//! (RFC 7239).
//!
//! From an untrusted peer every client-supplied forwarding header is removed and
//! replaced with what the gateway saw: the peer address, the scheme of the listener and
//! the request host. From a trusted proxy (listed in `trustedProxies`) the chain is kept
//! and the peer is appended, so the backend sees the whole path.

use std::fmt::Write;
use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};

static XFF: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");
static XFP: http::HeaderName = http::HeaderName::from_static("x-forwarded-proto");
static XFH: http::HeaderName = http::HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: http::HeaderName = http::HeaderName::from_static("x-real-ip");

/// Rewrites the forwarding headers of a request about to go upstream.
pub fn apply(
    headers: &mut HeaderMap,
    peer: IpAddr,
    proto: &'static str,
    host: Option<&str>,
    trusted: bool,
) {
    let peer = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
        v4 => v4,
    };
    let mut node = String::with_capacity(48);
    match peer {
        IpAddr::V4(_) => {
            let _ = write!(node, "for={peer}");
        }
        IpAddr::V6(_) => {
            let _ = write!(node, "for=\"[{peer}]\"");
        }
    }
    let _ = write!(node, ";proto={proto}");
    if let Some(h) = host.filter(|h| {
        h.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    }) {
        let _ = write!(node, ";host=\"{h}\"");
    }

    if trusted {
        let mut xff = joined(headers, &XFF);
        if !xff.is_empty() {
            xff.push_str(", ");
        }
        let _ = write!(xff, "{peer}");
        set(headers, &XFF, &xff);
        if !headers.contains_key(&XFP) {
            headers.insert(XFP.clone(), HeaderValue::from_static(proto));
        }
        if !headers.contains_key(&XFH)
            && let Some(h) = host.and_then(|h| HeaderValue::from_str(h).ok())
        {
            headers.insert(XFH.clone(), h);
        }
        let mut fwd = joined(headers, &http::header::FORWARDED);
        if !fwd.is_empty() {
            fwd.push_str(", ");
        }
        fwd.push_str(&node);
        set(headers, &http::header::FORWARDED, &fwd);
    } else {
        headers.remove(&X_REAL_IP);
        set(headers, &XFF, &peer.to_string());
        headers.insert(XFP.clone(), HeaderValue::from_static(proto));
        match host.and_then(|h| HeaderValue::from_str(h).ok()) {
            Some(h) => {
                headers.insert(XFH.clone(), h);
            }
            None => {
                headers.remove(&XFH);
            }
        }
        set(headers, &http::header::FORWARDED, &node);
    }
}

fn joined(headers: &HeaderMap, name: &http::HeaderName) -> String {
    let mut out = String::new();
    for v in headers.get_all(name) {
        if let Ok(s) = v.to_str() {
            let s = s.trim();
            if s.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push_str(s);
        }
    }
    out
}

fn set(headers: &mut HeaderMap, name: &http::HeaderName, value: &str) {
    match HeaderValue::from_str(value) {
        Ok(v) => {
            headers.insert(name.clone(), v);
        }
        Err(_) => {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hm(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn untrusted_peer_headers_are_replaced() {
        let mut h = hm(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "http"),
            ("forwarded", "for=6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("x-forwarded-host", "evil.test"),
        ]);
        apply(
            &mut h,
            "192.0.2.7".parse().unwrap(),
            "https",
            Some("a.test"),
            false,
        );
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "a.test");
        assert_eq!(h["forwarded"], "for=192.0.2.7;proto=https;host=\"a.test\"");
        assert!(!h.contains_key("x-real-ip"));
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
    }

    #[test]
    fn trusted_proxy_chain_is_extended() {
        let mut h = hm(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=203.0.113.9"),
        ]);
        apply(
            &mut h,
            "::ffff:10.0.0.2".parse().unwrap(),
            "http",
            None,
            true,
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 198.51.100.1, 10.0.0.2");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["forwarded"], "for=203.0.113.9, for=10.0.0.2;proto=http");
    }

    #[test]
    fn ipv6_is_quoted() {
        let mut h = HeaderMap::new();
        apply(&mut h, "2001:db8::1".parse().unwrap(), "https", None, false);
        assert_eq!(h["forwarded"], "for=\"[2001:db8::1]\";proto=https");
        assert_eq!(h["x-forwarded-for"], "2001:db8::1");
    }
}
