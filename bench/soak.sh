#!/usr/bin/env bash
# The overload soak of docs/RELIABILITY.md: far more ingest than the server can take, for a
# fixed time, while a client queries it one query after another.
#   bench/soak.sh [SECONDS] [CONNECTIONS] [WORKDIR]   (defaults: 60, 160, /tmp/logpipe-soak)
# Ingest: wrk -t2 -cCONNECTIONS with bench/ingest.lua (1,000-record batches), ten
# times the 16 connections that saturate the server in bench/bench.sh. Queries: five queries
# in turn. Reports what was offered and accepted, the statuses by reason,
# query latency percentiles, and peak RSS.
# Needs python3, curl and wrk (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
conns=${2:-160}
work=${3:-/tmp/logpipe-soak}
# shellcheck source=bench/lib.sh
. bench/lib.sh
build_release
mkdir -p "$work"
bench_data 200000 "$work/records"
start_server "$bin" "$work"

python3 - "$url" "$secs" >"$work/queries.txt" <<'PY' &
import sys, time, urllib.parse, urllib.request, urllib.error
url, secs = sys.argv[1], float(sys.argv[2])
qs = ["app=nginx&limit=100", "q=" + urllib.parse.quote("level=ERROR | count"),
      "q=" + urllib.parse.quote("* | histogram 5m"), "contains=" + urllib.parse.quote("vault seal"),
      "q=" + urllib.parse.quote("* | count by (level)")]
lat, statuses = [], {}
end = time.time() + secs
i = 0
while time.time() < end:
    q = qs[i % len(qs)]; i += 1
    path = "/api/v1/query?" + q if q.startswith("q=") else "/api/v1/logs?" + q
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(url + path, timeout=60) as r:
            r.read(); code = r.status
    except urllib.error.HTTPError as e:
        code = e.code
    lat.append((time.perf_counter() - t) * 1000)
    statuses[code] = statuses.get(code, 0) + 1
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))]
print("queries: %d, statuses %s, latency ms p50 %.1f p90 %.1f p99 %.1f max %.1f"
      % (len(lat), statuses, pct(0.5), pct(0.9), pct(0.99), lat[-1]))
PY
qpid=$!
BATCH_DIR="$work/records" MAX_FILES=200 wrk -t2 -c"$conns" -d"${secs}s" --timeout 30s -s bench/ingest.lua "$url/api/v1/logs" >"$work/wrk.txt" 2>&1 || true
wait $qpid
echo "== ingest: wrk -t2 -c$conns -d${secs}s"
grep -E "requests in|Non-2xx|Socket errors|records/s" "$work/wrk.txt" || tail -n 5 "$work/wrk.txt"
accepted=$(curl -s "$url/metrics" | awk '/^logpipe_ingested_records_total/{s+=$2} END {print s+0}')
echo "records accepted: $accepted ($(awk -v a="$accepted" -v s="$secs" 'BEGIN{printf "%.0f", a/s}')/s)"
echo "refusals by endpoint and reason:"
curl -s "$url/metrics" | grep -E '^logpipe_rejected_requests_total' || echo "  none"
echo "== $(cat "$work/queries.txt")"
echo "== peak RSS: $(peak_rss_mib) MiB; server alive: $(curl -sf "$url/health" >/dev/null && echo yes || echo no)"
