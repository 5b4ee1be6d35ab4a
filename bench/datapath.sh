#!/usr/bin/env bash
# Datapath benchmark (root): Rampart's nftables program (verdict maps + one set lookup per
# packet) beside the same decisions written as linear rules, one rule per allowed
# (peer, port), the way iptables-based plugins lay them out.
#
#   1. Apply time: 2,000 NetworkPolicies over 500 pods (`rampart policy generate`):
#      compile, then one nft transaction into a fresh network namespace; the agent end to
#      end (load, compile, apply, state); the linear peer's transaction.
#   2. Per-packet cost: iperf3 between two pod namespaces of `rampart lab up` with 0,
#      1,000 and 10,000 rules selecting the server (the client allowed by the last one),
#      with revokedConnections=cut so that every original-direction packet is checked
#      (with flush/keep, established packets skip the rules and the rule count cannot
#      matter), plus new TCP connections per second (every one goes through the rules
#      in any mode).
#
# Writes its report into docs/benchmarks.md between the datapath markers.
#   bench/datapath.sh              # 5 runs, medians
#   RUNS=3 SECONDS_PER_RUN=3 bench/datapath.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
SECS=${SECONDS_PER_RUN:-4}
[ "$(id -u)" = 0 ] || { echo "bench/datapath.sh: needs root (network namespaces, nftables)" >&2; exit 1; }
for t in nft ip iperf3 python3; do command -v $t >/dev/null || { echo "missing $t (scripts/install-deps)" >&2; exit 1; }; done

cargo build -q --release -p rampart
R=$PWD/target/release/rampart
work=$(mktemp -d)
tag="rbench$$"
cleanup() {
  [ -f "$work/iperf.pid" ] && kill "$(cat "$work/iperf.pid")" 2>/dev/null || true
  "$R" lab down --name "$tag" >/dev/null 2>&1 || true
  ip netns del "$tag-apply" 2>/dev/null || true
  [ -n "${lab_pid:-}" ] && kill "$lab_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Expands every flow-set match of a compiled batch into one rule per element (the
# linear peer). Same decisions, same chains, no sets on the per-packet path.
cat > "$work/linear.py" <<'PY'
import json, sys
batch = json.load(open(sys.argv[1]))["nftables"]
sets = {c["add"]["set"]["name"]: c["add"]["set"].get("elem", []) for c in batch if "set" in c.get("add", {})}
out = []
for c in batch:
    rule = c.get("add", {}).get("rule")
    if rule is None:
        out.append(c)
        continue
    exprs = rule["expr"]
    m = next((e for e in exprs if "match" in e and isinstance(e["match"].get("right"), str)
              and e["match"]["right"].startswith("@") and "concat" in e["match"]["left"]), None)
    if m is None:
        out.append(c)
        continue
    left = m["match"]["left"]["concat"]
    for el in sets[m["match"]["right"][1:]]:
        addr, proto, port = el["concat"]
        new = dict(rule)
        new["expr"] = [e for e in exprs if e is not m]
        new["expr"][0:0] = [
            {"match": {"op": "==", "left": left[0], "right": addr}},
            {"match": {"op": "==", "left": left[1], "right": proto}},
            {"match": {"op": "==", "left": left[2], "right": port}},
        ]
        new.pop("comment", None)
        out.append({"add": {"rule": new}})
json.dump({"nftables": out}, open(sys.argv[2], "w"))
rules = sum(1 for c in out if "rule" in c.get("add", {}))
print(rules)
PY

median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.argv[1:]]; print(f"{statistics.median(v):.3f}")' "$@"; }
gbit() { python3 -c 'import sys; print(f"{float(sys.argv[1]):.2f}")' "$1"; }
ms() { python3 -c 'import sys; print(f"{float(sys.argv[1])*1000:.0f} ms")' "$1"; }
timeit() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); python3 -c "print($e-$s)"; }

# ---------------------------------------------------------------------------------------
# 1. Apply time.
"$R" policy generate --pods 500 --policies 2000 --namespaces 25 --seed 1 > "$work/cluster.yaml"
compile=(); apply=(); reapply=(); linear=(); agent=()
for i in $(seq "$RUNS"); do
  compile+=("$(timeit "$R" policy compile -f "$work/cluster.yaml" --layer pods -o json)")
  "$R" policy compile -f "$work/cluster.yaml" --layer pods -o json > "$work/rampart.json"
  ip netns add "$tag-apply"
  apply+=("$(timeit ip netns exec "$tag-apply" nft -j -f "$work/rampart.json")")
  reapply+=("$(timeit ip netns exec "$tag-apply" nft -j -f "$work/rampart.json")")
  ip netns del "$tag-apply"
  linear_rules=$(python3 "$work/linear.py" "$work/rampart.json" "$work/linear.json")
  ip netns add "$tag-apply"
  linear+=("$(timeit ip netns exec "$tag-apply" nft -j -f "$work/linear.json")")
  ip netns del "$tag-apply"
  # The agent end to end: read the manifests, compile, one transaction, state.
  ip netns add "$tag-apply"
  mkdir -p "$work/agent"
  cat > "$work/agent/agent.yaml" <<EOF
apiVersion: rampart.dev/v1alpha1
kind: AgentConfig
metadata: {name: bench}
spec:
  nodeName: bench
  resources: [../cluster.yaml]
  stateDir: state-$i
  netns: $tag-apply
  pods: {allPods: true}
EOF
  agent+=("$(timeit "$R" agent --config "$work/agent/agent.yaml" apply)")
  ip netns del "$tag-apply"
done
stats=$(python3 - "$work/rampart.json" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))["nftables"]
sets = [c["add"]["set"] for c in b if "set" in c.get("add", {})]
rules = sum(1 for c in b if "rule" in c.get("add", {}))
chains = sum(1 for c in b if "chain" in c.get("add", {}))
maps = [c["add"]["map"] for c in b if "map" in c.get("add", {})]
print(f"{chains} chains, {rules} rules, {len(sets)} sets with {sum(len(s.get('elem', [])) for s in sets)} elements, {sum(len(m.get('elem', [])) for m in maps)} dispatch entries")
PY
)

# ---------------------------------------------------------------------------------------
# 2. Per-packet cost: iperf3 and new connections per second.
cluster_with_rules() { # $1 = number of rules selecting the server
  python3 - "$1" <<'PY'
import sys
n = int(sys.argv[1])
print("""apiVersion: v1
kind: Namespace
metadata: {name: bench}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: bench, labels: {app: client}}
spec: {containers: [{name: c}]}
status: {podIP: 10.250.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: bench, labels: {app: server}}
spec: {containers: [{name: c}]}
status: {podIP: 10.50.0.1}""")
if n:
    print("""---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server, namespace: bench}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:""")
    for i in range(n - 1):
        # Distinct, non-adjacent peers: nothing merges into ranges. They sort before the
        # client's address, so the linear peer checks every one of them for the client.
        a, b = divmod(i, 120)
        print(f"  - from: [{{ipBlock: {{cidr: 10.{100 + a // 250}.{a % 250}.{2 * b + 3}/32}}}}]\n    ports: [{{port: 5201}}, {{port: 9}}]")
    print("  - from: [{ipBlock: {cidr: 10.250.0.2/32}}]\n    ports: [{port: 5201}, {port: 9}]")
PY
}

conn_rate() { # $1 = run index: new connections per second from the client to port 9, over 2 s
  ip netns exec "$tag-e0" python3 - "$1" <<'PY'
import socket, struct, sys, time
# Fresh source ports for every connection (no tuple is reused within a lab), and an RST
# on close (no TIME_WAIT): only the datapath's cost per new connection is measured.
port = 2000 + 6000 * (int(sys.argv[1]) % 5)  # below the ephemeral range
n = 0
start = time.time()
end = start + 2
while time.time() < end and n < 6000:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(1)
    s.bind(("10.250.0.2", port + n))
    s.connect(("10.50.0.1", 9))
    s.close()
    n += 1
print(n / (time.time() - start))
PY
}

declare -A tput rate
for n in 0 1000 10000; do
  cluster_with_rules "$n" > "$work/pair-$n.yaml"
  for variant in rampart linear; do
    [ "$n" = 0 ] && [ "$variant" = linear ] && continue
    "$R" lab up --name "$tag" -f "$work/pair-$n.yaml" --port 9/TCP --recheck-established > "$work/lab.log" 2>&1 &
    lab_pid=$!
    for _ in $(seq 100); do grep -q "is up" "$work/lab.log" 2>/dev/null && break; sleep 0.1; done
    grep -q "is up" "$work/lab.log" || { cat "$work/lab.log" >&2; exit 1; }
    if [ "$variant" = linear ]; then
      "$R" policy compile -f "$work/pair-$n.yaml" --layer pods -o json --revoked-connections cut --from-node judge --table-prefix rampart > "$work/pair.json"
      python3 "$work/linear.py" "$work/pair.json" "$work/pair-linear.json" >/dev/null
      ip netns exec "$tag-node" nft -j -f "$work/pair-linear.json"
    fi
    ip netns exec "$tag-e1" iperf3 -s -D -B 10.50.0.1 --pidfile "$work/iperf.pid"
    sleep 0.3
    t=(); r=()
    for i in $(seq "$RUNS"); do
      t+=("$(ip netns exec "$tag-e0" iperf3 -c 10.50.0.1 -B 10.250.0.2 -t "$SECS" -J | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)')")
      r+=("$(conn_rate "$i")")
    done
    kill "$(cat "$work/iperf.pid")" 2>/dev/null || true
    tput[$n,$variant]=$(gbit "$(median "${t[@]}")")
    rate[$n,$variant]=$(median "${r[@]}" | cut -d. -f1)
    kill "$lab_pid"; wait "$lab_pid" 2>/dev/null || true; lab_pid=
  done
done

section=$(cat <<EOF
Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)), load average $(cut -d' ' -f1 /proc/loadavg); rerun with \`bench/datapath.sh\`. Medians of $RUNS runs.

**Apply time**, 2,000 NetworkPolicies over 500 pods in 25 namespaces (\`rampart policy generate --pods 500 --policies 2000 --namespaces 25\`; every pod enforced): $stats.

| step | Rampart (verdict maps + sets) | linear peer ($linear_rules rules) |
|---|---|---|
| compile (read manifests, decide every pod, render the JSON batch) | $(ms "$(median "${compile[@]}")") | (same decisions) |
| one nft transaction into an empty namespace | $(ms "$(median "${apply[@]}")") | $(ms "$(median "${linear[@]}")") |
| the same transaction replacing the table in force | $(ms "$(median "${reapply[@]}")") | |
| \`rampart agent apply\` end to end (load, compile, apply, state) | $(ms "$(median "${agent[@]}")") | |

**Per-packet cost**, two pod namespaces of \`rampart lab up\` over the node's bridge, iperf3 TCP for $SECS s, revokedConnections=cut (every packet from client to server goes through the server's ingress decision); new connections per second from a Python loop (connect, close) over 2 s.

| rules selecting the server | Rampart throughput | linear throughput | Rampart new connections/s | linear new connections/s |
|---|---|---|---|---|
| 0 (no policy) | ${tput[0,rampart]} Gbit/s | | ${rate[0,rampart]} | |
| 1,000 | ${tput[1000,rampart]} Gbit/s | ${tput[1000,linear]} Gbit/s | ${rate[1000,rampart]} | ${rate[1000,linear]} |
| 10,000 | ${tput[10000,rampart]} Gbit/s | ${tput[10000,linear]} Gbit/s | ${rate[10000,rampart]} | ${rate[10000,linear]} |

$(python3 - "${tput[1000,rampart]}" "${tput[10000,rampart]}" "${tput[1000,linear]}" "${tput[10000,linear]}" "${rate[1000,rampart]}" "${rate[10000,rampart]}" "${rate[1000,linear]}" "${rate[10000,linear]}" "$(median "${apply[@]}")" "$(median "${linear[@]}")" <<'PY'
import sys
t1, t10, l1, l10, r1, r10, lr1, lr10, a, la = map(float, sys.argv[1:])
print(f"Reading: from 1,000 to 10,000 rules Rampart keeps {100 * t10 / t1:.0f}% of its throughput and "
      f"{100 * r10 / r1:.0f}% of its connection rate (one verdict-map lookup and one set lookup per "
      f"packet, whatever the rule count; the step from no policy to some policy is that one set "
      f"lookup); the linear peer keeps {100 * l10 / l1:.0f}% and {100 * lr10 / lr1:.0f}%, and takes "
      f"{la / a:.1f}x as long to load. Without cut (flush, the default, or keep) "
      f"established packets are accepted by conntrack before any rule, so only new connections "
      f"pay for the rules.")
PY
)
EOF
)
echo "$section"
python3 - "$section" <<'PY'
import re, sys
path = "docs/benchmarks.md"
text = open(path).read()
body = sys.argv[1].strip() + "\n"
if "<!-- datapath:begin -->" not in text:
    text = text.rstrip() + "\n\n## Datapath (node agent)\n\n<!-- datapath:begin -->\n<!-- datapath:end -->\n"
text = re.sub(r"(<!-- datapath:begin -->\n).*?(<!-- datapath:end -->)", lambda m: m.group(1) + body + m.group(2), text, flags=re.S)
open(path, "w").write(text)
PY
