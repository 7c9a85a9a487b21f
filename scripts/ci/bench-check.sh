#!/usr/bin/env bash
# The bench kit's correctness check on a single node: generate RECORDS records with
# logpipe-bench (crates/bench), load them into a fresh server, and require every query of the
# kit (logs pages, counts, histograms, `count by`, `histogram by`) to match the oracle -- once
# while the data is fresh (memtable and first segments) and again after a restart (segments
# only, after merges).
#
#   scripts/ci/bench-check.sh [RECORDS]        (default 200000)
set -euo pipefail
cd "$(dirname "$0")/../.."
records=${1:-200000}
# shellcheck source=scripts/ci/lib.sh
. scripts/ci/lib.sh
build_release
work=$(mktemp -d)
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
bench_data "$records" "$work/records"

start_server "$bin" "$work"
"$kit" load "$work/records" "$url/api/v1/logs"
echo "--- queries on fresh data"
"$kit" run "$work/records" "$url" --runs 1 --warmup 0 | tail -n 1
stop_server
KEEP_DATA=1 start_server "$bin" "$work"
echo "--- queries after restart (segments only)"
"$kit" run "$work/records" "$url" --runs 1 --warmup 0
stop_server
