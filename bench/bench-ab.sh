#!/usr/bin/env bash
# Two builds side by side, one after the other on the same machine:
#   bench/bench-ab.sh BIN_A BIN_B [RECORDS] [WORKDIR]     (defaults: 5000000, /tmp/logpipe-bench)
# For each binary: a fresh server, load.py once, wait until every partition has settled,
# bytes on disk per record, then run_queries.py --runs 5 (answers checked against the oracle).
# Prints each query's median for both and the ratio. The records and the oracle's answers come
# from bench/bench.sh (run it once first for RECORDS). Build an older commit with, e.g.:
#   git worktree add /tmp/old COMMIT && (cd /tmp/old && cargo build --release -p logpipe)
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 records=${3:-5000000} work=${4:-/tmp/logpipe-bench}
# shellcheck source=bench/lib.sh
. bench/lib.sh
build_release # for logpipe-bench
[ -f "$work/records-$records/expected.json" ] || { echo "run bench/bench.sh $records $work first" >&2; exit 1; }
for side in a b; do
  bin=${!side}
  dir="$work/ab-$side"
  start_server "$bin" "$dir"
  echo "== $side: $bin"
  "$kit" load "$work/records-$records" "$url/api/v1/logs" | tail -n 1
  wait_settled
  "$bin" inspect --data-dir "$dir/data" | tail -n 2 | head -n 1
  "$kit" run "$work/records-$records" "$url" \
    --runs 5 --json "$work/ab-$side.json" | tail -n 1
  kill -TERM $pid; wait $pid || true; pid=
  rm -rf "$dir"
done
python3 - "$work/ab-a.json" "$work/ab-b.json" <<'PY'
import json, math, sys
a, b = ({x["id"]: x["median_ms"] for x in json.load(open(f))["results"]} for f in sys.argv[1:3])
g = lambda d: math.exp(sum(math.log(max(v, 0.001)) for v in d.values()) / len(d))
print("| query | A (ms) | B (ms) | A/B |")
print("| --- | ---: | ---: | ---: |")
for k in a:
    print("| `%s` | %.1f | %.1f | %.1fx |" % (k, a[k], b[k], a[k] / max(b[k], 0.001)))
print("| geometric mean | %.2f | %.2f | %.2fx |" % (g(a), g(b), g(a) / g(b)))
PY
