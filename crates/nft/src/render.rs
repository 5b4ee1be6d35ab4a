//! JSON and text rendering.

use std::fmt::Write as _;

use rampart_model::{Family, IpRange};
use rampart_ruleset::{
    AddrMatch, Chain, Element, MapKey, Match, NameMatch, Policy, Rule, Set, SetKey, Side, Table,
    Verdict, VerdictMap, VmapKey,
};
use serde_json::{Value, json};

/// The chain that carries a table's stamp in its only rule's comment.
pub const STAMP_CHAIN: &str = "rampart-stamp";

/// nftables keeps at most 128 bytes of a comment (with the terminating zero).
const MAX_COMMENT: usize = 127;

fn clip(comment: &str) -> String {
    if comment.len() <= MAX_COMMENT {
        return comment.to_owned();
    }
    let mut end = MAX_COMMENT;
    while !comment.is_char_boundary(end) {
        end -= 1;
    }
    comment[..end].to_owned()
}

fn table_ref(name: &str) -> Value {
    json!({"family": "inet", "name": name})
}

/// The batch that removes table `name` if it exists.
pub fn delete_batch(name: &str) -> Value {
    json!({"nftables": [
        {"metainfo": {"json_schema_version": 1}},
        {"add": {"table": table_ref(name)}},
        {"delete": {"table": table_ref(name)}},
    ]})
}

/// The batch that replaces `table` atomically, stamped with `stamp`.
pub fn replace_batch(table: &Table, stamp: &str) -> Value {
    let t = table.name.as_str();
    let mut cmds = vec![
        json!({"metainfo": {"json_schema_version": 1}}),
        json!({"add": {"table": table_ref(t)}}),
        json!({"delete": {"table": table_ref(t)}}),
        json!({"add": {"table": table_ref(t)}}),
    ];
    // Chains first (maps refer to them), then sets and maps, then rules.
    cmds.push(json!({"add": {"chain": {"family": "inet", "table": t, "name": STAMP_CHAIN}}}));
    for chain in &table.chains {
        let mut c = json!({"family": "inet", "table": t, "name": chain.name});
        if let Some(base) = &chain.base {
            c["type"] = json!("filter");
            c["hook"] = json!(base.hook.as_str());
            c["prio"] = json!(base.priority);
            c["policy"] = json!(match base.policy {
                Policy::Accept => "accept",
                Policy::Drop => "drop",
            });
        }
        cmds.push(json!({"add": {"chain": c}}));
    }
    for set in &table.sets {
        cmds.push(json!({"add": {"set": set_json(t, set)}}));
    }
    for map in &table.maps {
        cmds.push(json!({"add": {"map": map_json(t, map)}}));
    }
    cmds.push(json!({"add": {"rule": {
        "family": "inet", "table": t, "chain": STAMP_CHAIN,
        "comment": clip(stamp),
        "expr": [{"counter": null}],
    }}}));
    for chain in &table.chains {
        for rule in &chain.rules {
            let mut r = json!({
                "family": "inet", "table": t, "chain": chain.name,
                "expr": rule_exprs(rule),
            });
            if let Some(comment) = &rule.comment {
                r["comment"] = json!(clip(comment));
            }
            cmds.push(json!({"add": {"rule": r}}));
        }
    }
    json!({ "nftables": cmds })
}

fn family_words(family: Family) -> (&'static str, &'static str) {
    match family {
        Family::V4 => ("ip", "ipv4_addr"),
        Family::V6 => ("ip6", "ipv6_addr"),
    }
}

fn set_json(table: &str, set: &Set) -> Value {
    let (ty, interval): (Value, bool) = match set.key {
        SetKey::Addr(f) => (json!(family_words(f).1), true),
        SetKey::IfName => (json!("ifname"), false),
        SetKey::Flow(f) => (
            json!([family_words(f).1, "inet_proto", "inet_service"]),
            true,
        ),
    };
    let mut s = json!({"family": "inet", "table": table, "name": set.name, "type": ty});
    if interval {
        s["flags"] = json!(["interval"]);
    }
    if !set.elements.is_empty() {
        s["elem"] = Value::Array(set.elements.iter().map(element_json).collect());
    }
    s
}

fn map_json(table: &str, map: &VerdictMap) -> Value {
    let ty = match map.key {
        MapKey::Addr(f) => family_words(f).1,
        MapKey::IfName => "ifname",
    };
    let mut m =
        json!({"family": "inet", "table": table, "name": map.name, "type": ty, "map": "verdict"});
    if !map.entries.is_empty() {
        m["elem"] = Value::Array(
            map.entries
                .iter()
                .map(|(k, v)| json!([k, verdict_json(v)]))
                .collect(),
        );
    }
    m
}

fn range_json(r: &IpRange) -> Value {
    if r.start() == r.end() {
        return json!(r.start().to_string());
    }
    let cidrs = r.to_cidrs();
    if let [c] = cidrs.as_slice() {
        return json!({"prefix": {"addr": c.addr().to_string(), "len": c.prefix()}});
    }
    json!({"range": [r.start().to_string(), r.end().to_string()]})
}

fn ports_json(lo: u16, hi: u16) -> Value {
    if lo == hi {
        json!(lo)
    } else {
        json!({"range": [lo, hi]})
    }
}

fn element_json(e: &Element) -> Value {
    match e {
        Element::Addr(r) => range_json(r),
        Element::IfName(n) => json!(n),
        Element::Flow {
            addrs,
            proto,
            ports,
        } => json!({"concat": [range_json(addrs), proto, ports_json(ports.0, ports.1)]}),
    }
}

fn verdict_json(v: &Verdict) -> Value {
    match v {
        Verdict::Accept => json!({"accept": null}),
        Verdict::Drop => json!({"drop": null}),
        Verdict::Return => json!({"return": null}),
        Verdict::Jump(t) => json!({"jump": {"target": t}}),
        Verdict::Goto(t) => json!({"goto": {"target": t}}),
    }
}

fn payload(protocol: &str, field: &str) -> Value {
    json!({"payload": {"protocol": protocol, "field": field}})
}

fn addr_expr(side: Side, family: Family) -> Value {
    let field = match side {
        Side::Src => "saddr",
        Side::Dst => "daddr",
    };
    payload(family_words(family).0, field)
}

fn cmp(op: &str, left: Value, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}

fn eq_or_ne(negate: bool) -> &'static str {
    if negate { "!=" } else { "==" }
}

fn names_json(names: &NameMatch) -> Value {
    match names {
        NameMatch::Set(s) => json!(format!("@{s}")),
        NameMatch::List(list) if list.len() == 1 => json!(list[0]),
        NameMatch::List(list) => json!({"set": list}),
    }
}

fn match_json(m: &Match) -> Value {
    match m {
        Match::CtState(states) => cmp(
            "in",
            json!({"ct": {"key": "state"}}),
            json!(states.iter().map(|s| s.as_str()).collect::<Vec<_>>()),
        ),
        Match::CtReply => cmp("==", json!({"ct": {"key": "direction"}}), json!("reply")),
        Match::Family(f) => cmp(
            "==",
            json!({"meta": {"key": "nfproto"}}),
            json!(match f {
                Family::V4 => "ipv4",
                Family::V6 => "ipv6",
            }),
        ),
        Match::Iif { names, negate } => cmp(
            eq_or_ne(*negate),
            json!({"meta": {"key": "iifname"}}),
            names_json(names),
        ),
        Match::Oif { names, negate } => cmp(
            eq_or_ne(*negate),
            json!({"meta": {"key": "oifname"}}),
            names_json(names),
        ),
        Match::Addr {
            side,
            family,
            addrs,
            negate,
        } => {
            let right = match addrs {
                AddrMatch::Set(s) => json!(format!("@{s}")),
                AddrMatch::Ranges(ranges) => {
                    json!({"set": ranges.iter().map(range_json).collect::<Vec<_>>()})
                }
            };
            cmp(eq_or_ne(*negate), addr_expr(*side, *family), right)
        }
        Match::Proto { protos, negate } => cmp(
            eq_or_ne(*negate),
            json!({"meta": {"key": "l4proto"}}),
            if protos.len() == 1 {
                json!(protos[0])
            } else {
                json!({"set": protos})
            },
        ),
        Match::DPort(ranges) => {
            let items: Vec<Value> = ranges.iter().map(|(a, b)| ports_json(*a, *b)).collect();
            let right = if items.len() == 1 {
                items.into_iter().next().unwrap_or(Value::Null)
            } else {
                json!({"set": items})
            };
            cmp("==", payload("th", "dport"), right)
        }
        Match::Icmp { v6, types, code } => {
            let proto = if *v6 { "icmpv6" } else { "icmp" };
            let mut out = Vec::new();
            if types.is_empty() {
                out.push(cmp(
                    "==",
                    json!({"meta": {"key": "l4proto"}}),
                    json!(if *v6 { 58 } else { 1 }),
                ));
            } else {
                out.push(cmp(
                    "==",
                    payload(proto, "type"),
                    if types.len() == 1 {
                        json!(types[0])
                    } else {
                        json!({"set": types})
                    },
                ));
            }
            if let Some(code) = code {
                out.push(cmp("==", payload(proto, "code"), json!(code)));
            }
            Value::Array(out)
        }
        Match::Flow { side, family, set } => cmp(
            "==",
            json!({"concat": [addr_expr(*side, *family), {"meta": {"key": "l4proto"}}, payload("th", "dport")]}),
            json!(format!("@{set}")),
        ),
        Match::DstLocal { negate } => cmp(
            eq_or_ne(*negate),
            json!({"fib": {"result": "type", "flags": ["daddr"]}}),
            json!("local"),
        ),
        Match::SPort(ranges) => {
            let items: Vec<Value> = ranges.iter().map(|(a, b)| ports_json(*a, *b)).collect();
            let right = if items.len() == 1 {
                items.into_iter().next().unwrap_or(Value::Null)
            } else {
                json!({"set": items})
            };
            cmp("==", payload("th", "sport"), right)
        }
        Match::Limit { rate, burst } => {
            json!({"limit": {"rate": rate, "per": "second", "burst": burst}})
        }
    }
}

fn rule_exprs(rule: &Rule) -> Vec<Value> {
    let mut out = Vec::new();
    for m in &rule.matches {
        match match_json(m) {
            Value::Array(items) => out.extend(items),
            v => out.push(v),
        }
    }
    if rule.counter {
        out.push(json!({"counter": null}));
    }
    if let Some((key, map)) = &rule.vmap {
        let key = match key {
            VmapKey::Addr(side, family) => addr_expr(*side, *family),
            VmapKey::Iif => json!({"meta": {"key": "iifname"}}),
            VmapKey::Oif => json!({"meta": {"key": "oifname"}}),
        };
        out.push(json!({"vmap": {"key": key, "data": format!("@{map}")}}));
    }
    if let Some(v) = &rule.verdict {
        out.push(verdict_json(v));
    }
    out
}

// ---------------------------------------------------------------------------------------
// Text.

fn range_text(r: &IpRange) -> String {
    if r.start() == r.end() {
        return r.start().to_string();
    }
    let cidrs = r.to_cidrs();
    if let [c] = cidrs.as_slice() {
        return c.to_string();
    }
    format!("{}-{}", r.start(), r.end())
}

fn ports_text(lo: u16, hi: u16) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    }
}

fn proto_text(p: u8) -> String {
    match p {
        1 => "icmp".to_owned(),
        6 => "tcp".to_owned(),
        17 => "udp".to_owned(),
        58 => "ipv6-icmp".to_owned(),
        132 => "sctp".to_owned(),
        other => other.to_string(),
    }
}

fn list_text(items: Vec<String>) -> String {
    if items.len() == 1 {
        items.into_iter().next().unwrap_or_default()
    } else {
        format!("{{ {} }}", items.join(", "))
    }
}

fn quoted(s: &str) -> String {
    format!("{s:?}")
}

fn addr_text(side: Side, family: Family) -> String {
    format!(
        "{} {}",
        family_words(family).0,
        match side {
            Side::Src => "saddr",
            Side::Dst => "daddr",
        }
    )
}

fn names_text(names: &NameMatch) -> String {
    match names {
        NameMatch::Set(s) => format!("@{s}"),
        NameMatch::List(list) => list_text(list.iter().map(|n| quoted(n)).collect()),
    }
}

fn neg(negate: bool) -> &'static str {
    if negate { "!= " } else { "" }
}

fn match_text(m: &Match) -> String {
    match m {
        Match::CtState(states) => format!(
            "ct state {}",
            states
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ),
        Match::CtReply => "ct direction reply".to_owned(),
        Match::Family(Family::V4) => "meta nfproto ipv4".to_owned(),
        Match::Family(Family::V6) => "meta nfproto ipv6".to_owned(),
        Match::Iif { names, negate } => format!("iifname {}{}", neg(*negate), names_text(names)),
        Match::Oif { names, negate } => format!("oifname {}{}", neg(*negate), names_text(names)),
        Match::Addr {
            side,
            family,
            addrs,
            negate,
        } => {
            let right = match addrs {
                AddrMatch::Set(s) => format!("@{s}"),
                AddrMatch::Ranges(r) => format!(
                    "{{ {} }}",
                    r.iter().map(range_text).collect::<Vec<_>>().join(", ")
                ),
            };
            format!("{} {}{right}", addr_text(*side, *family), neg(*negate))
        }
        Match::Proto { protos, negate } => format!(
            "meta l4proto {}{}",
            neg(*negate),
            list_text(protos.iter().map(|p| proto_text(*p)).collect())
        ),
        Match::DPort(ranges) => format!(
            "th dport {}",
            list_text(ranges.iter().map(|(a, b)| ports_text(*a, *b)).collect())
        ),
        Match::Icmp { v6, types, code } => {
            let proto = if *v6 { "icmpv6" } else { "icmp" };
            let mut s = if types.is_empty() {
                format!("meta l4proto {}", if *v6 { "ipv6-icmp" } else { "icmp" })
            } else {
                format!(
                    "{proto} type {}",
                    list_text(types.iter().map(u8::to_string).collect())
                )
            };
            if let Some(code) = code {
                let _ = write!(s, " {proto} code {code}");
            }
            s
        }
        Match::Flow { side, family, set } => {
            format!(
                "{} . meta l4proto . th dport @{set}",
                addr_text(*side, *family)
            )
        }
        Match::DstLocal { negate } => format!("fib daddr type {}local", neg(*negate)),
        Match::SPort(ranges) => format!(
            "th sport {}",
            list_text(ranges.iter().map(|(a, b)| ports_text(*a, *b)).collect())
        ),
        Match::Limit { rate, burst } => {
            format!("limit rate {rate}/second burst {burst} packets")
        }
    }
}

fn rule_text(rule: &Rule) -> String {
    let mut parts: Vec<String> = rule.matches.iter().map(match_text).collect();
    if rule.counter {
        parts.push("counter".to_owned());
    }
    if let Some((key, map)) = &rule.vmap {
        let key = match key {
            VmapKey::Addr(side, family) => addr_text(*side, *family),
            VmapKey::Iif => "iifname".to_owned(),
            VmapKey::Oif => "oifname".to_owned(),
        };
        parts.push(format!("{key} vmap @{map}"));
    }
    if let Some(v) = &rule.verdict {
        parts.push(v.to_string());
    }
    if let Some(c) = &rule.comment {
        parts.push(format!("comment {}", quoted(&clip(c))));
    }
    parts.join(" ")
}

fn element_text(e: &Element) -> String {
    match e {
        Element::Addr(r) => range_text(r),
        Element::IfName(n) => quoted(n),
        Element::Flow {
            addrs,
            proto,
            ports,
        } => format!(
            "{} . {} . {}",
            range_text(addrs),
            proto_text(*proto),
            ports_text(ports.0, ports.1)
        ),
    }
}

fn chain_text(out: &mut String, chain: &Chain) {
    let _ = writeln!(out, "\tchain {} {{", chain.name);
    if let Some(base) = &chain.base {
        let _ = writeln!(
            out,
            "\t\ttype filter hook {} priority {}; policy {};",
            base.hook.as_str(),
            base.priority,
            match base.policy {
                Policy::Accept => "accept",
                Policy::Drop => "drop",
            }
        );
    }
    for rule in &chain.rules {
        let _ = writeln!(out, "\t\t{}", rule_text(rule));
    }
    out.push_str("\t}\n");
}

/// The table in nft syntax (what `nft list table inet <name>` would print, give or take
/// the kernel's own spelling), with the stamp chain.
pub fn text(table: &Table, stamp: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "table inet {} {{", table.name);
    for set in &table.sets {
        let ty = match set.key {
            SetKey::Addr(f) => family_words(f).1.to_owned(),
            SetKey::IfName => "ifname".to_owned(),
            SetKey::Flow(f) => format!("{} . inet_proto . inet_service", family_words(f).1),
        };
        let _ = writeln!(out, "\tset {} {{", set.name);
        let _ = writeln!(out, "\t\ttype {ty}");
        if set.key != SetKey::IfName {
            out.push_str("\t\tflags interval\n");
        }
        if !set.elements.is_empty() {
            let items: Vec<String> = set.elements.iter().map(element_text).collect();
            let _ = writeln!(out, "\t\telements = {{ {} }}", items.join(",\n\t\t\t     "));
        }
        out.push_str("\t}\n");
    }
    for map in &table.maps {
        let ty = match map.key {
            MapKey::Addr(f) => family_words(f).1,
            MapKey::IfName => "ifname",
        };
        let _ = writeln!(out, "\tmap {} {{", map.name);
        let _ = writeln!(out, "\t\ttype {ty} : verdict");
        if !map.entries.is_empty() {
            let items: Vec<String> = map
                .entries
                .iter()
                .map(|(k, v)| {
                    let key = if map.key == MapKey::IfName {
                        quoted(k)
                    } else {
                        k.clone()
                    };
                    format!("{key} : {v}")
                })
                .collect();
            let _ = writeln!(out, "\t\telements = {{ {} }}", items.join(",\n\t\t\t     "));
        }
        out.push_str("\t}\n");
    }
    let _ = writeln!(out, "\tchain {STAMP_CHAIN} {{");
    let _ = writeln!(out, "\t\tcounter comment {}", quoted(&clip(stamp)));
    out.push_str("\t}\n");
    for chain in &table.chains {
        chain_text(&mut out, chain);
    }
    out.push_str("}\n");
    out
}

/// The batch that puts back a table as the kernel listed it (`nft -j list table`), or
/// removes it when `listing` is `None` (there was none). Used to undo a change.
pub fn restore_batch(name: &str, listing: Option<&Value>) -> Value {
    let Some(listing) = listing else {
        return delete_batch(name);
    };
    let mut cmds = vec![
        json!({"metainfo": {"json_schema_version": 1}}),
        json!({"add": {"table": table_ref(name)}}),
        json!({"delete": {"table": table_ref(name)}}),
    ];
    let rank = |item: &Value| -> u8 {
        if item.get("table").is_some() {
            0
        } else if item.get("chain").is_some() {
            1
        } else if item.get("set").is_some() {
            2
        } else if item.get("map").is_some() {
            3
        } else {
            4
        }
    };
    let mut items: Vec<Value> = listing
        .get("nftables")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|i| i.get("metainfo").is_none())
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    // Stable: rules keep their order within each chain.
    items.sort_by_key(|i| rank(i));
    for mut item in items {
        if let Some(obj) = item.as_object_mut() {
            for v in obj.values_mut() {
                if let Some(o) = v.as_object_mut() {
                    o.remove("handle");
                }
            }
        }
        cmds.push(json!({ "add": item }));
    }
    json!({ "nftables": cmds })
}

/// When `old` (a batch from [`replace_batch`]) and `new` differ only in set elements and
/// the stamp, the batch that updates just those: every changed set is flushed and
/// refilled, in one transaction. Rules are not touched (their kernel handles stay).
pub fn update_batch(old: &Value, new_table: &Table, stamp: &str) -> Option<Value> {
    let new = replace_batch(new_table, stamp);
    let strip = |batch: &Value| -> Vec<Value> {
        batch
            .get("nftables")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|cmd| {
                let mut c = cmd.clone();
                if let Some(set) = c.pointer_mut("/add/set").and_then(Value::as_object_mut) {
                    set.remove("elem");
                }
                if c.pointer("/add/rule/chain").and_then(Value::as_str) == Some(STAMP_CHAIN)
                    && let Some(rule) = c.pointer_mut("/add/rule").and_then(Value::as_object_mut)
                {
                    rule.remove("comment");
                }
                c
            })
            .collect()
    };
    if strip(old) != strip(&new) {
        return None;
    }
    let sets = |batch: &Value| -> Vec<(String, Value)> {
        batch
            .get("nftables")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|cmd| cmd.pointer("/add/set"))
            .map(|s| {
                (
                    s.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    s.get("elem").cloned().unwrap_or(Value::Null),
                )
            })
            .collect()
    };
    let t = new_table.name.as_str();
    let mut cmds = vec![json!({"metainfo": {"json_schema_version": 1}})];
    for ((name, old_elems), (_, new_elems)) in sets(old).into_iter().zip(sets(&new)) {
        if old_elems == new_elems {
            continue;
        }
        cmds.push(json!({"flush": {"set": {"family": "inet", "table": t, "name": name}}}));
        if let Value::Array(elems) = new_elems
            && !elems.is_empty()
        {
            cmds.push(json!({"add": {"element": {"family": "inet", "table": t, "name": name, "elem": elems}}}));
        }
    }
    cmds.push(json!({"flush": {"chain": {"family": "inet", "table": t, "name": STAMP_CHAIN}}}));
    cmds.push(json!({"add": {"rule": {
        "family": "inet", "table": t, "chain": STAMP_CHAIN,
        "comment": clip(stamp),
        "expr": [{"counter": null}],
    }}}));
    Some(json!({ "nftables": cmds }))
}

/// The digest in a stamp written by Rampart (`... digest=<hex> ...`).
pub fn stamp_digest(stamp: &str) -> Option<&str> {
    stamp
        .split_whitespace()
        .find_map(|w| w.strip_prefix("digest="))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_model::Cidr;
    use rampart_ruleset::{AddrMatch, Chain, Element, Match, Rule, Set, SetKey, Side, Verdict};

    fn table(members: &[&str]) -> Table {
        let mut t = Table::new("t");
        t.sets.push(Set {
            name: "members".into(),
            key: SetKey::Addr(rampart_model::Family::V4),
            elements: members
                .iter()
                .map(|m| Element::Addr(Cidr::parse(m).unwrap().range()))
                .collect(),
        });
        t.chains.push(Chain {
            name: "c".into(),
            base: None,
            rules: vec![Rule::new(
                vec![Match::Addr {
                    side: Side::Src,
                    family: rampart_model::Family::V4,
                    addrs: AddrMatch::Set("members".into()),
                    negate: false,
                }],
                Verdict::Accept,
            )],
        });
        t
    }

    #[test]
    fn set_only_changes_become_element_updates() {
        let old = replace_batch(&table(&["10.0.0.1/32"]), "digest=a");
        let update =
            update_batch(&old, &table(&["10.0.0.1/32", "10.0.0.9/32"]), "digest=b").unwrap();
        let cmds = update["nftables"].as_array().unwrap();
        assert!(
            cmds.iter()
                .any(|c| c.pointer("/flush/set/name") == Some(&json!("members")))
        );
        assert!(
            cmds.iter()
                .any(|c| c.pointer("/add/element/elem").is_some())
        );
        assert!(
            !cmds
                .iter()
                .any(|c| c.pointer("/add/chain").is_some() || c.pointer("/delete").is_some())
        );
        // A change of rules is not an element update.
        let mut other = table(&["10.0.0.1/32"]);
        other.chains[0].rules[0].verdict = Some(Verdict::Drop);
        assert!(update_batch(&old, &other, "digest=c").is_none());
        assert_eq!(
            stamp_digest("rampart layer=sg digest=00ff generation=3"),
            Some("00ff")
        );
    }

    #[test]
    fn restore_puts_back_a_listing_in_dependency_order() {
        let listing = json!({"nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"table": {"family": "inet", "name": "t", "handle": 3}},
            {"map": {"family": "inet", "table": "t", "name": "m", "handle": 9, "type": "ipv4_addr", "map": "verdict", "elem": [["10.0.0.1", {"jump": {"target": "c"}}]]}},
            {"chain": {"family": "inet", "table": "t", "name": "c", "handle": 1}},
            {"rule": {"family": "inet", "table": "t", "chain": "c", "handle": 4, "expr": [{"accept": null}]}},
        ]});
        let batch = restore_batch("t", Some(&listing));
        let kinds: Vec<String> = batch["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .skip(1)
            .map(|c| {
                let (verb, body) = c.as_object().unwrap().iter().next().unwrap();
                format!(
                    "{verb} {}",
                    body.as_object().unwrap().keys().next().unwrap()
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "add table",
                "delete table",
                "add table",
                "add chain",
                "add map",
                "add rule"
            ]
        );
        assert!(batch.to_string().find("handle").is_none());
        assert_eq!(restore_batch("t", None), delete_batch("t"));
    }
}
