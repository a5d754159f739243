#!/usr/bin/env bash
# Runs every Go fuzz target in the repository for a bounded time each
# (default 10s), so `make test` and CI exercise the committed corpora and
# explore a little further on every run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
FUZZTIME="${1:-10s}"
grep -rl --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]+\(f \*testing\.F\)' . | sort | while read -r file; do
  pkg="./$(dirname "${file#./}")"
  grep -oE '^func Fuzz[A-Za-z0-9_]+' "$file" | awk '{print $2}' | while read -r target; do
    echo "fuzz: $pkg $target for $FUZZTIME"
    go test -run='^$' -fuzz="^${target}\$" -fuzztime="$FUZZTIME" -parallel=2 "$pkg"
  done
done
