#!/usr/bin/env bash
# The flamegraphs of docs/perf, reproducible:
#   bench/flamegraphs.sh [RECORDS] [WORKDIR]      (defaults: 5000000, /tmp/logpipe-bench)
# 1. ingest.svg: a fresh server under wrk -t1 -c16 and ingest.lua, sampled for 15 s from 5 s in;
# 2. query-ID.svg for the three slowest queries of bench/bench.sh at RECORDS: RECORDS loaded
#    once and settled, each query run in a loop while the server is sampled for 7 s.
# perf record -F 999 -g (software clock: no hardware counters on this machine kind), drawn by
# inferno (cargo install inferno). Prints the samples' shares by thread for each graph.
# Needs perf, inferno, wrk, python3 and the data of bench/bench.sh RECORDS (it makes it).
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-5000000}
work=${2:-/tmp/logpipe-bench}
queries=(regex_ipv4_count regex_ci_count rid_prefix_count)
# shellcheck source=bench/lib.sh
. bench/lib.sh
build_release
[ -d "$work/records-$records" ] || { echo "no $work/records-$records: run bench/bench.sh $records first" >&2; exit 1; }
mkdir -p docs/perf

# draw NAME: docs/perf/NAME.svg from $work/perf.data, and the samples' shares by thread
draw() {
  perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf | inferno-flamegraph --title "logpipe: $1" > "docs/perf/$1.svg"
  echo "== $1: samples by thread"
  perf report -i "$work/perf.data" --no-children --sort comm --stdio 2>/dev/null | grep -E '^ +[0-9.]+%' | head -n 8
}

start_server "$bin" "$work"
BATCH_DIR="$work/records-1000000" MAX_FILES=200 wrk -t1 -c16 -d25s -s bench/ingest.lua "$url/api/v1/logs" >"$work/wrk-flame.txt" &
driver=$!
sleep 5
perf record -F 999 -g -p "$pid" -o "$work/perf.data" -- sleep 15 >/dev/null 2>&1
wait $driver
grep records/s "$work/wrk-flame.txt"
draw ingest
kill -TERM $pid; wait $pid; pid=

start_server "$bin" "$work"
"$kit" load "$work/records-$records" "$url/api/v1/logs" >/dev/null
wait_settled
for q in "${queries[@]}"; do
  "$kit" run "$work/records-$records" "$url" --only "$q" --runs 1000 --warmup 1 >/dev/null 2>&1 &
  loop=$!
  sleep 1
  perf record -F 999 -g -p "$pid" -o "$work/perf.data" -- sleep 7 >/dev/null 2>&1
  kill $loop 2>/dev/null || true
  wait $loop 2>/dev/null || true
  draw "query-$q"
done
kill -TERM $pid; wait $pid; pid=
