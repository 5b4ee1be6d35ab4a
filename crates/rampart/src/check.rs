//! `rampart check`: loads documents of every kind Rampart knows, validates them, and
//! reports every error in them at once (exit status 2) or what was found.

use std::io::Write;
use std::process::ExitCode;

use rampart_firewall::{sg, talos};
use rampart_resources::{Diagnostics, Document, decode_cluster, read_sources};

use crate::exit::Outcome;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Files, directories (read recursively) or `-` for standard input. Repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<String>,
}

pub(crate) fn run(args: Args) -> Outcome {
    let sources = read_sources(&args.files)?;
    // OpenStack's `show -f json` output is read as security groups and ports.
    let (docs, mut errors) = rampart_firewall::load::parse(&sources);
    let mut edge_gateways = 0;
    for doc in docs.iter().filter(|d| d.kind == rampart_edge::config::KIND) {
        match rampart_edge::config::decode(doc) {
            Ok(_) => edge_gateways += 1,
            Err(e) => errors.extend(e),
        }
    }
    let mut access_gateways = 0;
    for doc in docs.iter().filter(|d| d.kind == rampart_gate::config::KIND) {
        let base = std::path::Path::new(&*doc.location.source)
            .parent()
            .unwrap_or(std::path::Path::new("."));
        match rampart_gate::config::from_documents(std::slice::from_ref(doc), base) {
            Ok(_) => access_gateways += 1,
            Err(e) => errors.extend(e),
        }
    }
    let rbac_objects = match rampart_authz::load(&docs) {
        Ok(loaded) => {
            for w in loaded.warnings.iter() {
                writeln!(std::io::stderr(), "{w}")?;
            }
            loaded.counts.iter().sum::<usize>()
        }
        Err(e) => {
            errors.extend(e);
            0
        }
    };
    let sg_docs: Vec<&Document> = docs.iter().filter(|d| sg::is_kind(d)).collect();
    let host_docs: Vec<&Document> = docs.iter().filter(|d| talos::is_kind(d)).collect();
    let firewall = sg_docs.len() + host_docs.len();
    if let Err(e) = sg::decode(&sg_docs) {
        errors.extend(e);
    }
    if let Err(e) = talos::decode(&host_docs) {
        errors.extend(e);
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
            .filter(|s| {
                s.kind != rampart_edge::config::KIND && s.kind != rampart_gate::config::KIND
            })
            .count()
            .saturating_sub(firewall + rbac_objects);
        writeln!(
            out,
            "ok: {} documents in {} sources: {} namespaces, {} pods, {} nodes, {} NetworkPolicies, {} AdminNetworkPolicies, {} BaselineAdminNetworkPolicies, {edge_gateways} EdgeGateways, {access_gateways} AccessGateways, {rbac_objects} RBAC objects, {firewall} security-group and host-firewall documents, {others} of other kinds",
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
