//! `rampart check`: loads documents of every kind Rampart knows, validates them, and
//! reports every error in them at once (exit status 2) or what was found.

use std::io::Write;
use std::process::ExitCode;

use rampart_resources::{Diagnostics, decode_cluster, parse_sources, read_sources};

use crate::exit::Outcome;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Files, directories (read recursively) or `-` for standard input. Repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<String>,
}

pub(crate) fn run(args: Args) -> Outcome {
    let sources = read_sources(&args.files)?;
    let (docs, mut errors) = parse_sources(&sources);
    let mut edge_gateways = 0;
    for doc in docs.iter().filter(|d| d.kind == rampart_edge::config::KIND) {
        match rampart_edge::config::decode(doc) {
            Ok(_) => edge_gateways += 1,
            Err(e) => errors.extend(e),
        }
    }
    let cluster = decode_cluster(&docs);
    let input = match cluster {
        Ok(input) => Some(input),
        Err(e) => {
            errors.extend(e);
            None
        }
    };
    if !errors.is_empty() {
        return Err(anyhow::Error::new::<Diagnostics>(errors));
    }
    let mut out = std::io::stdout().lock();
    if let Some(input) = input {
        for w in input.warnings.iter() {
            writeln!(std::io::stderr(), "{w}")?;
        }
        let p = &input.policies;
        let others = input
            .skipped
            .iter()
            .filter(|s| s.kind != rampart_edge::config::KIND)
            .count();
        writeln!(
            out,
            "ok: {} documents in {} sources: {} namespaces, {} pods, {} nodes, {} NetworkPolicies, {} AdminNetworkPolicies, {} BaselineAdminNetworkPolicies, {edge_gateways} EdgeGateways, {others} of other kinds",
            docs.len(),
            sources.len(),
            input.cluster.namespaces.len(),
            input.cluster.pods.len(),
            input.cluster.nodes.len(),
            p.network_policies.len(),
            p.admin_policies.len(),
            usize::from(p.baseline.is_some()),
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
