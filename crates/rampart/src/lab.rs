//! `rampart lab`: a real datapath of network namespaces that enforces the policies as
//! the node agent does, and probes it.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use rampart_lab::{Lab, LabOptions, cleanup_on_signals, topology, unique_prefix, write_json};
use rampart_model::Probe;
use rampart_policy::ir::Stateful;
use rampart_policy::matrix;
use rampart_resources::{Diagnostics, load_cluster};

use crate::exit::Outcome;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Build the lab, probe every ordered pair of pods, print the observed matrix, and
    /// remove the lab.
    Probe(ProbeArgs),
    /// Build the lab and keep it running (listeners included) until interrupted or
    /// `rampart lab down`.
    Up(UpArgs),
    /// Remove a lab that `up` (or an interrupted run) left behind.
    Down(DownArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Json,
    Table,
}

#[derive(Debug, clap::Args)]
pub(crate) struct LabInputs {
    /// Manifests: Namespaces, Pods (with their addresses), Nodes and policies. Files,
    /// directories or `-`. Repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<String>,
    /// A probe, as `80/TCP`, `53/UDP`, `80/SCTP`. Repeatable. Default: every (port,
    /// protocol) some pod declares.
    #[arg(long = "port", value_parser = parse_probe)]
    ports: Vec<Probe>,
    /// Prefix of the lab's network namespaces (default: unique to this run).
    #[arg(long)]
    name: Option<String>,
    /// Re-check established connections in their original direction on every packet.
    #[arg(long)]
    recheck_established: bool,
    /// Accept every connection from the node (and host-network pods) to pods, as the
    /// agent does by default. Without it the node is judged like any other address, as
    /// `rampart policy matrix` does.
    #[arg(long)]
    allow_from_node: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ProbeArgs {
    #[command(flatten)]
    inputs: LabInputs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    output: Format,
    /// How long one probe waits, in milliseconds; a denied flow takes this long.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..=30000))]
    timeout_ms: u64,
    /// Probes in flight at once.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=512))]
    parallel: u64,
}

#[derive(Debug, clap::Args)]
pub(crate) struct UpArgs {
    #[command(flatten)]
    inputs: LabInputs,
}

#[derive(Debug, clap::Args)]
pub(crate) struct DownArgs {
    /// The lab's prefix (as given to `up --name`).
    #[arg(long)]
    name: String,
}

fn parse_probe(s: &str) -> Result<Probe, String> {
    s.parse()
}

pub(crate) fn run(command: Command) -> Outcome {
    match command {
        Command::Probe(args) => probe(args),
        Command::Up(args) => up(args),
        Command::Down(args) => down(args),
    }
}

struct Prepared {
    input: rampart_resources::ClusterInput,
    probes: Vec<Probe>,
    options: LabOptions,
}

fn prepare(inputs: &LabInputs) -> anyhow::Result<Prepared> {
    let input = load_cluster(&inputs.files).map_err(anyhow::Error::new::<Diagnostics>)?;
    let mut err = std::io::stderr().lock();
    for w in input.warnings.iter() {
        writeln!(err, "{w}")?;
    }
    let probes = if inputs.ports.is_empty() {
        matrix::declared_probes(&input.cluster)
    } else {
        inputs.ports.clone()
    };
    let options = LabOptions {
        prefix: inputs.name.clone().unwrap_or_else(unique_prefix),
        stateful: if inputs.recheck_established {
            Stateful::RecheckOriginal
        } else {
            Stateful::AcceptEstablished
        },
        allow_from_node: inputs.allow_from_node,
    };
    Ok(Prepared {
        input,
        probes,
        options,
    })
}

fn start(prepared: &Prepared) -> anyhow::Result<Lab> {
    let cleanup = cleanup_on_signals()?;
    // Namespaces this run may make; the signal thread removes those that exist.
    let prefix = &prepared.options.prefix;
    if let Ok(mut list) = cleanup.lock() {
        list.push(format!("{prefix}-node"));
        list.push(
            rampart_lab::state_dir(prefix)
                .to_string_lossy()
                .into_owned(),
        );
        let n = prepared.input.cluster.pods.len();
        list.extend((0..n).map(|i| format!("{prefix}-e{i}")));
    }
    let lab = Lab::up(
        &prepared.input.cluster,
        &prepared.input.policies,
        &prepared.probes,
        &prepared.options,
    )?;
    Ok(lab)
}

fn probe(args: ProbeArgs) -> Outcome {
    let prepared = prepare(&args.inputs)?;
    let lab = start(&prepared)?;
    let observed = lab.probe(
        &prepared.probes,
        Duration::from_millis(args.timeout_ms),
        // Bounded by the argument's range.
        args.parallel as usize,
    )?;
    lab.down();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.output {
        Format::Json => write_json(&mut out, &observed)?,
        Format::Table => rampart_lab::write_table(&mut out, &observed)?,
    }
    out.flush()?;
    if observed.anomalies.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let mut err = std::io::stderr().lock();
    for a in &observed.anomalies {
        writeln!(err, "anomaly: {a}")?;
    }
    writeln!(
        err,
        "error: {} probes neither connected nor timed out",
        observed.anomalies.len()
    )?;
    Ok(ExitCode::FAILURE)
}

fn pid_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new("/run/rampart-lab").join(format!("{name}.pid"))
}

fn up(args: UpArgs) -> Outcome {
    let prepared = prepare(&args.inputs)?;
    let lab = start(&prepared)?;
    let name = &prepared.options.prefix;
    std::fs::create_dir_all("/run/rampart-lab").context("create /run/rampart-lab")?;
    std::fs::write(pid_file(name), std::process::id().to_string()).context("write pid file")?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "lab {name} is up; node namespace {}",
        lab.topology().node
    )?;
    for e in &lab.topology().endpoints {
        let ips: Vec<String> = e.ips.iter().map(ToString::to_string).collect();
        writeln!(
            out,
            "  {:<40} {:<24} ip netns exec {} ...",
            e.name,
            ips.join(","),
            e.netns
        )?;
    }
    writeln!(
        out,
        "listening on: {}",
        prepared
            .probes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    writeln!(out, "stop with Ctrl-C or `rampart lab down --name {name}`")?;
    out.flush()?;
    drop(out);
    // The signal thread removes the lab and exits; until then, serve.
    loop {
        std::thread::park();
    }
}

fn down(args: DownArgs) -> Outcome {
    let pid_path = pid_file(&args.name);
    if let Ok(text) = std::fs::read_to_string(&pid_path)
        && let Ok(pid) = text.trim().parse::<i32>()
    {
        // The `up` process removes its lab when terminated.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = std::fs::remove_file(&pid_path);
    // Whatever the `up` process did not remove (or a killed run left behind).
    let leftovers = topology::remove_prefix(&args.name)?;
    let mut out = std::io::stdout().lock();
    if leftovers.is_empty() {
        writeln!(out, "lab {} is down", args.name)?;
    } else {
        writeln!(
            out,
            "lab {} is down ({} leftover network namespaces removed)",
            args.name,
            leftovers.len()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
