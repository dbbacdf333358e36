#!/usr/bin/env bash
# bench/killtest_ab.sh - what waiting for durability costs a XEP-0198 ack: bench/killtest.py's
# ack latency (an <r/> to the <a/> that covers it) and throughput, with the server of git ref
# BEFORE (default HEAD~; the commit before acks waited: f280fa7) and of this tree, interleaved
# A B A B, REPS times per configuration. Light load by default (RATE messages/s per sender):
# the latency is then the ack's own, not a queue's.
#
#   bench/killtest_ab.sh [BEFORE]        env: REPS (2), RATE (100), SENDERS (10), KILL (4)
#
# Prints the JSON lines of every run, tagged "before"/"after"; the 'total' lines are left out.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(dirname "$HERE")"
PY="$ROOT/.venv/bin/python"
BEFORE="${1:-HEAD~}"
REPS="${REPS:-2}"
RATE="${RATE:-100}"
SENDERS="${SENDERS:-10}"
KILL="${KILL:-4}"
OLD="$(mktemp -d)"
trap 'rm -rf "$OLD"' EXIT
mkdir "$OLD/src"  # (run from $OLD, which holds no package: python -m puts the cwd first)
git -C "$ROOT" archive "$BEFORE" hongyan | tar -x -C "$OLD/src"
run() {  # tag pythonpath args...
  local tag="$1" path="$2"; shift 2
  (cd "$OLD" && PYTHONPATH="$path" timeout 600 "$PY" -m bench.killtest --runs 1 \
     --senders "$SENDERS" --recipients "$SENDERS" --rate "$RATE" --kill-after "$KILL" "$@") \
    | grep -v '"total"' | sed "s/^{/{\"variant\": \"$tag\", /"
}
for cfg in "--storage sqlite" "--storage sqlite --workers 2" "--storage postgresql" \
           "--storage postgresql --workers 2"; do
  for rep in $(seq 1 "$REPS"); do
    # shellcheck disable=SC2086
    run before "$OLD/src:$ROOT" $cfg --seed "$rep"
    # shellcheck disable=SC2086
    run after "$ROOT" $cfg --seed "$rep"
  done
done
