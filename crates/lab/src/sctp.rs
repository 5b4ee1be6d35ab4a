//! Just enough SCTP to probe reachability over raw IP sockets: the INIT a client sends
//! and the INIT-ACK a server answers with (RFC 9260, sections 3 and 3.3.2-3.3.3). This
//! kernel has no SCTP sockets, so both ends are written by hand; the packets are real,
//! with real CRC32c checksums, and conntrack tracks them as SCTP.

/// IANA protocol number of SCTP.
pub const PROTO: u8 = 132;

/// Chunk type of INIT.
pub const INIT: u8 = 1;
/// Chunk type of INIT ACK.
pub const INIT_ACK: u8 = 2;

const CRC32C_POLY: u32 = 0x82f6_3b78;

/// CRC32c (Castagnoli), as SCTP uses it.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc: u32 = !0;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (CRC32C_POLY & mask);
        }
    }
    !crc
}

fn finish(mut packet: Vec<u8>) -> Vec<u8> {
    packet[8..12].copy_from_slice(&[0; 4]);
    let sum = crc32c(&packet);
    // The checksum goes on the wire in little-endian order (as Linux writes it).
    packet[8..12].copy_from_slice(&sum.to_le_bytes());
    packet
}

fn header(src_port: u16, dst_port: u16, vtag: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(64);
    p.extend_from_slice(&src_port.to_be_bytes());
    p.extend_from_slice(&dst_port.to_be_bytes());
    p.extend_from_slice(&vtag.to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    p
}

fn init_body(p: &mut Vec<u8>, chunk: u8, tag: u32, extra: &[u8]) {
    let len = 20 + extra.len();
    p.push(chunk);
    p.push(0);
    // Both chunks are a few dozen bytes.
    p.extend_from_slice(&(len as u16).to_be_bytes());
    p.extend_from_slice(&tag.to_be_bytes());
    p.extend_from_slice(&65535u32.to_be_bytes()); // a_rwnd
    p.extend_from_slice(&1u16.to_be_bytes()); // outbound streams
    p.extend_from_slice(&1u16.to_be_bytes()); // inbound streams
    p.extend_from_slice(&tag.to_be_bytes()); // initial TSN
    p.extend_from_slice(extra);
}

/// An INIT from `src_port` to `dst_port` carrying initiate tag `tag` (non-zero).
pub fn init(src_port: u16, dst_port: u16, tag: u32) -> Vec<u8> {
    let mut p = header(src_port, dst_port, 0);
    init_body(&mut p, INIT, tag, &[]);
    finish(p)
}

/// The INIT ACK answering an INIT: ports swapped, the INIT's tag as verification tag.
pub fn init_ack(init: &Parsed, tag: u32) -> Vec<u8> {
    let mut p = header(init.dst_port, init.src_port, init.init_tag);
    // A state cookie parameter (type 7) is mandatory; its content is ours to choose.
    let mut cookie = vec![0, 7, 0, 12];
    cookie.extend_from_slice(&tag.to_be_bytes());
    cookie.extend_from_slice(&init.init_tag.to_be_bytes());
    init_body(&mut p, INIT_ACK, tag, &cookie);
    finish(p)
}

/// The fields of an INIT or INIT ACK that probes care about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Verification tag of the packet.
    pub vtag: u32,
    /// The first chunk's type.
    pub chunk: u8,
    /// The initiate tag (INIT and INIT ACK only).
    pub init_tag: u32,
}

/// Parses an SCTP packet (no IP header); `None` if it is not a well-formed INIT or
/// INIT ACK with a correct checksum.
pub fn parse(packet: &[u8]) -> Option<Parsed> {
    if packet.len() < 12 + 20 {
        return None;
    }
    let mut copy = packet.to_vec();
    let sum = u32::from_le_bytes([packet[8], packet[9], packet[10], packet[11]]);
    copy[8..12].copy_from_slice(&[0; 4]);
    if crc32c(&copy) != sum {
        return None;
    }
    let be16 = |i: usize| u16::from_be_bytes([packet[i], packet[i + 1]]);
    let be32 =
        |i: usize| u32::from_be_bytes([packet[i], packet[i + 1], packet[i + 2], packet[i + 3]]);
    let chunk = packet[12];
    if chunk != INIT && chunk != INIT_ACK {
        return None;
    }
    Some(Parsed {
        src_port: be16(0),
        dst_port: be16(2),
        vtag: be32(4),
        chunk,
        init_tag: be32(16),
    })
}

/// Skips the IPv4 header a raw IPv4 socket hands over with each packet.
pub fn strip_ipv4(packet: &[u8]) -> Option<&[u8]> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    packet.get(ihl..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn init_and_ack_round_trip() {
        let i = init(40000, 80, 0x1234_5678);
        let p = parse(&i).unwrap();
        assert_eq!(
            (p.src_port, p.dst_port, p.vtag, p.chunk, p.init_tag),
            (40000, 80, 0, INIT, 0x1234_5678)
        );
        let a = init_ack(&p, 0x9abc_def0);
        let q = parse(&a).unwrap();
        assert_eq!(
            (q.src_port, q.dst_port, q.vtag, q.chunk, q.init_tag),
            (80, 40000, 0x1234_5678, INIT_ACK, 0x9abc_def0)
        );
        let mut bad = a.clone();
        bad[20] ^= 1;
        assert!(parse(&bad).is_none());
        assert!(parse(&a[..20]).is_none());
    }
}
