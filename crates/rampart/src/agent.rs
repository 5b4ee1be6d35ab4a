//! `rampart agent` (the node agent) and `rampart policy compile` (its rulesets, offline).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use rampart_policy::ir::{self, LocalPods, Options, Stateful};
use rampart_resources::{Diagnostics, load_cluster};

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

#[derive(Debug, clap::Args)]
pub(crate) struct CompileArgs {
    /// Manifests: files, directories (read recursively) or `-` for standard input.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<String>,
    /// The backend to compile for.
    #[arg(long, value_enum, default_value = "nft")]
    backend: Backend,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    output: CompileFormat,
    /// Enforce for the pods of this node only (`spec.nodeName`); default: every pod.
    #[arg(long)]
    node: Option<String>,
    /// Re-check every packet of established connections in their original direction
    /// (connections are cut when a policy stops allowing them).
    #[arg(long)]
    recheck_established: bool,
}

pub(crate) fn compile(args: CompileArgs) -> Outcome {
    let Backend::Nft = args.backend;
    let input = load_cluster(&args.files).map_err(anyhow::Error::new::<Diagnostics>)?;
    let options = Options {
        local: match &args.node {
            Some(n) => LocalPods::Node(n.clone()),
            None => LocalPods::All,
        },
        stateful: if args.recheck_established {
            Stateful::RecheckOriginal
        } else {
            Stateful::AcceptEstablished
        },
        ..Options::default()
    };
    let compiled = ir::compile(&input.cluster, &input.policies, &options);
    let stamp = format!(
        "rampart pods digest={:016x}",
        ir::fnv1a(format!("{:?}", compiled.table).as_bytes())
    );
    let mut out = std::io::stdout().lock();
    match args.output {
        CompileFormat::Text => {
            out.write_all(rampart_nft::text(&compiled.table, &stamp).as_bytes())?
        }
        CompileFormat::Json => {
            serde_json::to_writer_pretty(
                &mut out,
                &rampart_nft::replace_batch(&compiled.table, &stamp),
            )
            .context("writing JSON")?;
            writeln!(out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
