#!/usr/bin/env bash
# Counts (not timings) per request for ringhook's hot path, repeatable on a busy machine:
# instructions per notification (valgrind's callgrind, with the top functions) and system calls
# per notification (strace -c), for the durable path (fresh uuids) and the duplicate path.
#
#   scripts/bench/profile.sh [CONNS]      # CONNS=8 by default
#
# Uses an unstripped build of the static binary in target/prof (same code and profile as the
# shipped one, symbols kept). Instructions per request are the difference between a run of
# 2,500 and one of 500 notifications, divided by 2,000, so start-up and shutdown cancel out.
set -euo pipefail
cd "$(dirname "$0")/../.."
CONNS=${1:-8}
export BENCH_SAMPLE=$PWD/tests/data/events/extension-presence.json BENCH_TOKEN=bench-token
export WEBHOOK_VERIFICATION_TOKEN=bench-token
for c in valgrind strace python3; do
  command -v "$c" >/dev/null || { [ "$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$c" >/dev/null; } ||
    { echo "profile: needs $c" >&2; exit 1; }
done
CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_TARGET_DIR=target/prof \
  bash scripts/build-static.sh x86_64 >/dev/null
BIN=$PWD/target/prof/x86_64-unknown-linux-musl/release/ringhook
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# run TOOL... -- N MODE: serve under TOOL, drive N notifications, stop it.
run() {
  local tool=() n mode port
  while [ "$1" != -- ]; do tool+=("$1"); shift; done
  n=$2 mode=${3:-}
  port=$(python3 scripts/bench/freeport.py)
  rm -f "$work/events.log"
  "${tool[@]}" "$BIN" serve --listen "127.0.0.1:$port" --log-file "$work/events.log" 2>"$work/serve.err" &
  local pid=$!
  for _ in $(seq 1 3000); do grep -q "listening on" "$work/serve.err" && break; sleep 0.01; done
  python3 scripts/bench/drive.py "$port" "$n" "$CONNS" $mode
  kill -TERM "$(pgrep -P "$pid" | head -1 || echo "$pid")" 2>/dev/null || kill -TERM "$pid"
  wait "$pid" || true
}
total_ir() { awk '/^summary:/ { print $2 }' "$1"; }

for mode in fresh dup; do
  arg=$([ $mode = dup ] && echo dup || true)
  run valgrind --tool=callgrind -q --callgrind-out-file="$work/cg.small" -- 500 $arg
  run valgrind --tool=callgrind -q --callgrind-out-file="$work/cg.big" -- 2500 $arg
  small=$(total_ir "$work/cg.small") big=$(total_ir "$work/cg.big")
  batches=$(sed -n 's/.* events logged in \([0-9]*\) batches.*/\1/p' "$work/serve.err")
  dups=$(sed -n 's/.* \([0-9]*\) duplicates.*/\1/p' "$work/serve.err")
  echo "== $mode uuids, $CONNS connections: $(((big - small) / 2000)) instructions per notification ($batches batches, $dups duplicates in the 2,500 run)"
  callgrind_annotate --inclusive=no "$work/cg.big" 2>/dev/null | sed -n '/^Ir/,$p' | sed -n '3,22p' |
    awk -v n=2500 '{ ir = $1; gsub(/,/, "", ir); $1 = ""; $2 = ""; printf "%8.0f per request %s\n", ir / n, $0 }'
  run strace -f -c -o "$work/strace.txt" -- 2500 $arg
  echo "-- system calls per notification (2,500 notifications):"
  awk -v n=2500 '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" { printf "%8.3f %s\n", $4 / n, $NF }' "$work/strace.txt" | sort -rn | head -12
  echo
done
