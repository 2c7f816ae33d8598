#!/usr/bin/env bash
# Benchmark (not a test): ringhook against the Node.js tutorial receiver, side by side, on loopback.
#
#   scripts/bench.sh              # DURATION=10 CONNS=32 by default
#
# For each receiver: wrk with $CONNS connections POSTs the presence sample (fresh uuid each time)
# for $DURATION seconds while a second wrk on one connection sends handshakes; we read events/s and
# latency percentiles from wrk, RSS and threads from /proc, and start-up to the first answered
# handshake from scripts/bench/startup.py. Prints a Markdown table. Installs wrk (Debian) if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
TOKEN=bench-token
SAMPLE=$PWD/../shared/reference/events/extension-presence.json
[ -f "$SAMPLE" ] || SAMPLE=$PWD/scripts/bench/extension-presence.json

if ! command -v wrk >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
# What users deploy: the static musl binary (falls back to the host build if that cannot be built).
if bash scripts/build-static.sh x86_64 >/dev/null 2>&1; then
  BIN=$PWD/target/static/x86_64-unknown-linux-musl/release/ringhook
else
  cargo build --release --locked -q
  BIN=$PWD/target/release/ringhook
fi
HAVE_NODE=0
command -v node >/dev/null && HAVE_NODE=1

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

wait_port() { # PORT: wait until something answers there
  for _ in $(seq 1 500); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.01
  done
  echo "nothing listens on $1" >&2
  return 1
}

status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
mb() { awk -v kb="$1" 'BEGIN { printf "%.2f MB", kb / 1024 }'; }
# wrk prints latency percentiles as "  99%    1.23ms"; normalise to ms.
pct() {
  awk -v p="$2%" '$1 == p {
    v = $2; u = v; gsub(/[0-9.]/, "", u); sub(/[a-z]+$/, "", v)
    if (u == "us") v /= 1000; else if (u == "s") v *= 1000; else if (u == "m") v *= 60000
    printf "%.2f ms", v }' "$1"
}

rows=()
bench() { # NAME PORT LOGFILE COMMAND...
  local name=$1 port=$2 log=$3
  shift 3
  local start
  start=$(RUNS=${RUNS:-20} python3 scripts/bench/startup.py "$port" "$@")
  if [ -n "$log" ]; then "$@" >"$log" 2>"$work/$name.err" & else "$@" 2>"$work/$name.err" & fi
  local pid=$!
  pids+=("$pid")
  wait_port "$port"
  # Idle: after one handshake, so lazily-initialised state is in.
  python3 - "$port" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nValidation-Token: t\r\nContent-Length: 0\r\n\r\n")
s.recv(1024)
PY
  local idle threads
  idle=$(status_kb "$pid" VmRSS)
  BENCH_TOKEN=$TOKEN BENCH_SAMPLE=$SAMPLE wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency \
    -s scripts/bench/post.lua "http://127.0.0.1:$port/webhook" >"$work/$name.load" &
  local load=$!
  sleep 1 # let the load ramp up before sampling handshakes under it
  wrk -t1 -c1 -d"$((DURATION - 2))s" --latency -s scripts/bench/handshake.lua \
    "http://127.0.0.1:$port/webhook" >"$work/$name.hs"
  threads=$(status_kb "$pid" Threads)
  wait "$load"
  local peak eps non2xx
  peak=$(status_kb "$pid" VmHWM)
  eps=$(awk '/^Requests\/sec/ { printf "%.0f", $2 }' "$work/$name.load")
  non2xx=$(awk '/Non-2xx/ { print $5 }' "$work/$name.load")
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  local lines=""
  [ -n "$log" ] && lines=$(wc -l <"$log")
  rows+=("| $name | $eps | $(pct "$work/$name.load" 50) | $(pct "$work/$name.load" 99) | $(pct "$work/$name.hs" 99) | $(mb "$idle") | $(mb "$peak") | $threads | ${start% *} ms | ${non2xx:-0} | ${lines:-n/a} |")
}

export WEBHOOK_VERIFICATION_TOKEN=$TOKEN
bench "ringhook (file, fdatasync)" 38081 "" "$BIN" serve --listen 127.0.0.1:38081 --log-file "$work/events.log"
bench "ringhook (stdout)" 38082 "$work/stdout.log" "$BIN" serve --listen 127.0.0.1:38082
if [ "$HAVE_NODE" = 1 ]; then
  bench "node tutorial (stdout)" 38083 "$work/node.log" env PORT=38083 WEBHOOK_TOKEN=$TOKEN node scripts/bench/node-receiver.js
fi

echo
echo "wrk -t2 -c$CONNS -d${DURATION}s, presence sample, loopback; $(nproc) cores; $(uname -m); $(date -u +%F)"
echo
echo "| receiver | events/s | p50 | p99 | handshake p99 under load | idle RSS | peak RSS | threads | start-up to 1st handshake | non-2xx | lines logged |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "ringhook binary: $(stat -c %s "$BIN") bytes ($BIN)"
[ -f "$work/events.log" ] && echo "file sink lines: $(wc -l <"$work/events.log")"
