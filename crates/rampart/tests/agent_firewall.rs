//! The node agent on a real kernel: security groups (remote-group membership changes as
//! set updates, revoked connections) and the Talos host firewall (accept and block
//! modes, try and revert), applied with `rampart agent` inside a network namespace and
//! checked with real probes from other namespaces. Needs root; under CI it fails when
//! it cannot run.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rampart_lab::netns::{NsHandle, run_in};
use rampart_lab::probe::{self, Outcome, Task};
use rampart_lab::serve::Server;
use rampart_lab::{EndpointSpec, Topology, TopologySpec};
use rampart_model::Probe;

const TIMEOUT: Duration = Duration::from_millis(1000);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

struct World {
    topo: Topology,
    _server: Server,
    dir: PathBuf,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Endpoints `names[i]` at `10.<net>.0.<i+1>`, listening on `probes`.
fn world(tag: &str, net: u8, names: &[&str], probes: &[Probe]) -> World {
    let prefix = format!("rt{tag}{}", std::process::id());
    let spec = TopologySpec {
        prefix: prefix.clone(),
        node_addrs: vec![],
        endpoints: names
            .iter()
            .enumerate()
            .map(|(i, n)| EndpointSpec {
                name: (*n).to_owned(),
                ips: vec![ip(&format!("10.{net}.0.{}", i + 1))],
                host_network: false,
            })
            .collect(),
    };
    let topo = Topology::build(&spec).unwrap();
    let server = Server::start(&topo, probes).unwrap();
    let dir = std::env::temp_dir().join(format!("{prefix}-files"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("resources")).unwrap();
    World {
        topo,
        _server: server,
        dir,
    }
}

impl World {
    fn netns(&self, name: &str) -> &str {
        &self
            .topo
            .endpoints
            .iter()
            .find(|e| e.name == name)
            .unwrap()
            .netns
    }

    fn addr(&self, name: &str) -> IpAddr {
        self.topo
            .endpoints
            .iter()
            .find(|e| e.name == name)
            .unwrap()
            .ips[0]
    }

    /// Probes (from, to, probe) and returns whether each connected.
    fn probe(&self, checks: &[(&str, &str, &str)]) -> Vec<bool> {
        let tasks: Vec<Task> = checks
            .iter()
            .map(|(from, to, p)| Task {
                netns: self.netns(from).to_owned(),
                src: self.addr(from),
                dst: self.addr(to),
                probe: p.parse().unwrap(),
            })
            .collect();
        probe::run(&tasks, TIMEOUT, 32)
            .unwrap()
            .into_iter()
            .map(|o| {
                assert!(
                    matches!(o, Outcome::Connected | Outcome::Timeout),
                    "probe anomaly: {o:?}"
                );
                o == Outcome::Connected
            })
            .collect()
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.join("resources").join(name), text).unwrap();
    }

    fn config(&self, enforcer: &str, revoked: &str) -> PathBuf {
        let path = self.dir.join("agent.yaml");
        std::fs::write(
            &path,
            format!(
                "apiVersion: rampart.dev/v1alpha1\nkind: AgentConfig\nmetadata: {{name: test}}\nspec:\n  nodeName: n1\n  resources: [resources]\n  stateDir: state\n  netns: {}\n  revokedConnections: {revoked}\n",
                self.netns(enforcer)
            ),
        )
        .unwrap();
        path
    }
}

fn agent(config: &Path, args: &[&str]) -> String {
    let out = support::rampart()
        .arg("agent")
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rampart agent {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Rule handles of a table, in listing order (unchanged handles = rules not rewritten).
fn rule_handles(netns: &str, table: &str) -> Vec<u64> {
    let out = std::process::Command::new("ip")
        .args([
            "netns", "exec", netns, "nft", "-a", "-j", "list", "table", "inet", table,
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i.get("rule"))
        .filter(|r| r["chain"] != "rampart-stamp")
        .map(|r| r["handle"].as_u64().unwrap())
        .collect()
}

fn groups(web_clients_udp_from_group: bool) -> String {
    let udp_remote = if web_clients_udp_from_group {
        "remote_group_id: clients"
    } else {
        "remote_ip_prefix: 10.71.0.3/32"
    };
    format!(
        r#"apiVersion: rampart.dev/v1alpha1
kind: SecurityGroup
metadata: {{name: web}}
spec:
  rules:
  - {{direction: ingress, ethertype: IPv4, protocol: tcp, port_range_min: 80, port_range_max: 80, remote_group_id: clients}}
  - {{direction: ingress, ethertype: IPv4, protocol: udp, port_range_min: 53, port_range_max: 53, {udp_remote}}}
---
apiVersion: rampart.dev/v1alpha1
kind: SecurityGroup
metadata: {{name: clients}}
spec: {{}}
---
apiVersion: rampart.dev/v1alpha1
kind: Port
metadata: {{name: vm}}
spec: {{node: n1, interface: eth0, fixedIPs: [10.71.0.1], securityGroups: [web]}}
"#
    )
}

fn client_port(name: &str, addr: &str, member: bool) -> String {
    let groups = if member { "[clients]" } else { "[]" };
    format!(
        "apiVersion: rampart.dev/v1alpha1\nkind: Port\nmetadata: {{name: {name}}}\nspec: {{node: other, fixedIPs: [{addr}], securityGroups: {groups}}}\n"
    )
}

#[test]
fn security_groups_enforce_and_follow_membership() {
    if !support::privileged("security_groups_enforce_and_follow_membership") {
        return;
    }
    let probes: Vec<Probe> = ["80/TCP", "53/UDP"]
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    let w = world("sg", 71, &["vm", "b", "c"], &probes);
    w.write("groups.yaml", &groups(false));
    w.write("b.yaml", &client_port("b", "10.71.0.2", true));
    w.write("c.yaml", &client_port("c", "10.71.0.3", false));
    let config = w.config("vm", "flush");
    let out = agent(&config, &["apply"]);
    assert!(out.contains("replaced rampart-sg"), "{out}");

    let seen = w.probe(&[
        ("b", "vm", "80/TCP"), // b is in `clients`
        ("c", "vm", "80/TCP"), // c is not
        ("c", "vm", "53/UDP"), // by prefix
        ("b", "vm", "53/UDP"), // not by prefix
        ("vm", "b", "80/TCP"), // the default egress rules
        ("b", "c", "80/TCP"),  // other ports are not filtered here
    ]);
    assert_eq!(seen, vec![true, false, true, false, true, true]);

    // c joins `clients`: only the group's set changes; the rules stay as they are.
    let before = rule_handles(w.netns("vm"), "rampart-sg");
    w.write("c.yaml", &client_port("c", "10.71.0.3", true));
    let out = agent(&config, &["apply"]);
    assert!(out.contains("updated set elements of rampart-sg"), "{out}");
    assert_eq!(
        rule_handles(w.netns("vm"), "rampart-sg"),
        before,
        "rules were rewritten"
    );
    assert_eq!(w.probe(&[("c", "vm", "80/TCP")]), vec![true]);

    // In sync, per status and diff.
    let status = agent(&config, &["status", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["layers"][0]["state"], "in sync", "{status}");
    let diff = support::rampart()
        .args(["agent", "--config"])
        .arg(&config)
        .arg("diff")
        .output()
        .unwrap();
    assert!(
        diff.status.success(),
        "{}",
        String::from_utf8_lossy(&diff.stdout)
    );
}

/// A UDP "connection" from `from` to `to`:53: the same socket (and so the same
/// conntrack entry) for every exchange.
struct Flow {
    socket: UdpSocket,
    to: SocketAddr,
}

impl Flow {
    fn open(w: &World, from: &str, to: &str) -> Flow {
        let ns = NsHandle::open(w.netns(from)).unwrap();
        let src = w.addr(from);
        let socket = run_in(&ns, || UdpSocket::bind((src, 0))).unwrap().unwrap();
        socket.set_read_timeout(Some(TIMEOUT)).unwrap();
        Flow {
            socket,
            to: SocketAddr::new(w.addr(to), 53),
        }
    }

    fn exchange(&self) -> bool {
        let _ = self.socket.send_to(b"ping", self.to);
        let mut buf = [0u8; 16];
        matches!(self.socket.recv_from(&mut buf), Ok((4, from)) if from == self.to)
    }
}

#[test]
fn revoked_connections_follow_the_setting() {
    if !support::privileged("revoked_connections_follow_the_setting") {
        return;
    }
    let probes: Vec<Probe> = vec!["53/UDP".parse().unwrap()];
    for (mode, survives) in [("keep", true), ("flush", false), ("cut", false)] {
        let w = world(&format!("rv{mode}"), 71, &["vm", "b", "c"], &probes);
        w.write("groups.yaml", &groups(true));
        w.write("b.yaml", &client_port("b", "10.71.0.2", true));
        w.write("c.yaml", &client_port("c", "10.71.0.3", false));
        let config = w.config("vm", mode);
        agent(&config, &["apply"]);
        let flow = Flow::open(&w, "b", "vm");
        assert!(flow.exchange(), "{mode}: the allowed flow must work");
        // b leaves `clients`: new flows from b are refused in every mode...
        w.write("b.yaml", &client_port("b", "10.71.0.2", false));
        agent(&config, &["apply"]);
        assert_eq!(
            w.probe(&[("b", "vm", "53/UDP")]),
            vec![false],
            "{mode}: new flow"
        );
        // ...and the established one lives on only with `keep`.
        assert_eq!(flow.exchange(), survives, "{mode}: established flow");
    }
}

fn talos(block: bool, rules: &str) -> String {
    format!(
        "apiVersion: v1alpha1\nkind: NetworkDefaultActionConfig\ningress: {}\n{rules}",
        if block { "block" } else { "accept" }
    )
}

const APID_AND_WEB: &str = r#"---
apiVersion: v1alpha1
kind: NetworkRuleConfig
name: apid
portSelector:
  ports: [50000]
  protocol: tcp
ingress:
  - subnet: 10.72.0.0/24
    except: 10.72.0.2/32
---
apiVersion: v1alpha1
kind: NetworkRuleConfig
name: web
portSelector:
  ports: ["80-81"]
  protocol: tcp
ingress:
  - subnet: 10.72.0.2/32
"#;

#[test]
fn host_firewall_modes_and_try_revert() {
    if !support::privileged("host_firewall_modes_and_try_revert") {
        return;
    }
    let probes: Vec<Probe> = ["22/TCP", "80/TCP", "50000/TCP"]
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    let w = world("host", 72, &["host", "client", "admin"], &probes);
    let config = w.config("host", "flush");

    // Block mode: only what the rules allow, from where they allow it.
    w.write("talos.yaml", &talos(true, APID_AND_WEB));
    agent(&config, &["apply"]);
    let checks = [
        ("client", "host", "80/TCP"),
        ("client", "host", "50000/TCP"),
        ("admin", "host", "50000/TCP"),
        ("admin", "host", "22/TCP"),
        ("admin", "host", "80/TCP"),
        ("host", "admin", "22/TCP"),
    ];
    assert_eq!(
        w.probe(&checks),
        vec![true, false, true, false, false, true]
    );

    // Accept mode: each rule drops its ports from everywhere else.
    w.write("talos.yaml", &talos(false, APID_AND_WEB));
    agent(&config, &["apply"]);
    assert_eq!(w.probe(&checks), vec![true, false, true, true, false, true]);

    // A try that locks the admin out of port 22 reverts by itself...
    w.write("talos.yaml", &talos(true, APID_AND_WEB));
    let out = agent(&config, &["apply", "--try", "2"]);
    assert!(out.contains("reverts in 2 s"), "{out}");
    assert_eq!(w.probe(&[("admin", "host", "22/TCP")]), vec![false]);
    let status = agent(&config, &["status", "-o", "json"]);
    assert!(status.contains("pendingTry\": {"), "{status}");
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(
        w.probe(&[("admin", "host", "22/TCP")]),
        vec![true],
        "the try was not reverted"
    );
    let status = agent(&config, &["status", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(
        v["pendingTry"].is_null() && v["rejectedInputs"].is_string(),
        "{status}"
    );

    // ...and a confirmed one stays.
    agent(&config, &["apply", "--try", "2"]);
    agent(&config, &["confirm"]);
    std::thread::sleep(Duration::from_millis(3000));
    assert_eq!(
        w.probe(&[("admin", "host", "22/TCP")]),
        vec![false],
        "the confirmed try was reverted"
    );
}

/// Polls `status` until `pred` holds (at most 15 s).
fn wait_status(
    config: &Path,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = std::time::Instant::now();
    loop {
        let v: serde_json::Value =
            serde_json::from_str(&agent(config, &["status", "-o", "json"])).unwrap();
        if pred(&v) {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn daemon_reconciles_keeps_rules_on_bad_input_and_on_crash() {
    if !support::privileged("daemon_reconciles_keeps_rules_on_bad_input_and_on_crash") {
        return;
    }
    let probes: Vec<Probe> = vec!["80/TCP".parse().unwrap()];
    let w = world("dm", 71, &["vm", "b", "c"], &probes);
    w.write("groups.yaml", &groups(false));
    w.write("b.yaml", &client_port("b", "10.71.0.2", true));
    w.write("c.yaml", &client_port("c", "10.71.0.3", false));
    let config = w.config("vm", "flush");
    let text = std::fs::read_to_string(&config).unwrap() + "  pollIntervalSeconds: 1\n";
    std::fs::write(&config, text).unwrap();
    let mut daemon = support::rampart()
        .arg("agent")
        .arg("--config")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let in_sync = |v: &serde_json::Value| v["layers"][0]["state"] == "in sync";
    wait_status(&config, "the first reconcile", in_sync);
    assert_eq!(
        w.probe(&[("b", "vm", "80/TCP"), ("c", "vm", "80/TCP")]),
        vec![true, false]
    );

    // A change of inputs is picked up.
    let before = agent(&config, &["status", "-o", "json"]);
    let before: serde_json::Value = serde_json::from_str(&before).unwrap();
    w.write("c.yaml", &client_port("c", "10.71.0.3", true));
    wait_status(&config, "the change", |v| {
        in_sync(v) && v["generation"] != before["generation"]
    });
    assert_eq!(w.probe(&[("c", "vm", "80/TCP")]), vec![true]);

    // Invalid inputs never replace the rules in force.
    w.write("c.yaml", "apiVersion: rampart.dev/v1alpha1\nkind: Port\nmetadata: {name: c}\nspec: {securityGroups: [nowhere]}\n");
    let v = wait_status(&config, "the error", |v| {
        v["inputs"]["valid"] == false && v["lastError"].is_string()
    });
    assert!(
        v["inputs"]["error"]
            .as_str()
            .unwrap()
            .contains("no security group \"nowhere\""),
        "{v:#}"
    );
    assert_eq!(
        w.probe(&[("b", "vm", "80/TCP"), ("c", "vm", "80/TCP")]),
        vec![true, true]
    );

    // The agent dies: its rules stay (fail closed).
    daemon.kill().unwrap();
    let _ = daemon.wait();
    w.write("c.yaml", &client_port("c", "10.71.0.3", false));
    assert_eq!(
        w.probe(&[("b", "vm", "80/TCP"), ("c", "vm", "80/TCP")]),
        vec![true, true]
    );
    let v = wait_status(&config, "the status after the crash", |_| true);
    assert_eq!(v["layers"][0]["present"], true);
    assert_eq!(v["layers"][0]["state"], "differs", "{v:#}");
}
