#!/usr/bin/env bash
# bench/callgrind.sh - instructions per operation of one micro-benchmark, under callgrind:
# the difference between a run of N2 and one of N1 operations, divided by N2 - N1, so that
# start-up cancels out. Repeatable whatever else the machine does (unlike wall-clock figures).
#
#   bench/callgrind.sh [bench] [N1] [N2]        (default: route 2000 22000)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
BENCH="${1:-route}"; N1="${2:-2000}"; N2="${3:-22000}"
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
count() {
  (cd "$ROOT" && valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.$1" \
     .venv/bin/python -m bench.micro --only "$BENCH" --n "$1" >/dev/null 2>"$TMP/log.$1")
  grep -m1 '^summary:' "$TMP/cg.$1" | awk '{print $2}'
}
a="$(count "$N1")"; b="$(count "$N2")"
echo "$BENCH: $(( (b - a) / (N2 - N1) )) instructions per operation ($N1: $a, $N2: $b)"
