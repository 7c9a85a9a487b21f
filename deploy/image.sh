#!/usr/bin/env bash
# Builds logpipe's container image from the release binary:
#
#   deploy/image.sh [BASE]      (default BASE: docker.io/library/debian:bookworm-slim)
#
# builds target/release/logpipe, strips a copy into a fresh build context, and builds
# deploy/Containerfile as localhost/logpipe:<version> and localhost/logpipe:latest. On a machine
# without registry access, make a base first: deploy/local-images.sh, then
# deploy/image.sh localhost/logpipe-base:bookworm. Uses podman, or docker when CONTAINER=docker.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-docker.io/library/debian:bookworm-slim}
engine=${CONTAINER:-podman}
cargo build --release --quiet -p logpipe
version=$(target/release/logpipe --version | awk '{print $2}')
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
strip -o "$ctx/logpipe" target/release/logpipe
"$engine" build --quiet --format docker -f deploy/Containerfile --build-arg BASE="$base" --build-arg VERSION="$version" \
  -t "localhost/logpipe:$version" -t localhost/logpipe:latest "$ctx" >/dev/null
"$engine" images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^localhost/logpipe:(latest|'"$version"') '
