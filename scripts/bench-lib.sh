# Shared by scripts/bench.sh, scripts/bench-ab.sh and scripts/soak.sh (sourced, not run, from
# the repository root).

# The bench kit: LOGPIPE_BENCH, or ../shared/bench beside the repository.
bench=${LOGPIPE_BENCH:-$(cd .. && pwd)/shared/bench}
# The server started last ($pid) is stopped when the script exits, however it exits.
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; wait 2>/dev/null' EXIT

# build_release: builds the release binary and sets $bin to it.
build_release() {
  cargo build --release --quiet -p logpipe
  bin=$PWD/target/release/logpipe
}

# peak_rss_mib: the server's peak resident memory so far, MiB.
peak_rss_mib() { awk '/VmHWM/ {printf "%.0f", $2/1024}' /proc/$pid/status; }

# start BIN DIR: a fresh server on 127.0.0.1:0 with data in DIR/data; sets $pid and $url.
start_server() {
  local bin=$1 dir=$2
  rm -rf "$dir/data"
  mkdir -p "$dir"
  # shellcheck disable=SC2086 # LOGPIPE_SERVE_ARGS: extra flags, split on spaces
  "$bin" serve --listen 127.0.0.1:0 --data-dir "$dir/data" ${LOGPIPE_SERVE_ARGS:-} >"$dir/stdout" 2>"$dir/stderr" &
  pid=$!
  for _ in $(seq 1 300); do
    url=$(sed -n 's/^logpipe listening on //p' "$dir/stdout")
    [ -n "$url" ] && curl -sf "$url/ready" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server did not start" >&2
  exit 1
}

# wait_settled: until every partition is one segment and nothing is in memory (at most 10 min).
wait_settled() {
  for _ in $(seq 1 120); do
    sleep 5
    settled=$(curl -s "$url/metrics" | awk '/^logpipe_segments /{s=$2} /^logpipe_partitions /{p=$2} /^logpipe_memtable_records /{m=$2} END {print (s==p && m==0 && p>0) ? "yes" : "no"}')
    [ "$settled" = yes ] && return 0
  done
}
