//! The lab's network: a node namespace holding a bridge, and one namespace per endpoint
//! (pod) with a veth on that bridge. Endpoints "on the host network" live in the node
//! namespace itself, on the bridge's addresses.
//!
//! Nothing is created outside the lab's own namespaces: veth pairs are created directly
//! in their target namespaces, and all addresses exist only there. Deleting the
//! namespaces removes every interface with them.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::LabError;
use crate::netns::{NsHandle, ip_batch, run_in, sysctl};

/// One endpoint to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    /// Its name in reports (`namespace/pod`).
    pub name: String,
    /// Its addresses, primary first.
    pub ips: Vec<IpAddr>,
    /// True if it lives in the node namespace (host network).
    pub host_network: bool,
}

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologySpec {
    /// Unique prefix of every namespace made (`<prefix>-node`, `<prefix>-e<i>`).
    pub prefix: String,
    /// Addresses of the node itself (besides those of host-network endpoints).
    pub node_addrs: Vec<IpAddr>,
    /// The endpoints.
    pub endpoints: Vec<EndpointSpec>,
}

/// An endpoint as built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Its name in reports.
    pub name: String,
    /// Its addresses, primary first.
    pub ips: Vec<IpAddr>,
    /// The namespace its sockets live in.
    pub netns: String,
    /// True if that is the node namespace.
    pub host_network: bool,
    /// Its interface in the node namespace (pods only).
    pub node_if: Option<String>,
}

/// A built network; dropping it removes every namespace it made.
#[derive(Debug)]
pub struct Topology {
    /// The node namespace.
    pub node: String,
    /// The endpoints, in the order of the spec.
    pub endpoints: Vec<Endpoint>,
    created: Vec<String>,
}

fn host_prefix(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

impl Topology {
    /// Builds the network. On failure, whatever was made is removed.
    pub fn build(spec: &TopologySpec) -> Result<Topology, LabError> {
        validate(spec)?;
        let node = format!("{}-node", spec.prefix);
        let mut topo = Topology {
            node: node.clone(),
            endpoints: Vec::new(),
            created: Vec::new(),
        };
        // Namespaces.
        let mut names = vec![node.clone()];
        for (i, e) in spec.endpoints.iter().enumerate() {
            let netns = if e.host_network {
                node.clone()
            } else {
                let n = format!("{}-e{i}", spec.prefix);
                names.push(n.clone());
                n
            };
            topo.endpoints.push(Endpoint {
                name: e.name.clone(),
                ips: e.ips.clone(),
                netns,
                host_network: e.host_network,
                node_if: (!e.host_network).then(|| format!("v{i}")),
            });
        }
        for n in &names {
            if std::path::Path::new(&crate::netns::path(n)).exists() {
                return Err(LabError::Setup(format!(
                    "network namespace {n} exists already: another lab uses prefix {:?} (or remove it with `rampart lab down --name {}`)",
                    spec.prefix, spec.prefix
                )));
            }
        }
        // From here on, a failure tears down what exists.
        topo.created = names.clone();
        let result = topo.configure(spec, &names);
        if let Err(e) = result {
            topo.teardown();
            return Err(e);
        }
        Ok(topo)
    }

    fn configure(&self, spec: &TopologySpec, names: &[String]) -> Result<(), LabError> {
        let root: Vec<String> = names.iter().map(|n| format!("netns add {n}")).collect();
        ip_batch(None, &root)?;
        let mut veths = Vec::new();
        for e in &self.endpoints {
            if let Some(vif) = &e.node_if {
                veths.push(format!(
                    "link add {vif} netns {} type veth peer name eth0 netns {}",
                    self.node, e.netns
                ));
            }
        }
        ip_batch(None, &veths)?;

        // The node: a bridge with every veth, its own addresses, routes to the pods.
        let node_ns = NsHandle::open(&self.node)?;
        run_in(&node_ns, || -> Result<(), LabError> {
            sysctl("net.bridge.bridge-nf-call-iptables", "1")?;
            sysctl("net.bridge.bridge-nf-call-ip6tables", "1")?;
            sysctl("net.ipv6.conf.all.accept_dad", "0")?;
            sysctl("net.ipv6.conf.default.accept_dad", "0")?;
            sysctl("net.ipv4.ip_forward", "1")?;
            Ok(())
        })??;
        let mut lines = vec![
            "link set lo up".to_owned(),
            "link add br0 type bridge".to_owned(),
        ];
        let mut node_addrs: BTreeSet<IpAddr> = spec.node_addrs.iter().copied().collect();
        for e in &self.endpoints {
            if e.host_network {
                node_addrs.extend(e.ips.iter().copied());
            }
        }
        for ip in &node_addrs {
            let extra = if ip.is_ipv6() { " nodad" } else { "" };
            lines.push(format!("addr add {ip}/{} dev br0{extra}", host_prefix(ip)));
        }
        lines.push("link set br0 up".to_owned());
        for e in &self.endpoints {
            if let Some(vif) = &e.node_if {
                lines.push(format!("link set {vif} master br0"));
                lines.push(format!("link set {vif} up"));
                for ip in &e.ips {
                    lines.push(format!("route add {ip}/{} dev br0", host_prefix(ip)));
                }
            }
        }
        ip_batch(Some(&self.node), &lines)?;

        // Each pod: its addresses on eth0, every destination on the link.
        for e in &self.endpoints {
            if e.host_network {
                continue;
            }
            let pod_ns = NsHandle::open(&e.netns)?;
            run_in(&pod_ns, || -> Result<(), LabError> {
                sysctl("net.ipv6.conf.all.accept_dad", "0")?;
                sysctl("net.ipv6.conf.default.accept_dad", "0")?;
                Ok(())
            })??;
            let mut lines = vec!["link set lo up".to_owned()];
            for ip in &e.ips {
                let extra = if ip.is_ipv6() { " nodad" } else { "" };
                lines.push(format!("addr add {ip}/{} dev eth0{extra}", host_prefix(ip)));
            }
            lines.push("link set eth0 up".to_owned());
            if e.ips.iter().any(IpAddr::is_ipv4) {
                lines.push("route add default dev eth0".to_owned());
            }
            if e.ips.iter().any(IpAddr::is_ipv6) {
                lines.push("route add ::/0 dev eth0".to_owned());
            }
            ip_batch(Some(&e.netns), &lines)?;
        }
        Ok(())
    }

    /// Removes every namespace (and with them every interface) this lab made.
    pub fn teardown(&mut self) {
        let lines: Vec<String> = self
            .created
            .iter()
            .filter(|n| std::path::Path::new(&crate::netns::path(n)).exists())
            .map(|n| format!("netns del {n}"))
            .collect();
        // Best effort, one by one, so that one failure does not keep the others.
        if ip_batch(None, &lines).is_err() {
            for l in &lines {
                let _ = ip_batch(None, std::slice::from_ref(l));
            }
        }
        self.created.clear();
    }

    /// The names of the namespaces this lab made.
    pub fn namespaces(&self) -> &[String] {
        &self.created
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Removes the namespaces of a lab with this prefix, whatever made them.
pub fn remove_prefix(prefix: &str) -> Result<Vec<String>, LabError> {
    let dir = match std::fs::read_dir("/run/netns") {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LabError::Setup(format!("read /run/netns: {e}"))),
    };
    let node = format!("{prefix}-node");
    let pod = format!("{prefix}-e");
    let mut names: Vec<String> = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            *n == node
                || n.strip_prefix(&pod).is_some_and(|rest| {
                    !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())
                })
        })
        .collect();
    names.sort();
    let lines: Vec<String> = names.iter().map(|n| format!("netns del {n}")).collect();
    ip_batch(None, &lines)?;
    Ok(names)
}

fn validate(spec: &TopologySpec) -> Result<(), LabError> {
    let ok_prefix = !spec.prefix.is_empty()
        && spec.prefix.len() <= 40
        && spec
            .prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok_prefix {
        return Err(LabError::Setup(format!(
            "lab name {:?}: 1 to 40 letters, digits, '-' or '_'",
            spec.prefix
        )));
    }
    let mut seen = BTreeSet::new();
    for e in &spec.endpoints {
        if e.host_network {
            continue;
        }
        for ip in &e.ips {
            if !seen.insert(*ip) || spec.node_addrs.contains(ip) {
                return Err(LabError::Setup(format!(
                    "{}: address {ip} is used twice; the lab needs distinct pod addresses",
                    e.name
                )));
            }
        }
    }
    for e in spec.endpoints.iter().filter(|e| e.host_network) {
        if let Some(ip) = e.ips.iter().find(|ip| seen.contains(*ip)) {
            return Err(LabError::Setup(format!(
                "{}: host-network address {ip} is also a pod's address",
                e.name
            )));
        }
    }
    Ok(())
}
