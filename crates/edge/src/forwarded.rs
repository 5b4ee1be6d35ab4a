//! `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host` and `Forwarded`
//! (RFC 7239).
//!
//! From an untrusted peer every client-supplied forwarding header is removed and
//! replaced with what the gateway saw: the peer address, the scheme of the listener and
//! the request's `Host`. From a trusted proxy (listed in `trustedProxies`) the chains
//! are kept and the peer is appended, so the backend sees the whole path.

use std::net::IpAddr;

use bytes::{BufMut, BytesMut};
use http::{HeaderMap, HeaderValue};

static XFF: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");
static XFP: http::HeaderName = http::HeaderName::from_static("x-forwarded-proto");
static XFH: http::HeaderName = http::HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: http::HeaderName = http::HeaderName::from_static("x-real-ip");

/// The values that depend only on the connection (peer address, scheme), computed once
/// per connection rather than per request.
#[derive(Debug, Clone)]
pub struct PeerValues {
    xff: HeaderValue,
    proto: HeaderValue,
    /// `for=...;proto=...`
    node: String,
}

impl PeerValues {
    /// Values for a connection from `peer` on a listener speaking `proto`.
    pub fn new(peer: IpAddr, proto: &'static str) -> Self {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        let text = peer.to_string();
        let node = match peer {
            IpAddr::V4(_) => format!("for={text};proto={proto}"),
            IpAddr::V6(_) => format!("for=\"[{text}]\";proto={proto}"),
        };
        Self {
            xff: HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("unknown")),
            proto: HeaderValue::from_static(proto),
            node,
        }
    }
}

impl PeerValues {
    /// `X-Forwarded-For` element for this hop (the peer address).
    pub fn xff_bytes(&self) -> &[u8] {
        self.xff.as_bytes()
    }

    /// `X-Forwarded-Proto` value (the listener's scheme).
    pub fn proto_bytes(&self) -> &[u8] {
        self.proto.as_bytes()
    }

    /// `Forwarded` element for this hop without `host` (`for=...;proto=...`).
    pub fn node_bytes(&self) -> &[u8] {
        self.node.as_bytes()
    }
}

/// Rewrites the forwarding headers of a request about to go upstream; `Host` must be
/// set already.
pub fn apply(headers: &mut HeaderMap, peer: &PeerValues, trusted: bool) {
    let host = headers.get(http::header::HOST).cloned();
    // `Forwarded` element for this hop, with host="..." when the Host is quotable.
    let quotable = host.as_ref().is_some_and(|h| {
        h.as_bytes()
            .iter()
            .all(|b| b.is_ascii_graphic() && *b != b'"' && *b != b'\\')
    });
    let node_len = peer.node.len() + host.as_ref().map_or(0, |h| h.len() + 8);
    let push_node = |buf: &mut BytesMut| {
        buf.put_slice(peer.node.as_bytes());
        if let (true, Some(h)) = (quotable, &host) {
            buf.put_slice(b";host=\"");
            buf.put_slice(h.as_bytes());
            buf.put_u8(b'"');
        }
    };
    if trusted {
        let xff = joined(headers, &XFF, peer.xff.as_bytes());
        set(headers, &XFF, xff);
        if !headers.contains_key(&XFP) {
            headers.insert(XFP.clone(), peer.proto.clone());
        }
        if !headers.contains_key(&XFH)
            && let Some(h) = &host
        {
            headers.insert(XFH.clone(), h.clone());
        }
        let mut node = BytesMut::with_capacity(node_len);
        push_node(&mut node);
        let fwd = joined(headers, &http::header::FORWARDED, &node);
        set(headers, &http::header::FORWARDED, fwd);
    } else {
        if headers.contains_key(&X_REAL_IP) {
            headers.remove(&X_REAL_IP);
        }
        headers.insert(XFF.clone(), peer.xff.clone());
        headers.insert(XFP.clone(), peer.proto.clone());
        match &host {
            Some(h) => {
                headers.insert(XFH.clone(), h.clone());
            }
            None => {
                headers.remove(&XFH);
            }
        }
        let mut node = BytesMut::with_capacity(node_len);
        push_node(&mut node);
        set(headers, &http::header::FORWARDED, node);
    }
}

/// The values of `name` joined with `, `, then `last`.
fn joined(headers: &HeaderMap, name: &http::HeaderName, last: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    for v in headers.get_all(name) {
        let s = v.as_bytes().trim_ascii();
        if s.is_empty() {
            continue;
        }
        out.put_slice(s);
        out.put_slice(b", ");
    }
    out.put_slice(last);
    out
}

fn set(headers: &mut HeaderMap, name: &http::HeaderName, value: BytesMut) {
    match HeaderValue::from_maybe_shared(value.freeze()) {
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
            ("host", "a.test"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "http"),
            ("forwarded", "for=6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("x-forwarded-host", "evil.test"),
        ]);
        apply(
            &mut h,
            &PeerValues::new("192.0.2.7".parse().unwrap(), "https"),
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
            &PeerValues::new("::ffff:10.0.0.2".parse().unwrap(), "http"),
            true,
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 198.51.100.1, 10.0.0.2");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["forwarded"], "for=203.0.113.9, for=10.0.0.2;proto=http");
    }

    #[test]
    fn ipv6_is_quoted_and_odd_hosts_are_left_out() {
        let mut h = hm(&[("host", "a\"b")]);
        apply(
            &mut h,
            &PeerValues::new("2001:db8::1".parse().unwrap(), "https"),
            false,
        );
        assert_eq!(h["forwarded"], "for=\"[2001:db8::1]\";proto=https");
        assert_eq!(h["x-forwarded-for"], "2001:db8::1");
    }
}
