//! Protocols, ports, port ranges and port names.

use std::fmt;
use std::str::FromStr;

/// A transport protocol that policies can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Every protocol, in a fixed order.
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

    /// The name the Kubernetes API uses: `TCP`, `UDP`, `SCTP`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }

    /// The IANA protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that is not `TCP`, `UDP` or `SCTP`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported protocol {0:?}: must be \"TCP\", \"UDP\" or \"SCTP\"")]
pub struct ProtocolError(pub String);

impl FromStr for Protocol {
    type Err = ProtocolError;
    /// Parses the API's spelling exactly (`TCP`, not `tcp`), as the API server does.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            "SCTP" => Ok(Protocol::Sctp),
            _ => Err(ProtocolError(s.to_owned())),
        }
    }
}

/// An inclusive range of port numbers, never empty, within 1..=65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    start: u16,
    end: u16,
}

impl PortRange {
    /// The range `start..=end`; `None` if `start` is 0 or `end < start`.
    pub fn new(start: u16, end: u16) -> Option<Self> {
        (start >= 1 && end >= start).then_some(Self { start, end })
    }

    /// The range holding only `port`; `None` for port 0.
    pub fn single(port: u16) -> Option<Self> {
        Self::new(port, port)
    }

    /// Every port, 1 to 65535.
    pub fn all() -> Self {
        Self {
            start: 1,
            end: u16::MAX,
        }
    }

    /// First port.
    pub fn start(&self) -> u16 {
        self.start
    }

    /// Last port.
    pub fn end(&self) -> u16 {
        self.end
    }

    /// True if `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        self.start <= port && port <= self.end
    }

    /// True if every port of `other` is in this range.
    pub fn contains_range(&self, other: &PortRange) -> bool {
        self.start <= other.start && other.end <= self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// A port name (`IANA_SVC_NAME`): 1 to 15 lowercase letters, digits and `-`, at least one
/// letter, no `-` at either end and no `--`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortName(String);

impl PortName {
    /// Validates a port name; the error explains the rule broken, in the API server's words.
    pub fn new(name: &str) -> Result<Self, String> {
        let errors = port_name_errors(name);
        if errors.is_empty() {
            Ok(Self(name.to_owned()))
        } else {
            Err(errors.join("; "))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The reasons a text is not a valid port name (empty when it is one).
pub fn port_name_errors(name: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if name.len() > 15 {
        errors.push("must be no more than 15 characters".to_owned());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        errors.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_owned(),
        );
    }
    if name.contains("--") {
        errors.push("must not contain consecutive hyphens".to_owned());
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        errors.push("must contain at least one letter (a-z)".to_owned());
    }
    if name.starts_with('-') || name.ends_with('-') {
        errors.push("must not begin or end with a hyphen".to_owned());
    }
    errors
}

/// A port as a policy names it: a number range or a name resolved on the destination pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PortSpec {
    /// Every port of the protocol.
    Any,
    /// A port number or a range (`port` with `endPort`).
    Range(PortRange),
    /// A named container port of the destination pod.
    Named(PortName),
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortSpec::Any => f.write_str("*"),
            PortSpec::Range(r) => write!(f, "{r}"),
            PortSpec::Named(n) => write!(f, "{n}"),
        }
    }
}

/// One entry of a rule's port list: a protocol with a port spec.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PolicyPort {
    /// The protocol (defaulted to TCP when absent from the manifest).
    pub protocol: Protocol,
    /// The port or ports.
    pub port: PortSpec,
}

impl fmt::Display for PolicyPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol)
    }
}

/// A concrete destination port of a flow: a number and a protocol, as `80/TCP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Probe {
    /// Port number (1-65535).
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol)
    }
}

impl FromStr for Probe {
    type Err = String;
    /// Parses `80`, `80/TCP` or `53/udp` (protocol case-insensitive here; TCP by default).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (port, protocol) = match s.split_once('/') {
            Some((p, proto)) => (p, proto.to_ascii_uppercase()),
            None => (s, "TCP".to_owned()),
        };
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p >= 1)
            .ok_or_else(|| format!("{s:?}: port must be a number from 1 to 65535"))?;
        let protocol = protocol
            .parse()
            .map_err(|e: ProtocolError| format!("{s:?}: {e}"))?;
        Ok(Probe { port, protocol })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names() {
        assert!(PortName::new("http").is_ok());
        assert!(PortName::new("serve-80-tcp").is_ok());
        assert!(PortName::new("a").is_ok());
        assert!(
            PortName::new("80")
                .unwrap_err()
                .contains("at least one letter")
        );
        assert!(PortName::new("Http").is_err());
        assert!(PortName::new("-http").is_err());
        assert!(PortName::new("ht--tp").is_err());
        assert!(PortName::new("abcdefghijklmnop").is_err());
        assert!(PortName::new("").is_err());
    }

    #[test]
    fn ranges() {
        assert!(PortRange::new(0, 1).is_none());
        assert!(PortRange::new(10, 9).is_none());
        let r = PortRange::new(80, 90).unwrap();
        assert!(r.contains(80) && r.contains(90) && !r.contains(91));
        assert!(PortRange::all().contains_range(&r));
    }

    #[test]
    fn probes() {
        assert_eq!(
            "80".parse::<Probe>().unwrap(),
            Probe {
                port: 80,
                protocol: Protocol::Tcp
            }
        );
        assert_eq!(
            "53/udp".parse::<Probe>().unwrap(),
            Probe {
                port: 53,
                protocol: Protocol::Udp
            }
        );
        assert!("0/TCP".parse::<Probe>().is_err());
        assert!("80/ICMP".parse::<Probe>().is_err());
    }
}
