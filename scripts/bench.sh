#!/usr/bin/env bash
# Benchmark (not a test): ringhook beside the receivers it replaces, on loopback, in one run.
#
#   scripts/bench.sh              # DURATION=10 CONNS=32 RUNS=20 by default
#
# Receivers: ringhook (the static musl binary users deploy; file sink with fdatasync, and stdout),
# the Node.js tutorial's receiver (Node's http module), the seed blog post's Express receiver
# (npm: express, body-parser, cors, helmet, morgan), and adnanh/webhook (Debian's `webhook`)
# when it can be installed. For each: the artifact's size on disk, whether it passes
# RingCentral's handshake (`ringhook check`), events/s and latency percentiles from wrk with
# $CONNS connections POSTing the presence sample (a fresh uuid each time), handshake p99 from a
# second wrk on one connection during that load, idle and peak RSS and threads from /proc, and
# start-up to the first answered request (scripts/bench/startup.py). Prints Markdown tables.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
TOKEN=bench-token
SAMPLE=$PWD/../shared/reference/events/extension-presence.json
export RUNS=${RUNS:-20}

apt_install() {
  [ "$(id -u)" = 0 ] || return 1
  apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
}
command -v wrk >/dev/null || apt_install wrk
command -v webhook >/dev/null || apt_install webhook || true

# What users deploy: the static musl binary (falls back to the host build if that cannot be built).
if bash scripts/build-static.sh x86_64 >/dev/null 2>&1; then
  BIN=$PWD/target/static/x86_64-unknown-linux-musl/release/ringhook
else
  cargo build --release --locked -q
  BIN=$PWD/target/release/ringhook
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

if command -v node >/dev/null && command -v npm >/dev/null; then
  mkdir -p "$work/express"
  cp scripts/bench/express-package.json "$work/express/package.json"
  cp scripts/bench/express-receiver.js "$work/express/index.js"
  (cd "$work/express" && npm install --silent --no-audit --no-fund >/dev/null 2>&1) || rm -rf "$work/express"
fi

wait_port() { # PORT: wait until something accepts there
  for _ in $(seq 1 1000); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.01
  done
  echo "nothing listens on $1" >&2
  return 1
}
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
mb() { awk -v kb="$1" 'BEGIN { printf "%.2f MB", kb / 1024 }'; }
human() { awk -v b="$1" 'BEGIN { if (b >= 1048576) printf "%.1f MB", b / 1048576; else printf "%.0f KB", b / 1024 }'; }
# wrk prints latency percentiles as "  99%    1.23ms"; normalise to ms.
pct() {
  awk -v p="$2%" '$1 == p {
    v = $2; u = v; gsub(/[0-9.]/, "", u); sub(/[a-z]+$/, "", v)
    if (u == "us") v /= 1000; else if (u == "s") v *= 1000; else if (u == "m") v *= 60000
    printf "%.2f ms", v }' "$1"
}

rows=()
bench() { # NAME PORT PATH ARTIFACT_BYTES COMMAND...
  local name=$1 port=$2 path=$3 bytes=$4
  shift 4
  local start
  start=$(STARTUP_PATH=$path python3 scripts/bench/startup.py "$port" "$@")
  "$@" >"$work/out.log" 2>"$work/err.log" &
  local pid=$!
  pids+=("$pid")
  wait_port "$port"
  local passes="yes"
  if ! "$BIN" check --json "http://127.0.0.1:$port$path" >"$work/check.json" 2>/dev/null; then
    passes="no: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("; ".join(d.get("problems", [])) or "fails")' "$work/check.json" 2>/dev/null || echo fails)"
  fi
  local idle threads
  idle=$(status_kb "$pid" VmRSS)
  BENCH_PATH=$path BENCH_TOKEN=$TOKEN BENCH_SAMPLE=$SAMPLE wrk -t2 -c"$CONNS" -d"${DURATION}s" \
    --latency -s scripts/bench/post.lua "http://127.0.0.1:$port$path" >"$work/load.txt" &
  local load=$!
  sleep 1 # let the load ramp up before sampling handshakes under it
  BENCH_PATH=$path wrk -t1 -c1 -d"$((DURATION - 2))s" --latency -s scripts/bench/handshake.lua \
    "http://127.0.0.1:$port$path" >"$work/hs.txt"
  threads=$(status_kb "$pid" Threads)
  wait "$load"
  local peak eps non2xx
  peak=$(status_kb "$pid" VmHWM)
  eps=$(awk '/^Requests\/sec/ { printf "%.0f", $2 }' "$work/load.txt")
  non2xx=$(awk '/Non-2xx/ { print $5 }' "$work/load.txt")
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  rows+=("| $name | $(human "$bytes") | $passes | $eps | $(pct "$work/load.txt" 50) | $(pct "$work/load.txt" 99) | $(pct "$work/hs.txt" 99) | $(mb "$idle") | $(mb "$peak") | $threads | ${start% *} ms | ${non2xx:-0} |")
}

export WEBHOOK_VERIFICATION_TOKEN=$TOKEN
size_bin=$(stat -c %s "$BIN")
bench "ringhook, file + fdatasync" 38081 /webhook "$size_bin" "$BIN" serve --listen 127.0.0.1:38081 --log-file "$work/events.log"
bench "ringhook, stdout" 38082 /webhook "$size_bin" "$BIN" serve --listen 127.0.0.1:38082
if command -v node >/dev/null; then
  node_bytes=$(stat -c %s "$(readlink -f "$(command -v node)")")
  bench "Node tutorial (http)" 38083 /webhook "$((node_bytes + $(stat -c %s scripts/bench/node-receiver.js)))" \
    env PORT=38083 WEBHOOK_TOKEN=$TOKEN node scripts/bench/node-receiver.js
  if [ -d "$work/express/node_modules" ]; then
    bench "Express (blog post)" 38084 /webhook "$((node_bytes + $(du -sb "$work/express" | cut -f1)))" \
      env PORT=38084 node "$work/express/index.js"
  fi
fi
if command -v webhook >/dev/null; then
  bench "adnanh/webhook" 38085 /hooks/webhook "$(stat -c %s "$(command -v webhook)")" \
    webhook -hooks scripts/bench/hooks.json -ip 127.0.0.1 -port 38085
fi

echo
echo "wrk -t2 -c$CONNS -d${DURATION}s, presence sample, loopback; $(nproc) cores; $(uname -m); $(date -u +%F)"
echo
echo "| receiver | artifact | passes the handshake | events/s | p50 | p99 | handshake p99 under load | idle RSS | peak RSS | threads | start-up | non-2xx |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "ringhook: $BIN"
[ -f "$work/events.log" ] && echo "ringhook file sink: $(wc -l <"$work/events.log") events logged"
