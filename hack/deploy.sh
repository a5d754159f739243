#!/usr/bin/env bash
# Deploys the operator with kustomize and server-side apply, using image IMG.
#
#   hack/deploy.sh KUBECTL IMG [OVERLAY]
#
# OVERLAY is a kustomization directory under config/ (default config/default;
# config/ha for two replicas). The image is set with `kustomize edit set
# image` in a temporary copy of config/, so the repository's files never
# change. KUSTOMIZE names the kustomize binary (default: the pinned one in
# bin/, built by `make kustomize` when missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ $# -lt 2 || $# -gt 3 ]]; then
  echo "usage: $0 KUBECTL IMG [OVERLAY]" >&2
  exit 2
fi
kubectl=$1 img=$2 overlay=${3:-config/default}
overlay=${overlay%/}
if [[ $overlay != config/* || ! -f $overlay/kustomization.yaml ]]; then
  echo "deploy: $overlay is not a kustomization under config/" >&2
  exit 2
fi
kustomize=${KUSTOMIZE:-$PWD/bin/kustomize}
if [[ -z ${KUSTOMIZE:-} ]]; then
  make --no-print-directory kustomize >/dev/null
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -R config "$tmp/config"
(cd "$tmp/config/manager" && "$kustomize" edit set image "controller=$img")

# The default field manager ("kubectl"), like `kubectl apply --server-side -k`
# and `make install`, so either can be used for later upgrades.
"$kubectl" apply --server-side -k "$tmp/$overlay"
