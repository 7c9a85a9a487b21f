#!/usr/bin/env bash
# The bench kit's correctness check against a cluster on loopback: three NATS nodes (R3),
# SeaweedFS as S3, two ingest, two store and two query nodes. Loads RECORDS records of
# logpipe-bench (crates/bench) through both ingest nodes at once and requires every query to
# match the oracle on a query node -- once at once (records held by store nodes and records
# already uploaded), once after every batch is uploaded (object storage only, on the other
# query node).
#
#   scripts/ci/cluster-check.sh [RECORDS]        (default 200000)
set -euo pipefail
cd "$(dirname "$0")/../.."
records=${1:-200000}
# shellcheck source=scripts/ci/lib.sh
. scripts/ci/lib.sh
build_release
dir=$(mktemp -d)
# shellcheck source=scripts/ci/cluster-lib.sh
. scripts/ci/cluster-lib.sh
trap 'stop_cluster; rm -rf "$dir"' EXIT

bench_data "$records" "$dir/records"
# every other batch file through each ingest node
mkdir -p "$dir/half-0" "$dir/half-1"
awk -F'\t' -v d="$dir" '{ print > (d "/half-" (NR % 2) "/index.txt") }' "$dir/records/index.txt"
for h in half-0 half-1; do
  cut -f1 "$dir/$h/index.txt" | while read -r f; do ln -s "$dir/records/$f" "$dir/$h/$f"; done
done

start_nats 3
start_seaweed
flags=(--upload-interval 2s)
node store-a store "${flags[@]}"
node store-b store "${flags[@]}"
node ingest-1 ingest; ingest_1=$node_url
node ingest-2 ingest; ingest_2=$node_url
node query-1 query; query_1=$node_url
node query-2 query; query_2=$node_url

"$kit" load "$dir/half-0" "$ingest_1/api/v1/logs" &
l1=$!
"$kit" load "$dir/half-1" "$ingest_2/api/v1/logs"
wait $l1
# acknowledged means in JetStream; a store node takes it a moment later (BENCHMARKS.md: median
# 2.2 ms, and nothing before a new store node's first 2.5 s): wait until all of it is answered
for _ in $(seq 1 1200); do
  n=$(curl -s "$query_1/api/v1/count" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("count", 0))')
  [ "$n" -ge "$records" ] && break
  sleep 0.1
done
echo "--- queries at once (held by store nodes and uploaded), query node 1"
"$kit" run "$dir/records" "$query_1" --runs 1 --warmup 0 | tail -n 1
uploaded "$query_1"
echo "--- queries from object storage, query node 2"
"$kit" run "$dir/records" "$query_2" --runs 1 --warmup 0
