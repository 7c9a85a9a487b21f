#!/usr/bin/env bash
# Every check a change must pass: formatting, lints, unit, property and integration tests, a
# short run of every fuzz target, and the bench kit's 30 queries against the oracle, on a
# single node and on a cluster on loopback. The last line is the bench kit's tally.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --workspace --quiet 2>&1 | tee /tmp/logpipe-cargo-test.log | grep -E '^test result|FAILED|panicked' || true
# (compiler errors start their line; the servers the tests start log "error: ..." mid-line)
if grep -qE 'FAILED|^error(\[|:)' /tmp/logpipe-cargo-test.log || ! grep -q '^test result' /tmp/logpipe-cargo-test.log; then
  cat /tmp/logpipe-cargo-test.log
  exit 1
fi
# every fuzz target for a few seconds from its kept corpus (docs/RELIABILITY.md)
scripts/fuzz.sh "${LOGPIPE_FUZZ_SECONDS:-10}"
scripts/bench-check.sh 200000
scripts/cluster-check.sh 200000
