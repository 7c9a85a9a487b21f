#!/usr/bin/env bash
# The figures at the top of docs/BENCHMARKS.md, reproducible on one machine:
#   bench/bench.sh [RECORDS] [WORKDIR]      (defaults: 1000000, /tmp/logpipe-bench)
# 1. generate RECORDS records and the oracle's answers with logpipe-bench (once per WORKDIR);
# 2. load them once (logpipe-bench load, 4 connections), sampling peak RSS;
# 3. wait for flushes and merges to settle, then report bytes on disk per record;
# 4. run the query set, 5 timed runs each, every answer checked; medians and their geometric mean;
# 5. on a fresh server, sustained ingest with wrk -t1 -c16 -d30s and bench/ingest.lua, with the
#    server's CPU time per record and peak RSS.
# Needs curl and wrk (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-1000000}
work=${2:-/tmp/logpipe-bench}
# shellcheck source=bench/lib.sh
. bench/lib.sh
build_release
data=$work/records-$records
bench_data "$records" "$data"
start() { start_server "$bin" "$work"; }

echo "== load once ($records records, logpipe-bench load -c 4)"
start
"$kit" load "$data" "$url/api/v1/logs"
echo "peak RSS during load: $(peak_rss_mib) MiB"
echo "== waiting for merges to settle (one segment per partition, nothing in memory)"
wait_settled
"$bin" inspect --data-dir "$work/data" | tail -n 2 | head -n 1
echo "== queries (logpipe-bench run --runs 5)"
"$kit" run "$data" "$url" --runs 5 --json "$work/queries-$records.json"
stop_server

echo "== sustained ingest (wrk -t1 -c16 -d30s, bench/ingest.lua)"
start
t0=$(cpu_ticks)
BATCH_DIR="$data" MAX_FILES=200 wrk -t1 -c16 -d30s -s bench/ingest.lua "$url/api/v1/logs" | tee "$work/wrk.txt" | tail -n 3
t1=$(cpu_ticks)
recs=$(curl -s "$url/metrics" | awk -F' ' '/^logpipe_ingested_records_total/{s+=$2} END {print s}')
hz=$(getconf CLK_TCK)
echo "server CPU: $(( (t1 - t0) / hz )) s for $recs records = $(awk -v t=$((t1 - t0)) -v h=$hz -v r=$recs 'BEGIN{printf "%.2f", t / h * 1e6 / r}') us/record"
echo "peak RSS during sustained ingest: $(peak_rss_mib) MiB"
curl -s "$url/metrics" | grep -E '^logpipe_rejected_requests_total' || echo "no rejected requests"
stop_server
