#!/usr/bin/env bash
# The web UI in a real headless Chromium (Debian's chromium and chromedriver, driven by
# Selenium; tests/ui/test_ui.py): RECORDS of logpipe-bench data in a fresh server, and every
# screen compared with what the native API answers; then a server with tokens, where the page
# asks for one and a read token for one app sees only that app. Screenshots go to
# SCREENSHOTS (default: a temporary directory, removed).
#
#   scripts/ci/ui-check.sh [RECORDS] [SCREENSHOTS]        (default 200000)
set -euo pipefail
cd "$(dirname "$0")/../.."
records=${1:-200000}
# shellcheck source=scripts/ci/lib.sh
. scripts/ci/lib.sh
build_release
work=$(mktemp -d)
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
shots=${2:-$work/shots}
mkdir -p "$shots"
bench_data "$records" "$work/records"

start_server "$bin" "$work/open"
"$kit" load "$work/records" "$url/api/v1/logs"
python3 tests/ui/test_ui.py open "$url" "$shots"
stop_server

cat >"$work/tokens.toml" <<'TOML'
[[tokens]]
name = "loader"
token = "ui-check-admin-token-0001"
scopes = ["read", "write", "admin"]
apps = ["*"]

[[tokens]]
name = "api-reader"
token = "ui-check-api-reader-0002"
scopes = ["read"]
apps = ["api"]
TOML
LOGPIPE_SERVE_ARGS="--config $work/tokens.toml" start_server "$bin" "$work/tokens"
LOGPIPE_TOKEN=ui-check-admin-token-0001 "$kit" load "$work/records" "$url/api/v1/logs"
python3 tests/ui/test_ui.py tokens "$url" ui-check-api-reader-0002 api "$shots"
stop_server
