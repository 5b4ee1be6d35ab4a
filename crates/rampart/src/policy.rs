//! `rampart policy`: offline analysis of NetworkPolicies (and the admin tiers) over a
//! cluster's workloads, read from manifests.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use rampart_model::Probe;
use rampart_policy::lint::{self, Severity};
use rampart_policy::{Endpoint, Evaluator, Index, matrix};
use rampart_resources::{ClusterInput, Diagnostics, load_cluster};

use crate::exit::Outcome;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Reachability of every pod that has an IP to every such pod, per port and protocol.
    Matrix(MatrixArgs),
    /// Whether one flow is allowed, and which tier, policy, rule, peer and port decide it.
    Explain(ExplainArgs),
    /// Findings with stable IDs: namespaces without default deny, policies that select
    /// nothing, rules that never match, allows from anywhere, shadowed policies.
    Lint(LintArgs),
    /// Print a synthetic cluster (namespaces, pods, policies) as manifests, for
    /// benchmarks and load tests. The same parameters and seed give the same output.
    Generate(GenerateArgs),
    /// The kernel ruleset the node agent would apply for these inputs, without applying
    /// it (no privilege needed).
    Compile(crate::agent::CompileArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct GenerateArgs {
    /// Number of namespaces.
    #[arg(long, default_value_t = 100)]
    namespaces: usize,
    /// Number of pods, spread evenly over the namespaces.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Number of NetworkPolicies, spread evenly over the namespaces.
    #[arg(long, default_value_t = 2_000)]
    policies: usize,
    /// Number of AdminNetworkPolicies (a BaselineAdminNetworkPolicy comes with any).
    #[arg(long, default_value_t = 5)]
    admin_policies: usize,
    /// Seed of the pseudo-random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output format: a YAML stream of documents, or one JSON `kind: List`.
    #[arg(short = 'o', long = "output", value_enum, default_value = "yaml")]
    output: GenerateFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum GenerateFormat {
    Yaml,
    Json,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Inputs {
    /// Manifests: files, directories (read recursively) or `-` for standard input.
    /// Repeatable. YAML (multi-document) or JSON, single objects or `kind: List`.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<String>,
    /// List the documents that were skipped because of their kind.
    #[arg(short, long)]
    verbose: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum MatrixFormat {
    Json,
    Table,
}

#[derive(Debug, clap::Args)]
pub(crate) struct MatrixArgs {
    #[command(flatten)]
    inputs: Inputs,
    /// A probe, as `80/TCP`, `53/UDP` or `80` (TCP). Repeatable. Default: every
    /// (port, protocol) that some pod declares.
    #[arg(long = "port", value_parser = parse_probe)]
    ports: Vec<Probe>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    output: MatrixFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExplainFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ExplainArgs {
    #[command(flatten)]
    inputs: Inputs,
    /// Source: `namespace/pod` or an IP address.
    #[arg(long)]
    from: String,
    /// Destination: `namespace/pod` or an IP address.
    #[arg(long)]
    to: String,
    /// Destination port and protocol, as `80/TCP`.
    #[arg(long = "port", value_parser = parse_probe)]
    port: Probe,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    output: ExplainFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
enum FailOn {
    Info,
    Warning,
    Error,
    Never,
}

#[derive(Debug, clap::Args)]
pub(crate) struct LintArgs {
    #[command(flatten)]
    inputs: Inputs,
    /// Exit with status 1 when a finding of this severity or above is reported.
    #[arg(long, value_enum, default_value = "error")]
    fail_on: FailOn,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    output: ExplainFormat,
}

fn parse_probe(s: &str) -> Result<Probe, String> {
    s.parse()
}

pub(crate) fn run(command: Command) -> Outcome {
    match command {
        Command::Matrix(args) => matrix(args),
        Command::Explain(args) => explain(args),
        Command::Lint(args) => lint(args),
        Command::Generate(args) => generate(args),
        Command::Compile(args) => crate::agent::compile(args),
    }
}

/// Loads the inputs; prints warnings (and skipped documents with `--verbose`).
fn load(inputs: &Inputs) -> anyhow::Result<ClusterInput> {
    let input = load_cluster(&inputs.files).map_err(anyhow::Error::new::<Diagnostics>)?;
    let mut err = std::io::stderr().lock();
    for w in input.warnings.iter() {
        writeln!(err, "{w}")?;
    }
    if inputs.verbose {
        for s in &input.skipped {
            let name = s.name.as_deref().unwrap_or("(no name)");
            writeln!(
                err,
                "skipped: {}: {} {} {name}",
                s.location, s.api_version, s.kind
            )?;
        }
    }
    Ok(input)
}

fn matrix(args: MatrixArgs) -> Outcome {
    let input = load(&args.inputs)?;
    let index = Index::build(&input.cluster, &input.policies);
    let probes = if args.ports.is_empty() {
        matrix::declared_probes(&input.cluster)
    } else {
        args.ports
    };
    let matrices = matrix::compute(&index, &probes);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.output {
        MatrixFormat::Json => matrix::write_json(&mut out, &index, &matrices)?,
        MatrixFormat::Table => matrix::write_table(&mut out, &index, &matrices)?,
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn explain(args: ExplainArgs) -> Outcome {
    let input = load(&args.inputs)?;
    let cluster = &input.cluster;
    let endpoint = |text: &str, flag: &str| -> anyhow::Result<Endpoint<'_>> {
        if let Some((ns, name)) = text.split_once('/')
            && let Some(pod) = cluster.pod(ns, name)
        {
            return Ok(Endpoint::pod(pod));
        }
        let Ok(ip) = text.parse() else {
            bail!("--{flag} {text:?}: no such pod, and not an IP address");
        };
        Ok(match cluster.pods.iter().find(|p| p.ips.contains(&ip)) {
            Some(pod) => Endpoint::Pod { pod, ip: Some(ip) },
            None => Endpoint::Address(ip),
        })
    };
    let src = endpoint(&args.from, "from")?;
    let dst = endpoint(&args.to, "to")?;
    let explanation = Evaluator::new(cluster, &input.policies).explain(&src, &dst, args.port);
    let mut out = std::io::stdout().lock();
    match args.output {
        ExplainFormat::Text => write!(out, "{explanation}")?,
        ExplainFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &explanation).context("writing JSON")?;
            writeln!(out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn lint(args: LintArgs) -> Outcome {
    let input = load(&args.inputs)?;
    let findings = lint::lint(&input.cluster, &input.policies);
    let location = |object: &str| input.origins.get(object).map(ToString::to_string);
    let counts = lint::summary(&findings);
    let count = |s: Severity| counts.get(&s).copied().unwrap_or(0);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.output {
        ExplainFormat::Text => {
            for f in &findings {
                match location(&f.object) {
                    Some(at) => writeln!(out, "{f} ({at})")?,
                    None => writeln!(out, "{f}")?,
                }
            }
            writeln!(
                out,
                "{} findings: {} errors, {} warnings, {} info",
                findings.len(),
                count(Severity::Error),
                count(Severity::Warning),
                count(Severity::Info)
            )?;
        }
        ExplainFormat::Json => {
            let list: Vec<serde_json::Value> = findings
                .iter()
                .map(|f| {
                    let mut v = serde_json::to_value(f).unwrap_or_default();
                    if let (Some(obj), Some(at)) = (v.as_object_mut(), location(&f.object)) {
                        obj.insert("location".to_owned(), serde_json::Value::String(at));
                    }
                    v
                })
                .collect();
            let doc = serde_json::json!({
                "findings": list,
                "summary": {
                    "error": count(Severity::Error),
                    "warning": count(Severity::Warning),
                    "info": count(Severity::Info),
                },
            });
            serde_json::to_writer_pretty(&mut out, &doc)?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    let threshold = match args.fail_on {
        FailOn::Info => Some(Severity::Info),
        FailOn::Warning => Some(Severity::Warning),
        FailOn::Error => Some(Severity::Error),
        FailOn::Never => None,
    };
    let failed = threshold.is_some_and(|t| findings.iter().any(|f| f.severity >= t));
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn generate(args: GenerateArgs) -> Outcome {
    if args.namespaces == 0 {
        bail!("--namespaces must be at least 1");
    }
    let params = rampart_policy::synth::Params {
        namespaces: args.namespaces,
        pods: args.pods,
        policies: args.policies,
        admin_policies: args.admin_policies,
        seed: args.seed,
    };
    let manifests = rampart_policy::synth::manifests(&params);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.output {
        GenerateFormat::Json => {
            let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": manifests});
            serde_json::to_writer(&mut out, &list)?;
            writeln!(out)?;
        }
        GenerateFormat::Yaml => {
            for m in &manifests {
                writeln!(out, "---")?;
                out.write_all(
                    serde_yaml_ng::to_string(m)
                        .context("writing YAML")?
                        .as_bytes(),
                )?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
