//! Writing HTTP/1.1 heads into reusable buffers: the request sent to a server (fields
//! copied as received, hop-by-hop ones dropped, forwarding fields set, route edits
//! applied, framing chosen by the gateway) and the response sent to a client.

use crate::config::HeaderEdits;
use crate::forwarded::PeerValues;
use crate::h1::head::{Field, Known};

/// Called with a field's name, value and class.
pub type FieldFn<'f> = dyn FnMut(&[u8], &[u8], Known) + 'f;

/// A message's fields, whatever the protocol they came in.
pub trait Fields {
    /// Calls `f` with each field's name, value and class, in order.
    fn each(&self, f: &mut FieldFn<'_>);
}

/// Fields parsed from an HTTP/1 head, as ranges into its buffer.
#[derive(Debug, Clone, Copy)]
pub struct Parsed<'a> {
    /// The buffer the ranges index.
    pub buf: &'a [u8],
    /// The fields.
    pub fields: &'a [Field],
}

impl Fields for Parsed<'_> {
    fn each(&self, f: &mut FieldFn<'_>) {
        for field in self.fields {
            f(
                &self.buf[field.name.clone()],
                &self.buf[field.value.clone()],
                field.known,
            );
        }
    }
}

/// The fields of a request received over HTTP/2.
impl Fields for http::HeaderMap {
    fn each(&self, f: &mut FieldFn<'_>) {
        for (name, value) in self {
            let n = name.as_str().as_bytes();
            f(n, value.as_bytes(), Known::of_request(n));
        }
    }
}

/// How the body sent after a head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyOut {
    /// No body and no framing field.
    None,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

fn edited(edits: &HeaderEdits, name: &[u8]) -> bool {
    edits
        .remove
        .iter()
        .chain(edits.set.iter().map(|(n, _)| n))
        .any(|n| n.as_str().as_bytes().eq_ignore_ascii_case(name))
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    field_parts(out, name, &[value]);
}

/// A field whose value is the concatenation of `parts`.
fn field_parts(out: &mut Vec<u8>, name: &[u8], parts: &[&[u8]]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    for p in parts {
        out.extend_from_slice(p);
    }
    out.extend_from_slice(b"\r\n");
}

fn edits_out(out: &mut Vec<u8>, edits: &HeaderEdits) {
    for (n, v) in edits.set.iter().chain(edits.add.iter()) {
        field(out, n.as_str().as_bytes(), v.as_bytes());
    }
}

fn decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// What a request head sent to a server is made of.
#[derive(Debug)]
pub struct RequestOut<'a> {
    /// Method bytes.
    pub method: &'a [u8],
    /// Origin-form target (`/` is sent when empty).
    pub target: &'a [u8],
    /// `Host` to send (the request's authority or `Host`).
    pub host: Option<&'a [u8]>,
    /// Values that depend on the client connection.
    pub peer: &'a PeerValues,
    /// The client is a trusted proxy: forwarding chains are extended, not replaced.
    pub trusted: bool,
    /// The route's request edits.
    pub edits: &'a HeaderEdits,
    /// Body framing towards the server.
    pub body: BodyOut,
}

/// Appends the request head for a server to `out`.
pub fn request_head(out: &mut Vec<u8>, req: &RequestOut<'_>, fields: &dyn Fields) {
    out.extend_from_slice(req.method);
    out.push(b' ');
    out.extend_from_slice(if req.target.is_empty() {
        b"/"
    } else {
        req.target
    });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    match req.host {
        Some(h) => field(out, b"host", h),
        // An HTTP/1.0 request without Host: HTTP/1.1 requires the field, empty when
        // the target has no authority (RFC 9110 §7.2).
        None => out.extend_from_slice(b"host:\r\n"),
    }
    let edits = req.edits;
    let any_edits = !edits.is_empty();
    // Forwarding chains from a trusted proxy, collected while copying.
    let mut xff: Vec<u8> = Vec::new();
    let mut fwd: Vec<u8> = Vec::new();
    let (mut has_xfp, mut has_xfh) = (false, false);
    fields.each(&mut |name, value, known| {
        let keep = match known {
            Known::Other => true,
            Known::XForwardedFor | Known::Forwarded => {
                if req.trusted {
                    let chain = if known == Known::Forwarded {
                        &mut fwd
                    } else {
                        &mut xff
                    };
                    let v = value.trim_ascii();
                    if !v.is_empty() {
                        chain.extend_from_slice(v);
                        chain.extend_from_slice(b", ");
                    }
                }
                false
            }
            Known::XForwardedProto => {
                has_xfp = true;
                req.trusted
            }
            Known::XForwardedHost => {
                has_xfh = true;
                req.trusted
            }
            Known::XRealIp => req.trusted,
            Known::Host
            | Known::ContentLength
            | Known::TransferEncoding
            | Known::Connection
            | Known::HopByHop
            | Known::Expect => false,
        };
        if keep && !(any_edits && edited(edits, name)) {
            field(out, name, value);
        }
    });
    let skip = |name: &[u8]| any_edits && edited(edits, name);
    if !skip(b"x-forwarded-for") {
        field_parts(out, b"x-forwarded-for", &[&xff, req.peer.xff_bytes()]);
    }
    let keep_client_proto = req.trusted && has_xfp;
    if !keep_client_proto && !skip(b"x-forwarded-proto") {
        field(out, b"x-forwarded-proto", req.peer.proto_bytes());
    }
    if let Some(h) = req.host
        && !(req.trusted && has_xfh)
        && !skip(b"x-forwarded-host")
    {
        field(out, b"x-forwarded-host", h);
    }
    if !skip(b"forwarded") {
        let host: [&[u8]; 3] = match req.host {
            Some(h)
                if h.iter()
                    .all(|b| b.is_ascii_graphic() && *b != b'"' && *b != b'\\') =>
            {
                [b";host=\"", h, b"\""]
            }
            _ => [b"", b"", b""],
        };
        field_parts(
            out,
            b"forwarded",
            &[&fwd, req.peer.node_bytes(), host[0], host[1], host[2]],
        );
    }
    edits_out(out, edits);
    match req.body {
        BodyOut::None => {}
        BodyOut::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyOut::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// What a response head sent to a client is made of.
#[derive(Debug)]
pub struct ResponseOut<'a> {
    /// Status code.
    pub status: u16,
    /// Reason phrase (the standard one is used when empty).
    pub reason: &'a [u8],
    /// The route's response edits.
    pub edits: &'a HeaderEdits,
    /// Body framing towards the client. `None` keeps the server's `Content-Length`
    /// (responses to HEAD, 304).
    pub body: BodyOut,
    /// `Connection: close` (the gateway closes after this response).
    pub close: bool,
    /// `Connection: keep-alive` (an HTTP/1.0 client that asked for it).
    pub keep_alive: bool,
}

/// Appends the response head for a client to `out`.
pub fn response_head(out: &mut Vec<u8>, resp: &ResponseOut<'_>, fields: &dyn Fields) {
    status_line(out, resp.status, resp.reason);
    let edits = resp.edits;
    let any_edits = !edits.is_empty();
    let keep_length = resp.body == BodyOut::None;
    fields.each(&mut |name, value, known| {
        let keep = match known {
            Known::ContentLength => keep_length,
            Known::TransferEncoding | Known::Connection | Known::HopByHop => false,
            _ => true,
        };
        if keep && !(any_edits && edited(edits, name)) {
            field(out, name, value);
        }
    });
    edits_out(out, edits);
    framing_and_connection(out, resp.body, resp.close, resp.keep_alive);
}

fn framing_and_connection(out: &mut Vec<u8>, body: BodyOut, close: bool, keep_alive: bool) {
    match body {
        BodyOut::None => {}
        BodyOut::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyOut::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if keep_alive {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `HTTP/1.1 <status> <reason>\r\n`.
pub fn status_line(out: &mut Vec<u8>, status: u16, reason: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 ");
    decimal(out, u64::from(status));
    out.push(b' ');
    if reason.is_empty() {
        let r = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        out.extend_from_slice(r.as_bytes());
    } else {
        out.extend_from_slice(reason);
    }
    out.extend_from_slice(b"\r\n");
}

/// A response made by the gateway itself: a short text body.
#[derive(Debug)]
pub struct LocalOut<'a> {
    /// Status code.
    pub status: u16,
    /// Body text.
    pub text: &'a str,
    /// Extra fields (`Location`, `Retry-After`).
    pub extra: &'a [(&'a str, &'a [u8])],
    /// Send no body (response to HEAD).
    pub head: bool,
    /// `Connection: close`.
    pub close: bool,
    /// `Connection: keep-alive` (HTTP/1.0 client).
    pub keep_alive: bool,
}

/// Appends a whole local response (head and body) to `out`.
pub fn local_response(out: &mut Vec<u8>, l: &LocalOut<'_>) {
    status_line(out, l.status, b"");
    out.extend_from_slice(
        b"content-type: text/plain; charset=utf-8\r\ncache-control: no-store\r\n",
    );
    for (n, v) in l.extra {
        field(out, n.as_bytes(), v);
    }
    framing_and_connection(
        out,
        BodyOut::Length(l.text.len() as u64),
        l.close,
        l.keep_alive,
    );
    if !l.head {
        out.extend_from_slice(l.text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h1::head::{HeadLimits, find_head_end, parse_request};

    fn edits(set: &[(&str, &str)], add: &[(&str, &str)], remove: &[&str]) -> HeaderEdits {
        let hv = |v: &str| http::HeaderValue::from_str(v).unwrap();
        let hn = |n: &str| http::HeaderName::from_bytes(n.as_bytes()).unwrap();
        HeaderEdits {
            set: set.iter().map(|(n, v)| (hn(n), hv(v))).collect(),
            add: add.iter().map(|(n, v)| (hn(n), hv(v))).collect(),
            remove: remove.iter().map(|n| hn(n)).collect(),
        }
    }

    fn forward(text: &str, trusted: bool, e: &HeaderEdits) -> String {
        let buf = text.as_bytes();
        let end = find_head_end(buf, 0).unwrap();
        let limits = HeadLimits {
            max_head_bytes: 8192,
            max_fields: 64,
            max_target_bytes: 1024,
        };
        let mut fields = Vec::new();
        let h = parse_request(buf, end, &limits, &mut fields).unwrap();
        let peer = PeerValues::new("192.0.2.7".parse().unwrap(), "https");
        let mut out = Vec::new();
        request_head(
            &mut out,
            &RequestOut {
                method: &buf[h.method.clone()],
                target: &buf[h.origin_target()],
                host: h.host.clone().map(|r| &buf[r]),
                peer: &peer,
                trusted,
                edits: e,
                body: match h.framing {
                    crate::h1::head::Framing::Length(n) => BodyOut::Length(n),
                    crate::h1::head::Framing::Chunked => BodyOut::Chunked,
                    _ => BodyOut::None,
                },
            },
            &Parsed {
                buf,
                fields: &fields,
            },
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn untrusted_request() {
        let got = forward(
            "POST http://A.test:8443/x?y HTTP/1.1\r\nHost: ignored\r\nX-Forwarded-For: 6.6.6.6\r\nforwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nTE: trailers\r\nUpgrade: h2c\r\nTransfer-Encoding: chunked\r\nUser-Agent: t\r\n\r\n",
            false,
            &HeaderEdits::default(),
        );
        assert_eq!(
            got,
            "POST /x?y HTTP/1.1\r\nhost: A.test:8443\r\nUser-Agent: t\r\nx-forwarded-for: 192.0.2.7\r\nx-forwarded-proto: https\r\nx-forwarded-host: A.test:8443\r\nforwarded: for=192.0.2.7;proto=https;host=\"A.test:8443\"\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn trusted_chains_and_edits() {
        let got = forward(
            "GET / HTTP/1.1\r\nhost: a.test\r\nx-forwarded-for: 203.0.113.9\r\nX-Forwarded-For: 198.51.100.1\r\nx-forwarded-proto: http\r\nforwarded: for=203.0.113.9\r\nx-drop: 1\r\nx-set: old\r\ncontent-length: 0\r\n\r\n",
            true,
            &edits(
                &[("x-set", "new")],
                &[("x-add", "1")],
                &["x-drop", "x-forwarded-host"],
            ),
        );
        assert_eq!(
            got,
            "GET / HTTP/1.1\r\nhost: a.test\r\nx-forwarded-proto: http\r\nx-forwarded-for: 203.0.113.9, 198.51.100.1, 192.0.2.7\r\nforwarded: for=203.0.113.9, for=192.0.2.7;proto=https;host=\"a.test\"\r\nx-set: new\r\nx-add: 1\r\ncontent-length: 0\r\n\r\n"
        );
    }

    #[test]
    fn responses_and_local() {
        let mut out = Vec::new();
        let mut hm = http::HeaderMap::new();
        hm.insert("x-internal", http::HeaderValue::from_static("1"));
        hm.insert("content-length", http::HeaderValue::from_static("9"));
        hm.insert("keep-alive", http::HeaderValue::from_static("timeout=5"));
        hm.insert("server", http::HeaderValue::from_static("n"));
        response_head(
            &mut out,
            &ResponseOut {
                status: 200,
                reason: b"",
                edits: &edits(&[], &[("x-edge", "1")], &["x-internal"]),
                body: BodyOut::Chunked,
                close: true,
                keep_alive: false,
            },
            &hm,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nserver: n\r\nx-edge: 1\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
        let mut out = Vec::new();
        local_response(
            &mut out,
            &LocalOut {
                status: 429,
                text: "slow down\n",
                extra: &[("retry-after", b"3")],
                head: false,
                close: false,
                keep_alive: true,
            },
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 429 Too Many Requests\r\ncontent-type: text/plain; charset=utf-8\r\ncache-control: no-store\r\nretry-after: 3\r\ncontent-length: 10\r\nconnection: keep-alive\r\n\r\nslow down\n"
        );
    }
}
