//! The lab: a real datapath on one machine, to prove that the kernel enforces what the
//! policy engine says.
//!
//! [`Lab::up`] builds a node network namespace with a bridge (bridge netfilter on, so
//! bridged IPv4 and IPv6 traffic meets the `inet` forward hook with conntrack) and one
//! namespace per pod with its pod addresses on a veth in that bridge; host-network pods
//! live in the node namespace on their addresses. It then enforces the policies in the
//! node namespace through the node agent's own code (`rampart-dataplane`'s plan and
//! reconcile: the same compiler, stamps and atomic transaction), and starts
//! listeners on the probed ports in every pod. [`Lab::probe`] tries every ordered pair
//! with real connections (TCP connect, UDP request and echo, SCTP INIT and INIT ACK over
//! raw sockets), in parallel, each bounded by a timeout, and returns the observed
//! matrix, which [`write_json`] prints in exactly the format of `rampart policy matrix
//! -o json`.
//!
//! Every namespace (and so every interface) a lab makes carries its unique prefix and
//! is removed when the [`Lab`] is dropped; [`cleanup_on_signals`] extends that to
//! Ctrl-C and termination; [`topology::remove_prefix`] removes the leftovers of a lab
//! that was killed outright.
//!
//! What it does not do: it never touches the namespace it runs in, and it sends
//! traffic only between addresses inside its own namespaces.

pub mod netns;
pub mod probe;
pub mod sctp;
pub mod serve;
pub mod topology;

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_dataplane::agent::{self, Agent, AgentError};
use rampart_dataplane::{AgentConfig, Netns, NftError, Revoked};
use rampart_firewall::Inputs;
use rampart_model::{Cluster, PolicySet, Probe};
use rampart_policy::ir::Stateful;
use rampart_resources::ClusterInput;

pub use probe::Outcome;
pub use topology::{EndpointSpec, Topology, TopologySpec};

/// Why the lab could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Building the network or the listeners failed.
    #[error("lab setup: {0}")]
    Setup(String),
    /// The rules could not be applied.
    #[error(transparent)]
    Nft(#[from] NftError),
}

/// Lab settings.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Prefix of every namespace the lab makes.
    pub prefix: String,
    /// The stateful preamble of the rules (as the agent's setting).
    pub stateful: Stateful,
    /// Accept connections from the node (and host-network pods) to pods, as the agent
    /// does by default; off (the default here), the node is judged like any other
    /// address, as the analyser does.
    pub allow_from_node: bool,
}

/// A lab cluster that is up: network, rules, listeners.
#[derive(Debug)]
pub struct Lab {
    // Field order matters: listeners close before the namespaces go.
    server: Option<serve::Server>,
    topology: Topology,
    /// The agent's state directory for this lab (removed with it).
    state_dir: std::path::PathBuf,
    allow_from_node: bool,
    /// Pods in matrix order (`namespace/name`), with their endpoint index.
    pods: Vec<String>,
}

/// The observed matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Pods, in row and column order.
    pub pods: Vec<String>,
    /// One grid per probe: `allowed[p][src][dst]`.
    pub allowed: Vec<(Probe, Vec<Vec<bool>>)>,
    /// Probes that neither connected nor timed out (refused, errors), in words.
    pub anomalies: Vec<String>,
}

/// Where a lab keeps the agent's state (removed with the lab).
pub fn state_dir(prefix: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{prefix}-agent-state"))
}

/// A prefix no other lab of this machine uses right now.
pub fn unique_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("rlab{}x{:x}", std::process::id(), nanos % 0xfffff)
}

impl Lab {
    /// Builds the network for the pods of `cluster` that have addresses, applies the
    /// policies, and listens on `probes`.
    pub fn up(
        cluster: &Cluster,
        policies: &PolicySet,
        probes: &[Probe],
        options: &LabOptions,
    ) -> Result<Lab, LabError> {
        let pods: Vec<&rampart_model::Pod> =
            cluster.pods.iter().filter(|p| !p.ips.is_empty()).collect();
        let spec = TopologySpec {
            prefix: options.prefix.clone(),
            node_addrs: cluster
                .nodes
                .iter()
                .flat_map(|n| n.addresses.iter().copied())
                .collect(),
            endpoints: pods
                .iter()
                .map(|p| EndpointSpec {
                    name: format!("{}/{}", p.namespace, p.name),
                    ips: p.ips.clone(),
                    host_network: p.host_network,
                })
                .collect(),
        };
        let topology = Topology::build(&spec)?;
        let state_dir = state_dir(&options.prefix);
        let mut lab = Lab {
            server: None,
            state_dir,
            allow_from_node: options.allow_from_node,
            pods: spec.endpoints.iter().map(|e| e.name.clone()).collect(),
            topology,
        };
        lab.enforce(cluster, policies, options.stateful)?;
        lab.server = Some(serve::Server::start(&lab.topology, probes)?);
        Ok(lab)
    }

    /// Compiles and applies the policies in the node namespace with the agent's own
    /// plan and reconcile (pods of every node enforced, state kept beside the lab).
    pub fn enforce(
        &self,
        cluster: &Cluster,
        policies: &PolicySet,
        stateful: Stateful,
    ) -> Result<(), LabError> {
        let mut config = AgentConfig::new("lab", Vec::new(), self.state_dir.clone());
        config.netns = self.node_netns();
        config.all_pods = true;
        config.allow_from_node = self.allow_from_node;
        config.host = false;
        config.security_groups = false;
        config.revoked = match stateful {
            Stateful::AcceptEstablished => Revoked::Flush,
            Stateful::RecheckOriginal => Revoked::Cut,
        };
        let inputs = Inputs {
            cluster: ClusterInput {
                cluster: cluster.clone(),
                policies: policies.clone(),
                ..ClusterInput::default()
            },
            ..Inputs::default()
        };
        let plan = agent::plan(&config, &inputs);
        Agent::new(config).reconcile(&plan).map_err(|e| match e {
            AgentError::Nft(e) => LabError::Nft(e),
            other => LabError::Setup(other.to_string()),
        })?;
        Ok(())
    }

    /// The node namespace.
    pub fn node_netns(&self) -> Netns {
        Netns::Named(self.topology.node.clone())
    }

    /// The network.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Probes every ordered pair of pods (a pod with itself included) on every probe.
    pub fn probe(
        &self,
        probes: &[Probe],
        timeout: Duration,
        parallel: usize,
    ) -> Result<Observed, LabError> {
        let eps = &self.topology.endpoints;
        // Destinations at their primary address (as the analyser does); sources from
        // their first address of the same family, as the kernel would choose.
        let mut tasks = Vec::new();
        let mut index = Vec::new();
        for probe in probes {
            for src in eps {
                for dst in eps {
                    let family = dst.ips[0].is_ipv4();
                    match src.ips.iter().find(|ip| ip.is_ipv4() == family) {
                        Some(ip) => {
                            index.push(Some(tasks.len()));
                            tasks.push(probe::Task {
                                netns: src.netns.clone(),
                                src: *ip,
                                dst: dst.ips[0],
                                probe: *probe,
                            });
                        }
                        None => index.push(None),
                    }
                }
            }
        }
        let run = probe::run(&tasks, timeout, parallel)?;
        let outcomes: Vec<Outcome> = index
            .into_iter()
            .map(|i| match i {
                Some(i) => run[i].clone(),
                None => Outcome::Error(
                    "the source has no address of the destination's family".to_owned(),
                ),
            })
            .collect();
        let n = eps.len();
        let mut allowed = Vec::new();
        let mut anomalies = Vec::new();
        let mut k = 0;
        for probe in probes {
            let mut grid = vec![vec![false; n]; n];
            for (i, row) in grid.iter_mut().enumerate() {
                for (j, cell) in row.iter_mut().enumerate() {
                    match &outcomes[k] {
                        Outcome::Connected => *cell = true,
                        Outcome::Timeout => {}
                        other => anomalies.push(format!(
                            "{} -> {} on {probe}: {other:?}",
                            self.pods[i], self.pods[j]
                        )),
                    }
                    k += 1;
                }
            }
            allowed.push((*probe, grid));
        }
        Ok(Observed {
            pods: self.pods.clone(),
            allowed,
            anomalies,
        })
    }

    /// Tears everything down now (dropping the lab does the same).
    pub fn down(mut self) {
        self.server = None;
        self.topology.teardown();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.server = None;
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// Writes an observed matrix as `rampart policy matrix -o json` writes an analysed one.
pub fn write_json(out: &mut dyn Write, observed: &Observed) -> io::Result<()> {
    out.write_all(b"{\"probes\":[")?;
    let names: Vec<String> = observed
        .pods
        .iter()
        .map(|p| serde_json::to_string(p).unwrap_or_default())
        .collect();
    for (m, (probe, grid)) in observed.allowed.iter().enumerate() {
        if m > 0 {
            out.write_all(b",")?;
        }
        write!(
            out,
            "{{\"port\":{},\"protocol\":\"{}\",\"allowed\":{{",
            probe.port, probe.protocol
        )?;
        for (i, src) in names.iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            write!(out, "{src}:{{")?;
            for (j, dst) in names.iter().enumerate() {
                if j > 0 {
                    out.write_all(b",")?;
                }
                write!(out, "{dst}:{}", grid[i][j])?;
            }
            out.write_all(b"}")?;
        }
        out.write_all(b"}}")?;
    }
    out.write_all(b"]}\n")
}

/// Namespaces (by name) and directories (absolute paths) to remove if the process is
/// interrupted.
pub type CleanupList = Arc<Mutex<Vec<String>>>;

/// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread (and the threads it starts
/// later) and starts a thread that, on any of them, removes the namespaces in the
/// returned list and exits with 130. Call it first thing in `main`'s lab commands.
pub fn cleanup_on_signals() -> Result<CleanupList, LabError> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    set.thread_block()
        .map_err(|e| LabError::Setup(format!("block signals: {e}")))?;
    let list: CleanupList = Arc::new(Mutex::new(Vec::new()));
    let for_thread = Arc::clone(&list);
    std::thread::Builder::new()
        .name("lab-signals".to_owned())
        .spawn(move || {
            if set.wait().is_ok() {
                let names = for_thread.lock().map(|l| l.clone()).unwrap_or_default();
                let lines: Vec<String> = names
                    .iter()
                    .filter(|n| !n.starts_with('/'))
                    .filter(|n| std::path::Path::new(&netns::path(n)).exists())
                    .map(|n| format!("netns del {n}"))
                    .collect();
                let _ = netns::ip_batch(None, &lines);
                for dir in names.iter().filter(|n| n.starts_with('/')) {
                    let _ = std::fs::remove_dir_all(dir);
                }
                let _ = writeln!(io::stderr(), "interrupted: lab removed");
                std::process::exit(130);
            }
        })
        .map_err(|e| LabError::Setup(format!("signal thread: {e}")))?;
    Ok(list)
}

/// Writes an observed matrix as readable grids: `.` connected, `X` not, rows are sources.
pub fn write_table(out: &mut dyn Write, observed: &Observed) -> io::Result<()> {
    let n = observed.pods.len();
    let width = observed.pods.iter().map(String::len).max().unwrap_or(0);
    for (m, (probe, grid)) in observed.allowed.iter().enumerate() {
        if m > 0 {
            writeln!(out)?;
        }
        let allowed: usize = grid.iter().map(|r| r.iter().filter(|c| **c).count()).sum();
        writeln!(
            out,
            "{probe}: {allowed} of {} pairs connected (rows: from, columns: to; . connected, X not)",
            n * n
        )?;
        write!(out, "{:width$}", "")?;
        for j in 0..n {
            write!(out, " {:>3}", j + 1)?;
        }
        writeln!(out)?;
        for (i, name) in observed.pods.iter().enumerate() {
            write!(out, "{name:width$}")?;
            for cell in &grid[i] {
                write!(out, " {:>3}", if *cell { "." } else { "X" })?;
            }
            writeln!(out, "  {:>3}", i + 1)?;
        }
    }
    Ok(())
}
