#!/usr/bin/env bash
# The performance floor of docs/BENCHMARKS.md, reproducible on one machine:
#   scripts/bench.sh [RECORDS] [WORKDIR]      (defaults: 1000000, /tmp/logpipe-bench)
# 1. load RECORDS generated records once with load.py (4 connections), sampling peak RSS;
# 2. wait for flushes and merges to settle, then report bytes on disk per record;
# 3. run the 30 queries, 5 timed runs each, and report medians and their geometric mean;
# 4. on a fresh server, sustained ingest with wrk -t1 -c16 -d30s and ingest.lua, with the
#    server's CPU time per record and peak RSS.
# Needs python3, curl, wrk (apt-get install wrk) and ../shared/bench.
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-1000000}
work=${2:-/tmp/logpipe-bench}
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
build_release
mkdir -p "$work"
if [ ! -f "$work/expected-$records.json" ]; then
  rm -rf "$work/native-$records"
  python3 "$bench/loggen.py" --records "$records" --batch 1000 --out "$work/native-$records" >/dev/null 2>&1
  python3 "$bench/oracle.py" --quiet --out "$work/expected-$records.json" "$work/native-$records"
fi
start() { start_server "$bin" "$work"; }
cpu_ticks() { awk '{print $14+$15}' /proc/$pid/stat; }

echo "== load once ($records records, load.py -c 4)"
start
python3 "$bench/load.py" "$work/native-$records" "$url/api/v1/logs"
echo "peak RSS during load: $(peak_rss_mib) MiB"
echo "== waiting for merges to settle (one segment per partition, nothing in memory)"
wait_settled
"$bin" inspect --data-dir "$work/data" | tail -n 2 | head -n 1
echo "== queries (run_queries.py --runs 5)"
python3 "$bench/run_queries.py" --adapter native --url "$url" --expected "$work/expected-$records.json" --runs 5 --json "$work/queries.json" | tail -n 32
python3 - "$work/queries.json" <<'PY'
import json, math, sys
r = json.load(open(sys.argv[1]))["results"]
m = [x["median_ms"] for x in r]
print("geometric mean of medians: %.2f ms; slowest: %s" % (
    math.exp(sum(math.log(max(v, 0.001)) for v in m) / len(m)),
    ", ".join("%s %.1f ms" % (x["id"], x["median_ms"]) for x in sorted(r, key=lambda x: -x["median_ms"])[:4])))
PY
kill -TERM $pid; wait $pid; pid=

echo "== sustained ingest (wrk -t1 -c16 -d30s, ingest.lua)"
start
t0=$(cpu_ticks)
BATCH_DIR="$work/native-$records" MAX_FILES=200 wrk -t1 -c16 -d30s -s "$bench/ingest.lua" "$url/api/v1/logs" | tee "$work/wrk.txt" | tail -n 3
t1=$(cpu_ticks)
recs=$(curl -s "$url/metrics" | awk -F' ' '/^logpipe_ingested_records_total/{s+=$2} END {print s}')
hz=$(getconf CLK_TCK)
echo "server CPU: $(( (t1 - t0) / hz )) s for $recs records = $(awk -v t=$((t1 - t0)) -v h=$hz -v r=$recs 'BEGIN{printf "%.2f", t / h * 1e6 / r}') us/record"
echo "peak RSS during sustained ingest: $(peak_rss_mib) MiB"
curl -s "$url/metrics" | grep -E '^logpipe_rejected_requests_total' || echo "no rejected requests"
kill -TERM $pid; wait $pid; pid=
