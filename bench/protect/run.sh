#!/usr/bin/env bash
# Edge protection under attack, Rampart beside HAProxy with Debian's default config,
# on loopback, with nginx (Debian) as the backend. Both terminate TLS (ECDSA P-256,
# ALPN h2 + http/1.1): Rampart on 127.0.0.1:18543 with its default protection, HAProxy
# on 127.0.0.1:18544 with /etc/haproxy/haproxy.cfg's global and defaults sections (the
# `stats socket` line removed so as not to meet a system instance's socket).
#
# Each scenario starts both proxies afresh, runs a legitimate client from 127.0.0.2
# (50 requests/s over keep-alive, 2 s deadline each) for DURATION + 4 s and, from
# second 2, the attack for DURATION s; it records the legitimate client's success rate
# and p99 latency and the proxy's peak resident memory (VmHWM). Attacks (all bounded
# in time, all on loopback):
#   none        no attack: the reference figures
#   slowloris   slowhttptest -H, 1000 connections (from 127.0.0.1)
#   slowbody    slowhttptest -B, 1000 connections
#   slowread    slowhttptest -X, 500 connections reading a 1 MiB file slowly
#   connflood   attack flood: TLS connection + request each, from 50,000 sources
#               (127.20.0.1 on), 32 at a time
#   reqflood    wrk -t1 -c100 keep-alive from 127.0.0.1
#   h2flood     h2load -c50 -m10 from 127.0.0.1
#   rapidreset  attack rapid-reset: HEADERS + RST_STREAM loops on 8 HTTP/2
#               connections from 127.0.0.3
# Then the cost of protection: keep-alive req/s (wrk -t1 -c50) of Rampart with
# `dangerousDisabled: true` against Rampart with protection on, 100,000 sources in its
# stick table and a request limit it checks on every request (high enough never to
# refuse), alternating, RUNS times.
#
# usage: bench/protect/run.sh [--runs N] [--duration S] [--out docs/benchmarks.md]
#                             [--scenarios "none slowloris ..."]  (empty: the cost only)
# Needs root only to install packages (nginx-light haproxy wrk nghttp2-client
# slowhttptest).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
RUNS=3
DURATION=10
OUT=docs/benchmarks.md
SCENARIOS="none slowloris slowbody slowread connflood reqflood h2flood rapidreset"
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --scenarios) SCENARIOS=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

need=()
for p in nginx:nginx-light haproxy:haproxy wrk:wrk h2load:nghttp2-client slowhttptest:slowhttptest openssl:openssl curl:curl; do
  command -v "${p%%:*}" >/dev/null 2>&1 || need+=("${p##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

cargo build --release -p rampart >/dev/null
cargo build --release -p rampart-edge --example attack >/dev/null
RAMPART=$ROOT/target/release/rampart
ATTACK=$ROOT/target/release/examples/attack

W=$(mktemp -d /tmp/rampart-bench-protect-XXXXXX)
chmod 711 "$W"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -- -"$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done
  [ -f "$W/nginx.pid" ] && kill "$(cat "$W/nginx.pid")" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

BACKEND=127.0.0.1:18180
FRONT_rampart=127.0.0.1:18543
FRONT_haproxy=127.0.0.1:18544
ADMIN=127.0.0.1:18901
for port in 18180 18543 18544 18901; do
  if ss -ltn "sport = :$port" | grep -q LISTEN; then echo "port $port is busy" >&2; exit 1; fi
done

openssl ecparam -name prime256v1 -genkey -noout -out "$W/key.pem" 2>/dev/null
openssl req -new -x509 -key "$W/key.pem" -out "$W/cert.pem" -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost 2>/dev/null
cat "$W/cert.pem" "$W/key.pem" > "$W/haproxy.pem"
chmod 644 "$W/haproxy.pem"

mkdir -p "$W/www" "$W/nginx-tmp"
chmod 755 "$W/www"
printf 'Hello from nginx behind the edge.\n' > "$W/www/index.html"
head -c 1048576 /dev/zero > "$W/www/big.bin"
chmod 644 "$W/www/"*
cat > "$W/nginx.conf" <<NGX
worker_processes 1;
pid $W/nginx.pid;
error_log $W/nginx-error.log;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $W/nginx-tmp; proxy_temp_path $W/nginx-tmp;
  fastcgi_temp_path $W/nginx-tmp; uwsgi_temp_path $W/nginx-tmp; scgi_temp_path $W/nginx-tmp;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  server { listen $BACKEND; root $W/www; location / { index index.html; } }
}
NGX
nginx -c "$W/nginx.conf"

# HAProxy: Debian's default global and defaults, plus a TLS frontend and the backend.
grep -v 'stats socket' /etc/haproxy/haproxy.cfg > "$W/haproxy.cfg"
cat >> "$W/haproxy.cfg" <<HAP

frontend fe
	bind $FRONT_haproxy ssl crt $W/haproxy.pem alpn h2,http/1.1
	default_backend be
backend be
	server nginx $BACKEND
HAP

rampart_config() {  # $1: extra protection lines
  cat > "$W/rampart.yaml" <<RAM
apiVersion: rampart.dev/v1alpha1
kind: EdgeGateway
metadata: {name: bench}
spec:
  accessLog: false
  admin: {address: "$ADMIN"}
  listeners:
    - name: https
      address: "$FRONT_rampart"
      tls:
        certificates: [{name: main, certFile: $W/cert.pem, keyFile: $W/key.pem}]
        defaultCertificate: main
      httpRoutes:
        - name: all
          backend: nginx
  backends:
    - name: nginx
      servers: [{address: "$BACKEND"}]
$1
RAM
}

PROXY_PID=
start_proxy() {
  case "$1" in
    haproxy) setsid haproxy -f "$W/haproxy.cfg" -db >"$W/haproxy.log" 2>&1 & ;;
    rampart) setsid "$RAMPART" edge --config "$W/rampart.yaml" >"$W/rampart.log" 2>&1 & ;;
  esac
  PROXY_PID=$!
  PIDS+=("$PROXY_PID")
  local front="FRONT_$1"
  for _ in $(seq 100); do
    curl -sk -o /dev/null --interface 127.0.0.9 "https://${!front}/" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$1 did not start" >&2; cat "$W/$1.log" >&2; exit 1
}
stop_proxy() {
  kill -TERM -- -"$PROXY_PID" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$PROXY_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- -"$PROXY_PID" 2>/dev/null || true
  sleep 1
}
peak_kb() {  # the largest VmHWM among the proxy's processes
  local max=0 v
  for f in /proc/[0-9]*/stat; do
    read -r -a s < "$f" 2>/dev/null || continue
    if [ "${s[4]}" = "$PROXY_PID" ]; then
      local pid=${f#/proc/}; pid=${pid%/stat}
      v=$(awk '/VmHWM/{print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
      [ "${v:-0}" -gt "$max" ] && max=$v
    fi
  done
  echo "$max"
}

attack() {  # $1 scenario, $2 front
  local url="https://$2/"
  case "$1" in
    none) sleep "$DURATION" ;;
    slowloris) timeout $((DURATION + 5)) slowhttptest -H -c 1000 -r 200 -i 10 -t GET -l "$DURATION" -u "$url" >/dev/null 2>&1 || true ;;
    slowbody) timeout $((DURATION + 5)) slowhttptest -B -c 1000 -r 200 -i 10 -s 65536 -t POST -l "$DURATION" -u "$url" >/dev/null 2>&1 || true ;;
    slowread) timeout $((DURATION + 5)) slowhttptest -X -c 500 -r 200 -w 10 -y 20 -n 5 -z 32 -k 3 -l "$DURATION" -u "${url}big.bin" >/dev/null 2>&1 || true ;;
    connflood) timeout $((DURATION + 10)) "$ATTACK" flood "$2" 50000 "$DURATION" 32 > "$W/attack.out" 2>&1 || true ;;
    reqflood) timeout $((DURATION + 5)) wrk -t1 -c100 -d"${DURATION}s" "$url" > "$W/attack.out" 2>&1 || true ;;
    h2flood) timeout $((DURATION + 5)) h2load -c50 -m10 -D"$DURATION" "$url" > "$W/attack.out" 2>&1 || true ;;
    rapidreset) timeout $((DURATION + 10)) "$ATTACK" rapid-reset "$2" 127.0.0.3 "$DURATION" 8 > "$W/attack.out" 2>&1 || true ;;
  esac
}

RES=$W/results.tsv
: > "$RES"
for run in $(seq "$RUNS"); do
  # The proxy that goes first meets the machine colder (the attacks' socket buffers
  # reach gigabytes, and memory the guest has not touched lately costs more the first
  # time): the order flips from one run to the next.
  order="rampart haproxy"
  if [ $((run % 2)) -eq 0 ]; then order="haproxy rampart"; fi
  for sc in $SCENARIOS; do
    for proxy in $order; do
      rampart_config ""
      start_proxy "$proxy"
      front="FRONT_$proxy"
      "$ATTACK" legit "${!front}" 127.0.0.2 50 $((DURATION + 4)) > "$W/legit.json" &
      legit=$!
      sleep 2
      attack "$sc" "${!front}"
      wait "$legit" || true
      mem=$(peak_kb)
      stop_proxy
      success=$(sed -E 's/.*"success": ([0-9.]+).*/\1/' "$W/legit.json")
      p99=$(sed -E 's/.*"p99_ms": ([0-9.a-zNA]+).*/\1/' "$W/legit.json")
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$proxy" "$run" "$sc" "$success" "$p99" "$mem" >> "$RES"
      printf '%-8s run %s %-11s success %s p99 %s ms peak %s kB\n' "$proxy" "$run" "$sc" "$success" "$p99" "$mem" >&2
    done
  done
done

# The cost of protection with 100,000 tracked sources.
COST=$W/cost.tsv
: > "$COST"
cost_run() {  # $1: off|on
  if [ "$1" = off ]; then
    rampart_config "  protection: {dangerousDisabled: true}"
  else
    rampart_config "  protection:
    table: {size: 200000}
    connections: {maxTotal: 9000, ratePerSource: 100000/10s, tlsHandshakesPerSource: 100000/10s}
    requestLimits: [{name: per-client, key: client, rate: 10000000/s}]"
  fi
  start_proxy rampart
  local tracked=0
  if [ "$1" = on ]; then
    timeout 120 "$ATTACK" flood "$FRONT_rampart" 100000 60 32 > /dev/null 2>&1 || true
    tracked=$(curl -s "http://$ADMIN/metrics" | awk '/^rampart_edge_protection_tracked_sources /{print $2}')
    # Top up: sources the flood did not reach in its time.
    if [ "${tracked:-0}" -lt 100000 ]; then
      timeout 120 "$ATTACK" flood "$FRONT_rampart" 100000 60 32 > /dev/null 2>&1 || true
      tracked=$(curl -s "http://$ADMIN/metrics" | awk '/^rampart_edge_protection_tracked_sources /{print $2}')
    fi
  fi
  local rss0 out rps
  rss0=$(awk '/VmRSS/{print $2}' "/proc/$PROXY_PID/status")
  out=$(wrk -t1 -c50 -d"${DURATION}s" --latency "https://$FRONT_rampart/")
  rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/{print $4}' <<<"$out")
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$rps" "$tracked" "$rss0" "${non2xx:-0}" >> "$COST"
  printf 'cost %-3s req/s %s tracked %s rss %s kB non-2xx %s\n' "$1" "$rps" "$tracked" "$rss0" "${non2xx:-0}" >&2
  stop_proxy
}
for run in $(seq "$RUNS"); do
  cost_run off
  cost_run on
done

python3 - "$RES" "$COST" "$OUT" "$RUNS" "$DURATION" <<'PY'
import statistics, sys, re
res, cost, out, runs, duration = sys.argv[1:6]
rows = [l.rstrip("\n").split("\t") for l in open(res) if l.strip()]
def med(xs):
    xs = [float(x) for x in xs if x not in ("", "NaN", "nan")]
    return statistics.median(xs) if xs else float("nan")
names = {"none": "no attack", "slowloris": "slowloris (slowhttptest -H, 1000 conns)",
         "slowbody": "slow body (slowhttptest -B, 1000 conns)", "slowread": "slow read (slowhttptest -X, 500 conns)",
         "connflood": "connection flood, 50,000 sources", "reqflood": "request flood (wrk -c100)",
         "h2flood": "HTTP/2 flood (h2load -c50 -m10)", "rapidreset": "HTTP/2 rapid reset, 8 conns"}
lines = []
lines.append("| attack | Rampart success | Rampart p99 ms | Rampart peak MB | HAProxy success | HAProxy p99 ms | HAProxy peak MB |")
lines.append("|---|---|---|---|---|---|---|")
for sc in names:
    def pick(proxy, col):
        return med([r[col] for r in rows if r[0] == proxy and r[2] == sc])
    cells = []
    for proxy in ("rampart", "haproxy"):
        s, p, m = pick(proxy, 3), pick(proxy, 4), pick(proxy, 5)
        cells += [f"{s*100:.2f}%", f"{p:.1f}", f"{m/1024:.0f}"]
    lines.append(f"| {names[sc]} | " + " | ".join(cells) + " |")
c = [l.rstrip("\n").split("\t") for l in open(cost) if l.strip()]
off = [float(r[1]) for r in c if r[0] == "off"]
on = [float(r[1]) for r in c if r[0] == "on"]
tracked = [r[2] for r in c if r[0] == "on"]
pairs = [b / a for a, b in zip(off, on) if a > 0]
cost_lines = [
    f"| protection | keep-alive req/s (median of {len(off)}) | tracked sources |",
    "|---|---|---|",
    f"| off (`dangerousDisabled`) | {statistics.median(off):.0f} | 0 |" if off else "| off | n/a | |",
    f"| on, limit checked per request | {statistics.median(on):.0f} | {', '.join(tracked)} |" if on else "| on | n/a | |",
]
ratio = statistics.median(pairs) if pairs else float("nan")
runs_text = "one run" if runs == "1" else f"medians of {runs} runs"
section = f"""## Edge protection

`bench/protect/run.sh --runs {runs} --duration {duration}` ({runs_text}; each
attack runs {duration} s while a legitimate client from another address makes 50
requests/s over TLS keep-alive with a 2 s deadline; both proxies restarted for each
row; peak memory is the proxy's VmHWM). Rampart runs its default protection; HAProxy
runs Debian's default configuration.

{chr(10).join(lines)}

Cost of protection with 100,000 tracked sources (a request limit checked on every
request, never refusing; wrk -t1 -c50 keep-alive, alternating runs):

{chr(10).join(cost_lines)}

Throughput with protection on / off: median ratio {ratio:.3f} (target: at least 0.95).
"""
text = open(out).read() if __import__("os").path.exists(out) else "# Benchmarks\n"
pat = re.compile(r"## Edge protection\n.*?(?=\n## |\Z)", re.S)
if pat.search(text):
    text = pat.sub(section.rstrip("\n") + "\n", text)
else:
    text = text.rstrip("\n") + "\n\n" + section
open(out, "w").write(text)
print(section)
PY
