#!/usr/bin/env bash
# Full load held for a while, and what the merges make of it (docs/BENCHMARKS.md, "Merge debt"):
#   bench/merge-debt.sh [SECONDS] [BIN] [WORKDIR]   (defaults: 90, target/release/logpipe,
#                                                    /tmp/logpipe-bench)
# A fresh server under wrk -t1 -c16 and ingest.lua over 200 files of records-1000000 (made by
# bench/bench.sh) for SECONDS; every 10 s the records ingested so far, the segments on disk
# and the resident memory; after wrk stops, how long until the segments are back under 64.
# Then, from the server's debug log, the merges' cost per row and rewrites per record.
# BIN may be another build, for old-against-new runs.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-90}
work=${3:-/tmp/logpipe-bench}
# shellcheck source=bench/lib.sh
. bench/lib.sh
if [ -n "${2:-}" ]; then bin=$2; else build_release; fi
# metric NAME: its value on /metrics, summed over its labels
metric() {
  curl -s "$url/metrics" | awk -v m="$1" '{ n = $1; sub(/\{.*/, "", n) } n == m { s += $2 } END { print s + 0 }'
}
RUST_LOG=info,logpipe_storage::maintenance=debug start_server "$bin" "$work"
(
  for i in $(seq 1 $((secs / 10))); do
    sleep 10
    echo "t=$((i * 10))s records $(metric logpipe_ingested_records_total) segments $(metric logpipe_segments) rss $(awk '/VmRSS/ {printf "%.0f", $2 / 1024}' /proc/$pid/status) MiB"
  done
) &
sampler=$!
BATCH_DIR="$work/records-1000000" MAX_FILES=200 wrk -t1 -c16 -d"${secs}s" -s bench/ingest.lua "$url/api/v1/logs" | grep 'ingest.lua: [0-9]* requests'
wait $sampler || true
echo "segments when wrk stopped: $(metric logpipe_segments)"
t=0
while [ "$(metric logpipe_segments)" -gt 64 ]; do sleep 1; t=$((t + 1)); done
echo "back under 64 segments after ${t}s; peak RSS $(peak_rss_mib) MiB"
kill -TERM $pid; wait $pid; pid=
python3 - "$work/stderr" <<'PY'
import re, sys
rows = ms = flushed = 0
for line in open(sys.argv[1], errors="replace"):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    m = re.search(r"merged .*rows=(\d+) ms=(\d+)", line)
    if m:
        rows += int(m[1]); ms += int(m[2])
    m = re.search(r"memtable flushed records=(\d+)", line)
    if m:
        flushed += int(m[1])
print("merges: %.3f us per row, %.2f rewrites per record flushed" % (ms * 1000 / max(rows, 1), rows / max(flushed, 1)))
PY
