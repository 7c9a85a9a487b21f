#!/usr/bin/env bash
# Instructions per record for decoding each wire format, counted by callgrind (machine noise
# does not move them), and each protocol's ratio to native NDJSON. The records are 2,000
# of logpipe-bench's generator (crates/server/examples/decode_instructions.rs).
#
#   bench/decode_instructions.sh            every protocol
#   bench/decode_instructions.sh OtlpJson   some
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "needs valgrind (apt install valgrind)" >&2; exit 1; }
cargo build --release --quiet -p logpipe-server --example decode_instructions
bin=target/release/examples/decode_instructions
protocols=("$@")
[ ${#protocols[@]} -gt 0 ] || protocols=(Native ElasticBulk OtlpProtobuf OtlpJson LokiProtobuf LokiJson VlogsJsonline Syslog5424)
[[ " ${protocols[*]} " == *" Native "* ]] || protocols=(Native "${protocols[@]}")
n=10
count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'; }
native=
printf '%-14s %14s %8s\n' protocol instr/record x_native
for p in "${protocols[@]}"; do
  per=$(( ($(count "$p" $n) - $(count "$p" 0)) / (n * 2000) ))
  [ -n "$native" ] || native=$per
  printf '%-14s %14d %8s\n' "$p" "$per" "$(awk -v a="$per" -v b="$native" 'BEGIN{printf "%.2f", a/b}')"
done
