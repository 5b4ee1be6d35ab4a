//! `rampart explain`: one flow across every layer.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use rampart_explain::{Layers, endpoint, explain};
use rampart_firewall::load_inputs;
use rampart_model::Probe;
use rampart_resources::Diagnostics;

use crate::exit::Outcome;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Inputs of every layer: namespaces, pods, nodes, NetworkPolicies and admin
    /// policies; SecurityGroup, Port and AddressGroup documents (or OpenStack's JSON);
    /// Talos host-firewall documents. Files, directories or `-`. Repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<String>,
    /// Source: `namespace/pod` or an IP address.
    #[arg(long)]
    from: String,
    /// Destination: `namespace/pod` or an IP address.
    #[arg(long)]
    to: String,
    /// Destination port and protocol, as `443/TCP`.
    #[arg(long = "port", value_parser = |s: &str| s.parse::<Probe>())]
    port: Probe,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    output: Format,
    /// Exit with status 1 when the flow is denied.
    #[arg(long)]
    fail_on_deny: bool,
}

pub(crate) fn run(args: Args) -> Outcome {
    let inputs = load_inputs(&args.files).map_err(anyhow::Error::new::<Diagnostics>)?;
    let cluster = &inputs.cluster.cluster;
    let Some(src) = endpoint(cluster, &args.from) else {
        bail!("--from {:?}: no such pod, and not an IP address", args.from);
    };
    let Some(dst) = endpoint(cluster, &args.to) else {
        bail!("--to {:?}: no such pod, and not an IP address", args.to);
    };
    let layers = Layers {
        cluster,
        policies: &inputs.cluster.policies,
        security_groups: &inputs.security_groups,
        host: inputs.host.as_ref(),
    };
    let e = explain(&layers, &src, &dst, args.port);
    let mut out = std::io::stdout().lock();
    match args.output {
        Format::Text => write!(out, "{e}")?,
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &e).context("writing JSON")?;
            writeln!(out)?;
        }
    }
    Ok(if args.fail_on_deny && !e.allowed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
