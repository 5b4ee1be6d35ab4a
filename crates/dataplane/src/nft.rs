//! Runs `nft` (from the nftables package) in a network namespace.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rampart_ruleset::Table;
use serde_json::Value;

/// A network namespace to act in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Netns {
    /// The namespace this process runs in.
    Current,
    /// A named namespace (`/run/netns/<name>`, as `ip netns add` makes them).
    Named(String),
}

impl Netns {
    /// A command that runs `program` in this namespace.
    pub fn command(&self, program: &str) -> Command {
        match self {
            Netns::Current => Command::new(program),
            Netns::Named(name) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", name, program]);
                c
            }
        }
    }
}

impl std::fmt::Display for Netns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Netns::Current => f.write_str("the current network namespace"),
            Netns::Named(n) => write!(f, "network namespace {n}"),
        }
    }
}

/// Why an nftables operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// `nft` could not be started.
    #[error("cannot run nft ({netns}): {source}")]
    Spawn {
        /// Where.
        netns: Netns,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The kernel (or nft) refused the batch; nothing of it was applied.
    #[error("nft refused the transaction ({netns}); the previous rules stay in force: {message}")]
    Refused {
        /// Where.
        netns: Netns,
        /// nft's own words.
        message: String,
    },
    /// nft printed something that is not the JSON it should print.
    #[error("cannot read nft's listing ({netns}): {message}")]
    Listing {
        /// Where.
        netns: Netns,
        /// What was wrong.
        message: String,
    },
}

/// The result of one applied transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Wall time of the `nft` run (spawn included).
    pub elapsed: Duration,
}

fn clip_message(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    // Errors quote the offending part of the batch; keep reports readable.
    if text.len() > 2000 {
        let mut end = 2000;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &text[..end])
    } else {
        text.to_owned()
    }
}

/// Runs one JSON batch as a single transaction.
pub fn run_batch(netns: &Netns, batch: &Value) -> Result<Applied, NftError> {
    let start = Instant::now();
    let mut child = netns
        .command("nft")
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NftError::Spawn {
            netns: netns.clone(),
            source,
        })?;
    let body = batch.to_string();
    let write_result = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(body.as_bytes()));
    let output = child.wait_with_output().map_err(|source| NftError::Spawn {
        netns: netns.clone(),
        source,
    })?;
    if !output.status.success() {
        return Err(NftError::Refused {
            netns: netns.clone(),
            message: clip_message(&output.stderr),
        });
    }
    if let Some(Err(source)) = write_result {
        return Err(NftError::Spawn {
            netns: netns.clone(),
            source,
        });
    }
    Ok(Applied {
        elapsed: start.elapsed(),
    })
}

/// Replaces `table` atomically (with its stamp).
pub fn replace_table(netns: &Netns, table: &Table, stamp: &str) -> Result<Applied, NftError> {
    run_batch(netns, &rampart_nft::replace_batch(table, stamp))
}

/// Replaces several tables in one transaction: all of them or none.
pub fn replace_tables(netns: &Netns, tables: &[(&Table, String)]) -> Result<Applied, NftError> {
    let mut cmds: Vec<Value> = Vec::new();
    for (i, (table, stamp)) in tables.iter().enumerate() {
        let batch = rampart_nft::replace_batch(table, stamp);
        let items = batch
            .get("nftables")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        // One metainfo header for the whole batch.
        cmds.extend(items.into_iter().skip(usize::from(i > 0)));
    }
    run_batch(netns, &serde_json::json!({ "nftables": cmds }))
}

/// Removes table `name` (no error if it does not exist).
pub fn delete_table(netns: &Netns, name: &str) -> Result<Applied, NftError> {
    run_batch(netns, &rampart_nft::delete_batch(name))
}

/// The kernel's listing of table `name`, or `None` if there is no such table.
pub fn list_table(netns: &Netns, name: &str) -> Result<Option<Value>, NftError> {
    let output = netns
        .command("nft")
        .args(["-j", "list", "table", "inet", name])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| NftError::Spawn {
            netns: netns.clone(),
            source,
        })?;
    if !output.status.success() {
        let message = clip_message(&output.stderr);
        if message.contains("No such file or directory") {
            return Ok(None);
        }
        return Err(NftError::Refused {
            netns: netns.clone(),
            message,
        });
    }
    serde_json::from_slice(&output.stdout)
        .map(Some)
        .map_err(|e| NftError::Listing {
            netns: netns.clone(),
            message: e.to_string(),
        })
}

/// The text listing of table `name` (`nft list table inet <name>`), if it exists.
pub fn list_table_text(netns: &Netns, name: &str) -> Result<Option<String>, NftError> {
    let output = netns
        .command("nft")
        .args(["list", "table", "inet", name])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| NftError::Spawn {
            netns: netns.clone(),
            source,
        })?;
    if !output.status.success() {
        let message = clip_message(&output.stderr);
        if message.contains("No such file or directory") {
            return Ok(None);
        }
        return Err(NftError::Refused {
            netns: netns.clone(),
            message,
        });
    }
    Ok(Some(String::from_utf8_lossy(&output.stdout).into_owned()))
}
