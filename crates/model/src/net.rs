//! IP prefixes (CIDRs), IP blocks with exceptions, and sets of addresses.
//!
//! Addresses of both families live in one space: an IPv4 address `a.b.c.d` and the
//! IPv6 address with the same bits are different points, because every set keeps the
//! family apart ([`IpRange`] carries it).

use std::cmp::Ordering;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// Number of bits in an address of this family.
    pub fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

/// An address as a number, with its family.
fn ip_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn ip_from_bits(family: Family, bits: u128) -> IpAddr {
    match family {
        // Values of a V4 range always fit in 32 bits.
        Family::V4 => IpAddr::V4(Ipv4Addr::from(bits as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(bits)),
    }
}

/// An IP prefix such as `10.0.0.0/8` or `2001:db8::/32`, always stored in canonical
/// form (the host bits are zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a text is not a CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// No `/` between address and prefix length.
    #[error("must be an IP prefix such as 10.0.0.0/8 or 2001:db8::/32 (no prefix length)")]
    MissingPrefix,
    /// The address part is not an IP address.
    #[error("must be an IP prefix such as 10.0.0.0/8 or 2001:db8::/32 (bad address)")]
    BadAddress,
    /// The prefix length is not a number in range for the family.
    #[error("prefix length must be a number from 0 to {max}")]
    BadPrefix {
        /// 32 or 128.
        max: u8,
    },
}

impl Cidr {
    /// The prefix that has `addr`'s first `prefix` bits. Host bits are cleared.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, CidrError> {
        let family = Family::of(addr);
        if prefix > family.bits() {
            return Err(CidrError::BadPrefix { max: family.bits() });
        }
        let bits = ip_bits(addr) & mask(family, prefix);
        Ok(Self {
            addr: ip_from_bits(family, bits),
            prefix,
        })
    }

    /// The prefix holding exactly one address.
    pub fn host(addr: IpAddr) -> Self {
        Self {
            addr,
            prefix: Family::of(addr).bits(),
        }
    }

    /// Parses `addr/len` as the Kubernetes API server does for legacy fields such as
    /// `ipBlock.cidr`: host bits may be set (they are cleared), IPv4 octets may have
    /// leading zeros (read as decimal).
    pub fn parse(text: &str) -> Result<Self, CidrError> {
        let (addr, len) = text.split_once('/').ok_or(CidrError::MissingPrefix)?;
        let addr = parse_ip_sloppy(addr).ok_or(CidrError::BadAddress)?;
        let max = Family::of(addr).bits();
        if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CidrError::BadPrefix { max });
        }
        let prefix: u8 = len.parse().map_err(|_| CidrError::BadPrefix { max })?;
        Self::new(addr, prefix)
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The family.
    pub fn family(&self) -> Family {
        Family::of(self.addr)
    }

    /// True if `ip` is inside this prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let family = self.family();
        Family::of(ip) == family && ip_bits(ip) & mask(family, self.prefix) == ip_bits(self.addr)
    }

    /// True if every address of `other` is inside this prefix.
    pub fn contains_cidr(&self, other: &Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }

    /// The addresses of this prefix as one range.
    pub fn range(&self) -> IpRange {
        let family = self.family();
        let start = ip_bits(self.addr);
        let host = !mask(family, self.prefix) & full(family);
        IpRange {
            family,
            start,
            end: start | host,
        }
    }

    /// True for `0.0.0.0/0` and `::/0`.
    pub fn is_everything(&self) -> bool {
        self.prefix == 0
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cidr::parse(s)
    }
}

fn full(family: Family) -> u128 {
    match family {
        Family::V4 => u128::from(u32::MAX),
        Family::V6 => u128::MAX,
    }
}

fn mask(family: Family, prefix: u8) -> u128 {
    let bits = family.bits();
    if prefix == 0 {
        0
    } else {
        (full(family) >> (bits - prefix)) << (bits - prefix)
    }
}

/// Parses an address the way Go's `netutils.ParseIPSloppy` does: IPv4 octets may carry
/// leading zeros and are read as decimal; IPv6 as usual.
pub fn parse_ip_sloppy(text: &str) -> Option<IpAddr> {
    if text.contains(':') {
        return Ipv6Addr::from_str(text).ok().map(IpAddr::V6);
    }
    let mut octets = [0u8; 4];
    let mut parts = text.split('.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *octet = part.parse().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(IpAddr::V4(Ipv4Addr::from(octets)))
}

/// A `cidr` minus a list of `except` prefixes: the NetworkPolicy `ipBlock`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IpBlock {
    cidr: Cidr,
    except: Vec<Cidr>,
}

impl IpBlock {
    /// Builds an IP block. Callers validate that each exception is a strict subset of
    /// `cidr` (the API server refuses others); this type does not depend on it.
    pub fn new(cidr: Cidr, except: Vec<Cidr>) -> Self {
        Self { cidr, except }
    }

    /// The enclosing prefix.
    pub fn cidr(&self) -> &Cidr {
        &self.cidr
    }

    /// The excluded prefixes.
    pub fn except(&self) -> &[Cidr] {
        &self.except
    }

    /// True if `ip` is in `cidr` and in none of the exceptions.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.cidr.contains(ip) && !self.except.iter().any(|e| e.contains(ip))
    }

    /// The addresses of the block.
    pub fn to_set(&self) -> IpSet {
        let mut set = IpSet::from_ranges([self.cidr.range()]);
        for e in &self.except {
            set = set.difference(&IpSet::from_ranges([e.range()]));
        }
        set
    }
}

impl fmt::Display for IpBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.cidr)?;
        if !self.except.is_empty() {
            f.write_str(" except ")?;
            for (i, e) in self.except.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{e}")?;
            }
        }
        Ok(())
    }
}

/// An inclusive range of addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpRange {
    family: Family,
    start: u128,
    end: u128,
}

impl IpRange {
    /// The range from `start` to `end` inclusive; `None` if the families differ or
    /// `start > end`.
    pub fn new(start: IpAddr, end: IpAddr) -> Option<Self> {
        let family = Family::of(start);
        if family != Family::of(end) || ip_bits(start) > ip_bits(end) {
            return None;
        }
        Some(Self {
            family,
            start: ip_bits(start),
            end: ip_bits(end),
        })
    }

    /// The family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// First address.
    pub fn start(&self) -> IpAddr {
        ip_from_bits(self.family, self.start)
    }

    /// Last address.
    pub fn end(&self) -> IpAddr {
        ip_from_bits(self.family, self.end)
    }

    fn key(&self) -> (Family, u128, u128) {
        (self.family, self.start, self.end)
    }

    /// The prefixes that together cover exactly this range, smallest number of them.
    pub fn to_cidrs(&self) -> Vec<Cidr> {
        let bits = u32::from(self.family.bits());
        let mut out = Vec::new();
        let mut start = self.start;
        loop {
            // The largest block 2^k that is aligned at `start` and ends within the range.
            let align = if start == 0 {
                bits
            } else {
                start.trailing_zeros().min(bits)
            };
            let span = self.end - start;
            let fit = if span == u128::MAX {
                128
            } else {
                127 - (span + 1).leading_zeros()
            };
            let k = align.min(fit);
            // k <= bits <= 128, so both conversions are exact.
            let prefix = (bits - k) as u8;
            out.push(Cidr {
                addr: ip_from_bits(self.family, start),
                prefix,
            });
            let last = start + block_mask(k);
            if last >= self.end {
                break;
            }
            start = last + 1;
        }
        out
    }
}

fn block_mask(k: u32) -> u128 {
    if k >= 128 {
        u128::MAX
    } else {
        (1u128 << k) - 1
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start())
        } else {
            write!(f, "{}-{}", self.start(), self.end())
        }
    }
}

/// A set of addresses, as sorted, disjoint, non-adjacent ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct IpSet {
    ranges: Vec<IpRange>,
}

impl IpSet {
    /// The empty set.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The set of the given ranges (in any order, overlapping or not).
    pub fn from_ranges(ranges: impl IntoIterator<Item = IpRange>) -> Self {
        let mut ranges: Vec<IpRange> = ranges.into_iter().collect();
        ranges.sort_by_key(IpRange::key);
        let mut out: Vec<IpRange> = Vec::with_capacity(ranges.len());
        for r in ranges {
            if let Some(last) = out.last_mut()
                && last.family == r.family
                && (r.start <= last.end || r.start == last.end.saturating_add(1))
            {
                last.end = last.end.max(r.end);
                continue;
            }
            out.push(r);
        }
        Self { ranges: out }
    }

    /// The set of the given prefixes.
    pub fn from_cidrs<'a>(cidrs: impl IntoIterator<Item = &'a Cidr>) -> Self {
        Self::from_ranges(cidrs.into_iter().map(Cidr::range))
    }

    /// The ranges, sorted.
    pub fn ranges(&self) -> &[IpRange] {
        &self.ranges
    }

    /// True if the set holds no address.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// True if `ip` is in the set.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let key = (Family::of(ip), ip_bits(ip));
        self.ranges
            .binary_search_by(|r| {
                if (r.family, r.end) < key {
                    Ordering::Less
                } else if (r.family, r.start) > key {
                    Ordering::Greater
                } else {
                    Ordering::Equal
                }
            })
            .is_ok()
    }

    /// The addresses in either set.
    pub fn union(&self, other: &IpSet) -> IpSet {
        IpSet::from_ranges(self.ranges.iter().chain(other.ranges.iter()).copied())
    }

    /// The addresses of `self` that are not in `other`.
    pub fn difference(&self, other: &IpSet) -> IpSet {
        let mut out = Vec::new();
        for r in &self.ranges {
            let mut pieces = vec![*r];
            for o in other.ranges.iter().filter(|o| o.family == r.family) {
                let mut next = Vec::with_capacity(pieces.len() + 1);
                for p in pieces {
                    if o.end < p.start || o.start > p.end {
                        next.push(p);
                        continue;
                    }
                    if o.start > p.start {
                        next.push(IpRange {
                            end: o.start - 1,
                            ..p
                        });
                    }
                    if o.end < p.end {
                        next.push(IpRange {
                            start: o.end + 1,
                            ..p
                        });
                    }
                }
                pieces = next;
            }
            out.extend(pieces);
        }
        IpSet::from_ranges(out)
    }

    /// The addresses in both sets.
    pub fn intersection(&self, other: &IpSet) -> IpSet {
        self.difference(&self.difference(other))
    }

    /// True if every address of `other` is in `self`.
    pub fn is_superset(&self, other: &IpSet) -> bool {
        other.difference(self).is_empty()
    }

    /// The set as the fewest prefixes.
    pub fn to_cidrs(&self) -> Vec<Cidr> {
        self.ranges.iter().flat_map(IpRange::to_cidrs).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_like_the_api_server() {
        assert_eq!(c("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(c("010.001.0.0/16").to_string(), "10.1.0.0/16");
        assert_eq!(c("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(c("2001:db8::1/32").to_string(), "2001:db8::/32");
        assert_eq!(Cidr::parse("10.0.0.1"), Err(CidrError::MissingPrefix));
        assert_eq!(Cidr::parse("10.0.0/8"), Err(CidrError::BadAddress));
        assert_eq!(Cidr::parse("256.0.0.0/8"), Err(CidrError::BadAddress));
        assert_eq!(
            Cidr::parse("10.0.0.0/33"),
            Err(CidrError::BadPrefix { max: 32 })
        );
        assert_eq!(
            Cidr::parse("::/129"),
            Err(CidrError::BadPrefix { max: 128 })
        );
        assert_eq!(
            Cidr::parse("10.0.0.0/-1"),
            Err(CidrError::BadPrefix { max: 32 })
        );
        assert_eq!(
            Cidr::parse("10.0.0.0/"),
            Err(CidrError::BadPrefix { max: 32 })
        );
        assert_eq!(Cidr::parse("fe80::1%eth0/64"), Err(CidrError::BadAddress));
    }

    #[test]
    fn containment_respects_family() {
        assert!(c("0.0.0.0/0").contains(ip("1.2.3.4")));
        assert!(!c("0.0.0.0/0").contains(ip("::1")));
        assert!(c("::/0").contains(ip("::ffff:1.2.3.4")));
        assert!(c("10.0.0.0/8").contains_cidr(&c("10.1.0.0/16")));
        assert!(!c("10.1.0.0/16").contains_cidr(&c("10.0.0.0/8")));
    }

    #[test]
    fn ip_block_except() {
        let b = IpBlock::new(c("10.0.0.0/8"), vec![c("10.1.0.0/16")]);
        assert!(b.contains(ip("10.2.0.1")));
        assert!(!b.contains(ip("10.1.0.1")));
        assert!(!b.contains(ip("11.0.0.1")));
        let covered = IpBlock::new(c("10.0.0.0/24"), vec![c("10.0.0.0/25"), c("10.0.0.128/25")]);
        assert!(covered.to_set().is_empty());
    }

    #[test]
    fn ranges_to_cidrs() {
        let set = IpSet::from_ranges([IpRange::new(ip("10.0.0.1"), ip("10.0.0.6")).unwrap()]);
        let cidrs: Vec<String> = set.to_cidrs().iter().map(ToString::to_string).collect();
        assert_eq!(
            cidrs,
            ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]
        );
        let all = IpSet::from_cidrs(&[c("0.0.0.0/0"), c("::/0")]);
        let cidrs: Vec<String> = all.to_cidrs().iter().map(ToString::to_string).collect();
        assert_eq!(cidrs, ["0.0.0.0/0", "::/0"]);
    }

    fn arb_v4_cidr() -> impl Strategy<Value = Cidr> {
        (any::<u32>(), 0u8..=32)
            .prop_map(|(a, p)| Cidr::new(IpAddr::V4(Ipv4Addr::from(a)), p).unwrap())
    }

    proptest! {
        #[test]
        fn canonical_roundtrip(cidr in arb_v4_cidr()) {
            prop_assert_eq!(Cidr::parse(&cidr.to_string()).unwrap(), cidr);
        }

        #[test]
        fn contains_agrees_with_range(cidr in arb_v4_cidr(), a in any::<u32>()) {
            let ip = IpAddr::V4(Ipv4Addr::from(a));
            prop_assert_eq!(cidr.contains(ip), IpSet::from_cidrs(&[cidr]).contains(ip));
        }

        #[test]
        fn block_set_agrees_with_contains(
            cidr in arb_v4_cidr(),
            excepts in proptest::collection::vec(arb_v4_cidr(), 0..4),
            probes in proptest::collection::vec(any::<u32>(), 1..32),
        ) {
            let block = IpBlock::new(cidr, excepts);
            let set = block.to_set();
            for a in probes {
                // Probe inside the block's prefix too, not only at random.
                for bits in [a, u32::try_from(ip_bits(cidr.addr())).unwrap() | (a >> cidr.prefix().min(31))] {
                    let ip = IpAddr::V4(Ipv4Addr::from(bits));
                    prop_assert_eq!(block.contains(ip), set.contains(ip), "{}", ip);
                }
            }
        }

        #[test]
        fn set_algebra(
            a in proptest::collection::vec(arb_v4_cidr(), 0..5),
            b in proptest::collection::vec(arb_v4_cidr(), 0..5),
            probes in proptest::collection::vec(any::<u32>(), 1..32),
        ) {
            let sa = IpSet::from_cidrs(&a);
            let sb = IpSet::from_cidrs(&b);
            let union = sa.union(&sb);
            let diff = sa.difference(&sb);
            let inter = sa.intersection(&sb);
            for p in probes.iter().copied().chain(a.iter().chain(b.iter()).map(|c| u32::try_from(ip_bits(c.addr())).unwrap())) {
                let ip = IpAddr::V4(Ipv4Addr::from(p));
                prop_assert_eq!(union.contains(ip), sa.contains(ip) || sb.contains(ip));
                prop_assert_eq!(diff.contains(ip), sa.contains(ip) && !sb.contains(ip));
                prop_assert_eq!(inter.contains(ip), sa.contains(ip) && sb.contains(ip));
            }
            // Prefix decomposition covers exactly the same addresses.
            prop_assert_eq!(IpSet::from_cidrs(&union.to_cidrs()), union);
        }
    }
}
