#!/usr/bin/env bash
# Benchmark (not a test): ringhook beside the one-process ceiling and the receivers it replaces,
# on loopback, in one run.
#
#   scripts/bench.sh [--sync-delay MS[,MS...]] [--ringhook-only]
#   DURATION=10 CONNS=32 RUNS=20 by default
#
# Receivers: nginx with one process answering `return 200` (the ceiling: parses HTTP, logs and
# syncs nothing); ringhook (the static musl binary users deploy; file sink with fdatasync, and
# stdout); the Node.js tutorial's receiver (Node's http module); the seed blog post's Express
# receiver (npm: express, body-parser, cors, helmet, morgan); adnanh/webhook (Debian's
# `webhook`). For each: the artifact's size on disk, whether it passes RingCentral's handshake
# (`ringhook check`), events/s and latency percentiles from wrk with $CONNS connections POSTing
# the presence sample (a fresh uuid each time), handshake p99 from a second wrk on one connection
# during that load, idle and peak RSS and threads from /proc, and start-up to the first answered
# request (scripts/bench/startup.py). Every figure is also given as a ratio to nginx's.
#
# --sync-delay 5,20: a Raspberry Pi's SD card, where fdatasync takes milliseconds. ringhook's file
# sink runs again with every fdatasync delayed by MS milliseconds (strace's syscall delay
# injection, which stops only on fdatasync), and a second table gives events/s, events per sync,
# notification and handshake latency, beside the group-commit bound $CONNS events / sync time.
# --ringhook-only: nginx and the ringhook rows only (a quicker run).
#
# Beside it: scripts/bench/stall.py (a 2 s sync on the FUSE slow disk, examples/slow_disk.rs:
# handshake, /health and /metrics latency while it is stuck) and scripts/bench/scrape-flood.sh
# (notifications while 50 connections scrape /metrics).
#
# Installs what it needs when run as root on Debian (wrk, nginx-light, nodejs, npm, webhook,
# strace; the Express packages from npm into a temporary directory); a receiver that cannot be
# installed is left out with a note, and one that is installed but cannot start stops the run
# with its error. Ports lie below the kernel's ephemeral range (scripts/bench/freeport.py).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
TOKEN=bench-token
SAMPLE=$PWD/tests/data/events/extension-presence.json
export RUNS=${RUNS:-20}

delays=()
only_ringhook=0
while (($#)); do
  case "$1" in
    --sync-delay)
      [ $# -ge 2 ] || { echo "bench: --sync-delay needs milliseconds, e.g. 5,20" >&2; exit 2; }
      IFS=, read -r -a delays <<<"$2"
      for d in "${delays[@]}"; do
        [[ $d =~ ^[0-9]+$ ]] && ((d > 0 && d <= 1000)) ||
          { echo "bench: --sync-delay $2: want whole milliseconds 1..1000, comma-separated" >&2; exit 2; }
      done
      shift 2
      ;;
    --ringhook-only) only_ringhook=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
((DURATION >= 4)) || { echo "bench: DURATION must be at least 4 (seconds)" >&2; exit 2; }
[ -f "$SAMPLE" ] || { echo "bench: the presence sample is missing: $SAMPLE" >&2; exit 1; }
command -v python3 >/dev/null || { echo "bench: needs python3" >&2; exit 1; }

notes=()
apt_updated=0
# have CMD PACKAGE: CMD exists, or PACKAGE was installed (root on Debian) and now it does.
have() {
  command -v "$1" >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    ((apt_updated)) || { apt-get update -qq >/dev/null 2>&1 || true; apt_updated=1; }
    echo "bench: installing $2" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 || true
  fi
  command -v "$1" >/dev/null
}
PATH=$PATH:/usr/sbin
have wrk wrk || { echo "bench: needs wrk (apt-get install wrk)" >&2; exit 1; }
have nginx nginx-light || { echo "bench: needs nginx, the ceiling (apt-get install nginx-light)" >&2; exit 1; }
if ((${#delays[@]})); then
  have strace strace || { echo "bench: --sync-delay needs strace (apt-get install strace)" >&2; exit 1; }
fi
if ((!only_ringhook)); then
  have node nodejs || notes+=("Node rows left out: node could not be installed (apt-get install nodejs)")
  command -v node >/dev/null && { have npm npm || notes+=("Express row left out: npm could not be installed"); }
  have webhook webhook || notes+=("adnanh/webhook row left out: Debian's webhook could not be installed")
fi

# What users deploy: the static musl binary (falls back to the host build if that cannot be built).
if bash scripts/build-static.sh x86_64 >/dev/null 2>&1; then
  BIN=$PWD/target/static/x86_64-unknown-linux-musl/release/ringhook
else
  notes+=("the static build failed: measured the host release build")
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

if ((!only_ringhook)) && command -v npm >/dev/null; then
  mkdir -p "$work/express"
  cp scripts/bench/express-package.json "$work/express/package.json"
  cp scripts/bench/express-receiver.js "$work/express/index.js"
  if ! (cd "$work/express" && npm install --silent --no-audit --no-fund >"$work/npm.log" 2>&1); then
    notes+=("Express row left out: npm install failed: $(tail -1 "$work/npm.log")")
    rm -rf "$work/express"
  fi
fi

die() { echo "bench: $*" >&2; exit 1; }
# wait_up NAME PID PORT: until something accepts on PORT; fails loudly if PID exits first.
wait_up() {
  for _ in $(seq 1 3000); do
    kill -0 "$2" 2>/dev/null || die "$1 exited before listening on $3: $(tail -5 "$work/err.log")"
    (exec 3<>"/dev/tcp/127.0.0.1/$3") 2>/dev/null && return 0
    sleep 0.01
  done
  die "$1 did not listen on $3 within 30 s: $(tail -5 "$work/err.log")"
}
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
# wrk prints latency percentiles as "  99%    1.23ms"; normalise to ms.
pct() {
  awk -v p="$2%" '$1 == p {
    v = $2; u = v; gsub(/[0-9.]/, "", u); sub(/[a-z]+$/, "", v)
    if (u == "us") v /= 1000; else if (u == "s") v *= 1000; else if (u == "m") v *= 60000
    printf "%.3f", v }' "$1"
}
mb() { awk -v kb="$1" 'BEGIN { printf "%.3f", kb / 1024 }'; }
human() { awk -v b="$1" 'BEGIN { if (b >= 1048576) printf "%.1f MB", b / 1048576; else printf "%.0f KB", b / 1024 }'; }
# fmt VALUE CEILING UNIT DECIMALS: "12.3 ms (0.45×)"
fmt() {
  awk -v v="$1" -v c="$2" -v u="$3" -v d="$4" 'BEGIN {
    if (v == "") { printf "?"; exit }
    printf "%." d "f%s", v, u
    if (c != "" && c > 0) printf " (%.2f×)", v / c }'
}

# Filled by measure(): the last run's figures.
m_eps= m_p50= m_p99= m_hs= m_idle= m_peak= m_threads= m_non2xx= m_err=
# measure NAME PORT PATH COMMAND...: starts COMMAND, loads it, stops it.
measure() {
  local name=$1 port=$2 path=$3
  shift 3
  "$@" >"$work/out.log" 2>"$work/err.log" &
  local pid=$!
  pids+=("$pid")
  wait_up "$name" "$pid" "$port"
  # Under strace the receiver is strace's child.
  local rpid=$pid
  if [ "$1" = strace ]; then rpid=$(pgrep -P "$pid" | head -1); fi
  passes="yes"
  if ! "$BIN" check --json "http://127.0.0.1:$port$path" >"$work/check.json" 2>/dev/null; then
    passes="no: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("; ".join(d.get("problems", [])) or "fails")' "$work/check.json" 2>/dev/null || echo fails)"
  fi
  m_idle=$(status_kb "$rpid" VmRSS)
  BENCH_PATH=$path BENCH_TOKEN=$TOKEN BENCH_SAMPLE=$SAMPLE wrk -t2 -c"$CONNS" -d"${DURATION}s" \
    --latency -s scripts/bench/post.lua "http://127.0.0.1:$port$path" >"$work/load.txt" &
  local load=$!
  sleep 1 # let the load ramp up before sampling handshakes under it
  BENCH_PATH=$path wrk -t1 -c1 -d"$((DURATION - 2))s" --latency -s scripts/bench/handshake.lua \
    "http://127.0.0.1:$port$path" >"$work/hs.txt"
  m_threads=$(status_kb "$rpid" Threads)
  wait "$load"
  m_peak=$(status_kb "$rpid" VmHWM)
  m_eps=$(awk '/^Requests\/sec/ { printf "%.0f", $2 }' "$work/load.txt")
  m_non2xx=$(awk '/Non-2xx/ { print $5 }' "$work/load.txt")
  m_non2xx=${m_non2xx:-0}
  m_p50=$(pct "$work/load.txt" 50)
  m_p99=$(pct "$work/load.txt" 99)
  m_hs=$(pct "$work/hs.txt" 99)
  kill -TERM "$rpid"
  wait "$pid" 2>/dev/null || true
  m_err=$(cat "$work/err.log")
}

# ringhook's stop line: "... N events logged in M batches ..." -> "N M"
logged_batches() { sed -n 's/.* \([0-9]*\) events logged in \([0-9]*\) batches.*/\1 \2/p' <<<"$m_err" | tail -1; }

c_eps= c_p50= c_p99= c_idle= c_peak=
rows=()
bench() { # NAME PORT PATH ARTIFACT_BYTES COMMAND...
  local name=$1 port=$2 path=$3 bytes=$4
  shift 4
  local start
  start=$(STARTUP_PATH=$path python3 scripts/bench/startup.py "$port" "$@") || die "$name cannot start"
  measure "$name" "$port" "$path" "$@"
  if [ -z "$c_eps" ]; then
    c_eps=$m_eps c_p50=$m_p50 c_p99=$m_p99 c_idle=$m_idle c_peak=$m_peak
  fi
  eps_of["$name"]=$m_eps
  local per_sync=""
  read -r logged batches < <(logged_batches) || true
  if [[ $name == *fdatasync* && -n ${batches:-} && ${batches:-0} -gt 0 ]]; then
    per_sync=" ($(awk -v l="$logged" -v b="$batches" 'BEGIN { printf "%.1f", l / b }') per sync)"
  fi
  rows+=("| $name | $(human "$bytes") | $passes | $(fmt "$m_eps" "$c_eps" "" 0)$per_sync | $(fmt "$m_p50" "$c_p50" " ms" 2) | $(fmt "$m_p99" "$c_p99" " ms" 2) | $(fmt "$m_hs" "" " ms" 2) | $(fmt "$(mb "$m_idle")" "$(mb "$c_idle")" " MB" 2) | $(fmt "$(mb "$m_peak")" "$(mb "$c_peak")" " MB" 2) | $m_threads | ${start% *} ms | $m_non2xx |")
}
declare -A eps_of

export WEBHOOK_VERIFICATION_TOKEN=$TOKEN
size_bin=$(stat -c %s "$BIN")
nginx_bin=$(command -v nginx)

port=$(python3 scripts/bench/freeport.py)
mkdir -p "$work/nginx"
sed -e "s|@DIR@|$work/nginx|g" -e "s|@PORT@|$port|g" scripts/bench/nginx.conf >"$work/nginx/nginx.conf"
bench "nginx, 1 process, return 200 (ceiling)" "$port" /webhook "$(stat -c %s "$nginx_bin")" \
  "$nginx_bin" -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf"

port=$(python3 scripts/bench/freeport.py)
bench "ringhook, file + fdatasync" "$port" /webhook "$size_bin" \
  "$BIN" serve --listen "127.0.0.1:$port" --log-file "$work/events.log"
file_logged=$(wc -l <"$work/events.log")
rm -f "$work/events.log"
port=$(python3 scripts/bench/freeport.py)
bench "ringhook, stdout" "$port" /webhook "$size_bin" "$BIN" serve --listen "127.0.0.1:$port"
if ((!only_ringhook)) && command -v node >/dev/null; then
  node_bytes=$(stat -c %s "$(readlink -f "$(command -v node)")")
  port=$(python3 scripts/bench/freeport.py)
  bench "Node tutorial (http)" "$port" /webhook "$((node_bytes + $(stat -c %s scripts/bench/node-receiver.js)))" \
    env PORT="$port" WEBHOOK_TOKEN=$TOKEN node scripts/bench/node-receiver.js
  if [ -d "$work/express/node_modules" ]; then
    port=$(python3 scripts/bench/freeport.py)
    bench "Express (blog post)" "$port" /webhook "$((node_bytes + $(du -sb "$work/express" | cut -f1)))" \
      env PORT="$port" node "$work/express/index.js"
  fi
fi
if ((!only_ringhook)) && command -v webhook >/dev/null; then
  port=$(python3 scripts/bench/freeport.py)
  bench "adnanh/webhook" "$port" /hooks/webhook "$(stat -c %s "$(command -v webhook)")" \
    webhook -hooks scripts/bench/hooks.json -ip 127.0.0.1 -port "$port"
fi

slow_rows=()
for d in "${delays[@]}"; do
  port=$(python3 scripts/bench/freeport.py)
  rm -f "$work/events.log"
  measure "ringhook, file, sync +$d ms" "$port" /webhook \
    strace -f --seccomp-bpf -qq -o /dev/null -e trace=fdatasync -e inject=fdatasync:delay_exit=$((d * 1000)) \
    "$BIN" serve --listen "127.0.0.1:$port" --log-file "$work/events.log"
  read -r logged batches < <(logged_batches) || { logged=0 batches=0; }
  per_sync=$(awk -v l="$logged" -v b="$batches" 'BEGIN { if (b > 0) printf "%.1f", l / b; else print "?" }')
  bound=$(awk -v c="$CONNS" -v d="$d" 'BEGIN { printf "%.0f", c * 1000 / d }')
  slow_rows+=("| +$d ms | $m_eps | $per_sync | $bound | $(awk -v e="$m_eps" -v b="$bound" 'BEGIN { printf "%.2f", e / b }') | $(fmt "$m_p50" "" " ms" 1) | $(fmt "$m_p99" "" " ms" 1) | $(fmt "$m_hs" "" " ms" 1) | $m_threads | $m_non2xx |")
done

echo
echo "wrk -t2 -c$CONNS -d${DURATION}s, presence sample (fresh uuid each), loopback; $(nproc) cores; $(uname -m); $(date -u '+%F %H:%M UTC'); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "(×: ratio to the nginx ceiling)"
echo
echo "| receiver | artifact | passes the handshake | events/s | p50 | p99 | handshake p99 under load | idle RSS | peak RSS | threads | start-up | non-2xx |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
file_eps=${eps_of["ringhook, file + fdatasync"]}
node_eps=${eps_of["Node tutorial (http)"]:-}
echo "ringhook file + fdatasync: $(fmt "$file_eps" "$c_eps" "" 0 | sed 's/.*(\(.*\))/\1/') nginx${node_eps:+, $(awk -v a="$file_eps" -v b="$node_eps" 'BEGIN { printf "%.2f×", a / b }') the Node tutorial}; $file_logged events logged"
if ((${#slow_rows[@]})); then
  echo
  echo "Slow disk: every fdatasync delayed (strace -e inject=fdatasync:delay_exit), file sink, $CONNS connections;"
  echo "bound = $CONNS events per sync (one per connection) / sync time"
  echo
  echo "| sync delay | events/s | events per sync | bound | of bound | p50 | p99 | handshake p99 | threads | non-2xx |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${slow_rows[@]}"
fi
echo
echo "ringhook: $BIN"
for n in "${notes[@]}"; do echo "note: $n"; done
