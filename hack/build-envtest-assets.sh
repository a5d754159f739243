#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver, etcd, kubectl) from source
# through the Go module proxy, because setup-envtest's prebuilt downloads are
# not reachable from our build and CI machines. Binaries land in
# bin/k8s/<version>/ and are reused when present.
#
# Prints the assets directory (suitable for KUBEBUILDER_ASSETS) on stdout.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KUBE_VERSION="$(awk '$1=="require" && $2=="k8s.io/kubernetes" {sub(/^v/,"",$3); print $3}' "$ROOT/hack/tools/kube/go.mod")"
OUT="$ROOT/bin/k8s/$KUBE_VERSION"
mkdir -p "$OUT"

build() { # build <module dir> <package> <output name>
  local dir="$1" pkg="$2" name="$3"
  if [[ -x "$OUT/$name" ]]; then
    return 0
  fi
  echo "building $name from source (first run only; kube-apiserver and kubectl take about 4 minutes on 2 cores)..." >&2
  (cd "$ROOT/hack/tools/$dir" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$OUT/$name.tmp" "$pkg")
  mv "$OUT/$name.tmp" "$OUT/$name"
}

build etcd . etcd
build kube k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver
build kube k8s.io/kubernetes/cmd/kubectl kubectl

echo "$OUT"
