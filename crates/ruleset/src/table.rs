//! The program's types.

use std::fmt;

use rampart_model::{Family, IpRange};

/// IANA protocol numbers the compilers use.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// SCTP.
    pub const SCTP: u8 = 132;
    /// UDP-Lite.
    pub const UDPLITE: u8 = 136;
    /// DCCP.
    pub const DCCP: u8 = 33;

    /// True for protocols whose header starts with source and destination ports.
    pub fn has_ports(p: u8) -> bool {
        matches!(p, TCP | UDP | SCTP | UDPLITE | DCCP)
    }
}

/// A netfilter hook of the `inet` family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    /// Before routing.
    Prerouting,
    /// Addressed to this host.
    Input,
    /// Routed (or, with bridge netfilter, bridged) through this host.
    Forward,
    /// Sent by this host.
    Output,
    /// After routing, on the way out.
    Postrouting,
}

impl Hook {
    /// Lower-case name, as nftables spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }
}

/// What a base chain does with a packet no rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Let it through.
    Accept,
    /// Drop it.
    Drop,
}

/// How a chain hangs off a hook.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BaseChain {
    /// The hook.
    pub hook: Hook,
    /// Priority (lower runs first); conntrack runs at -200, `filter` is 0.
    pub priority: i32,
    /// The default verdict.
    pub policy: Policy,
}

/// A verdict a rule or a map entry gives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Accept the packet: stop evaluating this base chain.
    Accept,
    /// Drop the packet.
    Drop,
    /// Go back to the chain that jumped here.
    Return,
    /// Evaluate a chain, then continue here unless it decided.
    Jump(String),
    /// Evaluate a chain instead of the rest of this one.
    Goto(String),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Accept => f.write_str("accept"),
            Verdict::Drop => f.write_str("drop"),
            Verdict::Return => f.write_str("return"),
            Verdict::Jump(c) => write!(f, "jump {c}"),
            Verdict::Goto(c) => write!(f, "goto {c}"),
        }
    }
}

/// Which address of a packet a match looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The source address.
    Src,
    /// The destination address.
    Dst,
}

/// Addresses to compare with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AddrMatch {
    /// A named set of the table (membership can change without touching rules).
    Set(String),
    /// Ranges written into the rule.
    Ranges(Vec<IpRange>),
}

/// Interface names to compare with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NameMatch {
    /// Names written into the rule.
    List(Vec<String>),
    /// A named set of interface names.
    Set(String),
}

/// A condition on a packet; a rule applies when all its matches hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Match {
    /// Connection-tracking state is one of these.
    CtState(Vec<crate::eval::CtState>),
    /// The packet goes in the reply direction of its connection.
    CtReply,
    /// IPv4 or IPv6.
    Family(Family),
    /// Input interface name (negated when `negate`).
    Iif {
        /// The names.
        names: NameMatch,
        /// True for "not one of".
        negate: bool,
    },
    /// Output interface name.
    Oif {
        /// The names.
        names: NameMatch,
        /// True for "not one of".
        negate: bool,
    },
    /// Source or destination address of one family in (or, negated, not in) a set.
    Addr {
        /// Which address.
        side: Side,
        /// The family (the rule implies it).
        family: Family,
        /// The addresses.
        addrs: AddrMatch,
        /// True for "not in".
        negate: bool,
    },
    /// Transport protocol one of (or, negated, none of) these.
    Proto {
        /// Protocol numbers.
        protos: Vec<u8>,
        /// True for "none of".
        negate: bool,
    },
    /// Destination port in one of these inclusive ranges (TCP, UDP, SCTP, ...).
    DPort(Vec<(u16, u16)>),
    /// Source port in one of these inclusive ranges.
    SPort(Vec<(u16, u16)>),
    /// ICMP (v4 or v6) type one of these, and code if given.
    Icmp {
        /// ICMPv6 rather than ICMP.
        v6: bool,
        /// Types (empty: any type).
        types: Vec<u8>,
        /// Code, if it must match.
        code: Option<u8>,
    },
    /// The triple (peer address, protocol, destination port) is in a flow set.
    Flow {
        /// Which address is the peer.
        side: Side,
        /// The family.
        family: Family,
        /// The set (of key [`SetKey::Flow`]).
        set: String,
    },
    /// The destination address is (or, negated, is not) one of this host's own
    /// (routing lookup).
    DstLocal {
        /// True for "not local".
        negate: bool,
    },
    /// Rate limit: matches while under `rate` packets per second (burst `burst`).
    Limit {
        /// Packets per second.
        rate: u32,
        /// Burst.
        burst: u32,
    },
}

/// Where a verdict map looks its key up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VmapKey {
    /// An address of the packet.
    Addr(Side, Family),
    /// Input interface name.
    Iif,
    /// Output interface name.
    Oif,
}

/// One rule: conditions, then an optional verdict (a rule without one only counts).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Rule {
    /// Every one must hold.
    pub matches: Vec<Match>,
    /// Count matching packets.
    pub counter: bool,
    /// The verdict when all matches hold.
    pub verdict: Option<Verdict>,
    /// Instead of a fixed verdict: look the verdict up in a map (no entry: continue).
    pub vmap: Option<(VmapKey, String)>,
    /// Shown in listings; says which resource the rule comes from.
    pub comment: Option<String>,
}

impl Rule {
    /// A rule with these matches and this verdict.
    pub fn new(matches: Vec<Match>, verdict: Verdict) -> Self {
        Rule {
            matches,
            verdict: Some(verdict),
            ..Rule::default()
        }
    }

    /// A rule that dispatches through a verdict map.
    pub fn dispatch(matches: Vec<Match>, key: VmapKey, map: &str) -> Self {
        Rule {
            matches,
            vmap: Some((key, map.to_owned())),
            ..Rule::default()
        }
    }

    /// Adds a comment.
    pub fn comment(mut self, text: impl Into<String>) -> Self {
        self.comment = Some(text.into());
        self
    }

    /// Adds a counter.
    pub fn counted(mut self) -> Self {
        self.counter = true;
        self
    }
}

/// A chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Chain {
    /// Its name, unique in the table.
    pub name: String,
    /// Set for base chains.
    pub base: Option<BaseChain>,
    /// Rules, in order.
    pub rules: Vec<Rule>,
}

/// The key type of a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetKey {
    /// Addresses (ranges) of one family.
    Addr(Family),
    /// Interface names.
    IfName,
    /// `address . protocol . port` triples of one family (ranges in every field).
    Flow(Family),
}

/// One element of a set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Element {
    /// An address range.
    Addr(IpRange),
    /// An interface name.
    IfName(String),
    /// A flow box: addresses, one protocol, a port range.
    Flow {
        /// Peer addresses.
        addrs: IpRange,
        /// Protocol number.
        proto: u8,
        /// Inclusive destination port range.
        ports: (u16, u16),
    },
}

/// A named set. Elements never overlap (compilers produce disjoint elements).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Set {
    /// Name, unique in the table.
    pub name: String,
    /// Key type.
    pub key: SetKey,
    /// Elements.
    pub elements: Vec<Element>,
}

/// The key type of a verdict map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapKey {
    /// Single addresses of one family.
    Addr(Family),
    /// Interface names.
    IfName,
}

/// A verdict map: exact keys to verdicts (usually jumps to per-endpoint chains).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VerdictMap {
    /// Name, unique in the table.
    pub name: String,
    /// Key type.
    pub key: MapKey,
    /// Entries, keyed by an address or an interface name.
    pub entries: Vec<(String, Verdict)>,
}

/// One table: a concern Rampart owns and replaces atomically.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Table {
    /// Table name (in the `inet` family).
    pub name: String,
    /// Named sets.
    pub sets: Vec<Set>,
    /// Verdict maps.
    pub maps: Vec<VerdictMap>,
    /// Chains (base chains and the chains they jump to).
    pub chains: Vec<Chain>,
}

impl Table {
    /// An empty table.
    pub fn new(name: impl Into<String>) -> Self {
        Table {
            name: name.into(),
            sets: Vec::new(),
            maps: Vec::new(),
            chains: Vec::new(),
        }
    }

    /// The chain called `name`.
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }

    /// The set called `name`.
    pub fn set(&self, name: &str) -> Option<&Set> {
        self.sets.iter().find(|s| s.name == name)
    }

    /// The map called `name`.
    pub fn map(&self, name: &str) -> Option<&VerdictMap> {
        self.maps.iter().find(|m| m.name == name)
    }

    /// Number of rules in every chain.
    pub fn rule_count(&self) -> usize {
        self.chains.iter().map(|c| c.rules.len()).sum()
    }

    /// Number of set elements and map entries.
    pub fn element_count(&self) -> usize {
        self.sets.iter().map(|s| s.elements.len()).sum::<usize>()
            + self.maps.iter().map(|m| m.entries.len()).sum::<usize>()
    }
}
