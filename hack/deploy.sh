#!/usr/bin/env bash
# Deploys the operator with kustomize and server-side apply, using image IMG.
#
#   hack/deploy.sh KUBECTL IMG [OVERLAY]
#
# OVERLAY is a kustomization directory under config/ (default config/default;
# config/ha for two replicas). The image is set in a temporary copy of config/,
# so the repository's files never change.
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

# Split IMG into name, tag and digest: [host[:port]/]path[:tag][@digest].
name=$img tag="" digest=""
if [[ $name == *@* ]]; then
  digest=${name#*@} name=${name%%@*}
fi
last=${name##*/}
if [[ $last == *:* ]]; then
  tag=${last#*:} name=${name%:*}
fi
if [[ -z $name || ( -z $tag && -z $digest ) ]]; then
  echo "deploy: IMG must be name:tag or name@digest, got '$img'" >&2
  exit 2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -R config "$tmp/config"
# Replace the images section of config/manager/kustomization.yaml and keep
# everything else in it.
mk="$tmp/config/manager/kustomization.yaml"
awk '/^images:/ {skip=1; next} skip && /^[^ -]/ {skip=0} !skip' config/manager/kustomization.yaml >"$mk"
{
  echo "images:"
  echo "- name: controller"
  echo "  newName: $name"
  if [[ -n $digest ]]; then
    echo "  digest: $digest"
  else
    echo "  newTag: $tag"
  fi
} >>"$mk"

# The default field manager ("kubectl"), like `kubectl apply --server-side -k`
# and `make install`, so either can be used for later upgrades.
"$kubectl" apply --server-side -k "$tmp/$overlay"
