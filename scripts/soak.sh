#!/usr/bin/env bash
# Soak (not a test): mixed load against one receiver for SOAK_SECONDS (default 60), then checks
# that resident memory and open descriptors came back to where they were.
#
#   SOAK_SECONDS=600 scripts/soak.sh
#
# Load: wrk posting notifications (fresh uuids, file sink with fdatasync), wrk sending
# handshakes, and a Python client mixing junk bytes, half requests that stall until the
# request timeout, oversized declarations and abrupt disconnects. Exit 1 if RSS grew by more than
# 1 MiB or descriptors by more than 4 between the first idle sample and the last.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SOAK_SECONDS:-60}
# Below the ephemeral range, so no client can self-connect on it (scripts/bench/freeport.py).
PORT=${SOAK_PORT:-$(python3 scripts/bench/freeport.py)}
SAMPLE=$PWD/tests/data/events/extension-presence.json
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
bash scripts/build-static.sh x86_64 >/dev/null
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

WEBHOOK_VERIFICATION_TOKEN=bench-token ./target/static/x86_64-unknown-linux-musl/release/ringhook serve \
  --listen 127.0.0.1:$PORT --log-file "$work/events.log" --request-timeout 2s --idle-timeout 5s \
  2>"$work/serve.err" &
pid=$!
for _ in $(seq 1 500); do grep -q "listening on" "$work/serve.err" && break; sleep 0.01; done
grep -q "listening on" "$work/serve.err" || { echo "soak: ringhook did not start:" >&2; cat "$work/serve.err" >&2; exit 1; }

sample() { echo "$(awk '$1 == "VmRSS:" { print $2 }' /proc/$pid/status) $(ls /proc/$pid/fd | wc -l)"; }
# Warm up once so lazily-allocated state is in the baseline.
BENCH_TOKEN=bench-token BENCH_SAMPLE=$SAMPLE wrk -t1 -c8 -d2s -s scripts/bench/post.lua "http://127.0.0.1:$PORT/webhook" >/dev/null
sleep 6 # idle timeout: the warm-up connections close
read -r rss0 fd0 < <(sample)

BENCH_TOKEN=bench-token BENCH_SAMPLE=$SAMPLE wrk -t1 -c16 -d"${SECS}s" -s scripts/bench/post.lua \
  "http://127.0.0.1:$PORT/webhook" >"$work/load.txt" &
wrk -t1 -c2 -d"${SECS}s" -s scripts/bench/handshake.lua "http://127.0.0.1:$PORT/webhook" >"$work/hs.txt" &
python3 - "$PORT" "$SECS" <<'PY' &
import random, socket, sys, time
port, secs = int(sys.argv[1]), float(sys.argv[2])
end = time.time() + secs
stalled = []
rng = random.Random(7)
n = 0
while time.time() < end:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        kind = n % 4
        if kind == 0:
            s.sendall(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 2000))))
        elif kind == 1:
            s.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Le")  # stalls until 408
            stalled.append(s)
            s = None
        elif kind == 2:
            s.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000\r\n\r\n")
        else:
            s.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nVerification-Token: bench-token\r\nContent-Length: 50\r\n\r\n{")
        if s is not None:
            s.close()
    except OSError:
        pass
    if len(stalled) > 200:
        for s in stalled[:100]:
            s.close()
        del stalled[:100]
    n += 1
    time.sleep(0.002)
for s in stalled:
    s.close()
print(f"junk/slow clients: {n}")
PY
read -r rss1 fd1 < <(sleep "$((SECS / 2))"; sample)
wait $(jobs -p | grep -v "^$pid$") 2>/dev/null || true
sleep 6 # request and idle timeouts close what is left
read -r rss2 fd2 < <(sample)
kill -TERM $pid
wait $pid || true

events=$(awk '/^Requests\/sec/ { printf "%.0f", $2 }' "$work/load.txt")
echo
echo "soak: ${SECS}s; notifications ${events}/s; $(wc -l <"$work/events.log") events logged"
echo "| when | RSS | open fds |"
echo "|---|---|---|"
echo "| idle, before | $rss0 kB | $fd0 |"
echo "| under load | $rss1 kB | $fd1 |"
echo "| idle, after | $rss2 kB | $fd2 |"
tail -1 "$work/serve.err"
if (( rss2 - rss0 > 1024 || fd2 - fd0 > 4 )); then
  echo "soak: NOT flat" >&2
  exit 1
fi
echo "soak: flat"
