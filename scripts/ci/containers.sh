#!/usr/bin/env bash
# The container door, with real container tooling (Podman, podman-compose):
#
#   scripts/ci/containers.sh [RECORDS]        (default 200000)
#
# 0. deploy/systemd/logpipe.service passes systemd-analyze verify;
# 1. images: the base made with mmdebstrap (kept between runs), the logpipe image from the
#    release binary (its size, the time from `podman run` to ready, the time a SIGTERM stop takes);
# 2. deploy/compose/single.yaml: the README's round trip, the health check, and the data kept
#    across `down` / `up`;
# 3. deploy/compose/cluster.yaml: RECORDS of logpipe-bench data through the load balancer (both
#    fronts used, by their metrics), every query answered as the oracle says; then with one store
#    container killed, one NATS container and one front stopped, writes and queries go on through
#    the load balancer and every acknowledged record is there exactly once.
# Needs root (rootful Podman) and the packages .ci/run installs: podman, buildah, runc,
# podman-compose, mmdebstrap. Only the host's loopback is used from outside the containers.
set -euo pipefail
cd "$(dirname "$0")/../.."
records=${1:-200000}
# shellcheck source=scripts/ci/lib.sh
. scripts/ci/lib.sh
build_release
work=$(mktemp -d)
single=(podman-compose -p logpipe-ci-single -f deploy/compose/single.yaml)
cluster=(podman-compose -p logpipe-ci-cluster -f deploy/compose/cluster.yaml)
quiet() { "$@" >"$work/last.log" 2>&1 || { cat "$work/last.log" >&2; return 1; }; }

# Rootful Podman on these machines: runc (crun's setrlimit fails here), and default ulimits no
# higher than the machine's hard limits. A containers.conf someone else wrote is left alone.
conf=/etc/containers/containers.conf
if [ ! -f "$conf" ] || grep -q '^# written by logpipe' "$conf"; then
  mkdir -p /etc/containers
  cat >"$conf" <<EOF
# written by logpipe's scripts/ci/containers.sh
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=$(cat /proc/sys/kernel/pid_max):$(cat /proc/sys/kernel/pid_max)"]
[engine]
runtime = "runc"
EOF
fi

# what an earlier run left
clear_project() {
  local ids
  ids=$(podman ps -aq --filter "label=io.podman.compose.project=$1")
  [ -z "$ids" ] || quiet podman rm -f $ids
  ids=$(podman volume ls -q --filter "label=io.podman.compose.project=$1")
  [ -z "$ids" ] || quiet podman volume rm -f $ids
}
clear_project logpipe-ci-single
clear_project logpipe-ci-cluster
podman rm -f logpipe-ci-run >/dev/null 2>&1 || true
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  clear_project logpipe-ci-single 2>/dev/null || true
  clear_project logpipe-ci-cluster 2>/dev/null || true
  podman rm -f logpipe-ci-run >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== systemd unit"
sed "s|/usr/local/bin/logpipe|$bin|" deploy/systemd/logpipe.service >"$work/logpipe.service"
systemd-analyze verify "$work/logpipe.service"
echo "systemd-analyze verify: ok"

echo "== images"
deploy/local-images.sh | sed 's/^/  /'
deploy/image.sh localhost/logpipe-base:bookworm | sed 's/^/  /'
echo "image size: $(podman image inspect localhost/logpipe:latest --format '{{.Size}}' | awk '{printf "%.1f MB", $1/1e6}')"
port=$(free_port)
t0=$(date +%s%N)
quiet podman run -d --name logpipe-ci-run -p "127.0.0.1:$port:7171" -e LOGPIPE_INSECURE_NO_AUTH=true localhost/logpipe:latest
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.02; done
t1=$(date +%s%N)
curl -sf "http://127.0.0.1:$port/ready" >/dev/null
echo "podman run to ready: $(( (t1 - t0) / 1000000 )) ms"
quiet podman healthcheck run logpipe-ci-run
t0=$(date +%s%N)
quiet podman stop -t 30 logpipe-ci-run
t1=$(date +%s%N)
code=$(podman inspect logpipe-ci-run --format '{{.State.ExitCode}}')
echo "SIGTERM to stopped: $(( (t1 - t0) / 1000000 )) ms, exit status $code"
[ "$code" = 0 ] || { podman logs logpipe-ci-run >&2; exit 1; }
podman rm -f logpipe-ci-run >/dev/null

echo "== single node compose"
export LOGPIPE_PORT
LOGPIPE_PORT=$(free_port)
base=http://127.0.0.1:$LOGPIPE_PORT
wait_url() { # URL SECONDS
  for _ in $(seq 1 $(($2 * 10))); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "$1 did not answer 200 within $2 s" >&2
  return 1
}
quiet "${single[@]}" up -d
wait_url "$base/ready" 60
quiet podman healthcheck run logpipe-ci-single_logpipe_1
# the round trip of README "Run in containers"
curl -sf "$base/api/v1/logs" --data-binary '{"app":"web","message":"hello from a container","tags":["level=INFO"]}' | grep -q '"accepted":1'
got=$(curl -sf "$base/api/v1/logs?app=web")
grep -q 'hello from a container' <<<"$got" || { echo "the record is not answered: $got" >&2; exit 1; }
quiet "${single[@]}" down
quiet "${single[@]}" up -d
wait_url "$base/ready" 60
got=$(curl -sf "$base/api/v1/logs?app=web")
grep -q 'hello from a container' <<<"$got" || { echo "the record did not survive down/up: $got" >&2; exit 1; }
echo "round trip, health check, data kept across down/up: ok"
quiet "${single[@]}" down -v

echo "== cluster compose"
set -a
# shellcheck source=deploy/compose/local.env
. deploy/compose/local.env
# shellcheck source=deploy/compose/cluster.env
. deploy/compose/cluster.env
set +a
LOGPIPE_PORT=$(free_port)
base=http://127.0.0.1:$LOGPIPE_PORT
bench_data "$records" "$work/records"
t0=$(date +%s)
quiet "${cluster[@]}" up -d
wait_url "$base/ready" 180
echo "up to ready through the load balancer: $(( $(date +%s) - t0 )) s"
ctr() { echo "logpipe-ci-cluster_$1_1"; }
healthy() { # SERVICE...: every health check passes within 120 s
  local s
  for s in "$@"; do
    for _ in $(seq 1 120); do podman healthcheck run "$(ctr "$s")" >/dev/null 2>&1 && continue 2; sleep 1; done
    echo "$s is not healthy" >&2
    podman logs --tail 20 "$(ctr "$s")" >&2
    return 1
  done
}
healthy nats1 nats2 nats3 s3 store1 store2 front1 front2 lb
echo "every container's health check passes"
# HAProxy's own view (its stats page, inside the lb container): both fronts UP
fronts_up() {
  podman exec "$(ctr lb)" bash -c 'exec 3<>/dev/tcp/127.0.0.1/8404 &&
    printf "GET /stats;csv HTTP/1.0\r\n\r\n" >&3 && cat <&3' |
    awk -F, '$1 == "fronts" && $2 ~ /^front[12]$/ && $18 ~ /^UP/ {n++} END {exit !(n == 2)}'
}
for _ in $(seq 1 60); do fronts_up && break; sleep 1; done
fronts_up || { echo "HAProxy does not see both fronts up" >&2; exit 1; }
# GET PATH from inside a container, on its own loopback, with the admin token
inside() {
  podman exec -e P="$2" "$(ctr "$1")" bash -c 'exec 3<>/dev/tcp/127.0.0.1/7171 &&
    printf "GET %s HTTP/1.0\r\nAuthorization: Bearer %s\r\n\r\n" "$P" "$LOGPIPE_ADMIN_TOKEN" >&3 && cat <&3'
}
ingested() { inside "$1" /metrics | awk '/^logpipe_ingested_records_total/ {s += $2} END {print s + 0}'; }
LOGPIPE_TOKEN=$LOGPIPE_WRITE_TOKEN "$kit" load "$work/records" "$base/api/v1/logs" -c 4 | tee "$work/load.txt"
f1=$(ingested front1) f2=$(ingested front2)
echo "records taken by front1: $f1, front2: $f2"
[ "$f1" -gt 0 ] && [ "$f2" -gt 0 ] || { echo "the load balancer did not use both fronts" >&2; exit 1; }
[ $((f1 + f2)) = "$records" ] || { echo "fronts took $((f1 + f2)) records, not $records" >&2; exit 1; }
drained() { # every batch on the stream uploaded (within 180 s)
  for _ in $(seq 1 1800); do
    curl -s -H "Authorization: Bearer $LOGPIPE_ADMIN_TOKEN" "$base/api/v1/cluster" |
      python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["cluster"]["stream"]["messages"] == 0 else 1)' 2>/dev/null &&
      return 0
    sleep 0.1
  done
  echo "the stream did not drain" >&2
  return 1
}
drained
LOGPIPE_TOKEN=$LOGPIPE_READ_TOKEN "$kit" run "$work/records" "$base" --runs 1 --warmup 0 | tail -n 1

echo "== cluster compose, one store killed, one NATS server and one front stopped"
quiet podman kill "$(ctr store1)"
quiet podman stop "$(ctr nats3)"
quiet podman stop "$(ctr front2)"
# queries go on: the bench data answered exactly, from the nodes left
LOGPIPE_TOKEN=$LOGPIPE_READ_TOKEN "$kit" run "$work/records" "$base" --runs 1 --warmup 0 | tail -n 1
# 40 batches of 250 new records, each sent until acknowledged (with an Idempotency-Key, so a
# batch whose answer was lost is stored once); then every one of them must be there exactly once
python3 - "$base" "$LOGPIPE_WRITE_TOKEN" <<'EOF'
import json, sys, time, urllib.request, urllib.error
base, token = sys.argv[1], sys.argv[2]
deadline = time.time() + 180
for b in range(40):
    body = "".join(json.dumps({"app": "failover", "message": f"failover record {b * 250 + i}", "tags": [f"batch={b}"]}) + "\n"
                   for i in range(250)).encode()
    while True:
        req = urllib.request.Request(f"{base}/api/v1/logs", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {token}", "Idempotency-Key": f"failover-{b}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                if r.status == 200:
                    break
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            if time.time() > deadline:
                sys.exit(f"batch {b} not acknowledged within 180 s: {e}")
            time.sleep(0.5)
print("40 batches acknowledged through the load balancer")
EOF
python3 - "$base" "$LOGPIPE_READ_TOKEN" <<'EOF'
import collections, json, sys, time, urllib.request
base, token = sys.argv[1], sys.argv[2]
def get(path):
    req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read().decode()
# (the store node killed held some batches: the other takes them over after 30 s)
deadline, count = time.time() + 120, 0
while time.time() < deadline:
    try:
        count = json.loads(get("/api/v1/count?app=failover"))["count"]
    except OSError:
        pass
    if count >= 10000:
        break
    time.sleep(1)
lines = [l for l in get("/api/v1/logs?app=failover&limit=10000").splitlines() if l.strip()]
seen = collections.Counter(json.loads(l)["message"] for l in lines)
want = {f"failover record {i}" for i in range(10000)}
if count != 10000 or set(seen) != want or any(c > 1 for c in seen.values()):
    sys.exit(f"count {count}; {len(want - set(seen))} acknowledged records missing, "
             f"{sum(1 for c in seen.values() if c > 1)} answered more than once")
print("10000 acknowledged records, each answered once")
EOF
quiet "${cluster[@]}" down -v
echo "containers: ok"
