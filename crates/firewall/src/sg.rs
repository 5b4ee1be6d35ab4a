//! Security groups with OpenStack Neutron's semantics.
//!
//! - A [`SecurityGroup`] is a named allow-list of rules; rules have a direction
//!   (`ingress` to the port, `egress` from it), an ethertype, a protocol (any when
//!   absent), a port range (`port_range_min`/`port_range_max`; for ICMP the type and the
//!   code) and at most one remote: an address prefix, another group (its members'
//!   addresses), or an address group. There is no deny and no order.
//! - A [`Port`] carries several groups: the union of their rules applies. A node's agent
//!   enforces the ports bound to its node, on their interface (every interface but `lo`
//!   when none is named). Port security off means no filtering at all on that port.
//! - Stateful by default: replies of allowed connections (and related ICMP errors) pass.
//!   A group with `stateful: false` is stateless: replies need rules of their own; a port
//!   cannot mix stateful and stateless groups (Neutron refuses it too).
//! - A new group gets Neutron's default rules, egress to anywhere over IPv4 and IPv6,
//!   unless `defaultEgressRules: false`. Imported groups carry their rules as listed.
//! - Implicit rules, as Neutron applies on every port: ARP is never filtered (it is not
//!   IP), IPv6 neighbour discovery and DHCP client traffic pass, and a port may only send
//!   from its own addresses (fixed IPs and allowed address pairs).
//!
//! Remote groups and address groups become named sets of addresses, so that a change of
//! membership is an update of set elements, never a rewrite of rules.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use rampart_model::{Cidr, Family, IpRange, IpSet};
use rampart_resources::{Diagnostics, Document, FieldPath, ObjectErrors};
use rampart_ruleset::{
    AddrMatch, BaseChain, Chain, CtState, Element, Hook, MapKey, Match, NameMatch, Policy, Rule,
    Set, SetKey, Side, Table, Verdict, VerdictMap, VmapKey, proto,
};
use serde_json::Value;

use crate::value::Obj;

/// The API version of Rampart's own kinds.
pub const API_VERSION: &str = "rampart.dev/v1alpha1";

/// Which way a rule looks, seen from the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Traffic to the port.
    Ingress,
    /// Traffic from the port.
    Egress,
}

/// The ports a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortMatch {
    /// Every port (or no ports for this protocol).
    Any,
    /// A destination port range (TCP, UDP, SCTP, UDP-Lite, DCCP).
    Range(u16, u16),
    /// ICMP or ICMPv6 type, and code if given.
    Icmp(u8, Option<u8>),
}

/// The other end of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Remote {
    /// Anywhere (of the rule's ethertype).
    Any,
    /// An address prefix.
    Prefix(Cidr),
    /// The members of a group (its name).
    Group(String),
    /// The addresses of an address group (its name).
    AddressGroup(String),
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SgRule {
    /// Direction.
    pub direction: Direction,
    /// Ethertype.
    pub family: Family,
    /// IP protocol number; `None` for any.
    pub protocol: Option<u8>,
    /// Ports.
    pub ports: PortMatch,
    /// Remote.
    pub remote: Remote,
    /// Where the rule comes from, for explanations: its field path in the document
    /// (`spec.rules[2]`), or `default egress rule` for the rules Neutron adds to a new
    /// group.
    pub origin: String,
}

/// A security group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroup {
    /// Name (unique among the inputs).
    pub name: String,
    /// Neutron ID, if known (imports refer to groups by ID).
    pub id: Option<String>,
    /// Stateful (the default) or stateless.
    pub stateful: bool,
    /// Rules, in the order given (order has no meaning).
    pub rules: Vec<SgRule>,
}

/// A Neutron port: addresses with groups, enforced by the agent of its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// Name.
    pub name: String,
    /// The node whose agent enforces it (none: it only counts as a group member).
    pub node: Option<String>,
    /// The interface on that node; none means every interface but `lo`.
    pub interface: Option<String>,
    /// Fixed IPs (as host prefixes) and allowed address pairs.
    pub addresses: Vec<Cidr>,
    /// Group names.
    pub groups: Vec<String>,
    /// Port security: off means no filtering and no anti-spoofing.
    pub port_security: bool,
}

/// A Neutron address group: a named list of prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressGroup {
    /// Name.
    pub name: String,
    /// Neutron ID, if known.
    pub id: Option<String>,
    /// Prefixes.
    pub addresses: Vec<Cidr>,
}

/// Every security-group input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityGroups {
    /// Groups, sorted by name.
    pub groups: Vec<SecurityGroup>,
    /// Ports, sorted by name.
    pub ports: Vec<Port>,
    /// Address groups, sorted by name.
    pub address_groups: Vec<AddressGroup>,
}

/// The kinds this module decodes.
pub fn is_kind(doc: &Document) -> bool {
    (doc.api_version == API_VERSION
        && matches!(doc.kind.as_str(), "SecurityGroup" | "Port" | "AddressGroup"))
        || doc.api_version == crate::load::OPENSTACK
}

// ---------------------------------------------------------------------------------------
// Decoding.

/// A group or address group reference before it is resolved.
#[derive(Debug, Clone)]
struct Pending<T> {
    value: Option<T>,
    /// Name and Neutron ID, known even when the object has errors.
    name: Option<String>,
    id: Option<String>,
    doc: Document,
    refs: Vec<(FieldPath, String, RefKind)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefKind {
    Group,
    AddressGroup,
}

fn protocol_number(name: &str) -> Option<u8> {
    Some(match name {
        "icmp" => 1,
        "igmp" => 2,
        "ipip" => 4,
        "tcp" => 6,
        "egp" => 8,
        "udp" => 17,
        "ipv6-encap" => 41,
        "ipv6-route" => 43,
        "ipv6-frag" => 44,
        "rsvp" => 46,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "icmpv6" | "ipv6-icmp" | "icmp6" => 58,
        "ipv6-nonxt" => 59,
        "ipv6-opts" => 60,
        "ospf" => 89,
        "pgm" => 113,
        "vrrp" => 112,
        "sctp" => 132,
        "udplite" => 136,
        "dccp" => 33,
        _ => return None,
    })
}

const RULE_FIELDS: [&str; 9] = [
    "direction",
    "ethertype",
    "protocol",
    "port_range_min",
    "port_range_max",
    "remote_ip_prefix",
    "remote_group_id",
    "remote_address_group_id",
    "description",
];

fn decode_rule(
    o: &mut Obj<'_, '_, '_>,
    strict: bool,
    refs: &mut Vec<(FieldPath, String, RefKind)>,
) -> Option<SgRule> {
    if strict {
        o.only(&RULE_FIELDS);
    }
    let direction = match o.string("direction").as_deref() {
        Some("ingress") => Some(Direction::Ingress),
        Some("egress") => Some(Direction::Egress),
        Some(other) => {
            o.error(
                "direction",
                format!("must be \"ingress\" or \"egress\", not {other:?}"),
            );
            None
        }
        None => {
            o.error("direction", "required: \"ingress\" or \"egress\"");
            None
        }
    };
    let family = match o.string("ethertype").as_deref() {
        None | Some("IPv4") => Some(Family::V4),
        Some("IPv6") => Some(Family::V6),
        Some(other) => {
            o.error(
                "ethertype",
                format!("must be \"IPv4\" or \"IPv6\", not {other:?}"),
            );
            None
        }
    };
    let protocol: Option<Option<u8>> = match o.raw("protocol") {
        None => Some(None),
        Some(Value::String(s)) if s == "any" || s.is_empty() => Some(None),
        Some(Value::String(s)) => match s.parse::<u8>() {
            Ok(0) => Some(None),
            Ok(n) => Some(Some(n)),
            Err(_) => match protocol_number(&s.to_ascii_lowercase()) {
                Some(n) => Some(Some(n)),
                None => {
                    o.error("protocol", format!("unknown protocol {s:?}: a name such as tcp, udp, icmp, icmpv6, sctp, or a number from 0 to 255"));
                    None
                }
            },
        },
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) => Some(None),
            Some(n) if n <= 255 => Some(Some(n as u8)),
            _ => {
                o.error("protocol", "must be a number from 0 to 255");
                None
            }
        },
        Some(_) => {
            o.error("protocol", "must be a protocol name or number");
            None
        }
    };
    // ICMP in an IPv6 rule means ICMPv6 (Neutron normalizes it so).
    let protocol = match (protocol, family) {
        (Some(Some(1)), Some(Family::V6)) => Some(Some(58)),
        (p, _) => p,
    };
    let min = o.int("port_range_min");
    let max = o.int("port_range_max");
    let ports = match protocol {
        Some(Some(p)) if proto::has_ports(p) => match (min, max) {
            (None, None) | (Some(0), _) => Some(PortMatch::Any),
            (Some(lo), hi) => {
                let hi = hi.unwrap_or(lo);
                if !(1..=65535).contains(&lo) {
                    o.error("port_range_min", "must be a port from 1 to 65535");
                    None
                } else if !(1..=65535).contains(&hi) {
                    o.error("port_range_max", "must be a port from 1 to 65535");
                    None
                } else if hi < lo {
                    o.error(
                        "port_range_max",
                        format!("must not be below port_range_min ({lo})"),
                    );
                    None
                } else {
                    Some(PortMatch::Range(lo as u16, hi as u16))
                }
            }
            (None, Some(_)) => {
                o.error("port_range_max", "needs port_range_min");
                None
            }
        },
        Some(Some(p)) if p == proto::ICMP || p == proto::ICMPV6 => match (min, max) {
            (None, None) => Some(PortMatch::Any),
            (Some(t), code) => {
                if !(0..=255).contains(&t) {
                    o.error("port_range_min", "the ICMP type must be from 0 to 255");
                    None
                } else if code.is_some_and(|c| !(0..=255).contains(&c)) {
                    o.error("port_range_max", "the ICMP code must be from 0 to 255");
                    None
                } else {
                    Some(PortMatch::Icmp(t as u8, code.map(|c| c as u8)))
                }
            }
            (None, Some(_)) => {
                o.error(
                    "port_range_max",
                    "an ICMP code needs an ICMP type in port_range_min",
                );
                None
            }
        },
        Some(_) => {
            if min.is_some() || max.is_some() {
                o.error(
                    "port_range_min",
                    "ports are only for tcp, udp, sctp, udplite and dccp (and the type and code for icmp)",
                );
                None
            } else {
                Some(PortMatch::Any)
            }
        }
        None => None,
    };
    let prefix = o.string("remote_ip_prefix");
    let group = o.string("remote_group_id");
    let agroup = o.string("remote_address_group_id");
    let given = [prefix.is_some(), group.is_some(), agroup.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    let mut remote = Some(Remote::Any);
    if given > 1 {
        o.error(
            "remote_ip_prefix",
            "only one of remote_ip_prefix, remote_group_id and remote_address_group_id may be set",
        );
        remote = None;
    } else if let Some(p) = prefix {
        match Cidr::parse(&p) {
            Ok(c) => {
                if family.is_some_and(|f| f != c.family()) {
                    o.error(
                        "remote_ip_prefix",
                        format!("{p} does not match the rule's ethertype"),
                    );
                    remote = None;
                } else {
                    remote = Some(Remote::Prefix(c));
                }
            }
            Err(e) => {
                o.error("remote_ip_prefix", e.to_string());
                remote = None;
            }
        }
    } else if let Some(g) = group {
        refs.push((o.at("remote_group_id"), g.clone(), RefKind::Group));
        remote = Some(Remote::Group(g));
    } else if let Some(g) = agroup {
        refs.push((
            o.at("remote_address_group_id"),
            g.clone(),
            RefKind::AddressGroup,
        ));
        remote = Some(Remote::AddressGroup(g));
    }
    Some(SgRule {
        direction: direction?,
        family: family?,
        protocol: protocol?,
        ports: ports?,
        remote: remote?,
        origin: o.path.to_string(),
    })
}

fn default_egress() -> Vec<SgRule> {
    [Family::V4, Family::V6]
        .into_iter()
        .map(|family| SgRule {
            direction: Direction::Egress,
            family,
            protocol: None,
            ports: PortMatch::Any,
            remote: Remote::Any,
            origin: "default egress rule".to_owned(),
        })
        .collect()
}

fn decode_group(doc: &Document) -> (Pending<SecurityGroup>, Diagnostics) {
    let mut errors = ObjectErrors::new(Some(&doc.location), doc.object_ref());
    let mut refs = Vec::new();
    let openstack = doc.api_version == crate::load::OPENSTACK;
    let (name, id, stateful, rules) = {
        let (body, path) = if openstack {
            (Some(&doc.value), FieldPath::root())
        } else {
            (doc.value.get("spec"), FieldPath::root().field("spec"))
        };
        let mut o = Obj::new(body, path, &mut errors);
        if !openstack {
            o.only(&[
                "id",
                "description",
                "stateful",
                "defaultEgressRules",
                "rules",
            ]);
        }
        let name = if openstack {
            o.required_string("name")
        } else {
            doc.name().map(str::to_owned)
        };
        let id = o.string("id");
        let stateful = o.bool("stateful").unwrap_or(true);
        let defaults = if openstack {
            false
        } else {
            o.bool("defaultEgressRules").unwrap_or(true)
        };
        let _ = o.string("description");
        let key = if openstack && o.raw("rules").is_none() {
            "security_group_rules"
        } else {
            "rules"
        };
        let items = o.array(key);
        let base = o.at(key);
        let mut rules = if defaults {
            default_egress()
        } else {
            Vec::new()
        };
        for (i, item) in items.iter().enumerate() {
            let mut r = Obj::new(Some(item), base.index(i), o.errors);
            if let Some(rule) = decode_rule(&mut r, !openstack, &mut refs) {
                rules.push(rule);
            }
        }
        (name, id, stateful, rules)
    };
    if name.is_none() {
        errors.push(
            &FieldPath::root().field("metadata").field("name"),
            "required",
        );
    }
    let errors = errors.finish();
    let value = errors.is_empty().then(|| SecurityGroup {
        name: name.clone().unwrap_or_default(),
        id: id.clone(),
        stateful,
        rules,
    });
    (
        Pending {
            value,
            name,
            id,
            doc: doc.clone(),
            refs,
        },
        errors,
    )
}

fn parse_addr_or_prefix(text: &str) -> Result<Cidr, String> {
    if text.contains('/') {
        return Cidr::parse(text).map_err(|e| e.to_string());
    }
    text.parse::<IpAddr>()
        .map(Cidr::host)
        .map_err(|_| format!("{text:?} is not an IP address"))
}

fn decode_port(doc: &Document) -> (Pending<Port>, Diagnostics) {
    let mut errors = ObjectErrors::new(Some(&doc.location), doc.object_ref());
    let mut refs = Vec::new();
    let openstack = doc.api_version == crate::load::OPENSTACK;
    let port = {
        let (body, path) = if openstack {
            (Some(&doc.value), FieldPath::root())
        } else {
            (doc.value.get("spec"), FieldPath::root().field("spec"))
        };
        let mut o = Obj::new(body, path, &mut errors);
        let mut addresses = Vec::new();
        let (name, node, interface, groups_key, ips_key, pairs_key, sec_key) = if openstack {
            let name = o
                .string("name")
                .filter(|n| !n.is_empty())
                .or_else(|| o.string("id"));
            (
                name,
                o.string("binding_host_id"),
                None,
                "security_group_ids",
                "fixed_ips",
                "allowed_address_pairs",
                "port_security_enabled",
            )
        } else {
            o.only(&[
                "node",
                "interface",
                "fixedIPs",
                "allowedAddressPairs",
                "securityGroups",
                "portSecurityEnabled",
            ]);
            (
                doc.name().map(str::to_owned),
                o.string("node"),
                o.string("interface"),
                "securityGroups",
                "fixedIPs",
                "allowedAddressPairs",
                "portSecurityEnabled",
            )
        };
        for (i, v) in o.array(ips_key).iter().enumerate() {
            let p = o.at(ips_key).index(i);
            let text = match v {
                Value::String(s) => Some(s.clone()),
                Value::Object(m) => m
                    .get("ip_address")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                _ => None,
            };
            match text.map(|t| t.parse::<IpAddr>().map_err(|_| t)) {
                Some(Ok(ip)) => addresses.push(Cidr::host(ip)),
                Some(Err(t)) => o.errors.push(&p, format!("{t:?} is not an IP address")),
                None => o
                    .errors
                    .push(&p, "must be an IP address (or an object with ip_address)"),
            }
        }
        for (i, v) in o.array(pairs_key).iter().enumerate() {
            let p = o.at(pairs_key).index(i);
            let key = if openstack { "ip_address" } else { "ipAddress" };
            match v.get(key).and_then(Value::as_str) {
                Some(t) => match parse_addr_or_prefix(t) {
                    Ok(c) => addresses.push(c),
                    Err(e) => o.errors.push(&p.field(key), e),
                },
                None => o.errors.push(&p.field(key), "required"),
            }
        }
        let mut groups = Vec::new();
        for (p, g) in o.strings(groups_key) {
            refs.push((p, g.clone(), RefKind::Group));
            groups.push(g);
        }
        let port_security = o.bool(sec_key).unwrap_or(true);
        if let Some(ifname) = &interface
            && (ifname.is_empty() || ifname.len() > 15 || ifname.contains(['/', ' ', '\0']))
        {
            o.error(
                "interface",
                "must be an interface name (1 to 15 characters, no '/' or spaces)",
            );
        }
        Port {
            name: name.unwrap_or_default(),
            node,
            interface,
            addresses,
            groups,
            port_security,
        }
    };
    if port.name.is_empty() {
        errors.push(
            &FieldPath::root().field("metadata").field("name"),
            "required",
        );
    }
    let errors = errors.finish();
    (
        Pending {
            value: errors.is_empty().then_some(port),
            name: None,
            id: None,
            doc: doc.clone(),
            refs,
        },
        errors,
    )
}

fn decode_address_group(doc: &Document) -> Result<AddressGroup, Diagnostics> {
    let mut errors = ObjectErrors::new(Some(&doc.location), doc.object_ref());
    let openstack = doc.api_version == crate::load::OPENSTACK;
    let group = {
        let (body, path) = if openstack {
            (Some(&doc.value), FieldPath::root())
        } else {
            (doc.value.get("spec"), FieldPath::root().field("spec"))
        };
        let mut o = Obj::new(body, path, &mut errors);
        if !openstack {
            o.only(&["id", "description", "addresses"]);
        }
        let name = if openstack {
            o.string("name")
        } else {
            doc.name().map(str::to_owned)
        };
        let id = o.string("id");
        let mut addresses = Vec::new();
        for (p, a) in o.strings("addresses") {
            match parse_addr_or_prefix(&a) {
                Ok(c) => addresses.push(c),
                Err(e) => o.errors.push(&p, e),
            }
        }
        AddressGroup {
            name: name.unwrap_or_default(),
            id,
            addresses,
        }
    };
    if group.name.is_empty() {
        errors.push(
            &FieldPath::root().field("metadata").field("name"),
            "required",
        );
    }
    errors.finish().into_result(group)
}

/// Decodes every security-group document and resolves references between them.
pub fn decode(docs: &[&Document]) -> Result<SecurityGroups, Diagnostics> {
    let mut errors = Diagnostics::default();
    let mut groups = Vec::new();
    let mut ports = Vec::new();
    let mut agroups = Vec::new();
    for doc in docs {
        let kind = doc.kind.as_str();
        match kind {
            "SecurityGroup" => {
                let (g, e) = decode_group(doc);
                errors.extend(e);
                groups.push(g);
            }
            "Port" => {
                let (p, e) = decode_port(doc);
                errors.extend(e);
                ports.push(p);
            }
            "AddressGroup" => match decode_address_group(doc) {
                Ok(a) => agroups.push(a),
                Err(e) => errors.extend(e),
            },
            _ => {}
        }
    }
    // Names must be unique; references resolve by name or by Neutron ID.
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        let Some(name) = &g.name else { continue };
        if names.insert(name.clone(), i).is_some() {
            errors.push(g.doc.error(
                &FieldPath::root().field("metadata").field("name"),
                format!("security group {name:?} is defined twice"),
            ));
        }
    }
    let group_name = |r: &str| -> Option<String> {
        groups
            .iter()
            .find(|g| g.id.as_deref() == Some(r))
            .or_else(|| groups.iter().find(|g| g.name.as_deref() == Some(r)))
            .and_then(|g| g.name.clone())
    };
    let agroup_name = |r: &str| -> Option<String> {
        agroups
            .iter()
            .find(|g: &&AddressGroup| g.id.as_deref() == Some(r))
            .or_else(|| agroups.iter().find(|g| g.name == r))
            .map(|g| g.name.clone())
    };
    let resolve = |refs: &[(FieldPath, String, RefKind)],
                   doc: &Document,
                   errors: &mut Diagnostics|
     -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        for (path, r, kind) in refs {
            let found = match kind {
                RefKind::Group => group_name(r),
                RefKind::AddressGroup => agroup_name(r),
            };
            match found {
                Some(n) => {
                    map.insert(r.clone(), n);
                }
                None => errors.push(doc.error(
                    path,
                    format!(
                        "no {} {r:?} among the inputs (by name or ID)",
                        if *kind == RefKind::Group {
                            "security group"
                        } else {
                            "address group"
                        }
                    ),
                )),
            }
        }
        map
    };
    let mut out = SecurityGroups::default();
    for g in &groups {
        let map = resolve(&g.refs, &g.doc, &mut errors);
        let Some(mut group) = g.value.clone() else {
            continue;
        };
        for rule in &mut group.rules {
            match &mut rule.remote {
                Remote::Group(r) | Remote::AddressGroup(r) => {
                    if let Some(n) = map.get(r) {
                        *r = n.clone();
                    }
                }
                _ => {}
            }
        }
        out.groups.push(group);
    }
    for p in &ports {
        let map = resolve(&p.refs, &p.doc, &mut errors);
        let Some(mut port) = p.value.clone() else {
            continue;
        };
        for g in &mut port.groups {
            if let Some(n) = map.get(g) {
                *g = n.clone();
            }
        }
        let stateful: BTreeSet<bool> = port
            .groups
            .iter()
            .filter_map(|g| out.groups.iter().find(|x| x.name == *g))
            .map(|g| g.stateful)
            .collect();
        if stateful.len() > 1 {
            errors.push(p.doc.error(
                &FieldPath::root().field("spec").field("securityGroups"),
                "a port cannot have both stateful and stateless security groups",
            ));
        }
        out.ports.push(port);
    }
    out.address_groups = agroups;
    out.groups.sort_by(|a, b| a.name.cmp(&b.name));
    out.ports.sort_by(|a, b| a.name.cmp(&b.name));
    out.address_groups.sort_by(|a, b| a.name.cmp(&b.name));
    errors.into_result(out)
}

// ---------------------------------------------------------------------------------------
// Compiling.

/// Settings of the security-group table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Table name.
    pub table: String,
    /// The node whose ports are enforced (`None`: every port bound to a node).
    pub node: Option<String>,
    /// Re-check original-direction packets of established connections (cut revoked
    /// connections) rather than accepting them.
    pub recheck_established: bool,
}

/// A name usable in nft identifiers.
fn ident(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if s.starts_with(|c: char| c.is_ascii_alphabetic()) {
        s
    } else {
        format!("x{s}")
    }
}

fn suffix(f: Family) -> &'static str {
    match f {
        Family::V4 => "4",
        Family::V6 => "6",
    }
}

fn ranges_of(cidrs: &[Cidr], family: Family) -> Vec<IpRange> {
    IpSet::from_cidrs(cidrs.iter().filter(|c| c.family() == family))
        .ranges()
        .to_vec()
}

/// The members of every group: fixed IPs and allowed address pairs of the ports that
/// carry it.
pub fn members(input: &SecurityGroups) -> BTreeMap<&str, Vec<Cidr>> {
    let mut out: BTreeMap<&str, Vec<Cidr>> = BTreeMap::new();
    for g in &input.groups {
        out.entry(g.name.as_str()).or_default();
    }
    for p in &input.ports {
        for g in &p.groups {
            if let Some(list) = out.get_mut(g.as_str()) {
                list.extend(p.addresses.iter().copied());
            }
        }
    }
    out
}

fn preamble(stateful: bool, recheck: bool) -> Vec<Rule> {
    let mut rules = Vec::new();
    if stateful {
        if recheck {
            rules.push(Rule::new(
                vec![
                    Match::CtState(vec![CtState::Established, CtState::Related]),
                    Match::CtReply,
                ],
                Verdict::Accept,
            ));
            rules.push(Rule::new(
                vec![Match::CtState(vec![CtState::Related])],
                Verdict::Accept,
            ));
        } else {
            rules.push(
                Rule::new(
                    vec![Match::CtState(vec![CtState::Established, CtState::Related])],
                    Verdict::Accept,
                )
                .comment("stateful: established and related connections"),
            );
        }
        rules
            .push(Rule::new(vec![Match::CtState(vec![CtState::Invalid])], Verdict::Drop).counted());
    }
    rules
}

fn rule_matches(rule: &SgRule, side: Side) -> Vec<Match> {
    let mut m = vec![Match::Family(rule.family)];
    match &rule.remote {
        Remote::Any => {}
        Remote::Prefix(c) => m.push(Match::Addr {
            side,
            family: rule.family,
            addrs: AddrMatch::Ranges(vec![c.range()]),
            negate: false,
        }),
        Remote::Group(g) => m.push(Match::Addr {
            side,
            family: rule.family,
            addrs: AddrMatch::Set(format!("group-{}-{}", ident(g), suffix(rule.family))),
            negate: false,
        }),
        Remote::AddressGroup(g) => m.push(Match::Addr {
            side,
            family: rule.family,
            addrs: AddrMatch::Set(format!("addrgroup-{}-{}", ident(g), suffix(rule.family))),
            negate: false,
        }),
    }
    if let Some(p) = rule.protocol {
        match rule.ports {
            PortMatch::Icmp(t, code) => m.push(Match::Icmp {
                v6: p == proto::ICMPV6,
                types: vec![t],
                code,
            }),
            PortMatch::Range(lo, hi) => {
                m.push(Match::Proto {
                    protos: vec![p],
                    negate: false,
                });
                m.push(Match::DPort(vec![(lo, hi)]));
            }
            PortMatch::Any => m.push(Match::Proto {
                protos: vec![p],
                negate: false,
            }),
        }
    }
    m
}

/// Compiles the ports of `options.node` into the security-group table.
pub fn compile(input: &SecurityGroups, options: &Options) -> Table {
    let mut table = Table::new(options.table.clone());
    let local: Vec<&Port> = input
        .ports
        .iter()
        .filter(|p| {
            p.port_security
                && p.node.is_some()
                && options
                    .node
                    .as_ref()
                    .is_none_or(|n| p.node.as_ref() == Some(n))
        })
        .collect();
    if local.is_empty() {
        return table;
    }
    // Sets for every group and address group the local ports' rules refer to.
    let members = members(input);
    let mut used_groups = BTreeSet::new();
    let mut used_agroups = BTreeSet::new();
    for p in &local {
        for g in input.groups.iter().filter(|g| p.groups.contains(&g.name)) {
            for r in &g.rules {
                match &r.remote {
                    Remote::Group(n) => {
                        used_groups.insert(n.clone());
                    }
                    Remote::AddressGroup(n) => {
                        used_agroups.insert(n.clone());
                    }
                    _ => {}
                }
            }
        }
    }
    for g in &used_groups {
        let cidrs = members.get(g.as_str()).cloned().unwrap_or_default();
        for f in [Family::V4, Family::V6] {
            table.sets.push(Set {
                name: format!("group-{}-{}", ident(g), suffix(f)),
                key: SetKey::Addr(f),
                elements: ranges_of(&cidrs, f)
                    .into_iter()
                    .map(Element::Addr)
                    .collect(),
            });
        }
    }
    for g in &used_agroups {
        let cidrs = input
            .address_groups
            .iter()
            .find(|a| a.name == *g)
            .map(|a| a.addresses.clone())
            .unwrap_or_default();
        for f in [Family::V4, Family::V6] {
            table.sets.push(Set {
                name: format!("addrgroup-{}-{}", ident(g), suffix(f)),
                key: SetKey::Addr(f),
                elements: ranges_of(&cidrs, f)
                    .into_iter()
                    .map(Element::Addr)
                    .collect(),
            });
        }
    }

    let mut ingress_map = Vec::new();
    let mut egress_map = Vec::new();
    let mut ingress_any = Vec::new();
    let mut egress_any = Vec::new();
    for port in &local {
        let groups: Vec<&SecurityGroup> = input
            .groups
            .iter()
            .filter(|g| port.groups.contains(&g.name))
            .collect();
        let stateful = groups.iter().all(|g| g.stateful);
        let pid = ident(&port.name);
        // The port's own addresses, for anti-spoofing.
        for f in [Family::V4, Family::V6] {
            table.sets.push(Set {
                name: format!("port-{pid}-addrs{}", suffix(f)),
                key: SetKey::Addr(f),
                elements: ranges_of(&port.addresses, f)
                    .into_iter()
                    .map(Element::Addr)
                    .collect(),
            });
        }
        let mut rules_by_dir: BTreeMap<Direction, Vec<&SgRule>> = BTreeMap::new();
        for g in &groups {
            for r in &g.rules {
                let list = rules_by_dir.entry(r.direction).or_default();
                if !list.contains(&r) {
                    list.push(r);
                }
            }
        }
        // Ingress.
        let mut rules = preamble(stateful, options.recheck_established);
        rules.push(
            Rule::new(
                vec![Match::Icmp {
                    v6: true,
                    types: vec![133, 134, 135, 136, 137],
                    code: None,
                }],
                Verdict::Accept,
            )
            .comment("implicit: IPv6 neighbour discovery"),
        );
        rules.push(
            Rule::new(
                vec![
                    Match::Family(Family::V4),
                    Match::Proto {
                        protos: vec![proto::UDP],
                        negate: false,
                    },
                    Match::SPort(vec![(67, 67)]),
                    Match::DPort(vec![(68, 68)]),
                ],
                Verdict::Accept,
            )
            .comment("implicit: DHCP replies"),
        );
        rules.push(Rule::new(
            vec![
                Match::Family(Family::V6),
                Match::Proto {
                    protos: vec![proto::UDP],
                    negate: false,
                },
                Match::SPort(vec![(547, 547)]),
                Match::DPort(vec![(546, 546)]),
            ],
            Verdict::Accept,
        ));
        for r in rules_by_dir.get(&Direction::Ingress).into_iter().flatten() {
            rules.push(Rule::new(rule_matches(r, Side::Src), Verdict::Accept));
        }
        rules.push(Rule::new(vec![], Verdict::Drop).counted().comment(format!(
            "port {}: ingress not allowed by its security groups",
            port.name
        )));
        let ichain = format!("port-{pid}-ingress");
        table.chains.push(Chain {
            name: ichain.clone(),
            base: None,
            rules,
        });

        // Egress.
        let mut rules = vec![
            Rule::new(
                vec![
                    Match::Family(Family::V4),
                    Match::Proto {
                        protos: vec![proto::UDP],
                        negate: false,
                    },
                    Match::SPort(vec![(68, 68)]),
                    Match::DPort(vec![(67, 67)]),
                ],
                Verdict::Accept,
            )
            .comment("implicit: DHCP client"),
            Rule::new(
                vec![
                    Match::Family(Family::V6),
                    Match::Proto {
                        protos: vec![proto::UDP],
                        negate: false,
                    },
                    Match::SPort(vec![(546, 546)]),
                    Match::DPort(vec![(547, 547)]),
                ],
                Verdict::Accept,
            ),
            Rule::new(
                vec![Match::Icmp {
                    v6: true,
                    types: vec![130, 131, 132, 133, 135, 136, 143],
                    code: None,
                }],
                Verdict::Accept,
            )
            .comment("implicit: IPv6 neighbour discovery and MLD"),
            Rule::new(
                vec![Match::Addr {
                    side: Side::Src,
                    family: Family::V4,
                    addrs: AddrMatch::Set(format!("port-{pid}-addrs4")),
                    negate: true,
                }],
                Verdict::Drop,
            )
            .counted()
            .comment("implicit: anti-spoofing"),
            Rule::new(
                vec![
                    Match::Addr {
                        side: Side::Src,
                        family: Family::V6,
                        addrs: AddrMatch::Set(format!("port-{pid}-addrs6")),
                        negate: true,
                    },
                    Match::Addr {
                        side: Side::Src,
                        family: Family::V6,
                        addrs: AddrMatch::Ranges(vec![
                            Cidr::parse("fe80::/10")
                                .map(|c| c.range())
                                .unwrap_or_else(|_| Cidr::host(IpAddr::from([0u8; 16])).range()),
                        ]),
                        negate: true,
                    },
                ],
                Verdict::Drop,
            )
            .counted(),
        ];
        rules.extend(preamble(stateful, options.recheck_established));
        for r in rules_by_dir.get(&Direction::Egress).into_iter().flatten() {
            rules.push(Rule::new(rule_matches(r, Side::Dst), Verdict::Accept));
        }
        rules.push(Rule::new(vec![], Verdict::Drop).counted().comment(format!(
            "port {}: egress not allowed by its security groups",
            port.name
        )));
        let echain = format!("port-{pid}-egress");
        table.chains.push(Chain {
            name: echain.clone(),
            base: None,
            rules,
        });

        match &port.interface {
            Some(ifname) => {
                ingress_map.push((ifname.clone(), Verdict::Jump(ichain)));
                egress_map.push((ifname.clone(), Verdict::Jump(echain)));
            }
            None => {
                ingress_any.push(ichain);
                egress_any.push(echain);
            }
        }
    }
    table.maps.push(VerdictMap {
        name: "ingress-ports".into(),
        key: MapKey::IfName,
        entries: ingress_map,
    });
    table.maps.push(VerdictMap {
        name: "egress-ports".into(),
        key: MapKey::IfName,
        entries: egress_map,
    });
    let lo = || NameMatch::List(vec!["lo".to_owned()]);
    let mut ingress = vec![Rule::new(
        vec![Match::Iif {
            names: lo(),
            negate: false,
        }],
        Verdict::Accept,
    )];
    ingress.push(Rule::dispatch(vec![], VmapKey::Iif, "ingress-ports"));
    ingress.extend(
        ingress_any
            .into_iter()
            .map(|c| Rule::new(vec![], Verdict::Jump(c))),
    );
    let mut egress = vec![Rule::new(
        vec![Match::Oif {
            names: lo(),
            negate: false,
        }],
        Verdict::Accept,
    )];
    egress.push(Rule::dispatch(vec![], VmapKey::Oif, "egress-ports"));
    egress.extend(
        egress_any
            .into_iter()
            .map(|c| Rule::new(vec![], Verdict::Jump(c))),
    );
    table.chains.insert(
        0,
        Chain {
            name: "ingress".into(),
            base: Some(BaseChain {
                hook: Hook::Prerouting,
                priority: -150,
                policy: Policy::Accept,
            }),
            rules: ingress,
        },
    );
    table.chains.insert(
        1,
        Chain {
            name: "egress".into(),
            base: Some(BaseChain {
                hook: Hook::Postrouting,
                priority: 300,
                policy: Policy::Accept,
            }),
            rules: egress,
        },
    );
    table
}
