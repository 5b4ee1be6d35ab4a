#!/usr/bin/env bash
# Rampart's edge against HAProxy, side by side on loopback, with nginx (Debian) as the
# backend. Both proxies terminate TLS (ECDSA P-256, TLS 1.3, ALPN h2 + http/1.1) on
# 127.0.0.1:18443 and forward to nginx on 127.0.0.1:18080 with keep-alive.
#
# Tests, each run for both proxies in turn, RUNS times, alternating:
#   h1      HTTPS/1.1 keep-alive: wrk -t1 -c50 -d${DURATION}s --latency
#   h2      HTTP/2: h2load -c50 -m10 -D${DURATION} (1 s warm-up)
#   hsfull  full TLS handshakes/s: handshake_load (rustls client, 50 clients, one
#           request per connection, no resumption)
#   hsres   resumed TLS handshakes/s: the same with session tickets
#   mem     RSS per idle TLS connection: 1000 connections holding an unfinished header,
#           measured first in a freshly started proxy
# CPU seconds used by each proxy's process group are recorded, so per-core rates
# (req/s / proxy cores) can be compared too: load generator, backend and proxy share
# the machine's cores.
#
# usage: bench/edge/run.sh [--runs N] [--duration S] [--out docs/benchmarks.md]
# Needs root only to install packages (nginx-light haproxy wrk nghttp2-client python3).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
RUNS=3
DURATION=10
OUT=docs/benchmarks.md
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

need=()
for p in nginx:nginx-light haproxy:haproxy wrk:wrk h2load:nghttp2-client python3:python3 openssl:openssl; do
  command -v "${p%%:*}" >/dev/null 2>&1 || need+=("${p##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

cargo build --release -p rampart >/dev/null
cargo build --release -p rampart-edge --example handshake_load >/dev/null
RAMPART=$ROOT/target/release/rampart
LOAD=$ROOT/target/release/examples/handshake_load

W=$(mktemp -d /tmp/rampart-bench-edge-XXXXXX)
chmod 711 "$W"   # nginx workers (www-data) read $W/www
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -- -"$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done
  [ -f "$W/nginx.pid" ] && kill "$(cat "$W/nginx.pid")" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

BACKEND=127.0.0.1:18080
# Each proxy has its own port so that both can run at once: tests alternate between
# them a few seconds apart rather than a minute apart.
FRONT_haproxy=127.0.0.1:18443
FRONT_rampart=127.0.0.1:18444
for port in 18080 18443 18444; do
  if ss -ltn "sport = :$port" | grep -q LISTEN; then echo "port $port is busy" >&2; exit 1; fi
done

# ECDSA P-256 certificate for localhost.
openssl ecparam -name prime256v1 -genkey -noout -out "$W/key.pem" 2>/dev/null
openssl req -new -x509 -key "$W/key.pem" -out "$W/cert.pem" -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost 2>/dev/null
cat "$W/cert.pem" "$W/key.pem" > "$W/haproxy.pem"

# nginx: one worker, a 34-byte static file, keep-alive without limit.
mkdir -p "$W/www" "$W/nginx-tmp"
chmod 755 "$W/www"
printf 'Hello from nginx behind the edge.\n' > "$W/www/index.html"
cat > "$W/nginx.conf" <<NGX
worker_processes 1;
pid $W/nginx.pid;
error_log $W/nginx-error.log;
events { worker_connections 4096; }
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

cat > "$W/haproxy.cfg" <<HAP
global
  nbthread ${HAPROXY_THREADS:-2}
  maxconn 9000
  ssl-default-bind-options ssl-min-ver TLSv1.2
  # The same TLS 1.3 suite order as Rampart (Mozilla's): AES-128-GCM first.
  ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
  tune.ssl.default-dh-param 2048
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-request 10s
  timeout http-keep-alive 10s
  option http-keep-alive
  http-reuse always
frontend fe
  bind $FRONT_haproxy ssl crt $W/haproxy.pem alpn h2,http/1.1
  # The forwarding fields Rampart sets on every request, client-supplied ones
  # replaced (X-Forwarded-For, -Proto, -Host and Forwarded): the same work, and the
  # same request head at nginx. (HAProxy 2.6 has no "option forwarded".)
  http-request del-header x-forwarded-for
  option forwardfor
  http-request set-header x-forwarded-proto https
  http-request set-header x-forwarded-host %[req.hdr(host)]
  http-request set-header forwarded "for=%[src];proto=https;host=\\"%[req.hdr(host)]\\""
  default_backend be
backend be
  server nginx $BACKEND
HAP

cat > "$W/rampart.yaml" <<RAM
apiVersion: rampart.dev/v1alpha1
kind: EdgeGateway
metadata: {name: bench}
spec:
  accessLog: false
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
  # The load generators are one source each, far above per-source limits; this
  # benchmark measures the data path (bench/protect measures protection).
  protection: {exempt: [127.0.0.0/8]}
RAM

declare -A PGID
start_proxy() {
  case "$1" in
    haproxy) setsid haproxy -f "$W/haproxy.cfg" -db >"$W/haproxy.log" 2>&1 & ;;
    rampart) setsid "$RAMPART" edge --config "$W/rampart.yaml" ${RAMPART_THREADS:+--threads $RAMPART_THREADS} >"$W/rampart.log" 2>&1 & ;;
  esac
  PGID[$1]=$!
  PIDS+=("$!")
  local front="FRONT_$1"
  for _ in $(seq 100); do
    curl -sk -o /dev/null "https://${!front}/" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$1 did not start" >&2; cat "$W/$1.log" >&2; exit 1
}
stop_proxy() {
  local pid=${PGID[$1]}
  kill -TERM -- -"$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- -"$pid" 2>/dev/null || true
  sleep 0.5
}
# CPU ticks (user+system) of the measured proxy's process group.
cpu_ticks() {
  local total=0
  for f in /proc/[0-9]*/stat; do
    read -r -a s < "$f" 2>/dev/null || continue
    # field 5 is pgrp (index 4), utime 14, stime 15 (indexes 13, 14); comm has no spaces here.
    if [ "${s[4]}" = "$PROXY_PID" ]; then total=$((total + s[13] + s[14])); fi
  done
  echo "$total"
}
rss_kb() {
  local total=0
  for f in /proc/[0-9]*/stat; do
    read -r -a s < "$f" 2>/dev/null || continue
    if [ "${s[4]}" = "$PROXY_PID" ]; then
      local pid=${f#/proc/}; pid=${pid%/stat}
      total=$((total + $(awk '/VmRSS/{print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)))
    fi
  done
  echo "$total"
}
HZ=$(getconf CLK_TCK)

RES=$W/results.tsv
: > "$RES"
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$RES"; }  # proxy run test rate p99ms cores

run_h1() {
  local c0 c1 out rps p99
  c0=$(cpu_ticks)
  out=$(wrk -t1 -c50 -d"${DURATION}s" --latency "https://$FRONT/")
  c1=$(cpu_ticks)
  rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
  p99=$(awk '$1=="99%"{v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' <<<"$out")
  record "$1" "$2" h1 "$rps" "$p99" "$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" -v d="$DURATION" 'BEGIN{printf "%.2f", (b-a)/hz/d}')"
}
run_h2() {
  local c0 c1 out rps p99 t0 t1
  t0=$(date +%s.%N); c0=$(cpu_ticks)
  out=$(h2load -c50 -m10 -D"$DURATION" --warm-up-time=1 "https://$FRONT/" 2>&1)
  c1=$(cpu_ticks); t1=$(date +%s.%N)
  rps=$(awk '/^finished in/{for(i=1;i<=NF;i++) if ($i ~ /req\/s/) {v=$(i-1); gsub(/,/,"",v); print v}}' <<<"$out")
  # h2load prints time for request as min max mean sd (no percentile): report the mean.
  p99=$(awk '/^time for request:/{v=$6; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' <<<"$out")
  record "$1" "$2" h2 "$rps" "$p99" "$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" -v t0="$t0" -v t1="$t1" 'BEGIN{printf "%.2f", (b-a)/hz/(t1-t0)}')"
}
# Handshakes: a rustls client (crates/edge/examples/handshake_load.rs) that skips
# certificate verification so that the client, which shares the cores, stays cheap;
# one request per connection, Connection: close. "full" never resumes; "resumed"
# resumes every connection after the first with a ticket.
run_hs() {
  local c0 c1 out rate
  c0=$(cpu_ticks); local t0; t0=$(date +%s.%N)
  out=$("$LOAD" "$FRONT" "$DURATION" 50 "$3")
  c1=$(cpu_ticks); local t1; t1=$(date +%s.%N)
  rate=$(awk '{print $4}' <<<"$out")
  echo "$1 $3: $out" >&2
  record "$1" "$2" "$4" "$rate" "-" "$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" -v t0="$t0" -v t1="$t1" 'BEGIN{printf "%.2f", (b-a)/hz/(t1-t0)}')"
}
run_hsfull() { run_hs "$1" "$2" full hsfull; }
run_hsres() { run_hs "$1" "$2" resumed hsres; }
run_mem() {
  local before after out
  sleep 1
  before=$(rss_kb)
  rm -f "$W/ready"
  python3 "$ROOT/bench/edge/hold.py" "${FRONT%:*}" "${FRONT##*:}" 1000 4 "$W/ready" > "$W/hold.out" &
  local hp=$!
  for _ in $(seq 600); do [ -f "$W/ready" ] && break; sleep 0.1; done
  sleep 1
  after=$(rss_kb)
  wait "$hp" || true
  local est
  est=$(awk '/established/{print $2}' "$W/hold.out")
  record "$1" "$2" mem "$(awk -v a="$before" -v b="$after" -v n="${est:-1000}" 'BEGIN{printf "%.1f", (b-a)/n}')" "-" "-"
}

# For experiments: PROXIES="rampart" TESTS="h2 mem" bench/edge/run.sh ...
PROXIES=${PROXIES:-haproxy rampart}
TESTS=${TESTS:-mem h1 h2 hsfull hsres}
use() { PROXY_PID=${PGID[$1]}; local front="FRONT_$1"; FRONT=${!front}; }
for run in $(seq "$RUNS"); do
  # Fresh processes each run; mem is measured first, in the fresh process.
  order=$PROXIES
  if [ $((run % 2)) -eq 0 ]; then order=$(tr ' ' '\n' <<<"$PROXIES" | tac | tr '\n' ' '); fi
  for proxy in $order; do
    start_proxy "$proxy"
    use "$proxy"
    curl -sk "https://$FRONT/" | grep -q "Hello from nginx" || { echo "$proxy does not proxy" >&2; exit 1; }
    if [[ " $TESTS " == *" mem "* ]]; then echo "run $run: $proxy mem" >&2; run_mem "$proxy" "$run"; fi
  done
  for t in $TESTS; do
    [ "$t" = mem ] && continue
    for proxy in $order; do
      echo "run $run: $proxy $t" >&2
      use "$proxy"
      "run_$t" "$proxy" "$run"
    done
  done
  for proxy in $order; do stop_proxy "$proxy"; done
done

# Medians and ratios.
python3 - "$RES" "$OUT" "$RUNS" "$DURATION" <<'PY'
import statistics, sys, subprocess, datetime
res, out, runs, duration = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
rows = [l.rstrip("\n").split("\t") for l in open(res) if l.strip()]
def vals(proxy, test, col):
    v = []
    for r in rows:
        if r[0] == proxy and r[2] == test and r[col] not in ("-", ""):
            v.append(float(r[col]))
    return v
def med(v):
    return statistics.median(v) if v else float("nan")
tests = [("h1", "HTTPS/1.1 keep-alive req/s (wrk -c50)", True),
         ("h2", "HTTP/2 req/s (h2load -c50 -m10)", True),
         ("hsfull", "full TLS handshakes/s (rustls client, 1 req per conn)", True),
         ("hsres", "resumed TLS handshakes/s (tickets, 1 req per conn)", True),
         ("mem", "RSS per idle TLS connection, kB (1000 held, unfinished header, fresh process)", False)]
lines = []
lines.append("| test | HAProxy (median) | Rampart (median) | ratio Rampart/HAProxy | HAProxy runs | Rampart runs | per proxy core: HAProxy / Rampart / ratio |")
lines.append("|---|---|---|---|---|---|---|")
for key, title, higher in tests:
    h, r = vals("haproxy", key, 3), vals("rampart", key, 3)
    mh, mr = med(h), med(r)
    ratio = mr / mh if mh else float("nan")
    pc = ""
    if key != "mem":
        ch, cr = vals("haproxy", key, 5), vals("rampart", key, 5)
        perh = med([a / c for a, c in zip(h, ch) if c > 0])
        perr = med([a / c for a, c in zip(r, cr) if c > 0])
        pc = f"{perh:,.0f} / {perr:,.0f} / {perr / perh:.2f}x" if perh else ""
    fmt = (lambda x: f"{x:,.1f}") if key == "mem" else (lambda x: f"{x:,.0f}")
    lines.append(f"| {title} | {fmt(mh)} | {fmt(mr)} | {ratio:.2f}x | {', '.join(fmt(x) for x in h)} | {', '.join(fmt(x) for x in r)} | {pc} |")
p99h, p99r = vals("haproxy", "h1", 4), vals("rampart", "h1", 4)
lat = f"HTTPS/1.1 p99 latency (wrk), ms: HAProxy median {med(p99h):.2f} (runs {', '.join(f'{x:.2f}' for x in p99h)}), Rampart median {med(p99r):.2f} (runs {', '.join(f'{x:.2f}' for x in p99r)})."
mx_h, mx_r = vals("haproxy", "h2", 4), vals("rampart", "h2", 4)
lat2 = f"HTTP/2 mean request time (h2load prints no percentile), ms: HAProxy median {med(mx_h):.1f}, Rampart median {med(mx_r):.1f}."
cores_h1 = f"Proxy CPU during HTTPS/1.1 (cores): HAProxy {', '.join(f'{x:.2f}' for x in vals('haproxy','h1',5))}; Rampart {', '.join(f'{x:.2f}' for x in vals('rampart','h1',5))}."
haproxy_v = subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout.splitlines()[0]
nginx_v = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
block = "\n".join([
    "<!-- edge-bench:start -->",
    f"Run: {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, {runs} runs of {duration} s per test, proxies alternating.",
    f"Peers: {haproxy_v.split(' - ')[0]} (nbthread 2, OpenSSL from Debian); {nginx_v} backend (1 worker). Rampart: release build, 2 worker threads.",
    "",
    *lines,
    "",
    lat,
    lat2,
    cores_h1,
    "<!-- edge-bench:end -->",
])
import os, re
text = open(out).read() if os.path.exists(out) else ""
if "<!-- edge-bench:start -->" in text:
    text = re.sub(r"<!-- edge-bench:start -->.*?<!-- edge-bench:end -->", lambda m: block, text, flags=re.S)
else:
    text = text + ("\n" if text else "") + block + "\n"
open(out, "w").write(text)
print(block)
PY
