#!/usr/bin/env bash
# Builds a container image as an OCI image archive (an OCI layout in a tar,
# what `ctr images import` reads) without a Docker engine or a registry.
#
#   hack/build-image.sh manager OUT.tar   the operator: what the Dockerfile describes
#   hack/build-image.sh busybox OUT.tar   Debian's static busybox, for test pods
#   hack/build-image.sh pause OUT.tar     busybox sleeping forever, the pod sandbox image
#
# The layer is packed by GNU tar with fixed owners, order and times, and the
# image assembled by hack/tools/image (go-containerregistry), with every
# timestamp taken from SOURCE_DATE_EPOCH (default: the HEAD commit's time).
# The same commit therefore always gives the same digest. Prints the image
# reference and the manifest digest on stdout.
set -euo pipefail
umask 022

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KIND="${1:?usage: build-image.sh manager|busybox|pause OUT.tar}"
OUT="$(realpath -m "${2:?usage: build-image.sh manager|busybox|pause OUT.tar}")"
EPOCH="${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct)}"
# Local names only, fully qualified so containerd's CRI name normalisation
# leaves them as they are.
MANAGER_IMAGE="${MANAGER_IMAGE:-clearance.local/clearance-operator:dev}"
BUSYBOX_IMAGE="${BUSYBOX_IMAGE:-clearance.local/busybox:1}"
PAUSE_IMAGE="${PAUSE_IMAGE:-clearance.local/pause:1}"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
ROOTFS="$WORK/rootfs"
mkdir -p "$ROOTFS" "$(dirname "$OUT")"

IMAGE_TOOL="$ROOT/bin/image-tool"
(cd "$ROOT/hack/tools/image" && go build -o "$IMAGE_TOOL" .)

# reprotar DIR OUT [TAR OPTION...] FILE...: a tar that depends only on the
# files' content and modes.
reprotar() {
  local dir="$1" out="$2"
  shift 2
  tar --create --file="$out" --directory="$dir" --format=gnu --sort=name \
    --owner=0 --group=0 --numeric-owner --mtime="@$EPOCH" "$@"
}

# busybox_rootfs: Debian's busybox-static, which runs without a dynamic loader.
busybox_rootfs() {
  if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'; then
    echo "build-image.sh: needs Debian's busybox-static (apt-get install busybox-static)" >&2
    exit 1
  fi
  install -D -m 0755 /bin/busybox "$ROOTFS/bin/busybox"
  for applet in sh cat sleep echo date ls env test; do
    ln -s busybox "$ROOTFS/bin/$applet"
  done
}

case "$KIND" in
manager)
  NAME="$MANAGER_IMAGE"
  REVISION="$(git -C "$ROOT" rev-parse HEAD)"
  if [[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no)" ]]; then
    REVISION="$REVISION-dirty"
  fi
  (cd "$ROOT" && CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags='-s -w -buildid=' -o "$ROOTFS/manager" .)
  chmod 0755 "$ROOTFS/manager"
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
  # Name the non-root user, as distroless does, for tools that look it up.
  install -d -m 0755 "$ROOTFS/etc"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$ROOTFS/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$ROOTFS/etc/group"
  chmod 0644 "$ROOTFS/etc/passwd" "$ROOTFS/etc/group"
  install -d -m 1777 "$ROOTFS/tmp"
  ARGS=(-entrypoint '["/manager"]' -user 65532:65532
    -env PATH=/ -env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
    -label org.opencontainers.image.title=clearance-operator
    -label org.opencontainers.image.description="Mints Genetec Clearance access tokens into Secrets"
    -label org.opencontainers.image.revision="$REVISION"
    -label org.opencontainers.image.version="$(git -C "$ROOT" describe --tags --always --dirty)"
    -label org.opencontainers.image.created="$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)")
  FILES=(etc manager tmp)
  ;;
busybox)
  NAME="$BUSYBOX_IMAGE"
  busybox_rootfs
  ARGS=(-cmd '["/bin/sh"]' -env PATH=/bin)
  FILES=(bin)
  ;;
pause)
  NAME="$PAUSE_IMAGE"
  busybox_rootfs
  # The sandbox only holds the pod's namespaces; containerd stops it with SIGKILL.
  ARGS=(-entrypoint '["/bin/sleep","2147483647"]' -user 65535:65535)
  FILES=(bin)
  ;;
*)
  echo "build-image.sh: unknown image $KIND" >&2
  exit 2
  ;;
esac

reprotar "$ROOTFS" "$WORK/layer.tar" "${FILES[@]}"
DIGEST="$("$IMAGE_TOOL" -layer "$WORK/layer.tar" -name "$NAME" -created "$EPOCH" -o "$WORK/layout" "${ARGS[@]}")"
reprotar "$WORK/layout" "$OUT.tmp" --mode=u=rwX,go=rX oci-layout index.json blobs
mv "$OUT.tmp" "$OUT"
echo "$NAME@$DIGEST"
