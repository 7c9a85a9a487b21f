#!/usr/bin/env bash
# Sustained ingest of two builds, alternating on the same machine:
#   bench/ingest-ab.sh BIN_A BIN_B [ROUNDS] [SECONDS] [WORKDIR]   (defaults: 3, 20, /tmp/logpipe-bench)
# Each round starts a fresh server per binary (default settings, --fsync=always) and drives it
# with wrk -t1 -c16 and bench/ingest.lua over 200 batch files of
# WORKDIR/records-1000000 (made by bench/bench.sh 1000000), then prints records/s and the
# server's CPU time per acknowledged record. Build an older commit with, e.g.:
#   git worktree add /tmp/old COMMIT && (cd /tmp/old && cargo build --release -p logpipe)
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 rounds=${3:-3} secs=${4:-20} work=${5:-/tmp/logpipe-bench}
# shellcheck source=bench/lib.sh
. bench/lib.sh
[ -d "$work/records-1000000" ] || { echo "run bench/bench.sh 1000000 $work first" >&2; exit 1; }
cpu_ticks() { awk '{print $14 + $15}' /proc/$pid/stat; }
hz=$(getconf CLK_TCK)
for round in $(seq 1 "$rounds"); do
  for side in a b; do
    bin=${!side}
    start_server "$bin" "$work/ingest-ab-$side"
    t0=$(cpu_ticks)
    BATCH_DIR="$work/records-1000000" MAX_FILES=200 wrk -t1 -c16 -d"${secs}s" -s bench/ingest.lua \
      "$url/api/v1/logs" >"$work/ingest-ab-$side.txt"
    t1=$(cpu_ticks)
    recs=$(curl -s "$url/metrics" | awk '/^logpipe_ingested_records_total/{s+=$2} END {print s}')
    non2xx=$(sed -n 's/.*Non-2xx or 3xx responses: *//p' "$work/ingest-ab-$side.txt")
    awk -v side=$side -v round=$round -v r=$recs -v s=$secs -v t=$((t1 - t0)) -v h=$hz -v bad=${non2xx:-0} \
      'BEGIN { printf "round %d %s: %.0f records/s, %.2f us of server CPU per record, %d non-2xx\n", round, side, r / s, t / h * 1e6 / r, bad }'
    kill -TERM $pid; wait $pid || true; pid=
    rm -rf "$work/ingest-ab-$side"
  done
done
