#!/usr/bin/env bash
# Cluster mode against the single node, on this machine, in one run:
#   bench/cluster-bench.sh [SECONDS] [WORKDIR]        (defaults: 20, /tmp/logpipe-bench)
#
# Ingest: wrk -t1 -c16 -d SECONDS with bench/ingest.lua over 200 batch files of
# WORKDIR/records-1000000 (made by bench/bench.sh 1000000), against a fresh single node
# (--fsync=always) and against the ingest node of a fresh cluster on loopback (three NATS nodes,
# R3 stream; SeaweedFS as S3; one ingest, two store and one query node), then how long the
# store nodes take to upload every acknowledged batch.
# Queries: the 1,000,000 records loaded once (load.py) into a fresh single node and a fresh
# cluster, every batch uploaded, then run_queries.py --runs 5 against each (the cluster's query
# node reads object storage through its cache), medians side by side.
# Latency: bench/cluster-latency.py, acknowledgement -> answered by the query node.
# Everything shares the same two cores, wrk, NATS and SeaweedFS included. Needs nats-server,
# weed, wrk, curl and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20} work=${2:-/tmp/logpipe-bench}
# shellcheck source=bench/lib.sh
. bench/lib.sh
data=$work/records-1000000
[ -d "$data" ] || { echo "run bench/bench.sh 1000000 $work first" >&2; exit 1; }
build_release
out=$work/cluster-bench
rm -rf "$out"
mkdir -p "$out"
dir=$out/c1
mkdir -p "$dir"
# shellcheck source=scripts/ci/cluster-lib.sh
. scripts/ci/cluster-lib.sh
trap 'stop_cluster; [ -n "$pid" ] && kill $pid 2>/dev/null; wait 2>/dev/null' EXIT
acked() { curl -s "$1/metrics" | awk '/^logpipe_ingested_records_total/{s+=$2} END {print s+0}'; }
drive() { # URL NAME: wrk against URL; prints records/s
  BATCH_DIR="$data" MAX_FILES=200 wrk -t1 -c16 -d"${secs}s" -s bench/ingest.lua \
    "$1/api/v1/logs" >"$out/wrk-$2.txt"
  local n bad
  n=$(acked "$1")
  bad=$(sed -n 's/.*Non-2xx or 3xx responses: *//p' "$out/wrk-$2.txt")
  echo "$2: $n records acknowledged in $secs s = $((n / secs)) records/s, ${bad:-0} non-2xx"
}
queries() { # URL NAME
  "$kit" run "$work/records-1000000" "$1" \
    --runs 5 --warmup 1 --json "$out/queries-$2.json" | tail -n 1
}
cluster() { # starts a fresh cluster in $dir
  start_nats 3
  start_seaweed
  node store-a store --fsync always; store_a=$node_url
  node store-b store --fsync always
  node ingest ingest; ingest=$node_url
  node query query; query=$node_url
}

echo "== ingest: single node"
start_server "$bin" "$out/single"
drive "$url" single
kill -TERM $pid; wait $pid || true; pid=

echo "== ingest: cluster (3 NATS R3, SeaweedFS, 1 ingest, 2 store, 1 query)"
cluster
t0=$(date +%s.%N)
drive "$ingest" cluster
uploaded "$query"
t1=$(date +%s.%N)
python3 -c "print(f'every acknowledged batch uploaded {$t1 - $t0 - $secs:.1f} s after wrk stopped')"
curl -s "$store_a/api/v1/cluster" | python3 -c 'import json,sys; c=json.load(sys.stdin); print("   catalog", c["catalog"] if "catalog" in c else "", "store-a", c["store"])'
stop_cluster

echo "== queries: single node, 1,000,000 records"
start_server "$bin" "$out/single-q"
"$kit" load "$data" "$url/api/v1/logs"
queries "$url" single
kill -TERM $pid; wait $pid || true; pid=

echo "== queries: cluster, 1,000,000 records (from object storage)"
dir=$out/c2
mkdir -p "$dir"
cluster
"$kit" load "$data" "$ingest/api/v1/logs"
uploaded "$query"
queries "$query" cluster
curl -s "$query/api/v1/cluster" | python3 -c 'import json,sys; c=json.load(sys.stdin); print("   catalog", c["catalog"], "cache", c["cache"])'
python3 - "$out/queries-single.json" "$out/queries-cluster.json" <<'PY'
import json, math, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
def med(r):
    rows = r["results"] if isinstance(r, dict) and "results" in r else r
    return {q["id"]: q["median_ms"] for q in rows}
ma, mb = med(a), med(b)
gm = lambda m: math.exp(sum(math.log(max(v, 1e-3)) for v in m.values()) / len(m))
print(f"geometric mean of the 30 medians: single {gm(ma):.1f} ms, cluster {gm(mb):.1f} ms ({gm(mb) / gm(ma):.1f}x)")
for k in ma:
    print(f"  {k:28s} {ma[k]:8.1f} {mb.get(k, float('nan')):8.1f}")
PY

echo "== latency: acknowledgement -> answered by the query node"
python3 bench/cluster-latency.py "$ingest" "$query" -n 200
