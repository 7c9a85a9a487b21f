#!/usr/bin/env bash
# The bench kit's correctness check: generate records, load them into a fresh server, and
# require all 30 queries to match the oracle -- once while the data is fresh (memtable and
# first segments) and again after a restart (segments only, after merges) -- and, on the
# fresh data, `count by` and `histogram by` to match it too (scripts/aggregations-check.py).
#
#   scripts/bench-check.sh [RECORDS]        (default 200000)
#
# Needs python3 and ../shared/bench beside the repository (or LOGPIPE_BENCH=dir).
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-200000}
bench=${LOGPIPE_BENCH:-$(cd .. && pwd)/shared/bench}
[ -f "$bench/loggen.py" ] || { echo "bench kit not found at $bench (set LOGPIPE_BENCH)" >&2; exit 1; }

cargo build --release --quiet -p logpipe
bin=$PWD/target/release/logpipe
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

python3 "$bench/loggen.py" --records "$records" --batch 1000 --out "$work/native" >/dev/null 2>&1
python3 "$bench/oracle.py" --quiet --out "$work/expected.json" "$work/native"

start() {
  "$bin" serve --listen 127.0.0.1:0 --data-dir "$work/data" >"$work/stdout" 2>"$work/stderr" &
  pid=$!
  for _ in $(seq 1 300); do
    url=$(sed -n 's/^logpipe listening on //p' "$work/stdout")
    if [ -n "$url" ] && curl -sf "$url/ready" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "server did not become ready" >&2; cat "$work/stderr" >&2; exit 1
}
stop() { kill -TERM "$pid"; wait "$pid"; pid=; }

start
python3 "$bench/load.py" "$work/native" "$url/api/v1/logs"
echo "--- queries on fresh data"
python3 "$bench/run_queries.py" --adapter native --url "$url" --expected "$work/expected.json" --runs 1 --warmup 0 | tail -n 1
stop
start
echo "--- count by and histogram by, against the oracle"
python3 scripts/aggregations-check.py "$bench" "$work/native" "$url"
echo "--- queries after restart (segments only)"
python3 "$bench/run_queries.py" --adapter native --url "$url" --expected "$work/expected.json" --runs 1 --warmup 0
stop
