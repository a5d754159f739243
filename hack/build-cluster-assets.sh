#!/usr/bin/env bash
# Builds the node's Kubernetes binaries (kubelet, kube-proxy,
# kube-controller-manager, kube-scheduler) from source through the Go module
# proxy, from the same k8s.io/kubernetes version as the test control plane
# (hack/tools/kube). Binaries land in bin/cluster/<version>/ and are reused
# when present.
#
# Prints the output directory on stdout.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KUBE_VERSION="$(awk '$1=="require" && $2=="k8s.io/kubernetes" {sub(/^v/,"",$3); print $3}' "$ROOT/hack/tools/kube/go.mod")"
OUT="$ROOT/bin/cluster/$KUBE_VERSION"
mkdir -p "$OUT"
IFS=. read -r MAJOR MINOR _ <<<"$KUBE_VERSION"
# Without these the binaries report v0.0.0-master, and the node's
# kubeletVersion would be meaningless.
VERSION_FLAGS="-X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=$MAJOR -X k8s.io/component-base/version.gitMinor=$MINOR"

for name in kube-controller-manager kube-scheduler kube-proxy kubelet; do
  if [[ -x "$OUT/$name" ]]; then
    continue
  fi
  echo "building $name from source (first run only)..." >&2
  (cd "$ROOT/hack/tools/kube" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w $VERSION_FLAGS" -o "$OUT/$name.tmp" "k8s.io/kubernetes/cmd/$name")
  mv "$OUT/$name.tmp" "$OUT/$name"
done

echo "$OUT"
