//! HTTP/1.x message heads: requests from clients and responses from servers, parsed in
//! place (the fields are ranges into the caller's buffer), with the checks that stop
//! request smuggling and the framing of the body that follows.
//!
//! Requests are held to RFC 9112 strictly: one `Host` (required in HTTP/1.1), no
//! `Transfer-Encoding` in HTTP/1.0, never `Content-Length` together with
//! `Transfer-Encoding`, `chunked` as the only transfer coding, identical
//! `Content-Length` values only, no obsolete line folding, no whitespace between a
//! field name and its colon, no control or non-ASCII bytes in the target, and sizes
//! bounded (head bytes, field count, target length). Responses from servers are parsed
//! as strictly, except that a server's `Transfer-Encoding: chunked` wins over its
//! `Content-Length` (and the connection is not reused after it).

use std::mem::MaybeUninit;
use std::ops::Range;

/// Bounds on a request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Request line plus fields, in bytes.
    pub max_head_bytes: usize,
    /// Number of fields.
    pub max_fields: usize,
    /// Length of the request target.
    pub max_target_bytes: usize,
}

/// The fields the gateway treats specially. Everything else is [`Known::Other`] and is
/// forwarded as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// An end-to-end field.
    Other,
    /// `Host`.
    Host,
    /// `Content-Length`.
    ContentLength,
    /// `Transfer-Encoding`.
    TransferEncoding,
    /// `Connection`.
    Connection,
    /// `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Upgrade`, or a field named
    /// in `Connection`: hop-by-hop, never forwarded. In requests, also a name that
    /// reads as one of the fields above once `_` is read as `-` (`X_Forwarded_For`,
    /// `Transfer_Encoding`): CGI-style server interfaces map both spellings to one
    /// variable, so forwarding it would let a client spoof what the gateway sets.
    HopByHop,
    /// `Expect`.
    Expect,
    /// `X-Forwarded-For`.
    XForwardedFor,
    /// `X-Forwarded-Proto`.
    XForwardedProto,
    /// `X-Forwarded-Host`.
    XForwardedHost,
    /// `Forwarded`.
    Forwarded,
    /// `X-Real-IP`.
    XRealIp,
}

impl Known {
    /// Classifies a request field name: as [`Known::of`], and a name with `_` that
    /// aliases a known field is [`Known::HopByHop`] (dropped).
    pub fn of_request(name: &[u8]) -> Known {
        match Known::of(name) {
            Known::Other if name.contains(&b'_') && name.len() <= 32 => {
                let mut alias = [0u8; 32];
                for (a, &b) in alias.iter_mut().zip(name) {
                    *a = if b == b'_' { b'-' } else { b };
                }
                match Known::of(&alias[..name.len()]) {
                    Known::Other => Known::Other,
                    _ => Known::HopByHop,
                }
            }
            k => k,
        }
    }

    /// Classifies a field name (any case).
    pub fn of(name: &[u8]) -> Known {
        let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
        match name.len() {
            2 if is("te") => Known::HopByHop,
            4 if is("host") => Known::Host,
            6 if is("expect") => Known::Expect,
            7 if is("trailer") => Known::HopByHop,
            7 if is("upgrade") => Known::HopByHop,
            9 if is("forwarded") => Known::Forwarded,
            9 if is("x-real-ip") => Known::XRealIp,
            10 if is("connection") => Known::Connection,
            10 if is("keep-alive") => Known::HopByHop,
            14 if is("content-length") => Known::ContentLength,
            15 if is("x-forwarded-for") => Known::XForwardedFor,
            16 if is("proxy-connection") => Known::HopByHop,
            16 if is("x-forwarded-host") => Known::XForwardedHost,
            17 if is("transfer-encoding") => Known::TransferEncoding,
            17 if is("x-forwarded-proto") => Known::XForwardedProto,
            _ => Known::Other,
        }
    }
}

/// One field of a head: where its name and value are in the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The name's bytes.
    pub name: Range<usize>,
    /// The value's bytes (without surrounding whitespace).
    pub value: Range<usize>,
    /// What the gateway makes of it.
    pub known: Known,
}

/// How a body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

impl Framing {
    /// True when body bytes follow the head (or may, for chunked and until-close).
    pub fn has_body(self) -> bool {
        !matches!(self, Framing::Empty | Framing::Length(0))
    }
}

/// The form of a request target (RFC 9112 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetForm {
    /// `/path?query`.
    Origin,
    /// `http://authority/path?query`; the path starts at this offset in the buffer.
    Absolute {
        /// Start of the path (or of the query, or the target's end when both are
        /// missing).
        path_start: usize,
    },
    /// `*` (OPTIONS only).
    Asterisk,
}

/// A parsed request head. Ranges index the buffer given to [`parse_request`]; fields
/// are in the `Vec` given alongside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Bytes of the head, including empty lines before it and the final empty line.
    pub len: usize,
    /// The method's bytes.
    pub method: Range<usize>,
    /// The target's bytes.
    pub target: Range<usize>,
    /// Its form.
    pub form: TargetForm,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// The host the request is for: the target's authority (absolute form) or the
    /// `Host` field; `None` when there is neither (HTTP/1.0) or it is empty.
    pub host: Option<Range<usize>>,
    /// How the body is delimited.
    pub framing: Framing,
    /// The client asked to close the connection after this exchange (`Connection:
    /// close`, or HTTP/1.0 without `Connection: keep-alive`).
    pub close: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
}

impl RequestHead {
    /// The path and query to send to a server (origin form; `*` for asterisk form).
    pub fn origin_target(&self) -> Range<usize> {
        match self.form {
            TargetForm::Origin | TargetForm::Asterisk => self.target.clone(),
            TargetForm::Absolute { path_start } => path_start..self.target.end,
        }
    }
}

/// Why a request head was refused. Each maps to a status and an abuse reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Bad syntax (400).
    Malformed(&'static str),
    /// A request smuggling vector (400).
    Smuggling(&'static str),
    /// Request line and fields over the size limit (431).
    TooLarge,
    /// More fields than allowed (431).
    TooManyFields,
    /// A target over its limit (414).
    TargetTooLong,
    /// An `Expect` other than `100-continue` (417).
    Expectation,
    /// A method the gateway does not proxy, such as `CONNECT` (501).
    NotImplemented(&'static str),
    /// A transfer coding the gateway does not implement before the final `chunked`
    /// (501, RFC 9112 §6.1); counted as smuggling, since lenient servers disagree on it.
    UnknownCoding,
}

impl HeadError {
    /// The status answered to the client.
    pub fn status(self) -> u16 {
        match self {
            HeadError::Malformed(_) | HeadError::Smuggling(_) => 400,
            HeadError::TooLarge | HeadError::TooManyFields => 431,
            HeadError::TargetTooLong => 414,
            HeadError::Expectation => 417,
            HeadError::NotImplemented(_) | HeadError::UnknownCoding => 501,
        }
    }

    /// A short description for logs.
    pub fn detail(self) -> &'static str {
        match self {
            HeadError::Malformed(s) | HeadError::Smuggling(s) | HeadError::NotImplemented(s) => s,
            HeadError::TooLarge => "request head too large",
            HeadError::TooManyFields => "too many header fields",
            HeadError::TargetTooLong => "request target too long",
            HeadError::Expectation => "unsupported expectation",
            HeadError::UnknownCoding => "transfer coding not implemented",
        }
    }
}

/// Empty lines allowed before a request line (RFC 9112 §2.2 asks to ignore at least
/// one).
const MAX_LEADING_EMPTY: usize = 8;

/// Bytes of CR and LF before the request line.
fn leading_empty(buf: &[u8]) -> usize {
    buf.iter()
        .take(2 * MAX_LEADING_EMPTY + 1)
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count()
}

/// Finds the end of a head (just after its empty line) in `buf`, looking only at bytes
/// from `from` on (minus the three before it, where a terminator may have started), so
/// that a head arriving a byte at a time is scanned once in total. Empty lines before
/// the start line are skipped.
pub fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let skip = leading_empty(buf);
    let start = from.saturating_sub(3).max(skip);
    let mut i = start;
    while let Some(p) = memchr_lf(&buf[i..]) {
        let at = i + p;
        // "\n\r\n" or "\n\n"
        match buf.get(at + 1) {
            Some(b'\n') => return Some(at + 2),
            Some(b'\r') => match buf.get(at + 2) {
                Some(b'\n') => return Some(at + 3),
                Some(_) => {}
                None => return None,
            },
            Some(_) => {}
            None => return None,
        }
        i = at + 1;
    }
    None
}

fn memchr_lf(s: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', s)
}

/// Checks a head that has not ended yet against the size limits, so that a client
/// cannot make the gateway buffer more than allowed.
pub fn check_partial(buf: &[u8], limits: &HeadLimits) -> Result<(), HeadError> {
    let skip = leading_empty(buf);
    if skip > 2 * MAX_LEADING_EMPTY {
        return Err(HeadError::Malformed("empty lines before the request line"));
    }
    let line_end = memchr_lf(&buf[skip..]);
    // method + SP + target + SP + "HTTP/1.1"; a method is short.
    let line_budget = limits.max_target_bytes + 32;
    if line_end.is_none_or(|e| e > line_budget) && buf.len() - skip > line_budget {
        return Err(HeadError::TargetTooLong);
    }
    if buf.len() > limits.max_head_bytes {
        return Err(HeadError::TooLarge);
    }
    Ok(())
}

/// Target characters: what `http::Uri` accepts, restricted to ASCII and without `#`.
fn target_byte_ok(b: u8, in_query: bool) -> bool {
    match b {
        0x21 | 0x24..=0x3B | 0x3D | 0x40..=0x5F | 0x61..=0x7A | 0x7C | 0x7E => true,
        b'"' | b'{' | b'}' => true,
        b'?' => true,
        // Valid in a query only.
        b'<' | b'>' | b'`' => in_query,
        _ => false,
    }
}

fn check_path_and_query(s: &[u8]) -> Result<(), HeadError> {
    let mut in_query = false;
    for &b in s {
        if !target_byte_ok(b, in_query) {
            return Err(HeadError::Malformed(
                "invalid character in the request target",
            ));
        }
        if b == b'?' {
            in_query = true;
        }
    }
    Ok(())
}

/// Characters of a host (reg-name, IPv4, IP literal) and optional port.
fn authority_ok(s: &[u8]) -> bool {
    s.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'['
                    | b']'
            )
    })
}

/// The offset of `sub` inside `buf` (both from the same allocation).
fn offset(buf: &[u8], sub: &[u8]) -> usize {
    sub.as_ptr() as usize - buf.as_ptr() as usize
}

fn range(buf: &[u8], sub: &[u8]) -> Range<usize> {
    let start = offset(buf, sub);
    start..start + sub.len()
}

/// Splits a comma-separated list, trimming optional whitespace, skipping empty
/// elements.
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|s| !s.is_empty())
}

/// Parses a `Content-Length` value (a list of identical decimals is one value).
fn content_length(value: &[u8]) -> Result<u64, HeadError> {
    let mut out = None;
    let mut any = false;
    for item in value.split(|&b| b == b',') {
        let item = item.trim_ascii();
        any = true;
        if item.is_empty() || item.len() > 18 || !item.iter().all(u8::is_ascii_digit) {
            return Err(HeadError::Malformed("invalid content-length"));
        }
        let n = item.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        match out {
            None => out = Some(n),
            Some(m) if m == n => {}
            Some(_) => return Err(HeadError::Smuggling("conflicting content-length values")),
        }
    }
    match (any, out) {
        (true, Some(n)) => Ok(n),
        _ => Err(HeadError::Malformed("invalid content-length")),
    }
}

/// The most fields any head may have, whatever the configuration.
pub const FIELDS_CAP: usize = 1024;

fn map_httparse(e: httparse::Error) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::TooManyFields,
        httparse::Error::HeaderName => HeadError::Malformed("invalid header field name"),
        httparse::Error::HeaderValue => HeadError::Malformed("invalid header field value"),
        httparse::Error::NewLine => HeadError::Malformed("invalid line ending"),
        httparse::Error::Token => HeadError::Malformed("invalid request line"),
        httparse::Error::Version => HeadError::Malformed("invalid HTTP version"),
        httparse::Error::Status => HeadError::Malformed("invalid status"),
    }
}

/// Parses a complete request head: `buf[..end]` where `end` came from
/// [`find_head_end`]. Fields are written to `fields` (cleared first).
pub fn parse_request(
    buf: &[u8],
    end: usize,
    limits: &HeadLimits,
    fields: &mut Vec<Field>,
) -> Result<RequestHead, HeadError> {
    fields.clear();
    if fields.capacity() == 0 {
        fields.reserve(16);
    }
    let head = &buf[..end];
    let skip = leading_empty(head);
    if skip > 2 * MAX_LEADING_EMPTY {
        return Err(HeadError::Malformed("empty lines before the request line"));
    }
    if end > limits.max_head_bytes + skip {
        return Err(HeadError::TooLarge);
    }
    if let Some(line_end) = memchr_lf(&head[skip..])
        && line_end > limits.max_target_bytes + 32
    {
        return Err(HeadError::TargetTooLong);
    }
    let cap = limits.max_fields.min(FIELDS_CAP);
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; FIELDS_CAP];
    let mut req = httparse::Request::new(&mut []);
    let status = httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, head, &mut storage[..cap])
        .map_err(map_httparse)?;
    let len = match status {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Err(HeadError::Malformed("incomplete request head")),
    };
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Malformed("incomplete request line"));
    };
    if target.len() > limits.max_target_bytes {
        return Err(HeadError::TargetTooLong);
    }
    if method == "CONNECT" {
        return Err(HeadError::NotImplemented("CONNECT is not proxied"));
    }
    let tb = target.as_bytes();
    let form = if tb.first() == Some(&b'/') {
        check_path_and_query(tb)?;
        TargetForm::Origin
    } else if tb == b"*" {
        if method != "OPTIONS" {
            return Err(HeadError::Malformed("asterisk target outside OPTIONS"));
        }
        TargetForm::Asterisk
    } else {
        let rest = if tb.len() > 7 && tb[..7].eq_ignore_ascii_case(b"http://") {
            &tb[7..]
        } else if tb.len() > 8 && tb[..8].eq_ignore_ascii_case(b"https://") {
            &tb[8..]
        } else {
            return Err(HeadError::Malformed("invalid request target"));
        };
        let auth_len = rest
            .iter()
            .position(|&b| b == b'/' || b == b'?')
            .unwrap_or(rest.len());
        let authority = &rest[..auth_len];
        if authority.is_empty() || !authority_ok(authority) {
            return Err(HeadError::Malformed(
                "invalid authority in the request target",
            ));
        }
        check_path_and_query(&rest[auth_len..])?;
        TargetForm::Absolute {
            path_start: offset(buf, &rest[auth_len..]),
        }
    };

    let mut host = None;
    let mut hosts = 0;
    let mut length = None;
    let mut chunked = 0usize;
    let mut other_coding = false;
    let mut last_chunked = false;
    let mut saw_te = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut expect_continue = false;
    let mut connection_fields = 0usize;
    for h in req.headers.iter() {
        let value = h.value;
        let known = Known::of_request(h.name.as_bytes());
        match known {
            Known::Host => {
                hosts += 1;
                if !authority_ok(value) {
                    return Err(HeadError::Malformed("invalid host"));
                }
                if !value.is_empty() {
                    host = Some(range(buf, value));
                }
            }
            Known::ContentLength => {
                let n = content_length(value)?;
                match length {
                    None => length = Some(n),
                    Some(m) if m == n => {}
                    Some(_) => {
                        return Err(HeadError::Smuggling("conflicting content-length values"));
                    }
                }
            }
            Known::TransferEncoding => {
                saw_te = true;
                for coding in list(value) {
                    last_chunked = coding.eq_ignore_ascii_case(b"chunked");
                    if last_chunked {
                        chunked += 1;
                    } else {
                        other_coding = true;
                    }
                }
            }
            Known::Connection => {
                connection_fields += 1;
                for token in list(value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        conn_close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        conn_keep_alive = true;
                    }
                }
            }
            Known::Expect => {
                if value.eq_ignore_ascii_case(b"100-continue") {
                    expect_continue = true;
                } else {
                    return Err(HeadError::Expectation);
                }
            }
            _ => {}
        }
        fields.push(Field {
            name: range(buf, h.name.as_bytes()),
            value: range(buf, value),
            known,
        });
    }
    // Fields named in Connection are hop-by-hop too.
    if connection_fields > 0 {
        mark_connection_named(buf, fields);
    }

    let framing = if saw_te {
        if minor == 0 {
            return Err(HeadError::Smuggling(
                "transfer-encoding in an HTTP/1.0 request",
            ));
        }
        if length.is_some() {
            return Err(HeadError::Smuggling(
                "content-length with transfer-encoding",
            ));
        }
        if chunked != 1 || !last_chunked {
            // Without a final chunked the length cannot be known (RFC 9112 §6.3):
            // 400; chunked twice is invalid (§6.1).
            return Err(HeadError::Smuggling(
                "transfer coding other than one final chunked",
            ));
        }
        if other_coding {
            return Err(HeadError::UnknownCoding);
        }
        Framing::Chunked
    } else {
        match length {
            None => Framing::Empty,
            Some(n) => Framing::Length(n),
        }
    };
    if hosts > 1 {
        return Err(HeadError::Malformed("several host fields"));
    }
    if hosts == 0 && minor == 1 {
        return Err(HeadError::Malformed("missing host"));
    }
    if let TargetForm::Absolute { path_start } = form {
        // The target's authority wins over Host (RFC 9112 §3.2.2).
        let scheme_len = if tb[4] == b':' { 7 } else { 8 };
        let start = offset(buf, tb) + scheme_len;
        host = Some(start..path_start);
    }
    let close = if minor == 0 {
        !conn_keep_alive || conn_close
    } else {
        conn_close
    };
    Ok(RequestHead {
        len,
        method: range(buf, method.as_bytes()),
        target: range(buf, tb),
        form,
        minor,
        host,
        framing,
        close,
        // An HTTP/1.0 client's 100-continue is ignored (RFC 9110 §10.1.1).
        expect_continue: expect_continue && minor == 1 && framing.has_body(),
    })
}

/// Marks the fields named in `Connection` as hop-by-hop (`close` and `keep-alive` name
/// no field).
fn mark_connection_named(buf: &[u8], fields: &mut [Field]) {
    let mut named: [Option<Range<usize>>; 16] = Default::default();
    let mut n = 0;
    for f in fields.iter() {
        if f.known != Known::Connection {
            continue;
        }
        for token in list(&buf[f.value.clone()]) {
            if token.eq_ignore_ascii_case(b"close") || token.eq_ignore_ascii_case(b"keep-alive") {
                continue;
            }
            if n < named.len() {
                named[n] = Some(range(buf, token));
                n += 1;
            }
        }
    }
    if n == 0 {
        return;
    }
    for f in fields.iter_mut() {
        // Framing and routing fields keep their meaning whatever Connection says.
        if !matches!(
            f.known,
            Known::Other
                | Known::XForwardedFor
                | Known::XForwardedProto
                | Known::XForwardedHost
                | Known::Forwarded
                | Known::XRealIp
        ) {
            continue;
        }
        let name = &buf[f.name.clone()];
        if named[..n]
            .iter()
            .flatten()
            .any(|r| buf[r.clone()].eq_ignore_ascii_case(name))
        {
            f.known = Known::HopByHop;
        }
    }
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// Bytes of the head.
    pub len: usize,
    /// Status code.
    pub status: u16,
    /// Reason phrase bytes.
    pub reason: Range<usize>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// How the body is delimited.
    pub framing: Framing,
    /// The server will close the connection (or must not be reused) after this
    /// response.
    pub close: bool,
}

/// Why a server's response head was refused (the client gets 502).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadResponse(pub &'static str);

/// Parses a complete response head in `buf[..end]`. `head_request` is true when the
/// request was `HEAD` (no body follows whatever the fields say).
pub fn parse_response(
    buf: &[u8],
    end: usize,
    head_request: bool,
    fields: &mut Vec<Field>,
) -> Result<ResponseHead, BadResponse> {
    fields.clear();
    if fields.capacity() == 0 {
        fields.reserve(16);
    }
    let head = &buf[..end];
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; FIELDS_CAP];
    let mut resp = httparse::Response::new(&mut []);
    let status = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, head, &mut storage[..])
        .map_err(|e| BadResponse(map_httparse(e).detail()))?;
    let len = match status {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Err(BadResponse("incomplete response head")),
    };
    let (Some(code), Some(minor)) = (resp.code, resp.version) else {
        return Err(BadResponse("incomplete status line"));
    };
    if !(100..=599).contains(&code) {
        return Err(BadResponse("status out of range"));
    }
    let reason = resp.reason.map_or(0..0, |r| range(buf, r.as_bytes()));
    let mut length = None;
    let mut chunked = 0usize;
    let mut other_coding = false;
    let mut saw_te = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut connection_fields = 0usize;
    for h in resp.headers.iter() {
        let value = h.value;
        let known = Known::of(h.name.as_bytes());
        match known {
            Known::ContentLength => {
                let n = content_length(value).map_err(|e| BadResponse(e.detail()))?;
                match length {
                    None => length = Some(n),
                    Some(m) if m == n => {}
                    Some(_) => return Err(BadResponse("conflicting content-length values")),
                }
            }
            Known::TransferEncoding => {
                saw_te = true;
                for coding in list(value) {
                    if coding.eq_ignore_ascii_case(b"chunked") {
                        chunked += 1;
                    } else {
                        other_coding = true;
                    }
                }
            }
            Known::Connection => {
                connection_fields += 1;
                for token in list(value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        conn_close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        conn_keep_alive = true;
                    }
                }
            }
            _ => {}
        }
        fields.push(Field {
            name: range(buf, h.name.as_bytes()),
            value: range(buf, value),
            known,
        });
    }
    if connection_fields > 0 {
        mark_connection_named(buf, fields);
    }
    let mut close = conn_close || (minor == 0 && !conn_keep_alive);
    let no_body = head_request || (100..200).contains(&code) || code == 204 || code == 304;
    let framing = if no_body {
        Framing::Empty
    } else if saw_te {
        if other_coding || chunked != 1 {
            return Err(BadResponse("transfer coding other than one chunked"));
        }
        if length.is_some() {
            // Chunked wins; a server that sends both is not trusted with another
            // request on this connection.
            close = true;
        }
        Framing::Chunked
    } else {
        match length {
            Some(n) => Framing::Length(n),
            None => {
                close = true;
                Framing::UntilClose
            }
        }
    };
    Ok(ResponseHead {
        len,
        status: code,
        reason,
        minor,
        framing,
        close,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_head_bytes: 4096,
        max_fields: 16,
        max_target_bytes: 256,
    };

    fn req(text: &str) -> Result<(RequestHead, Vec<Field>), HeadError> {
        let buf = text.as_bytes();
        let end = match find_head_end(buf, 0) {
            Some(e) => e,
            None => {
                check_partial(buf, &LIMITS)?;
                panic!("incomplete head in test: {text:?}");
            }
        };
        let mut fields = Vec::new();
        parse_request(buf, end, &LIMITS, &mut fields).map(|h| (h, fields))
    }

    fn err(text: &str) -> HeadError {
        req(text).expect_err(text)
    }

    #[test]
    fn simple_get() {
        let text = "GET /a?b=1 HTTP/1.1\r\nHost: Example.test\r\nX-A: 1 \r\n\r\nrest";
        let (h, f) = req(text).unwrap();
        assert_eq!(h.len, text.len() - 4);
        assert_eq!(&text[h.method.clone()], "GET");
        assert_eq!(&text[h.target.clone()], "/a?b=1");
        assert_eq!(&text[h.host.clone().unwrap()], "Example.test");
        assert_eq!(h.framing, Framing::Empty);
        assert!(!h.close);
        assert_eq!(f.len(), 2);
        assert_eq!(&text[f[1].value.clone()], "1");
        assert_eq!(f[0].known, Known::Host);
    }

    #[test]
    fn framing() {
        let (h, _) = req("POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\n").unwrap();
        assert_eq!(h.framing, Framing::Length(5));
        let (h, _) =
            req("POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5, 5\r\nContent-Length: 5\r\n\r\n")
                .unwrap();
        assert_eq!(h.framing, Framing::Length(5));
        let (h, _) =
            req("POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: Chunked\r\n\r\n").unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        let (h, _) = req("POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n").unwrap();
        assert_eq!(h.framing, Framing::Length(0));
        assert!(!h.framing.has_body());
    }

    #[test]
    fn smuggling_vectors() {
        use HeadError::*;
        let cases = [
            "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5, 6\r\n\r\n",
            "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: xchunked\r\n\r\n",
            "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked;q=1\r\n\r\n",
            "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: \r\n\r\n",
            "POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n",
        ];
        for c in cases {
            assert!(matches!(err(c), Smuggling(_)), "{c:?}: {:?}", err(c));
        }
        let malformed = [
            // whitespace before the colon
            "GET / HTTP/1.1\r\nhost : a\r\n\r\n",
            "GET / HTTP/1.1\r\nhost: a\r\ncontent-length : 5\r\n\r\n",
            // obsolete line folding
            "GET / HTTP/1.1\r\nhost: a\r\nx-a: 1\r\n  2\r\n\r\n",
            "GET / HTTP/1.1\r\nhost: a\r\nx-a: 1\r\n\t2\r\n\r\n",
            // invalid characters
            "GET / HTTP/1.1\r\nhost: a\r\nx-a: 1\x002\r\n\r\n",
            "GET / HTTP/1.1\r\nhost: a\r\nx-a: 1\r2\r\n\r\n",
            "GET / HTTP/1.1\r\nhost: a\r\nx(a): 1\r\n\r\n",
            "GET /\x7f HTTP/1.1\r\nhost: a\r\n\r\n",
            "GET /\u{e9} HTTP/1.1\r\nhost: a\r\n\r\n",
            "GET /a#b HTTP/1.1\r\nhost: a\r\n\r\n",
            "GET /a<b HTTP/1.1\r\nhost: a\r\n\r\n",
            "GET  / HTTP/1.1\r\nhost: a\r\n\r\n",
            "GET / HTTP/1.1 \r\nhost: a\r\n\r\n",
            "GET / HTTP/2.0\r\nhost: a\r\n\r\n",
            "GET / http/1.1\r\nhost: a\r\n\r\n",
            "G(T / HTTP/1.1\r\nhost: a\r\n\r\n",
            "GET a HTTP/1.1\r\nhost: a\r\n\r\n",
            "GET * HTTP/1.1\r\nhost: a\r\n\r\n",
            "GET http://a@b/ HTTP/1.1\r\nhost: a\r\n\r\n",
            "GET http:/// HTTP/1.1\r\nhost: a\r\n\r\n",
            // hosts
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n",
            "GET / HTTP/1.1\r\nhost: a b\r\n\r\n",
            "GET / HTTP/1.1\r\nhost: a/b\r\n\r\n",
            // lengths
            "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 0x5\r\n\r\n",
            "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: \r\n\r\n",
            "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 1 2\r\n\r\n",
            "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 99999999999999999999\r\n\r\n",
        ];
        for c in malformed {
            assert!(matches!(err(c), Malformed(_)), "{c:?}: {:?}", req(c));
        }
        assert_eq!(
            err("CONNECT a:443 HTTP/1.1\r\nhost: a\r\n\r\n").status(),
            501
        );
        assert_eq!(
            err("POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip, chunked\r\n\r\n"),
            UnknownCoding
        );
        assert_eq!(
            err(
                "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n"
            ),
            UnknownCoding
        );
        assert_eq!(UnknownCoding.status(), 501);
        assert!(matches!(
            err("POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked, gzip\r\n\r\n"),
            Smuggling(_)
        ));
        assert_eq!(
            err("PUT / HTTP/1.1\r\nhost: a\r\nexpect: tea\r\n\r\n").status(),
            417
        );
    }

    #[test]
    fn connection_semantics() {
        let (h, f) = req("GET / HTTP/1.1\r\nhost: a\r\nconnection: close, x-secret\r\nx-secret: 1\r\nx-keep: 2\r\n\r\n").unwrap();
        assert!(h.close);
        assert_eq!(f[2].known, Known::HopByHop);
        assert_eq!(f[3].known, Known::Other);
        let (h, _) = req("GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(h.close);
        assert_eq!(h.host, None);
        let (h, _) = req("GET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\n").unwrap();
        assert!(!h.close);
        let (h, _) = req("GET / HTTP/1.1\r\nhost: a\r\nconnection: keep-alive\r\n\r\n").unwrap();
        assert!(!h.close);
        // Connection cannot make framing fields disappear.
        let (h, f) = req(
            "POST / HTTP/1.1\r\nhost: a\r\nconnection: content-length\r\ncontent-length: 3\r\n\r\n",
        )
        .unwrap();
        assert_eq!(h.framing, Framing::Length(3));
        assert_eq!(f[2].known, Known::ContentLength);
    }

    #[test]
    fn underscore_aliases_of_known_fields_are_not_forwarded() {
        let (h, f) = req("POST / HTTP/1.1\r\nhost: a\r\nX_Forwarded_For: 1.2.3.4\r\ntransfer_encoding: chunked\r\ncontent_length: 9\r\nx_custom: 1\r\nx-real_ip: 5\r\n\r\n").unwrap();
        assert_eq!(h.framing, Framing::Empty);
        let kinds: Vec<Known> = f.iter().map(|f| f.known).collect();
        assert_eq!(
            kinds,
            [
                Known::Host,
                Known::HopByHop,
                Known::HopByHop,
                Known::HopByHop,
                Known::Other,
                Known::HopByHop
            ]
        );
    }

    #[test]
    fn absolute_form_and_leading_lines() {
        let text = "\r\nGET HTTP://Other.test:8443/p?q HTTP/1.1\r\nhost: a\r\n\r\n";
        let (h, _) = req(text).unwrap();
        assert_eq!(&text[h.host.clone().unwrap()], "Other.test:8443");
        assert_eq!(&text[h.origin_target()], "/p?q");
        let text = "GET http://o.test HTTP/1.1\r\nhost: a\r\n\r\n";
        let (h, _) = req(text).unwrap();
        assert_eq!(&text[h.origin_target()], "");
        let (h, _) = req("OPTIONS * HTTP/1.1\r\nhost: a\r\n\r\n").unwrap();
        assert_eq!(h.form, TargetForm::Asterisk);
        let (h, _) =
            req("POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\nexpect: 100-Continue\r\n\r\n")
                .unwrap();
        assert!(h.expect_continue);
    }

    #[test]
    fn sizes() {
        let long_target = format!("GET /{} HTTP/1.1\r\nhost: a\r\n\r\n", "a".repeat(300));
        assert_eq!(err(&long_target), HeadError::TargetTooLong);
        let many: String = (0..17).map(|i| format!("x-{i}: 1\r\n")).collect();
        assert_eq!(
            err(&format!("GET / HTTP/1.1\r\nhost: a\r\n{many}\r\n")),
            HeadError::TooManyFields
        );
        let big = format!(
            "GET / HTTP/1.1\r\nhost: a\r\nx: {}\r\n\r\n",
            "b".repeat(5000)
        );
        assert_eq!(err(&big), HeadError::TooLarge);
        // Partial heads are bounded too.
        let partial = format!("GET / HTTP/1.1\r\nx: {}", "b".repeat(5000));
        assert_eq!(
            check_partial(partial.as_bytes(), &LIMITS),
            Err(HeadError::TooLarge)
        );
        let partial = format!("GET /{}", "a".repeat(400));
        assert_eq!(
            check_partial(partial.as_bytes(), &LIMITS),
            Err(HeadError::TargetTooLong)
        );
        assert_eq!(check_partial(b"GET / HTTP/1.1\r\nhost", &LIMITS), Ok(()));
    }

    #[test]
    fn head_end_is_found_incrementally() {
        let text = b"GET / HTTP/1.1\r\nhost: a\r\n\r\nnext";
        for split in 0..text.len() {
            // Whatever was scanned before, the end is found once the bytes are there.
            let found = find_head_end(&text[..], split.min(text.len() - 4));
            assert_eq!(found, Some(text.len() - 4), "{split}");
        }
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nhost: a\r\n\r", 0), None);
        assert_eq!(find_head_end(b"GET / HTTP/1.0\n\nx", 0), Some(16));
        assert_eq!(
            find_head_end(b"\r\n\r\nGET / HTTP/1.0\r\n\r\n", 0),
            Some(22)
        );
    }

    #[test]
    fn responses() {
        let mut f = Vec::new();
        let parse = |t: &str, head: bool, f: &mut Vec<Field>| {
            let end = find_head_end(t.as_bytes(), 0).unwrap();
            parse_response(t.as_bytes(), end, head, f)
        };
        let r = parse(
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n",
            false,
            &mut f,
        )
        .unwrap();
        assert_eq!(
            (r.status, r.framing, r.close),
            (200, Framing::Length(3), false)
        );
        let r = parse("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n", true, &mut f).unwrap();
        assert_eq!(r.framing, Framing::Empty);
        let r = parse("HTTP/1.1 204 No Content\r\n\r\n", false, &mut f).unwrap();
        assert_eq!(r.framing, Framing::Empty);
        let r = parse("HTTP/1.1 200 OK\r\n\r\n", false, &mut f).unwrap();
        assert_eq!((r.framing, r.close), (Framing::UntilClose, true));
        let r = parse(
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
            false,
            &mut f,
        )
        .unwrap();
        assert_eq!((r.framing, r.close), (Framing::Chunked, true));
        let r = parse(
            "HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n",
            false,
            &mut f,
        )
        .unwrap();
        assert!(r.close);
        assert!(
            parse(
                "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
                false,
                &mut f
            )
            .is_err()
        );
        assert!(
            parse(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
                false,
                &mut f
            )
            .is_err()
        );
        assert!(parse("HTTP/1.1 200 OK\r\nx : 1\r\n\r\n", false, &mut f).is_err());
        assert!(parse("HTTP/1.1 999 Odd\r\n\r\n", false, &mut f).is_err());
    }

    proptest::proptest! {
        /// Arbitrary bytes never panic the parsers, and whatever parses keeps its
        /// ranges inside the head.
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let mut fields = Vec::new();
            let _ = check_partial(&bytes, &LIMITS);
            if let Some(end) = find_head_end(&bytes, 0) {
                if let Ok(h) = parse_request(&bytes, end, &LIMITS, &mut fields) {
                    proptest::prop_assert!(h.len <= end);
                    proptest::prop_assert!(h.target.end <= h.len && h.method.end <= h.len);
                    for f in &fields {
                        proptest::prop_assert!(f.name.end <= h.len && f.value.end <= h.len);
                    }
                }
                let _ = parse_response(&bytes, end, false, &mut fields);
            }
        }

        /// Requests built from valid pieces parse, with the framing their fields say.
        #[test]
        fn valid_requests_parse(
            path in "/[a-z0-9/._~%-]{0,40}",
            host in "[a-z0-9.-]{1,20}",
            len in proptest::option::of(0u64..1_000_000),
            extra in proptest::collection::vec(("x-[a-z]{1,8}", "[ -~]{0,20}"), 0..8),
        ) {
            let mut text = format!("POST {path} HTTP/1.1\r\nHost: {host}\r\n");
            if let Some(n) = len {
                text.push_str(&format!("Content-Length: {n}\r\n"));
            }
            for (k, v) in &extra {
                text.push_str(&format!("{k}: {v}\r\n"));
            }
            text.push_str("\r\n");
            let end = find_head_end(text.as_bytes(), 0).unwrap();
            let mut fields = Vec::new();
            let h = parse_request(text.as_bytes(), end, &LIMITS, &mut fields).unwrap();
            proptest::prop_assert_eq!(h.len, text.len());
            let want = match len { None => Framing::Empty, Some(n) => Framing::Length(n) };
            proptest::prop_assert_eq!(h.framing, want);
            proptest::prop_assert_eq!(fields.len(), 1 + usize::from(len.is_some()) + extra.len());
        }
    }
}
