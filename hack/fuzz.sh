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
    # On a loaded machine Go's fuzzing engine sometimes fails as -fuzztime
    # ends, with "context deadline exceeded" and no failing input. Such a
    # run is retried once; a real failure writes its input and is not.
    for attempt in 1 2; do
      if out="$(go test -run='^$' -fuzz="^${target}\$" -fuzztime="$FUZZTIME" -parallel=2 "$pkg" 2>&1)"; then
        echo "$out"
        break
      fi
      echo "$out"
      if [[ "$attempt" == 2 ]] || grep -q 'Failing input written to' <<<"$out"; then
        exit 1
      fi
      echo "fuzz: $target failed without a failing input; retrying once"
    done
  done
done
