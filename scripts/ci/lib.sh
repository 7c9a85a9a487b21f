# Shared by the scripts of scripts/ci/ and bench/ (sourced, not run, from the repository root):
# the release build, a server on 127.0.0.1:0, and logpipe's own bench kit (crates/bench).

# The server started last ($pid) is stopped when the script exits, however it exits.
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; wait 2>/dev/null' EXIT

# build_release: builds the release binaries and sets $bin (logpipe) and $kit (logpipe-bench).
build_release() {
  cargo build --release --quiet -p logpipe -p logpipe-bench
  bin=$PWD/target/release/logpipe
  kit=$PWD/target/release/logpipe-bench
}

# bench_data RECORDS DIR: DIR holds RECORDS generated records in 1,000-record batch files and
# the oracle's answers (logpipe-bench gen), made once and kept.
bench_data() {
  local records=$1 dir=$2
  if [ ! -f "$dir/expected.json" ] || ! grep -q "\"records\": $records," "$dir/manifest.json" 2>/dev/null; then
    "$kit" gen --records "$records" --batch 1000 --out "$dir"
  fi
}

# free_port: a TCP port of 127.0.0.1 free at this moment.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# peak_rss_mib: the server's peak resident memory so far, MiB.
peak_rss_mib() { awk '/VmHWM/ {printf "%.0f", $2/1024}' /proc/$pid/status; }

# wait_ready STDOUT STDERR [TENTHS]: the URL a server started with --listen 127.0.0.1:0 prints
# on STDOUT, once its /ready answers 200 (within TENTHS tenths of a second, default 300);
# sets $ready_url. Fails the script, showing STDERR, when it does not.
wait_ready() {
  local out=$1 err=$2 tenths=${3:-300}
  for _ in $(seq 1 "$tenths"); do
    ready_url=$(sed -n 's/^logpipe listening on //p' "$out")
    [ -n "$ready_url" ] && curl -sf "$ready_url/ready" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "the server did not become ready (see $err)" >&2
  tail -n 20 "$err" >&2
  exit 1
}

# start_server BIN DIR: a fresh server on 127.0.0.1:0 with data in DIR/data (removed first
# unless KEEP_DATA=1); sets $pid and $url. Extra flags: LOGPIPE_SERVE_ARGS.
start_server() {
  local bin=$1 dir=$2
  [ "${KEEP_DATA:-0}" = 1 ] || rm -rf "$dir/data"
  mkdir -p "$dir"
  # shellcheck disable=SC2086 # LOGPIPE_SERVE_ARGS: extra flags, split on spaces
  "$bin" serve --listen 127.0.0.1:0 --data-dir "$dir/data" ${LOGPIPE_SERVE_ARGS:-} >"$dir/stdout" 2>"$dir/stderr" &
  pid=$!
  wait_ready "$dir/stdout" "$dir/stderr"
  url=$ready_url
}

# stop_server: SIGTERM, and wait for the graceful exit.
stop_server() { kill -TERM "$pid"; wait "$pid"; pid=; }

# wait_settled: until every partition is one segment and nothing is in memory (at most 10 min).
wait_settled() {
  for _ in $(seq 1 120); do
    sleep 5
    settled=$(curl -s "$url/metrics" | awk '/^logpipe_segments /{s=$2} /^logpipe_partitions /{p=$2} /^logpipe_memtable_records /{m=$2} END {print (s==p && m==0 && p>0) ? "yes" : "no"}')
    [ "$settled" = yes ] && return 0
  done
}
