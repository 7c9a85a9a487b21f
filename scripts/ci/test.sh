#!/usr/bin/env bash
# Every check a change must pass, in the order CI runs them: formatting, lints, unit, property
# and integration tests, a short run of every fuzz target, the container images and compose
# files under Podman, the web UI in headless Chromium, and the bench kit's queries against its oracle on a single node and on a
# cluster on loopback. Each step fails the script by its
# exit status; the last line is the cluster check's tally ("N passed, 0 failed").
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --workspace --quiet
# every fuzz target for a few seconds from its seeds and regressions (docs/RELIABILITY.md)
scripts/ci/fuzz.sh "${LOGPIPE_FUZZ_SECONDS:-10}"
scripts/ci/containers.sh 200000
scripts/ci/ui-check.sh 200000
scripts/ci/bench-check.sh 200000
scripts/ci/cluster-check.sh 200000
