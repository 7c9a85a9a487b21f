#!/usr/bin/env bash
# An independent cross-check with the outside benchmark kit, when it is present (it is not part
# of this repository, and nothing in CI needs it): its generator's records (built from real
# loghub lines), loaded into a fresh server, and its 30 queries checked against its own oracle,
# on fresh data and after a restart.
#
#   bench/shared-kit-check.sh [RECORDS] [KIT]   (defaults: 200000, ../shared/bench or $LOGPIPE_BENCH)
#
# Needs python3 and the kit's directory.
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-200000}
kit_dir=${2:-${LOGPIPE_BENCH:-$(cd .. && pwd)/shared/bench}}
[ -f "$kit_dir/loggen.py" ] || { echo "the outside bench kit is not at $kit_dir (pass its directory)" >&2; exit 1; }
# shellcheck source=bench/lib.sh
. bench/lib.sh
build_release
work=$(mktemp -d)
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

python3 "$kit_dir/loggen.py" --records "$records" --batch 1000 --out "$work/native" >/dev/null 2>&1
python3 "$kit_dir/oracle.py" --quiet --out "$work/expected.json" "$work/native"
start_server "$bin" "$work"
python3 "$kit_dir/load.py" "$work/native" "$url/api/v1/logs"
echo "--- the outside kit's queries on fresh data"
python3 "$kit_dir/run_queries.py" --adapter native --url "$url" --expected "$work/expected.json" --runs 1 --warmup 0 | tail -n 1
stop_server
KEEP_DATA=1 start_server "$bin" "$work"
echo "--- the outside kit's queries after restart"
python3 "$kit_dir/run_queries.py" --adapter native --url "$url" --expected "$work/expected.json" --runs 1 --warmup 0 | tail -n 1
stop_server
