#!/usr/bin/env bash
# Benchmark (not a test): where the time of the durable path goes (issue 22). For each binary
# given, and for the file sink (fdatasync) and stdout, in turn: events/s from wrk ($CONNS
# connections POSTing the presence sample, a fresh uuid each), the CPU of each of the receiver's
# threads (the loop, the disk thread) and of wrk over the middle of the run, how busy the whole
# machine was, and the syncs from /metrics (count, mean fdatasync, the share of the time the disk
# was syncing). Several binaries alternate, $ROUNDS times, so an A/B comparison shares the noise.
#
#   scripts/bench/cpu-split.sh [BINARY...]   # the static x86_64 build by default
#   DURATION=6 CONNS=32 ROUNDS=1
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-6} CONNS=${CONNS:-32} ROUNDS=${ROUNDS:-1}
((DURATION >= 4)) || { echo "cpu-split: DURATION must be at least 4 (seconds)" >&2; exit 2; }
command -v wrk >/dev/null || { echo "cpu-split: needs wrk (apt-get install wrk)" >&2; exit 1; }
bins=("$@")
if ((${#bins[@]} == 0)); then
  bins=("$PWD/target/static/x86_64-unknown-linux-musl/release/ringhook")
  [ -x "${bins[0]}" ] || bash scripts/build-static.sh x86_64 >/dev/null
fi
for b in "${bins[@]}"; do [ -x "$b" ] || { echo "cpu-split: $b is not an executable" >&2; exit 2; }; done
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
export WEBHOOK_VERIFICATION_TOKEN=bench-token
hz=$(getconf CLK_TCK)

# Per-thread CPU ticks of PID, wrk's, and the machine's /proc/stat line.
ticks() {
  local t
  for t in /proc/"$1"/task/*; do echo "thread $(cat "$t/comm" | tr ' ' _) $(awk '{print $14 + $15}' "$t/stat")"; done
  echo "thread wrk $(awk '{print $14 + $15}' /proc/"$2"/stat)"
  head -1 /proc/stat
}

run() { # BINARY SINK
  local bin=$1 sink=$2 port pid load args=()
  port=$(python3 scripts/bench/freeport.py)
  [ "$sink" = file ] && args=(--log-file "$work/events.log")
  "$bin" serve --listen "127.0.0.1:$port" --metrics-path /metrics "${args[@]}" >/dev/null 2>"$work/err.log" &
  pid=$!
  for _ in $(seq 1 300); do grep -q "listening on" "$work/err.log" && break; sleep 0.01; done
  grep -q "listening on" "$work/err.log" || { echo "cpu-split: $bin did not start:" >&2; cat "$work/err.log" >&2; exit 1; }
  BENCH_PATH=/webhook BENCH_TOKEN=bench-token BENCH_SAMPLE=$PWD/tests/data/events/extension-presence.json \
    wrk -t2 -c"$CONNS" -d"${DURATION}s" -s scripts/bench/post.lua "http://127.0.0.1:$port/webhook" >"$work/load.txt" &
  load=$!
  sleep 1 # the load ramps up
  ticks "$pid" "$load" >"$work/a"
  sleep "$((DURATION - 2))"
  ticks "$pid" "$load" >"$work/b"
  wait "$load"
  curl -s "http://127.0.0.1:$port/metrics" >"$work/metrics.txt" || true
  kill -TERM "$pid"
  wait "$pid" || true
  rm -f "$work/events.log"
  python3 - "$work/a" "$work/b" "$work/load.txt" "$work/metrics.txt" "$((DURATION - 2))" "$hz" "$(basename "$bin")" "$sink" "$DURATION" <<'PY'
import re, sys
a, b, load, metrics, secs, hz, name, sink, duration = sys.argv[1:]
secs, hz, duration = float(secs), float(hz), float(duration)
def read(path):
    threads, cpu = [], None
    for line in open(path):
        f = line.split()
        if f[0] == "thread":
            threads.append((f[1], int(f[2])))
        elif f[0] == "cpu":
            cpu = list(map(int, f[1:]))
    return threads, cpu
(ta, ca), (tb, cb) = read(a), read(b)
parts = [f"{n} {100 * (y - x) / hz / secs:.0f}%" for (n, x), (_, y) in zip(ta, tb)]
d = [y - x for x, y in zip(ca, cb)]
busy = 200 * (sum(d) - d[3] - d[4]) / sum(d) if sum(d) else 0
eps = re.search(r"Requests/sec:\s+([\d.]+)", open(load).read())
out = f"{name} {sink}: {float(eps.group(1)) if eps else 0:.0f} events/s; CPU " + ", ".join(parts)
out += f"; machine {busy:.0f}% of 200%"
m = open(metrics).read()
n = re.search(r"^ringhook_log_sync_seconds_count (\d+)", m, re.M)
t = re.search(r"^ringhook_log_sync_seconds_sum ([\d.e+-]+)", m, re.M)
if sink == "file" and n and t and int(n.group(1)):
    n, t = int(n.group(1)), float(t.group(1))
    out += f"; {n} syncs, mean {1000 * t / n:.2f} ms, disk syncing {100 * t / duration:.0f}% of the run"
print(out)
PY
}

echo "wrk -t2 -c$CONNS -d${DURATION}s; $(nproc) cores; $(date -u '+%F %H:%M UTC'); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for _ in $(seq 1 "$ROUNDS"); do
  for b in "${bins[@]}"; do
    run "$b" file
    run "$b" stdout
  done
done
