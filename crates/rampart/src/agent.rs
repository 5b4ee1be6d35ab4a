//! `rampart agent` (the node agent) and `rampart policy compile` (its rulesets, offline).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rampart_dataplane::agent::{self, Agent, AgentError, LAYERS, Plan};
use rampart_dataplane::{AgentConfig, diff, load_config, nft};
use rampart_firewall::{sg, talos};
use rampart_policy::ir::{self, LocalPods, Options, Stateful};
use rampart_resources::Diagnostics;
use serde_json::json;

use crate::exit::Outcome;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Backend {
    /// nftables (`inet` tables, applied with `nft -j -f -`).
    Nft,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum CompileFormat {
    /// nft syntax, for people.
    Text,
    /// The JSON batch the agent applies.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub(crate) enum Layer {
    /// Security groups (perimeter).
    Sg,
    /// The host firewall.
    Host,
    /// NetworkPolicies and the admin tiers.
    Pods,
}

#[derive(Debug, clap::Args)]
pub(crate) struct CompileArgs {
    /// Manifests: files, directories (read recursively) or `-` for standard input.
    /// Cluster and policy kinds, SecurityGroup/Port/AddressGroup (and OpenStack's
    /// `show -f json` output), NetworkDefaultActionConfig/NetworkRuleConfig.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<String>,
    /// The backend to compile for.
    #[arg(long, value_enum, default_value = "nft")]
    backend: Backend,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    output: CompileFormat,
    /// Enforce for this node only: its pods (`spec.nodeName`) and ports (`spec.node`).
    /// Default: every pod and every port.
    #[arg(long)]
    node: Option<String>,
    /// Layers to print (repeatable). Default: every layer that has something to do.
    #[arg(long = "layer", value_enum)]
    layers: Vec<Layer>,
    /// What happens to connections whose allow is removed (`cut` re-checks
    /// original-direction packets in the rules themselves).
    #[arg(long, value_enum, default_value = "flush")]
    revoked_connections: RevokedArg,
    /// Prefix of the table names.
    #[arg(long, default_value = "rampart")]
    table_prefix: String,
    /// Connections from the node itself to its pods: `allow` them (the agent's default,
    /// kubelet probes) or `judge` them by the policies like any other address.
    #[arg(long, value_enum, default_value = "allow")]
    from_node: FromNode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum FromNode {
    Allow,
    Judge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum RevokedArg {
    Flush,
    Cut,
    Keep,
}

pub(crate) fn compile(args: CompileArgs) -> Outcome {
    let Backend::Nft = args.backend;
    let inputs =
        rampart_firewall::load_inputs(&args.files).map_err(anyhow::Error::new::<Diagnostics>)?;
    let recheck = args.revoked_connections == RevokedArg::Cut;
    let wanted = |l: Layer| args.layers.is_empty() || args.layers.contains(&l);
    let prefix = &args.table_prefix;
    let mut tables = Vec::new();
    if wanted(Layer::Sg) {
        let t = sg::compile(
            &inputs.security_groups,
            &sg::Options {
                table: format!("{prefix}-sg"),
                node: args.node.clone(),
                recheck_established: recheck,
            },
        );
        if !t.chains.is_empty() || !args.layers.is_empty() {
            tables.push(("sg", t));
        }
    }
    if wanted(Layer::Host) {
        let t = talos::compile(
            inputs.host.as_ref(),
            &talos::Options {
                table: format!("{prefix}-host"),
                recheck_established: recheck,
                ..talos::Options::default()
            },
        );
        if !t.chains.is_empty() || !args.layers.is_empty() {
            tables.push(("host", t));
        }
    }
    if wanted(Layer::Pods) {
        let options = Options {
            table: format!("{prefix}-pods"),
            local: match &args.node {
                Some(n) => LocalPods::Node(n.clone()),
                None => LocalPods::All,
            },
            stateful: if recheck {
                Stateful::RecheckOriginal
            } else {
                Stateful::AcceptEstablished
            },
            allow_from_node: args.from_node == FromNode::Allow,
        };
        tables.push((
            "pods",
            ir::compile(&inputs.cluster.cluster, &inputs.cluster.policies, &options).table,
        ));
    }
    let mut out = std::io::stdout().lock();
    let mut batch = Vec::new();
    for (i, (layer, table)) in tables.iter().enumerate() {
        let digest = format!("{:016x}", ir::fnv1a(format!("{table:?}").as_bytes()));
        let stamp = format!("rampart layer={layer} digest={digest}");
        match args.output {
            CompileFormat::Text => {
                if i > 0 {
                    writeln!(out)?;
                }
                out.write_all(rampart_nft::text(table, &stamp).as_bytes())?;
            }
            CompileFormat::Json => {
                let b = rampart_nft::replace_batch(table, &stamp);
                let items = b["nftables"].as_array().cloned().unwrap_or_default();
                batch.extend(items.into_iter().skip(usize::from(i > 0)));
            }
        }
    }
    if args.output == CompileFormat::Json {
        serde_json::to_writer_pretty(&mut out, &json!({ "nftables": batch }))
            .context("writing JSON")?;
        writeln!(out)?;
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------
// The agent.

#[derive(Debug, clap::Args)]
#[command(
    args_conflicts_with_subcommands = false,
    subcommand_negates_reqs = true
)]
pub(crate) struct AgentArgs {
    /// The agent's configuration (an AgentConfig document).
    #[arg(long, global = true, default_value = "/etc/rampart/agent.yaml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<AgentCommand>,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum AgentCommand {
    /// Run: reconcile now, then whenever the inputs change (the default).
    Run,
    /// Reconcile once and exit; with `--try`, revert by itself unless confirmed.
    Apply(ApplyArgs),
    /// Keep what the pending try applied.
    Confirm,
    /// What is applied against what is desired, per layer.
    Status(StatusArgs),
    /// The differences between the tables in force and the desired ones, as nftables
    /// lists them. Exits 1 when they differ.
    Diff,
    /// Remove the agent's tables (the node is then unprotected by Rampart).
    Teardown,
    /// Revert the pending try at its deadline (started by `apply --try`).
    #[command(hide = true)]
    ExpireTry,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ApplyArgs {
    /// Apply as a try: revert to the previous rules after this many seconds unless
    /// `rampart agent confirm` runs first.
    #[arg(long = "try", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86400))]
    try_seconds: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StatusFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    output: StatusFormat,
}

fn config(args: &AgentArgs) -> anyhow::Result<AgentConfig> {
    load_config(&args.config).map_err(anyhow::Error::new::<Diagnostics>)
}

fn log(line: &str) {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let _ = writeln!(std::io::stderr().lock(), "{t} rampart-agent: {line}");
}

fn load_plan(cfg: &AgentConfig) -> Result<Plan, AgentError> {
    let inputs = agent::load(cfg)?;
    Ok(agent::plan(cfg, &inputs))
}

fn describe(report: &agent::Report) -> String {
    let mut parts = Vec::new();
    if !report.replaced.is_empty() {
        parts.push(format!("replaced {}", report.replaced.join(", ")));
    }
    if !report.updated_sets.is_empty() {
        parts.push(format!(
            "updated set elements of {}",
            report.updated_sets.join(", ")
        ));
    }
    if !report.unchanged.is_empty() {
        parts.push(format!("unchanged {}", report.unchanged.join(", ")));
    }
    if let Some(t) = report.nft_time {
        parts.push(format!("nft transaction {} ms", t.as_millis()));
    }
    if report.flushed > 0 {
        parts.push(format!("{} revoked connections flushed", report.flushed));
    }
    parts.join("; ")
}

fn input_error(e: &AgentError) -> String {
    match e {
        AgentError::Inputs(d) => format!("{e}:\n{d}"),
        other => other.to_string(),
    }
}

pub(crate) fn run(args: AgentArgs) -> Outcome {
    let cfg = config(&args)?;
    match args.command.as_ref().unwrap_or(&AgentCommand::Run) {
        AgentCommand::Run => daemon(cfg),
        AgentCommand::Apply(a) => apply(cfg, &args.config, a.try_seconds),
        AgentCommand::Confirm => {
            Agent::new(cfg).confirm()?;
            writeln!(
                std::io::stdout().lock(),
                "confirmed: the tried rules stay in force"
            )?;
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Status(s) => status(cfg, s.output),
        AgentCommand::Diff => diff_cmd(cfg),
        AgentCommand::Teardown => {
            agent::remove_tables(&cfg)?;
            writeln!(
                std::io::stdout().lock(),
                "removed the tables of prefix {}",
                cfg.table_prefix
            )?;
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::ExpireTry => expire(cfg),
    }
}

fn daemon(cfg: AgentConfig) -> Outcome {
    let agent = Agent::new(cfg);
    let cfg = &agent.config;
    log(&format!(
        "node {} in {}, inputs {:?}, revoked connections: {}",
        cfg.node,
        cfg.netns,
        cfg.resources,
        cfg.revoked.as_str()
    ));
    let mut last_fingerprint: Option<u64> = None;
    let mut last_check = std::time::Instant::now();
    let mut quiet_rejected = false;
    loop {
        if let Ok(true) = agent.expire_try(false) {
            log("the pending try was not confirmed: reverted to the previous rules");
        }
        let fingerprint = agent::inputs_fingerprint(cfg);
        // Inputs changed, or time to check the kernel for drift.
        let due = last_fingerprint != Some(fingerprint)
            || last_check.elapsed() >= Duration::from_secs(30);
        if due {
            last_check = std::time::Instant::now();
            last_fingerprint = Some(fingerprint);
            match load_plan(cfg) {
                Err(e) => {
                    let text = input_error(&e);
                    log(&text);
                    agent.record_error(&e.to_string());
                }
                Ok(plan) => {
                    if let Some(t) = agent.pending_try() {
                        log(&format!(
                            "a try is pending until {}; not reconciling",
                            t.deadline
                        ));
                    } else if agent.state().rejected.as_deref() == Some(plan.digest.as_str()) {
                        if !quiet_rejected {
                            log("these inputs were tried and reverted; waiting for them to change");
                            quiet_rejected = true;
                        }
                    } else {
                        quiet_rejected = false;
                        match agent.reconcile(&plan) {
                            Ok(r) if r.replaced.is_empty() && r.updated_sets.is_empty() => {}
                            Ok(r) => log(&describe(&r)),
                            Err(e) => log(&format!("apply failed: {e}")),
                        }
                    }
                }
            }
        }
        std::thread::sleep(
            cfg.poll
                .min(Duration::from_secs(1))
                .max(Duration::from_millis(200)),
        );
    }
}

fn apply(cfg: AgentConfig, config_path: &std::path::Path, try_seconds: Option<u64>) -> Outcome {
    let plan = match load_plan(&cfg) {
        Ok(p) => p,
        Err(AgentError::Inputs(d)) => return Err(anyhow::Error::new(d)),
        Err(e) => return Err(e.into()),
    };
    let agent = Agent::new(cfg);
    let mut out = std::io::stdout().lock();
    match try_seconds {
        None => {
            let report = agent.reconcile(&plan)?;
            writeln!(out, "applied: {}", describe(&report))?;
        }
        Some(seconds) => {
            let (report, deadline) = agent.apply_try(&plan, seconds)?;
            // The revert must not depend on this terminal: a detached process does it.
            let exe = std::env::current_exe().context("locating the rampart binary")?;
            let spawned = {
                use std::os::unix::process::CommandExt;
                std::process::Command::new(exe)
                    .arg("agent")
                    .arg("--config")
                    .arg(config_path)
                    .arg("expire-try")
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .process_group(0)
                    .spawn()
            };
            if let Err(e) = spawned {
                let _ = agent.expire_try(true);
                return Err(anyhow::anyhow!(
                    "cannot start the revert timer ({e}); reverted"
                ));
            }
            writeln!(
                out,
                "applied as a try: {}\nreverts in {seconds} s (at {deadline}) unless `rampart agent confirm --config {}`",
                describe(&report),
                config_path.display()
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn expire(cfg: AgentConfig) -> Outcome {
    let agent = Agent::new(cfg);
    loop {
        let Some(pending) = agent.pending_try() else {
            return Ok(ExitCode::SUCCESS);
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if now >= pending.deadline {
            agent.expire_try(false)?;
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn status(cfg: AgentConfig, format: StatusFormat) -> Outcome {
    let agent = Agent::new(cfg);
    let cfg = &agent.config;
    let planned = load_plan(cfg);
    let state = agent.state();
    let pending = agent.pending_try();
    let mut layers = Vec::new();
    for layer in LAYERS {
        let name = cfg.table(layer);
        let listing = nft::list_table(&cfg.netns, &name)?;
        let summary = listing.as_ref().and_then(rampart_nft::listing::parse);
        let applied = summary
            .as_ref()
            .and_then(|s| s.stamp.as_deref())
            .and_then(rampart_nft::stamp_digest)
            .map(str::to_owned);
        let desired = planned
            .as_ref()
            .ok()
            .and_then(|p| p.tables.iter().find(|t| t.layer == layer))
            .map(|t| t.digest.clone());
        let enabled = match layer {
            "sg" => cfg.security_groups,
            "host" => cfg.host,
            _ => cfg.pods,
        };
        let sync = match (&applied, &desired, listing.is_some()) {
            _ if !enabled => "disabled",
            (Some(a), Some(d), _) if a == d => "in sync",
            (_, None, _) => "unknown (inputs invalid)",
            (_, _, false) => "not applied",
            (None, _, true) => "not Rampart's (no stamp)",
            _ => "differs",
        };
        layers.push(json!({
            "layer": layer,
            "table": name,
            "present": listing.is_some(),
            "appliedDigest": applied,
            "desiredDigest": desired,
            "state": sync,
            "chains": summary.as_ref().map(|s| s.chains),
            "rules": summary.as_ref().map(|s| s.rules),
            "elements": summary.as_ref().map(|s| s.elements),
            "droppedPackets": summary.as_ref().map(|s| s.dropped_packets),
        }));
    }
    let report = json!({
        "node": cfg.node,
        "netns": cfg.netns.to_string(),
        "revokedConnections": cfg.revoked.as_str(),
        "inputs": match &planned {
            Ok(p) => json!({"valid": true, "documents": p.documents, "digest": p.digest}),
            Err(e) => json!({"valid": false, "error": input_error(e)}),
        },
        "layers": layers,
        "generation": state.generation,
        "appliedAt": state.applied_at,
        "lastError": state.last_error,
        "rejectedInputs": state.rejected,
        "pendingTry": pending.as_ref().map(|t| json!({"deadline": t.deadline, "inputsDigest": t.inputs_digest})),
    });
    let mut out = std::io::stdout().lock();
    if format == StatusFormat::Json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "node {} ({}), revoked connections: {}",
        cfg.node,
        cfg.netns,
        cfg.revoked.as_str()
    )?;
    match &planned {
        Ok(p) => writeln!(
            out,
            "inputs: {} documents, digest {}",
            p.documents, p.digest
        )?,
        Err(e) => writeln!(
            out,
            "inputs: INVALID, the rules in force stay: {}",
            input_error(e)
        )?,
    }
    writeln!(
        out,
        "{:<6} {:<24} {:<26} {:>7} {:>7} {:>9} {:>9}",
        "LAYER", "TABLE", "STATE", "CHAINS", "RULES", "ELEMENTS", "DROPPED"
    )?;
    for l in &layers {
        let n = |k: &str| l[k].as_u64().map_or("-".to_owned(), |v| v.to_string());
        writeln!(
            out,
            "{:<6} {:<24} {:<26} {:>7} {:>7} {:>9} {:>9}",
            l["layer"].as_str().unwrap_or_default(),
            l["table"].as_str().unwrap_or_default(),
            l["state"].as_str().unwrap_or_default(),
            n("chains"),
            n("rules"),
            n("elements"),
            n("droppedPackets")
        )?;
    }
    writeln!(
        out,
        "generation {} applied at {}",
        state.generation, state.applied_at
    )?;
    if let Some(t) = &pending {
        writeln!(
            out,
            "pending try: reverts at {} unless `rampart agent confirm`",
            t.deadline
        )?;
    }
    if let Some(r) = &state.rejected {
        writeln!(
            out,
            "inputs {r} were tried and reverted; they are not applied again until they change"
        )?;
    }
    if let Some(e) = &state.last_error {
        writeln!(out, "last error: {e}")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn diff_cmd(cfg: AgentConfig) -> Outcome {
    let plan = match load_plan(&cfg) {
        Ok(p) => p,
        Err(AgentError::Inputs(d)) => return Err(anyhow::Error::new(d)),
        Err(e) => return Err(e.into()),
    };
    let state = Agent::new(cfg.clone()).state();
    let mut out = std::io::stdout().lock();
    let mut differs = false;
    for t in &plan.tables {
        let name = &t.table.name;
        let applied = diff::applied(&cfg.netns, name)?.unwrap_or_default();
        // The stamp's generation differs by design; compare with the one in force.
        let generation = applied
            .lines()
            .find_map(|l| l.split("generation=").nth(1))
            .and_then(|g| g.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|g| g.parse().ok())
            .unwrap_or(state.generation);
        let desired = diff::desired(
            name,
            &rampart_nft::replace_batch(&t.table, &t.stamp(generation)),
        )?;
        let lines = diff::lines(&applied, &desired);
        if lines.iter().all(|l| matches!(l, diff::Line::Same(_))) {
            writeln!(out, "= {name}: in force as desired")?;
            continue;
        }
        differs = true;
        writeln!(out, "--- {name} (in force)\n+++ {name} (desired)")?;
        for l in lines {
            match l {
                diff::Line::Same(_) => {}
                diff::Line::Removed(s) => writeln!(out, "-{s}")?,
                diff::Line::Added(s) => writeln!(out, "+{s}")?,
            }
        }
    }
    Ok(if differs {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
