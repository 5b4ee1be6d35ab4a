//! PROXY protocol version 2 (binary): parsing a header from a trusted L4 balancer in
//! front, and writing one to backends. Sans-I/O. Version 1 (text) is not accepted.

use std::net::{IpAddr, SocketAddr};

/// The 12-byte signature every v2 header starts with.
pub const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// Largest header accepted (addresses plus TLVs).
pub const MAX_HEADER: usize = 16 + 2048;

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Bytes the header takes at the start of the stream.
    pub len: usize,
    /// The original client and the address it connected to; `None` for `LOCAL`
    /// (health checks of the balancer itself) or unspecified families.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
}

/// The outcome of parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// Not enough bytes yet.
    NeedMore,
    /// A header.
    Header(Header),
    /// Not a valid v2 header.
    Invalid(&'static str),
}

/// Parses the start of a stream.
pub fn parse(buf: &[u8]) -> Parse {
    let sig = buf.len().min(12);
    if buf[..sig] != SIGNATURE[..sig] {
        return Parse::Invalid("missing PROXY protocol v2 signature");
    }
    if buf.len() < 16 {
        return Parse::NeedMore;
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Parse::Invalid("unsupported PROXY protocol version");
    }
    let len = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if len > MAX_HEADER {
        return Parse::Invalid("PROXY header too large");
    }
    if buf.len() < len {
        return Parse::NeedMore;
    }
    let body = &buf[16..len];
    let addresses = match (ver_cmd & 0x0F, buf[13]) {
        (0, _) => None, // LOCAL
        (1, 0x11) if body.len() >= 12 => {
            let src = IpAddr::from([body[0], body[1], body[2], body[3]]);
            let dst = IpAddr::from([body[4], body[5], body[6], body[7]]);
            let sp = u16::from_be_bytes([body[8], body[9]]);
            let dp = u16::from_be_bytes([body[10], body[11]]);
            Some((SocketAddr::new(src, sp), SocketAddr::new(dst, dp)))
        }
        (1, 0x21) if body.len() >= 36 => {
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&body[0..16]);
            d.copy_from_slice(&body[16..32]);
            let sp = u16::from_be_bytes([body[32], body[33]]);
            let dp = u16::from_be_bytes([body[34], body[35]]);
            Some((
                SocketAddr::new(IpAddr::from(s), sp),
                SocketAddr::new(IpAddr::from(d), dp),
            ))
        }
        (1, 0x00) => None,
        (1, 0x11 | 0x21) => return Parse::Invalid("PROXY header too short for its addresses"),
        (1, _) => None, // UNIX or UDP: keep the real peer
        _ => return Parse::Invalid("unknown PROXY command"),
    };
    Parse::Header(Header { len, addresses })
}

/// Writes a v2 `PROXY` header for a TCP connection from `source` to `destination`.
/// Mixed families are written as IPv6 (IPv4-mapped).
pub fn encode(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 36);
    out.extend_from_slice(&SIGNATURE);
    out.push(0x21);
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_v4_and_v6() {
        for (s, d) in [
            ("192.0.2.1:5555", "10.0.0.1:443"),
            ("[2001:db8::1]:5555", "[2001:db8::2]:443"),
        ] {
            let s: SocketAddr = s.parse().unwrap();
            let d: SocketAddr = d.parse().unwrap();
            let mut h = encode(s, d);
            let len = h.len();
            h.extend_from_slice(b"GET / HTTP/1.1\r\n");
            for cut in 0..len {
                assert_eq!(parse(&h[..cut]), Parse::NeedMore);
            }
            assert_eq!(
                parse(&h),
                Parse::Header(Header {
                    len,
                    addresses: Some((s, d))
                })
            );
        }
    }

    #[test]
    fn local_and_garbage() {
        let mut local = SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(
            parse(&local),
            Parse::Header(Header {
                len: 16,
                addresses: None
            })
        );
        assert!(matches!(
            parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
            Parse::Invalid(_)
        ));
        let mut big = SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0xFF, 0xFF]);
        assert!(matches!(parse(&big), Parse::Invalid(_)));
        let mut short = SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert!(matches!(parse(&short), Parse::Invalid(_)));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_tails_never_panic(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            let mut h = SIGNATURE.to_vec();
            h.extend_from_slice(&tail);
            let _ = parse(&h);
        }
    }
}
