//! Synthetic clusters for benchmarks and load tests: namespaces, pods with labels, named
//! ports and addresses, and a mix of policies (default denies, pod and namespace
//! selectors, match expressions, ipBlocks with exceptions, named ports, port ranges,
//! egress rules, a few admin policies and a baseline), as Kubernetes manifests.
//!
//! The same parameters and seed always give the same manifests.

use serde_json::{Value, json};

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Number of namespaces.
    pub namespaces: usize,
    /// Number of pods, spread evenly over the namespaces.
    pub pods: usize,
    /// Number of NetworkPolicies, spread evenly over the namespaces.
    pub policies: usize,
    /// Number of AdminNetworkPolicies (a BaselineAdminNetworkPolicy comes with any).
    pub admin_policies: usize,
    /// Seed of the pseudo-random choices.
    pub seed: u64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            namespaces: 100,
            pods: 10_000,
            policies: 2_000,
            admin_policies: 5,
            seed: 1,
        }
    }
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TIERS: [&str; 4] = ["web", "api", "db", "cache"];
const ENVS: [&str; 3] = ["prod", "staging", "dev"];
const APPS_PER_NAMESPACE: usize = 20;

fn ns_name(i: usize) -> String {
    format!("ns-{i:03}")
}

/// The manifests of a synthetic cluster: namespaces, pods, then policies.
pub fn manifests(p: &Params) -> Vec<Value> {
    let mut rng = Rng(p.seed.max(1) ^ 0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(p.namespaces + p.pods + p.policies + p.admin_policies + 1);
    let namespaces = p.namespaces.max(1);
    for i in 0..namespaces {
        out.push(json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": ns_name(i),
                "labels": {"team": format!("team-{}", i % 10), "env": ENVS[i % 3]},
            },
        }));
    }
    for k in 0..p.pods {
        let ns = k % namespaces;
        let j = k / namespaces;
        let tier = TIERS[j % TIERS.len()];
        let mut ports = vec![
            json!({"name": "http", "containerPort": 8080 + (j % 3) as u16, "protocol": "TCP"}),
            json!({"name": "metrics", "containerPort": 9090, "protocol": "TCP"}),
        ];
        if tier == "db" {
            ports.push(json!({"name": "postgres", "containerPort": 5432, "protocol": "TCP"}));
        }
        if j.is_multiple_of(10) {
            ports.push(json!({"name": "dns", "containerPort": 53, "protocol": "UDP"}));
        }
        // 10.<1+ns/256>.<ns%256>.<j>, wrapping j into the last two octets' room.
        let ip = format!(
            "10.{}.{}.{}",
            1 + (ns / 256) + 16 * (j / 250),
            ns % 256,
            1 + j % 250
        );
        out.push(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": format!("pod-{j:05}"),
                "namespace": ns_name(ns),
                "labels": {
                    "app": format!("app-{}", j % APPS_PER_NAMESPACE),
                    "tier": tier,
                    "version": format!("v{}", rng.below(3)),
                },
            },
            "spec": {"containers": [{"name": "main", "ports": ports}]},
            "status": {"podIP": ip, "podIPs": [{"ip": ip}]},
        }));
    }
    for n in 0..p.policies {
        let ns = n % namespaces;
        let serial = n / namespaces;
        out.push(network_policy(&mut rng, ns, serial, namespaces));
    }
    for a in 0..p.admin_policies {
        out.push(admin_policy(&mut rng, a, namespaces));
    }
    if p.admin_policies > 0 {
        out.push(json!({
            "apiVersion": "policy.networking.k8s.io/v1alpha1",
            "kind": "BaselineAdminNetworkPolicy",
            "metadata": {"name": "default"},
            "spec": {
                "subject": {"namespaces": {}},
                "ingress": [{
                    "name": "deny-other-teams",
                    "action": "Deny",
                    "from": [{"namespaces": {"matchExpressions": [{"key": "env", "operator": "In", "values": ["dev"]}]}}],
                }],
            },
        }));
    }
    out
}

fn network_policy(rng: &mut Rng, ns: usize, serial: usize, namespaces: usize) -> Value {
    let name = format!("np-{serial:03}");
    let app = |rng: &mut Rng| format!("app-{}", rng.below(APPS_PER_NAMESPACE));
    let meta = json!({"name": name, "namespace": ns_name(ns)});
    let spec = match serial {
        0 => json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
        _ => match rng.below(10) {
            // Same-namespace app to app on the named http port.
            0..=3 => json!({
                "podSelector": {"matchLabels": {"app": app(rng)}},
                "ingress": [{
                    "from": [{"podSelector": {"matchLabels": {"app": app(rng)}}}],
                    "ports": [{"port": "http"}],
                }],
            }),
            // From a tier in another team's namespaces.
            4 | 5 => json!({
                "podSelector": {"matchLabels": {"tier": TIERS[rng.below(4)]}},
                "ingress": [{
                    "from": [{
                        "namespaceSelector": {"matchLabels": {"team": format!("team-{}", rng.below(10))}},
                        "podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]}]},
                    }],
                    "ports": [{"port": 8080, "endPort": 8082}],
                }],
            }),
            // Address blocks with an exception.
            6 => {
                let other = rng.below(namespaces);
                json!({
                    "podSelector": {"matchLabels": {"app": app(rng)}},
                    "ingress": [{
                        "from": [{"ipBlock": {
                            "cidr": format!("10.{}.{}.0/24", 1 + other / 256, other % 256),
                            "except": [format!("10.{}.{}.0/28", 1 + other / 256, other % 256)],
                        }}],
                    }],
                })
            }
            // Egress to production namespaces, and DNS.
            7 | 8 => json!({
                "podSelector": {"matchExpressions": [
                    {"key": "tier", "operator": "NotIn", "values": ["db"]},
                    {"key": "version", "operator": "Exists"},
                ]},
                "policyTypes": ["Egress"],
                "egress": [
                    {"to": [{"namespaceSelector": {"matchLabels": {"env": ENVS[rng.below(3)]}}}], "ports": [{"port": "http"}]},
                    {"ports": [{"port": 53, "protocol": "UDP"}]},
                ],
            }),
            // Metrics scraping from a monitoring namespace.
            _ => json!({
                "podSelector": {},
                "ingress": [{
                    "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns_name(rng.below(namespaces))}}}],
                    "ports": [{"port": "metrics"}],
                }],
            }),
        },
    };
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta, "spec": spec})
}

fn admin_policy(rng: &mut Rng, a: usize, namespaces: usize) -> Value {
    json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha1",
        "kind": "AdminNetworkPolicy",
        "metadata": {"name": format!("anp-{a:02}")},
        "spec": {
            "priority": 10 + a,
            "subject": {"namespaces": {"matchLabels": {"team": format!("team-{}", rng.below(10))}}},
            "ingress": [
                {"name": "allow-monitoring", "action": "Allow",
                 "from": [{"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": ns_name(rng.below(namespaces))}}}],
                 "ports": [{"namedPort": "metrics"}]},
                {"name": "pass-same-team", "action": "Pass",
                 "from": [{"namespaces": {"matchLabels": {"team": format!("team-{}", rng.below(10))}}}]},
            ],
            "egress": [
                {"name": "deny-db-of-others", "action": "Deny",
                 "to": [{"pods": {"namespaceSelector": {"matchLabels": {"env": "dev"}}, "podSelector": {"matchLabels": {"tier": "db"}}}}],
                 "ports": [{"portNumber": {"protocol": "TCP", "port": 5432}}]},
            ],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_sized() {
        let p = Params {
            namespaces: 4,
            pods: 40,
            policies: 12,
            admin_policies: 2,
            seed: 7,
        };
        let a = manifests(&p);
        assert_eq!(a, manifests(&p));
        assert_eq!(a.len(), 4 + 40 + 12 + 2 + 1);
        let kinds = |k: &str| a.iter().filter(|v| v["kind"] == k).count();
        assert_eq!(kinds("Pod"), 40);
        assert_eq!(kinds("NetworkPolicy"), 12);
    }
}
