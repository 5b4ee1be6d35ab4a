//! Revoked connections: deletes the conntrack entries of connections that the rules in
//! force would no longer let start.
//!
//! Each entry's original tuple is judged as a new flow by the reference evaluator of
//! the tables (`rampart-ruleset`): the pod table on its forward path (which applies the
//! source pod's egress and the destination pod's ingress, as its input and output
//! chains do), the host table on the input path for entries addressed to one of the
//! namespace's own addresses, the security-group table on its ingress (prerouting) and
//! egress (postrouting) paths with any of the interfaces it names. Entries between two
//! local addresses (loopback traffic) are left alone. Deleted entries' next packets are
//! judged by the rules as new, and dropped.

use std::net::IpAddr;
use std::process::{Command, Stdio};

use rampart_ruleset::{Hook, Packet, Table, TableVerdict};
use serde_json::Value;

use crate::nft::{Netns, NftError};

/// One tracked connection, by its original tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Protocol number.
    pub proto: u8,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (0 without ports).
    pub sport: u16,
    /// Destination port (0 without ports).
    pub dport: u16,
}

/// Parses `conntrack -L -o extended` output (the original tuple of each line).
pub fn parse(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        // "ipv4 2 tcp 6 431999 ESTABLISHED src=... dst=... sport=... dport=... src=..."
        let Some(proto) = words.get(3).and_then(|w| w.parse::<u8>().ok()) else {
            continue;
        };
        let first = |key: &str| -> Option<&str> { words.iter().find_map(|w| w.strip_prefix(key)) };
        let (Some(src), Some(dst)) = (
            first("src=").and_then(|s| s.parse().ok()),
            first("dst=").and_then(|s| s.parse().ok()),
        ) else {
            continue;
        };
        let port = |key: &str| first(key).and_then(|s| s.parse().ok()).unwrap_or(0);
        out.push(Entry {
            proto,
            src,
            dst,
            sport: port("sport="),
            dport: port("dport="),
        });
    }
    out
}

fn run(netns: &Netns, args: &[String]) -> Result<String, NftError> {
    let out = netns
        .command("conntrack")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| NftError::Spawn {
            netns: netns.clone(),
            source,
        })?;
    // `conntrack -D` exits 1 when nothing matched; that is not a failure here.
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The addresses of the namespace (`ip -j addr`).
fn local_addresses(netns: &Netns) -> Vec<IpAddr> {
    let mut cmd: Command = netns.command("ip");
    let Ok(out) = cmd
        .args(["-j", "addr", "show"])
        .stdin(Stdio::null())
        .output()
    else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) else {
        return Vec::new();
    };
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l.get("addr_info").and_then(Value::as_array))
        .flatten()
        .filter_map(|a| a.get("local").and_then(Value::as_str))
        .filter_map(|s| s.parse().ok())
        .collect()
}

fn names_in(table: &Table) -> Vec<String> {
    table
        .maps
        .iter()
        .flat_map(|m| m.entries.iter())
        .filter(|(k, _)| k.parse::<IpAddr>().is_err())
        .map(|(k, _)| k.clone())
        .collect()
}

/// True if the tables would still let `e` start.
pub fn allowed(tables: &[&Table], e: &Entry, local: &[IpAddr]) -> bool {
    let dst_local = local.contains(&e.dst);
    if dst_local && local.contains(&e.src) {
        return true;
    }
    let mut p = Packet::new_flow(e.src, e.dst, e.proto, e.dport);
    p.sport = e.sport;
    p.dst_local = dst_local;
    for table in tables {
        let ok = |hook: Hook, p: &Packet| table.evaluate(hook, p) == TableVerdict::Accept;
        let has_hook = |hook: Hook| {
            table
                .chains
                .iter()
                .any(|c| c.base.as_ref().is_some_and(|b| b.hook == hook))
        };
        if has_hook(Hook::Forward) && !ok(Hook::Forward, &p) {
            return false;
        }
        if dst_local && has_hook(Hook::Input) {
            let mut q = p.clone();
            q.iif = Some(String::new());
            if !ok(Hook::Input, &q) {
                return false;
            }
        }
        let ifs = names_in(table);
        if has_hook(Hook::Prerouting) && !has_hook(Hook::Input) {
            for i in &ifs {
                let mut q = p.clone();
                q.iif = Some(i.clone());
                if !ok(Hook::Prerouting, &q) {
                    return false;
                }
                q.iif = None;
                q.oif = Some(i.clone());
                if has_hook(Hook::Postrouting) && !ok(Hook::Postrouting, &q) {
                    return false;
                }
            }
        }
    }
    true
}

/// Deletes the entries the tables no longer allow; returns how many.
pub fn flush_revoked(netns: &Netns, tables: &[&Table]) -> Result<usize, NftError> {
    let listing = run(netns, &["-L".into(), "-o".into(), "extended".into()])?;
    let entries = parse(&listing);
    if entries.is_empty() {
        return Ok(0);
    }
    let local = local_addresses(netns);
    let mut deleted = 0;
    for e in entries.iter().filter(|e| !allowed(tables, e, &local)) {
        let mut args = vec![
            "-D".to_owned(),
            "-f".to_owned(),
            if e.src.is_ipv4() { "ipv4" } else { "ipv6" }.to_owned(),
            "-p".to_owned(),
            e.proto.to_string(),
            "-s".to_owned(),
            e.src.to_string(),
            "-d".to_owned(),
            e.dst.to_string(),
        ];
        if rampart_ruleset::proto::has_ports(e.proto) {
            args.extend([
                "--sport".to_owned(),
                e.sport.to_string(),
                "--dport".to_owned(),
                e.dport.to_string(),
            ]);
        }
        run(netns, &args)?;
        deleted += 1;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_extended_listing() {
        let text = "ipv4     2 tcp      6 431999 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=40000 dport=80 src=10.0.0.2 dst=10.0.0.1 sport=80 dport=40000 [ASSURED] mark=0 use=1\n\
                    ipv6     10 udp      17 29 src=fd00::1 dst=fd00::2 sport=5000 dport=53 [UNREPLIED] src=fd00::2 dst=fd00::1 sport=53 dport=5000 mark=0 use=1\n\
                    ipv4     2 icmp     1 29 src=10.0.0.1 dst=10.0.0.2 type=8 code=0 id=7 src=10.0.0.2 dst=10.0.0.1 type=0 code=0 id=7 mark=0 use=1\n\
                    conntrack v1.4.7 (conntrack-tools): 3 flow entries have been shown.\n";
        let e = parse(text);
        assert_eq!(e.len(), 3);
        assert_eq!((e[0].proto, e[0].sport, e[0].dport), (6, 40000, 80));
        assert_eq!(e[1].dst, "fd00::2".parse::<IpAddr>().unwrap());
        assert_eq!((e[2].proto, e[2].dport), (1, 0));
    }
}
