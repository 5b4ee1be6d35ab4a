//! `rampart`: one binary with a role per layer. This file only parses the command line
//! and dispatches; each role lives in its own module and crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: per-thread free lists suit the proxy's many short-lived buffers better than
/// glibc malloc (measured in docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod agent;
mod check;
mod edge;
mod exit;
mod explain;
mod gate;
mod lab;
mod policy;

/// Rampart: defense-in-depth network security for Kubernetes clusters.
#[derive(Debug, Parser)]
#[command(name = "rampart", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load and validate documents of every kind Rampart knows, and report every error.
    Check(check::Args),
    /// Explain one flow across every layer: segmentation (NetworkPolicies and the admin
    /// tiers), perimeter (security groups), host firewall; which layer and which rule let
    /// it through or stop it.
    Explain(explain::Args),
    /// Analyse NetworkPolicies and AdminNetworkPolicies offline: reachability matrices,
    /// explanations of single flows, and lint findings.
    #[command(subcommand)]
    Policy(policy::Command),
    /// Run the edge gateway: TLS termination, HTTP routing, TCP/SNI passthrough, load
    /// balancing, hot reload.
    Edge(edge::EdgeArgs),
    /// Start the edge gateway on a built-in default config in front of a demo service.
    Up(edge::UpArgs),
    /// The access gateway for the Kubernetes API: OIDC, MFA, RBAC, impersonation.
    Gate(gate::Args),
    /// A real datapath of network namespaces on this machine that enforces the policies
    /// as the node agent does, probed with real connections (root).
    #[command(subcommand)]
    Lab(lab::Command),
    /// The node agent: enforces security groups, the host firewall and NetworkPolicies
    /// with nftables (root). `status`, `diff`, `apply [--try SECONDS]`, `confirm`.
    Agent(agent::AgentArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => check::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Policy(command) => policy::run(command),
        Command::Edge(args) => edge::run_edge(args),
        Command::Up(args) => edge::run_up(args),
        Command::Gate(args) => gate::run(args),
        Command::Lab(command) => lab::run(command),
        Command::Agent(args) => agent::run(args),
    };
    exit::report(result)
}
