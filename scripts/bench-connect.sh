#!/usr/bin/env bash
# Benchmark (not a test): `ringhook connect` beside `ringhook serve`, on loopback, into a log file
# with fdatasync (group commit), with the same presence sample (a fresh uuid each).
#
#   scripts/bench-connect.sh [BINARY]      N=20000 CONNS=32 by default
#
# connect: a minimal gateway (scripts/bench/wsg.py) sends N notifications over the WebSocket as
# fast as the socket takes them; the figure is N / (time from the first sent to the N-th line in
# the log). serve: scripts/bench/drive.py POSTs N notifications over CONNS keep-alive connections
# (each answered only once synced); the figure is N / its wall time. Idle RSS: VmRSS of connect's
# two processes (the loop and the session child) once subscribed, before the burst, and serve's
# once listening, and how much of it is private (RssAnon; the rest is the binary's clean pages,
# shared with the page cache). BINARY defaults to the static musl build (scripts/build-static.sh x86_64),
# else target/release/ringhook.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20000}
CONNS=${CONNS:-32}
export BENCH_SAMPLE=$PWD/tests/data/events/extension-presence.json
export BENCH_TOKEN=bench-token
BIN=${1:-$PWD/target/static/x86_64-unknown-linux-musl/release/ringhook}
[ -x "$BIN" ] || BIN=$PWD/target/release/ringhook
[ -x "$BIN" ] || { echo "bench-connect: build first (scripts/build-static.sh x86_64 or cargo build --release)" >&2; exit 1; }
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
# Proportional set size: the two processes of one binary share its text pages.
pss_kb() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup"; }
# Private memory: the heap, stacks and written data; the rest of RSS is the binary's clean pages.
anon_kb() { awk '/^RssAnon/ {print $2}' "/proc/$1/status"; }
lines() { [ -f "$1" ] && wc -l <"$1" || echo 0; }
wait_lines() { # FILE N: bounded wait (120 s)
  local end=$((SECONDS + 120))
  while (($(lines "$1") < $2)); do
    ((SECONDS < end)) || { echo "bench-connect: only $(lines "$1") of $2 logged" >&2; exit 1; }
    sleep 0.01
  done
}

# ---- connect ----
port=$(python3 scripts/bench/freeport.py)
mkfifo "$dir/go"
python3 scripts/bench/wsg.py "$port" "$N" <"$dir/go" >"$dir/wsg.out" &
pids+=($!)
exec 3>"$dir/go"
for _ in $(seq 200); do (exec 2>/dev/null; : >/dev/tcp/127.0.0.1/"$port") && break; sleep 0.02; done
env -i PATH="$PATH" RC_SERVER_URL="http://127.0.0.1:$port" RC_CLIENT_ID=id RC_CLIENT_SECRET=secret \
  RC_JWT=jwt RINGHOOK_STATE="$dir/state.json" \
  RINGHOOK_EVENT_FILTERS=/restapi/v1.0/account/~/extension/~/presence \
  "$BIN" connect --log-file "$dir/connect.jsonl" 2>"$dir/connect.err" &
cpid=$!
pids+=($cpid)
end=$((SECONDS + 30))
until grep -q ready "$dir/wsg.out"; do
  { ((SECONDS < end)) && kill -0 "$cpid" 2>/dev/null; } || { cat "$dir/connect.err" >&2; echo "bench-connect: connect never subscribed" >&2; exit 1; }
  sleep 0.01
done
sleep 1 # let both processes settle before reading idle memory
child=$(pgrep -P "$cpid" | head -1)
c_parent=$(rss_kb "$cpid")
c_child=$(rss_kb "$child")
c_pss=$(($(pss_kb "$cpid") + $(pss_kb "$child")))
c_anon="$(anon_kb "$cpid") kB + $(anon_kb "$child") kB"
t0=$(date +%s.%N)
echo go >&3
wait_lines "$dir/connect.jsonl" "$N"
t1=$(date +%s.%N)
connect_rate=$(python3 -c "print(round($N/($t1-$t0)))")
kill -TERM "$cpid"; wait "$cpid" || true

# ---- serve ----
port=$(python3 scripts/bench/freeport.py)
env -i PATH="$PATH" WEBHOOK_VERIFICATION_TOKEN=$BENCH_TOKEN \
  "$BIN" serve --listen "127.0.0.1:$port" --log-file "$dir/serve.jsonl" 2>"$dir/serve.err" &
spid=$!
pids+=($spid)
for _ in $(seq 200); do grep -q "listening on" "$dir/serve.err" && break; sleep 0.02; done
s_idle=$(rss_kb "$spid")
s_pss=$(pss_kb "$spid")
s_anon=$(anon_kb "$spid")
t0=$(date +%s.%N)
python3 scripts/bench/drive.py "$port" "$N" "$CONNS"
t1=$(date +%s.%N)
serve_rate=$(python3 -c "print(round($N/($t1-$t0)))")
kill -TERM "$spid"; wait "$spid" || true

echo "binary: $BIN ($(stat -c %s "$BIN") bytes)"
echo "connect: $N notifications over one WebSocket -> log: $connect_rate events/s"
echo "serve:   $N notifications over $CONNS HTTP connections -> log: $serve_rate events/s"
echo "idle RSS: connect loop ${c_parent} kB + session child ${c_child} kB = $((c_parent + c_child)) kB (PSS ${c_pss} kB); serve ${s_idle} kB (PSS ${s_pss} kB)"
echo "idle private memory (RssAnon): connect loop + session child = $c_anon; serve $s_anon kB"
