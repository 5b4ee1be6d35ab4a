#!/usr/bin/env bash
# Policy engine benchmark: compile + whole matrices on synthetic clusters, single
# verdicts, peak memory, and the naive pair-by-pair evaluation beside it.
# Writes the report into docs/benchmarks.md between the policy markers.
#   bench/policy.sh            # 5 runs, medians
#   RUNS=9 bench/policy.sh     # more runs
set -euo pipefail
cd "$(dirname "$0")/.."
report=$(mktemp)
trap 'rm -f "$report"' EXIT
cargo bench -q -p rampart-policy --bench policy_matrix | tee "$report"
{
  echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)); rerun with \`bench/policy.sh\`."
  echo
  cat "$report"
} > "$report.section"
python3 - "$report.section" <<'PY'
import re, sys
section = open(sys.argv[1]).read().strip()
path = "docs/benchmarks.md"
text = open(path).read()
new = re.sub(r"(<!-- policy:begin -->\n).*?(<!-- policy:end -->)", lambda m: m.group(1) + section + "\n" + m.group(2), text, flags=re.S)
open(path, "w").write(new)
PY
rm -f "$report.section"
