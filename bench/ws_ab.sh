#!/usr/bin/env bash
# bench/ws_ab.sh - the WebSocket rows (compare.sh ws) as an A/B of two Hongyan checkouts with
# the anchors in the same run: per repetition Prosody and ejabberd, then A, then B (this
# checkout), each freshly started; then A and B once more on one worker. One results file per
# call: bench/results/compare-STAMP-ws-{anchors,A,B}-r{1,2}.jsonl and -{A,B}-w1.jsonl.
#
#   A_ROOT=/path/to/clone-of-A bench/ws_ab.sh
#
# A_ROOT: a checkout of A with its own .venv (pip install -e .); give it this checkout's
# bench/compare.sh and bench/wsload.py, so that both sides run the same harness. Everything
# else comes from the environment as for compare.sh (SHARED, ANCHORS_RUN, P_PORT, P_HTTP_PORT,
# E_PORT, E_HTTP_PORT, HY_RUN, HY_PORT, HY_HTTP_PORT, WS_CLIENTS, DUR; RUNS, default 2).
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
B_ROOT="$(dirname "$HERE")"
: "${A_ROOT:?set A_ROOT to a checkout of the other commit}"
STAMP=${STAMP:-$(date +%Y%m%d-%H%M)}
RES="$HERE/results"
export REPS=1
for ((r = 1; r <= ${RUNS:-2}; r++)); do
  HY_WORKERS=2 SERVERS="prosody ejabberd" OUT=$RES/compare-$STAMP-ws-anchors-r$r.jsonl \
    "$B_ROOT/bench/compare.sh" ws
  for v in A B; do
    root=$B_ROOT; [ $v = A ] && root=$A_ROOT
    HY_WORKERS=2 SERVERS=hongyan OUT=$RES/compare-$STAMP-ws-$v-r$r.jsonl "$root/bench/compare.sh" ws
  done
done
for v in A B; do
  root=$B_ROOT; [ $v = A ] && root=$A_ROOT
  HY_WORKERS=1 SERVERS=hongyan OUT=$RES/compare-$STAMP-ws-$v-w1.jsonl "$root/bench/compare.sh" ws
done
