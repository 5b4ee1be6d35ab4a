//! What a kernel listing (`nft -j list table inet <name>`) says about a table.

use serde_json::Value;

use crate::render::STAMP_CHAIN;

/// A summary of one table as the kernel holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// The stamp Rampart wrote when it applied the table, if present.
    pub stamp: Option<String>,
    /// Chains (the stamp chain not counted).
    pub chains: usize,
    /// Rules (the stamp rule not counted).
    pub rules: usize,
    /// Set elements and map entries.
    pub elements: usize,
    /// Packets counted by rules that drop.
    pub dropped_packets: u64,
}

/// Reads a listing; `None` if it holds no table object.
pub fn parse(listing: &Value) -> Option<Listing> {
    let items = listing.get("nftables")?.as_array()?;
    if !items.iter().any(|i| i.get("table").is_some()) {
        return None;
    }
    let mut out = Listing::default();
    for item in items {
        if let Some(chain) = item.get("chain") {
            if chain.get("name").and_then(Value::as_str) != Some(STAMP_CHAIN) {
                out.chains += 1;
            }
        } else if let Some(set) = item.get("set").or_else(|| item.get("map")) {
            out.elements += set
                .get("elem")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
        } else if let Some(rule) = item.get("rule") {
            if rule.get("chain").and_then(Value::as_str) == Some(STAMP_CHAIN) {
                out.stamp = rule
                    .get("comment")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                continue;
            }
            out.rules += 1;
            let exprs = rule.get("expr").and_then(Value::as_array);
            let drops = exprs.is_some_and(|e| e.iter().any(|x| x.get("drop").is_some()));
            if drops {
                out.dropped_packets += exprs
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x.get("counter"))
                    .filter_map(|c| c.get("packets").and_then(Value::as_u64))
                    .sum::<u64>();
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stamp_counts_and_drops() {
        let v: Value = serde_json::from_str(
            r#"{"nftables":[{"metainfo":{}},{"table":{"family":"inet","name":"t"}},
            {"chain":{"name":"rampart-stamp"}},{"chain":{"name":"forward"}},
            {"set":{"name":"s","elem":["10.0.0.1","10.0.0.2"]}},
            {"rule":{"chain":"rampart-stamp","comment":"gen 3","expr":[{"counter":{"packets":0,"bytes":0}}]}},
            {"rule":{"chain":"forward","expr":[{"counter":{"packets":7,"bytes":420}},{"drop":null}]}},
            {"rule":{"chain":"forward","expr":[{"counter":{"packets":9,"bytes":1}},{"accept":null}]}}]}"#,
        )
        .unwrap();
        let l = parse(&v).unwrap();
        assert_eq!(l.stamp.as_deref(), Some("gen 3"));
        assert_eq!(
            (l.chains, l.rules, l.elements, l.dropped_packets),
            (1, 2, 2, 7)
        );
        assert!(parse(&serde_json::json!({"nftables": []})).is_none());
    }
}
