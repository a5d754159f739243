#!/usr/bin/env bash
# Fails when generated code, manifests or module files are stale: regenerates
# everything, tidies every module and compares the tree with what is committed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

make --no-print-directory manifests generate
go mod tidy
for mod in hack/tools/*/; do
  (cd "$mod" && go mod tidy)
done
gofmt_out="$(gofmt -l $(git ls-files '*.go'))"
if [[ -n "$gofmt_out" ]]; then
  echo "verify: gofmt needed on:"; echo "$gofmt_out"; exit 1
fi

if ! git diff --exit-code --stat; then
  echo "verify: generated files or go.mod/go.sum are stale; run 'make manifests generate' and 'go mod tidy', then commit" >&2
  git diff | head -50 >&2
  exit 1
fi
untracked="$(git ls-files --others --exclude-standard -- api config charts go.mod go.sum hack)"
if [[ -n "$untracked" ]]; then
  echo "verify: generated files not committed:" >&2; echo "$untracked" >&2; exit 1
fi
echo "verify: up to date"
