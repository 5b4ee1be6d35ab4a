//! Reading the server name out of a TLS ClientHello without consuming it: the bytes are
//! kept and either replayed into rustls (termination) or forwarded untouched
//! (passthrough). Sans-I/O: the caller feeds what it has read so far.
//!
//! Everything here is attacker-controlled: lengths are checked before every slice, the
//! hello is capped at [`MAX_HELLO`] bytes, and nothing panics.

/// Largest ClientHello accepted (handshake message bytes, across records).
pub const MAX_HELLO: usize = 16 * 1024;

/// The outcome of looking at the first bytes of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peek {
    /// Not enough bytes yet.
    NeedMore,
    /// A complete ClientHello.
    Hello {
        /// The `server_name` extension's host name, lower case, if any.
        server_name: Option<String>,
    },
    /// Not a TLS ClientHello (or a malformed one).
    NotTls(&'static str),
}

/// Looks at the bytes read so far.
pub fn peek(buf: &[u8]) -> Peek {
    // Reassemble the handshake message from consecutive handshake records.
    let mut hs = Vec::new();
    let mut rest = buf;
    loop {
        if rest.len() < 5 {
            return if hs.is_empty() && !rest.is_empty() && rest[0] != 22 {
                Peek::NotTls("not a TLS handshake record")
            } else {
                Peek::NeedMore
            };
        }
        if rest[0] != 22 {
            return Peek::NotTls("not a TLS handshake record");
        }
        if rest[1] != 3 {
            return Peek::NotTls("unknown record version");
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if len == 0 || len > 16384 + 256 {
            return Peek::NotTls("bad record length");
        }
        if rest.len() < 5 + len {
            // Partial record: take what there is to learn the message length early.
            hs.extend_from_slice(&rest[5..]);
            if let Some(total) = message_len(&hs)
                && total > MAX_HELLO
            {
                return Peek::NotTls("ClientHello too large");
            }
            return if hs.first().is_some_and(|t| *t != 1) {
                Peek::NotTls("first handshake message is not a ClientHello")
            } else {
                Peek::NeedMore
            };
        }
        hs.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
        if hs[0] != 1 {
            return Peek::NotTls("first handshake message is not a ClientHello");
        }
        if let Some(total) = message_len(&hs) {
            if total > MAX_HELLO {
                return Peek::NotTls("ClientHello too large");
            }
            if hs.len() >= total {
                return match parse_hello(&hs[4..total]) {
                    Some(server_name) => Peek::Hello { server_name },
                    None => Peek::NotTls("malformed ClientHello"),
                };
            }
        }
    }
}

fn message_len(hs: &[u8]) -> Option<usize> {
    if hs.len() < 4 {
        return None;
    }
    Some(4 + (usize::from(hs[1]) << 16 | usize::from(hs[2]) << 8 | usize::from(hs[3])))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| usize::from(b[0]))
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(n)
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(n)
    }
}

/// Parses a ClientHello body; `Some(None)` when it has no server name.
fn parse_hello(body: &[u8]) -> Option<Option<String>> {
    let mut r = Reader(body);
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    let session_id = r.vec8()?;
    if session_id.len() > 32 {
        return None;
    }
    let suites = r.vec16()?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return None;
    }
    r.vec8()?; // compression methods
    if r.0.is_empty() {
        return Some(None); // no extensions
    }
    let mut exts = Reader(r.vec16()?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec16()?;
        if kind != 0 {
            continue;
        }
        let mut list = Reader(Reader(data).vec16()?);
        while !list.0.is_empty() {
            let name_type = list.u8()?;
            let name = list.vec16()?;
            if name_type == 0 {
                let name = std::str::from_utf8(name).ok()?;
                if name.is_empty()
                    || name.len() > 253
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
                {
                    return None;
                }
                return Some(Some(name.trim_end_matches('.').to_ascii_lowercase()));
            }
        }
        return Some(None);
    }
    Some(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real ClientHello from rustls for `name`.
    fn hello(name: &str) -> Vec<u8> {
        let roots = rustls::RootCertStore::empty();
        let config = std::sync::Arc::new(
            rustls::ClientConfig::builder_with_provider(rampart_tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        let mut c =
            rustls::ClientConnection::new(config, name.to_owned().try_into().unwrap()).unwrap();
        let mut out = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut out).unwrap();
        }
        out
    }

    #[test]
    fn reads_sni_from_a_real_hello_at_every_split() {
        let h = hello("Kube.Example.test");
        for cut in 0..h.len() {
            assert_eq!(peek(&h[..cut]), Peek::NeedMore, "cut {cut}");
        }
        assert_eq!(
            peek(&h),
            Peek::Hello {
                server_name: Some("kube.example.test".into())
            }
        );
    }

    #[test]
    fn hello_split_across_records() {
        let h = hello("a.test");
        let body = &h[5..];
        let (a, b) = body.split_at(40);
        let mut split = Vec::new();
        for part in [a, b] {
            split.extend_from_slice(&[22, 3, 1]);
            split.extend_from_slice(&(part.len() as u16).to_be_bytes());
            split.extend_from_slice(part);
        }
        assert_eq!(
            peek(&split),
            Peek::Hello {
                server_name: Some("a.test".into())
            }
        );
    }

    #[test]
    fn plain_http_is_not_tls() {
        assert!(matches!(peek(b"GET / HTTP/1.1\r\n"), Peek::NotTls(_)));
        assert!(matches!(peek(b"G"), Peek::NotTls(_)));
    }

    #[test]
    fn ip_names_are_not_sent() {
        // rustls sends no SNI for an IP address.
        let h = hello("127.0.0.1");
        assert_eq!(peek(&h), Peek::Hello { server_name: None });
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = peek(&data);
        }

        #[test]
        fn mutated_hellos_never_panic(pos in 0usize..400, byte in proptest::num::u8::ANY) {
            let mut h = hello("mutate.test");
            if pos < h.len() {
                h[pos] = byte;
            }
            let _ = peek(&h);
        }
    }
}
