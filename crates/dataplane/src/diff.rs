//! Desired against applied, in the kernel's own words: the desired table is loaded into
//! a scratch network namespace and listed by `nft`, so both sides of the comparison are
//! spelled by nftables itself (counters left out).

use std::process::Stdio;

use serde_json::Value;

use crate::nft::{Netns, NftError, run_batch};

fn list_stateless(netns: &Netns, name: &str) -> Result<Option<String>, NftError> {
    let out = netns
        .command("nft")
        .args(["-s", "list", "table", "inet", name])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| NftError::Spawn {
            netns: netns.clone(),
            source,
        })?;
    if !out.status.success() {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// The kernel's listing of table `name` in `netns` (without counters), if it exists.
pub fn applied(netns: &Netns, name: &str) -> Result<Option<String>, NftError> {
    list_stateless(netns, name)
}

/// How nftables lists `batch` (a replace batch for table `name`), using a scratch
/// namespace that is removed afterwards.
pub fn desired(name: &str, batch: &Value) -> Result<String, NftError> {
    let scratch = format!("rampart-diff-{}", std::process::id());
    let ns = Netns::Named(scratch.clone());
    let status = std::process::Command::new("ip")
        .args(["netns", "add", &scratch])
        .stderr(Stdio::null())
        .status()
        .map_err(|source| NftError::Spawn {
            netns: ns.clone(),
            source,
        })?;
    if !status.success() {
        return Err(NftError::Refused {
            netns: ns,
            message: "cannot create a scratch network namespace".to_owned(),
        });
    }
    let result = run_batch(&ns, batch).and_then(|_| list_stateless(&ns, name));
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", &scratch])
        .status();
    Ok(result?.unwrap_or_default())
}

/// One line of a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<'a> {
    /// In both.
    Same(&'a str),
    /// Only in the applied listing.
    Removed(&'a str),
    /// Only in the desired listing.
    Added(&'a str),
}

/// A line diff of `old` to `new` (longest common subsequence on the part that differs;
/// beyond 4,000 lines on each side, the differing part is shown whole).
pub fn lines<'a>(old: &'a str, new: &'a str) -> Vec<Line<'a>> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut out: Vec<Line<'a>> = a[..prefix].iter().map(|l| Line::Same(l)).collect();
    if am.len() <= 4000 && bm.len() <= 4000 {
        let (n, m) = (am.len(), bm.len());
        let mut lcs = vec![vec![0u32; m + 1]; n + 1];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i][j] = if am[i] == bm[j] {
                    lcs[i + 1][j + 1] + 1
                } else {
                    lcs[i + 1][j].max(lcs[i][j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n && j < m {
            if am[i] == bm[j] {
                out.push(Line::Same(am[i]));
                i += 1;
                j += 1;
            } else if lcs[i + 1][j] >= lcs[i][j + 1] {
                out.push(Line::Removed(am[i]));
                i += 1;
            } else {
                out.push(Line::Added(bm[j]));
                j += 1;
            }
        }
        out.extend(am[i..].iter().map(|l| Line::Removed(l)));
        out.extend(bm[j..].iter().map(|l| Line::Added(l)));
    } else {
        out.extend(am.iter().map(|l| Line::Removed(l)));
        out.extend(bm.iter().map(|l| Line::Added(l)));
    }
    out.extend(a[a.len() - suffix..].iter().map(|l| Line::Same(l)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_marks_changes() {
        let d = lines("a\nb\nc\nd\n", "a\nc\nx\nd\n");
        assert_eq!(
            d,
            vec![
                Line::Same("a"),
                Line::Removed("b"),
                Line::Same("c"),
                Line::Added("x"),
                Line::Same("d")
            ]
        );
        assert!(
            lines("same\n", "same\n")
                .iter()
                .all(|l| matches!(l, Line::Same(_)))
        );
    }
}
