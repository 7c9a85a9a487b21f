#!/usr/bin/env bash
# Instructions per record for the whole ingest path, counted by callgrind (machine noise does
# not move them): N batch files of logpipe-bench parsed, submitted to a real engine (WAL
# append without fsync, memtable) and flushed into segments
# (crates/server/examples/ingest_instructions.rs).
#
#   bench/ingest_instructions.sh BATCH_DIR [N]     e.g. the records-1000000 directory that
#                                                    bench/bench.sh generates; N=30 batches
# FLUSH_LEVEL=-3 bench/ingest_instructions.sh …   with another zstd level for flushes
# MERGE_EVERY=3 bench/ingest_instructions.sh …    flushes every 3 batches, then merges each
#                                                    partition's segments into one (every
#                                                    record merged once: the difference from
#                                                    the plain count is one merge's cost)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "needs valgrind (apt install valgrind)" >&2; exit 1; }
dir=${1:?usage: bench/ingest_instructions.sh BATCH_DIR [N]}
n=${2:-30}
cargo build --release --quiet -p logpipe-server --example ingest_instructions
bin=${CARGO_TARGET_DIR:-target}/release/examples/ingest_instructions
count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$dir" "$1" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'; }
records=$(( $(wc -l < <(ls "$dir" | grep '^batch-' | sort | head -n "$n" | sed "s|^|$dir/|" | xargs cat)) ))
echo "$(( ($(count "$n") - $(count 0)) / records )) instructions per record ($records records, $n batches)"
