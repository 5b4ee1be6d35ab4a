//! The node agent: from inputs to tables in force, one atomic transaction per change.
//!
//! - [`plan`] (pure) compiles the inputs into the three tables, each stamped with the
//!   digest of its program.
//! - [`Agent::reconcile`] compares every table's stamp in the kernel with the plan and
//!   applies whatever differs in **one** `nft` transaction: a table whose rules are
//!   unchanged and whose sets changed (a security group's members, say) gets only its
//!   set elements replaced; any other change replaces the table. If the kernel refuses
//!   the transaction, nothing of it is applied and the previous rules stay in force.
//!   Inputs that fail to load or validate never replace rules in force either.
//! - A try ([`Agent::apply_try`]) records what the kernel held before, applies, and
//!   reverts by itself at the deadline unless [`Agent::confirm`] is called. A reverted
//!   input is remembered and not applied again until the inputs change.
//! - The rules stay when the agent stops or crashes (fail closed); on start it
//!   reconciles.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rampart_firewall::{Inputs, sg, talos};
use rampart_policy::ir::{self, LocalPods, Stateful};
use rampart_resources::{Diagnostics, read_sources};
use rampart_ruleset::Table;
use serde_json::{Value, json};

use crate::config::{AgentConfig, Revoked};
use crate::conntrack;
use crate::nft::{self, NftError};

/// The layers, in the order their tables are listed.
pub const LAYERS: [&str; 3] = ["sg", "host", "pods"];

/// Why the agent could not do something.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The inputs are invalid; nothing was changed.
    #[error("invalid inputs; the rules in force are unchanged")]
    Inputs(#[source] Diagnostics),
    /// nftables refused or failed.
    #[error(transparent)]
    Nft(#[from] NftError),
    /// The state directory could not be used.
    #[error("state directory {path}: {message}")]
    State {
        /// Where.
        path: PathBuf,
        /// What.
        message: String,
    },
    /// A try is pending: confirm it or let it revert first.
    #[error(
        "a try is pending until {deadline}: confirm it (`rampart agent confirm`) or wait for it to revert"
    )]
    TryPending {
        /// Unix seconds.
        deadline: u64,
    },
    /// There is no try to confirm.
    #[error("no try is pending (it may have been reverted already)")]
    NoTry,
}

/// One planned table.
#[derive(Debug, Clone)]
pub struct PlannedTable {
    /// Layer (`sg`, `host`, `pods`).
    pub layer: &'static str,
    /// The program.
    pub table: Table,
    /// Digest of the program (hex).
    pub digest: String,
}

impl PlannedTable {
    /// The stamp written into the kernel with it.
    pub fn stamp(&self, generation: u64) -> String {
        format!(
            "rampart layer={} digest={} generation={generation}",
            self.layer, self.digest
        )
    }
}

/// What the inputs ask for.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The tables of the enabled layers.
    pub tables: Vec<PlannedTable>,
    /// Digest of all inputs together.
    pub digest: String,
    /// Documents read.
    pub documents: usize,
}

fn hex(d: u64) -> String {
    format!("{d:016x}")
}

/// Compiles the inputs into tables (pure).
pub fn plan(config: &AgentConfig, inputs: &Inputs) -> Plan {
    let recheck = config.revoked == Revoked::Cut;
    let mut tables = Vec::new();
    if config.security_groups {
        let table = sg::compile(
            &inputs.security_groups,
            &sg::Options {
                table: config.table("sg"),
                node: Some(config.node.clone()),
                recheck_established: recheck,
            },
        );
        tables.push(("sg", table));
    }
    if config.host {
        let table = talos::compile(
            inputs.host.as_ref(),
            &talos::Options {
                table: config.table("host"),
                trusted_interfaces: config.trusted_interfaces.clone(),
                cluster_networks: config.cluster_networks.clone(),
                recheck_established: recheck,
            },
        );
        tables.push(("host", table));
    }
    if config.pods {
        let compiled = ir::compile(
            &inputs.cluster.cluster,
            &inputs.cluster.policies,
            &ir::Options {
                table: config.table("pods"),
                local: if config.all_pods {
                    LocalPods::All
                } else {
                    LocalPods::Node(config.node.clone())
                },
                stateful: if recheck {
                    Stateful::RecheckOriginal
                } else {
                    Stateful::AcceptEstablished
                },
                allow_from_node: config.allow_from_node,
            },
        );
        tables.push(("pods", compiled.table));
    }
    let tables: Vec<PlannedTable> = tables
        .into_iter()
        .map(|(layer, table)| {
            let digest = hex(ir::fnv1a(format!("{table:?}").as_bytes()));
            PlannedTable {
                layer,
                table,
                digest,
            }
        })
        .collect();
    let all: String = tables
        .iter()
        .map(|t| t.digest.as_str())
        .collect::<Vec<_>>()
        .join(",");
    Plan {
        digest: hex(ir::fnv1a(all.as_bytes())),
        documents: inputs.documents,
        tables,
    }
}

/// Loads the inputs named by the configuration.
pub fn load(config: &AgentConfig) -> Result<Inputs, AgentError> {
    let paths: Vec<String> = config
        .resources
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let sources = read_sources(&paths).map_err(AgentError::Inputs)?;
    let (docs, mut errors) = rampart_firewall::load::parse(&sources);
    match rampart_firewall::decode_inputs(&docs) {
        Ok(inputs) if errors.is_empty() => Ok(inputs),
        Ok(_) => Err(AgentError::Inputs(errors)),
        Err(e) => {
            errors.extend(e);
            Err(AgentError::Inputs(errors))
        }
    }
}

/// A fingerprint of the input files (names, sizes, modification times), to notice
/// changes without reading them.
pub fn inputs_fingerprint(config: &AgentConfig) -> u64 {
    fn walk(path: &Path, out: &mut Vec<String>, depth: usize) {
        let Ok(meta) = std::fs::metadata(path) else {
            out.push(format!("{}: missing", path.display()));
            return;
        };
        if meta.is_dir() {
            if depth > 16 {
                return;
            }
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
                .unwrap_or_default();
            entries.sort();
            for e in entries {
                walk(&e, out, depth + 1);
            }
        } else {
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            out.push(format!("{} {} {mtime}", path.display(), meta.len()));
        }
    }
    let mut lines = Vec::new();
    for p in &config.resources {
        walk(p, &mut lines, 0);
    }
    ir::fnv1a(lines.join("\n").as_bytes())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What the agent remembers between runs (in `stateDir/state.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// Applies so far.
    pub generation: u64,
    /// Unix time of the last successful apply.
    pub applied_at: u64,
    /// Digest of the inputs last applied.
    pub inputs_digest: Option<String>,
    /// Inputs digest whose try was reverted: not applied again until inputs change.
    pub rejected: Option<String>,
    /// The last error, if the last attempt failed.
    pub last_error: Option<String>,
}

impl State {
    fn to_json(&self) -> Value {
        json!({
            "generation": self.generation,
            "appliedAt": self.applied_at,
            "inputsDigest": self.inputs_digest,
            "rejected": self.rejected,
            "lastError": self.last_error,
        })
    }

    fn from_json(v: &Value) -> State {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        State {
            generation: v.get("generation").and_then(Value::as_u64).unwrap_or(0),
            applied_at: v.get("appliedAt").and_then(Value::as_u64).unwrap_or(0),
            inputs_digest: s("inputsDigest"),
            rejected: s("rejected"),
            last_error: s("lastError"),
        }
    }
}

/// A pending try (in `stateDir/try.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct PendingTry {
    /// Unix seconds at which it reverts.
    pub deadline: u64,
    /// Inputs digest applied by the try.
    pub inputs_digest: String,
    /// Per table: the kernel's listing before the try (`None`: there was no table).
    pub previous: BTreeMap<String, Option<Value>>,
}

/// What one reconcile did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Tables replaced whole.
    pub replaced: Vec<String>,
    /// Tables whose set elements only were updated.
    pub updated_sets: Vec<String>,
    /// Tables already in force.
    pub unchanged: Vec<String>,
    /// Conntrack entries deleted (revoked connections).
    pub flushed: usize,
    /// Duration of the nft transaction.
    pub nft_time: Option<Duration>,
}

/// The agent, bound to a configuration.
#[derive(Debug)]
pub struct Agent {
    /// Its configuration.
    pub config: AgentConfig,
}

impl Agent {
    /// An agent for `config`.
    pub fn new(config: AgentConfig) -> Self {
        Agent { config }
    }

    fn state_err(&self, message: impl std::fmt::Display) -> AgentError {
        AgentError::State {
            path: self.config.state_dir.clone(),
            message: message.to_string(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.config.state_dir.join(name)
    }

    fn write_atomic(&self, name: &str, value: &Value) -> Result<(), AgentError> {
        std::fs::create_dir_all(&self.config.state_dir).map_err(|e| self.state_err(e))?;
        let tmp = self.path(&format!(".{name}.tmp"));
        let mut f = std::fs::File::create(&tmp).map_err(|e| self.state_err(e))?;
        f.write_all(value.to_string().as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| self.state_err(e))?;
        std::fs::rename(&tmp, self.path(name)).map_err(|e| self.state_err(e))
    }

    fn read_json(&self, name: &str) -> Option<Value> {
        let text = std::fs::read_to_string(self.path(name)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The remembered state.
    pub fn state(&self) -> State {
        self.read_json("state.json")
            .map(|v| State::from_json(&v))
            .unwrap_or_default()
    }

    fn save_state(&self, state: &State) -> Result<(), AgentError> {
        self.write_atomic("state.json", &state.to_json())
    }

    /// Records an error in the state (best effort).
    pub fn record_error(&self, message: &str) {
        let mut state = self.state();
        state.last_error = Some(message.to_owned());
        let _ = self.save_state(&state);
    }

    /// The pending try, if any.
    pub fn pending_try(&self) -> Option<PendingTry> {
        let v = self.read_json("try.json")?;
        let previous = v
            .get("previous")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), (!v.is_null()).then(|| v.clone())))
                    .collect()
            })
            .unwrap_or_default();
        Some(PendingTry {
            deadline: v.get("deadline").and_then(Value::as_u64).unwrap_or(0),
            inputs_digest: v
                .get("inputsDigest")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            previous,
        })
    }

    /// The digests of the tables in the kernel (`None`: no table, or not stamped).
    pub fn kernel_digests(
        &self,
        plan: &Plan,
    ) -> Result<BTreeMap<String, Option<String>>, AgentError> {
        let mut out = BTreeMap::new();
        for t in &plan.tables {
            let listing = nft::list_table(&self.config.netns, &t.table.name)?;
            let digest = listing
                .as_ref()
                .and_then(rampart_nft::listing::parse)
                .and_then(|l| l.stamp)
                .and_then(|s| rampart_nft::stamp_digest(&s).map(str::to_owned));
            out.insert(t.table.name.clone(), digest);
        }
        Ok(out)
    }

    /// Brings the kernel to `plan`. Returns what was done.
    pub fn reconcile(&self, plan: &Plan) -> Result<Report, AgentError> {
        let mut state = self.state();
        let kernel = self.kernel_digests(plan)?;
        let generation = state.generation + 1;
        let mut report = Report::default();
        let mut cmds: Vec<Value> = vec![json!({"metainfo": {"json_schema_version": 1}})];
        let mut batches: Vec<(String, Value)> = Vec::new();
        for t in &plan.tables {
            let name = &t.table.name;
            let in_kernel = kernel.get(name).cloned().flatten();
            if in_kernel.as_deref() == Some(t.digest.as_str()) {
                report.unchanged.push(name.clone());
                continue;
            }
            let stamp = t.stamp(generation);
            let full = rampart_nft::replace_batch(&t.table, &stamp);
            // Sets-only change against what we applied last, if that is what is in force.
            let previous = self.read_json(&format!("{name}.json"));
            let previous_digest = previous
                .as_ref()
                .and_then(|p| p.get("digest"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            let incremental = match (&previous, &in_kernel) {
                (Some(p), Some(k)) if previous_digest.as_deref() == Some(k.as_str()) => p
                    .get("batch")
                    .and_then(|b| rampart_nft::update_batch(b, &t.table, &stamp)),
                _ => None,
            };
            let batch = match incremental {
                Some(b) => {
                    report.updated_sets.push(name.clone());
                    b
                }
                None => {
                    report.replaced.push(name.clone());
                    full.clone()
                }
            };
            cmds.extend(
                batch
                    .get("nftables")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|c| c.get("metainfo").is_none())
                    .cloned(),
            );
            batches.push((name.clone(), json!({"digest": t.digest, "batch": full})));
        }
        if batches.is_empty() {
            return Ok(report);
        }
        let applied = match nft::run_batch(&self.config.netns, &json!({ "nftables": cmds })) {
            Ok(a) => a,
            Err(e) => {
                state.last_error = Some(e.to_string());
                let _ = self.save_state(&state);
                return Err(e.into());
            }
        };
        report.nft_time = Some(applied.elapsed);
        for (name, record) in &batches {
            self.write_atomic(&format!("{name}.json"), record)?;
        }
        state.generation = generation;
        state.applied_at = now();
        state.inputs_digest = Some(plan.digest.clone());
        state.last_error = None;
        // What is in force now was decided on purpose: no rejection stands.
        state.rejected = None;
        self.save_state(&state)?;
        if self.config.revoked == Revoked::Flush {
            let tables: Vec<&Table> = plan.tables.iter().map(|t| &t.table).collect();
            report.flushed = conntrack::flush_revoked(&self.config.netns, &tables)?;
        }
        Ok(report)
    }

    /// Applies `plan` as a try that reverts at `now + seconds` unless confirmed.
    pub fn apply_try(&self, plan: &Plan, seconds: u64) -> Result<(Report, u64), AgentError> {
        if let Some(t) = self.pending_try() {
            return Err(AgentError::TryPending {
                deadline: t.deadline,
            });
        }
        let mut previous = serde_json::Map::new();
        for t in &plan.tables {
            let listing = nft::list_table(&self.config.netns, &t.table.name)?;
            previous.insert(t.table.name.clone(), listing.unwrap_or(Value::Null));
        }
        let deadline = now() + seconds;
        self.write_atomic(
            "try.json",
            &json!({"deadline": deadline, "inputsDigest": plan.digest, "previous": previous}),
        )?;
        match self.reconcile(plan) {
            Ok(report) => Ok((report, deadline)),
            Err(e) => {
                let _ = std::fs::remove_file(self.path("try.json"));
                Err(e)
            }
        }
    }

    /// Keeps what the pending try applied.
    pub fn confirm(&self) -> Result<(), AgentError> {
        let from = self.path("try.json");
        let to = self.path("try.confirmed");
        std::fs::rename(&from, &to).map_err(|_| AgentError::NoTry)?;
        let _ = std::fs::remove_file(&to);
        Ok(())
    }

    /// Reverts the pending try if its deadline has passed (or `force`). Returns true if
    /// it reverted.
    pub fn expire_try(&self, force: bool) -> Result<bool, AgentError> {
        let Some(pending) = self.pending_try() else {
            return Ok(false);
        };
        if !force && now() < pending.deadline {
            return Ok(false);
        }
        // Whoever renames the file first decides: confirm or revert.
        let claimed = self.path("try.reverting");
        if std::fs::rename(self.path("try.json"), &claimed).is_err() {
            return Ok(false);
        }
        let mut cmds: Vec<Value> = vec![json!({"metainfo": {"json_schema_version": 1}})];
        for (name, listing) in &pending.previous {
            let batch = rampart_nft::restore_batch(name, listing.as_ref());
            cmds.extend(
                batch
                    .get("nftables")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|c| c.get("metainfo").is_none())
                    .cloned(),
            );
        }
        let result = nft::run_batch(&self.config.netns, &json!({ "nftables": cmds }));
        let mut state = self.state();
        match result {
            Ok(_) => {
                state.rejected = Some(pending.inputs_digest.clone());
                state.last_error = Some(format!(
                    "a try of inputs {} was not confirmed and was reverted",
                    pending.inputs_digest
                ));
                // What we applied last is no longer in force.
                for name in pending.previous.keys() {
                    let _ = std::fs::remove_file(self.path(&format!("{name}.json")));
                }
                self.save_state(&state)?;
                let _ = std::fs::remove_file(&claimed);
                Ok(true)
            }
            Err(e) => {
                // Keep the try so that the revert is attempted again.
                let _ = std::fs::rename(&claimed, self.path("try.json"));
                Err(e.into())
            }
        }
    }
}

/// Removes the agent's tables (for `rampart agent` clean-up and tests).
pub fn remove_tables(config: &AgentConfig) -> Result<(), AgentError> {
    for layer in LAYERS {
        nft::delete_table(&config.netns, &config.table(layer))?;
    }
    Ok(())
}
