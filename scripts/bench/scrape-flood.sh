#!/usr/bin/env bash
# Benchmark (not a test): notifications while 50 connections scrape /metrics back to back
# (issue 21, item 13). Prints events/s and p99 of the notifications with and without the flood.
#
#   scripts/bench/scrape-flood.sh [RINGHOOK]    # the host release build by default
#   DURATION=10 CONNS=32 SCRAPERS=50
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-$PWD/target/release/ringhook}
[ -x "$BIN" ] || cargo build --release --locked -q
DURATION=${DURATION:-10} CONNS=${CONNS:-32} SCRAPERS=${SCRAPERS:-50}
command -v wrk >/dev/null || { echo "scrape-flood: needs wrk" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
export WEBHOOK_VERIFICATION_TOKEN=bench-token
pct() { awk -v p="$2%" '$1 == p { print $2 }' "$1"; }
for flood in 0 1; do
  port=$(python3 scripts/bench/freeport.py)
  "$BIN" serve --listen "127.0.0.1:$port" --log-file "$work/events.log" --metrics-path /metrics 2>"$work/err.log" &
  pid=$!
  for _ in $(seq 1 300); do grep -q "listening on" "$work/err.log" && break; sleep 0.01; done
  if ((flood)); then
    wrk -t1 -c"$SCRAPERS" -d"$((DURATION + 1))s" "http://127.0.0.1:$port/metrics" >"$work/scrape.txt" &
    scraper=$!
    sleep 0.5
  fi
  BENCH_PATH=/webhook BENCH_TOKEN=bench-token BENCH_SAMPLE=$PWD/tests/data/events/extension-presence.json \
    wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s scripts/bench/post.lua "http://127.0.0.1:$port/webhook" >"$work/load.txt"
  if ((flood)); then wait "$scraper" || true; fi
  eps=$(awk '/^Requests\/sec/ { printf "%.0f", $2 }' "$work/load.txt")
  scrapes=$( ((flood)) && awk '/^Requests\/sec/ { printf "%.0f", $2 }' "$work/scrape.txt" || echo 0)
  echo "scrape flood: $([ $flood = 1 ] && echo "$SCRAPERS connections, $scrapes scrapes/s" || echo none): $eps events/s, p99 $(pct "$work/load.txt" 99)"
  kill -TERM "$pid"; wait "$pid" || true
  rm -f "$work/events.log"
done
