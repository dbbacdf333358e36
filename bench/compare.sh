#!/usr/bin/env bash
# bench/compare.sh - Hongyan side by side with Prosody and ejabberd, same generator, same
# settings, interleaved A B C per repetition, fresh servers, medians of REPS.
#
#   bench/compare.sh [quick|main|pinned|scram|tls|archive|mamcmp|events|muc|mem|idle|ws|bosh|all]  (default: main)
#
# Needs ../shared/bench (anchors.sh, xmppload.py, summarize.py). First time:
#   (cd ../shared/bench && ./anchors.sh install && ./anchors.sh setup 10000)
# Env: REPS (default 3), DUR (window, default 20 s), OUT (jsonl), SERVERS (default
# "prosody ejabberd hongyan"), HY_OFF (Hongyan modules switched off, default "mam": the anchors
# archive nothing, so the side-by-side rows run Hongyan without its archive; `archive` measures
# what archiving costs, Hongyan alone, with and without it). Results: bench/results/compare-*.jsonl and a markdown summary
# and a chart (bench/report.py) beside it. Every generator run is bounded by `timeout`; servers are stopped on exit.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(dirname "$HERE")"
SHARED="${SHARED:-$ROOT/../shared/bench}"
A="$SHARED/anchors.sh"
LOAD="$SHARED/xmppload.py"
PY="${PYTHON:-python3}"
HY="$ROOT/.venv/bin/hongyan"
REPS="${REPS:-3}"
DUR="${DUR:-20}"
SERVERS="${SERVERS:-prosody ejabberd hongyan}"
mkdir -p "$HERE/results"
OUT="${OUT:-$HERE/results/compare-$(date +%Y%m%d-%H%M%S).jsonl}"
RUN="${ANCHORS_RUN:-${TMPDIR:-/tmp}/hongyan-anchors}"
HYRUN="${HY_RUN:-$RUN/hongyan}"  # (HY_RUN, HY_PORT, HY_HTTP_PORT: beside another run's Hongyan)
HYPORT=${HY_PORT:-${HYPORT:-29222}}  # not 35222: other work on this machine copied that port
HYHTTP=${HY_HTTP_PORT:-29280}  # the WebSocket rows only (HY_HTTP=true)
# (P_PORT, P_HTTP_PORT, E_PORT, E_HTTP_PORT: the anchors', when SHARED points at a copy of
# anchors.sh that puts them on other ports)
PPORT=${P_PORT:-15222}
PHTTP=${P_HTTP_PORT:-15280}
EPORT=${E_PORT:-25222}
EHTTP=${E_HTTP_PORT:-25280}
declare -A WSURL=([prosody]=ws://127.0.0.1:$PHTTP/xmpp-websocket
                  [ejabberd]=ws://127.0.0.1:$EHTTP/xmpp-websocket
                  [hongyan]=ws://127.0.0.1:$HYHTTP/xmpp-websocket)
declare -A BOSHURL=([prosody]=http://127.0.0.1:$PHTTP/http-bind
                    [ejabberd]=http://127.0.0.1:$EHTTP/http-bind
                    [hongyan]=http://127.0.0.1:$HYHTTP/http-bind)
declare -A PORT=([prosody]=$PPORT [ejabberd]=$EPORT [hongyan]=$HYPORT)
declare -A PIDF=([prosody]=$RUN/prosody/prosody.pid [ejabberd]=$RUN/ejabberd/ejabberd.pid
                 [hongyan]=$HYRUN/hongyan.pid)

hy_config() {
  mkdir -p "$HYRUN"
  cat > "$HYRUN/hongyan.toml" <<CONF
# Benchmark config: loopback only, SASL allowed without TLS as for the anchors (see
# ../shared/bench/RESULTS-anchors.md, "Configuration choices"). Never use it elsewhere.
[server]
data_dir = "$HYRUN/data"
log_level = "warning"
workers = ${HY_WORKERS:-1}
[c2s]
bind = ["127.0.0.1"]
port = $HYPORT
direct_tls = false
require_encryption = false
allow_plaintext_auth = true
# the load generator logs in 100 clients at once from one address and each sender writes far
# more than a person would: the per-address and per-stream limits are lifted here
preauth_per_ip = 100000
rate_bytes = 1000000000
rate_burst = 1000000000
rate_stanzas = 1000000000
rate_stanzas_burst = 1000000000
rate_bytes_per_ip = 1000000000
rate_burst_per_ip = 1000000000
rate_stanzas_per_ip = 1000000000
rate_stanzas_burst_per_ip = 1000000000
[http]
enabled = ${HY_HTTP:-false}
bind = ["127.0.0.1"]
port = $HYHTTP
tls = false
[storage]
url = "${HY_STORAGE_URL:-sqlite:///$HYRUN/data/hongyan.db}"
[auth]
failure_delay = 0.0
[modules]
disabled = [$(for m in ${HY_OFF-mam}; do printf '"%s",' "$m"; done)]
${HY_EXTRA:-}
CONF
}

hy_stop() {
  if [ -f "$HYRUN/hongyan.pid" ]; then
    local pid; pid="$(cat "$HYRUN/hongyan.pid")"
    kill "$pid" 2>/dev/null || true
    # closing 10,000 sessions takes a while; a server still holding the port would make the next
    # start fail, so wait for it (then insist)
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$HYRUN/hongyan.pid"
  fi
}

hy_start() { # [pin cpus]
  hy_stop
  hy_config
  local pre=()
  [ -n "${1:-}" ] && pre=(taskset -c "$1")
  ulimit -n 200000 2>/dev/null || true
  "${pre[@]}" "$HY" serve --config "$HYRUN/hongyan.toml" > "$HYRUN/serve.log" 2>&1 &
  echo $! > "$HYRUN/hongyan.pid"
  for _ in $(seq 1 600); do
    grep -q "serving" "$HYRUN/serve.log" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "hongyan did not start:" >&2; cat "$HYRUN/serve.log" >&2; return 1
}

start() { # server [pin]; fails (and the run is skipped) when the server does not come up
  if [ "$1" = hongyan ]; then hy_start "${2:-}" || return 1; else
    $A stop "$1" >/dev/null 2>&1
    if [ -n "${2:-}" ]; then PIN=$2 $A start "$1" >/dev/null; else $A start "$1" >/dev/null; fi
  fi
  sleep 3
}

stop() { if [ "$1" = hongyan ]; then hy_stop; else $A stop "$1" >/dev/null 2>&1; fi; }

ws_start() { # server: started with XMPP over WebSocket on its HTTP port. anchors.sh's configs
             # serve none, so its generated config is extended here (runtime state, not the
             # shared script): Prosody restarted on it with mod_websocket, ejabberd given an
             # ejabberd_http_ws handler and told to reload its config.
  local s=$1 run="$RUN/$1"
  case $s in
    hongyan) HY_HTTP=true hy_start || return 1 ;;
    prosody)
      start prosody || return 1
      $A stop prosody >/dev/null 2>&1
      sed -i -e 's/"register"; "posix";/"register"; "posix"; "websocket";/' \
        -e 's/^c2s_require_encryption = false/c2s_require_encryption = false\nconsider_websocket_secure = true/' \
        "$run/prosody.cfg.lua"
      (cd "$run" && setsid prosody --config "$run/prosody.cfg.lua" -F >"$run/log/stdout.log" 2>&1 &)
      ;;
    ejabberd)
      start ejabberd || return 1
      sed -i 's|      /api: mod_http_api|      /api: mod_http_api\n      /xmpp-websocket: ejabberd_http_ws|' \
        "$run/etc/ejabberd.yml"
      setpriv --reuid=ejabberd --regid=ejabberd --init-groups env HOME=/var/lib/ejabberd \
        ejabberdctl --config-dir "$run/etc" --spool "$run/db" --logs "$run/log" \
        --node bench@localhost reload_config >/dev/null
      ;;
  esac
  local url="${WSURL[$s]}" http="${WSURL[$s]/ws:/http:}"
  for i in $(seq 1 300); do
    curl -s -o /dev/null -m 2 "$http" && { sleep 2; return 0; }
    if [ $s = ejabberd ] && [ $((i % 50)) = 0 ]; then  # a reload before it was ready
      setpriv --reuid=ejabberd --regid=ejabberd --init-groups env HOME=/var/lib/ejabberd \
        ejabberdctl --config-dir "$run/etc" --spool "$run/db" --logs "$run/log" \
        --node bench@localhost reload_config >/dev/null
    fi
    sleep 0.2
  done
  echo "$s serves no WebSocket at $url" >&2; return 1
}

ws() { # memory per idle WebSocket session and 1:1 throughput over WebSocket (issue 18),
      # every server freshly started
  for ((r = 1; r <= REPS; r++)); do
    for s in $SERVERS; do
      ws_start $s || continue
      echo "== $(date +%T) $s ws_idle r$r" >&2
      (cd "$ROOT" && timeout 900 .venv/bin/python -m bench.wsload --url "${WSURL[$s]}" \
        --pid "$(cat "${PIDF[$s]}")" --clients "${WS_CLIENTS:-5000}" --label "ws_idle r$r" \
        --json "$OUT") | cut -c1-300
      echo "== $(date +%T) $s ws_tput r$r" >&2
      (cd "$ROOT" && timeout 300 .venv/bin/python -m bench.wsload --url "${WSURL[$s]}" \
        --pid "$(cat "${PIDF[$s]}")" --label "ws_tput r$r" --json "$OUT" throughput \
        --pairs 50 --window 10 --duration "$DUR" --warmup 3) | cut -c1-300
      stop $s
    done
  done
}

PRIV="${BOSH_PRIVATE_RUN:-${TMPDIR:-/tmp}/hongyan-bosh-anchors}"
SHIFT="${BOSH_SHIFT:-}"
if [ -n "$SHIFT" ]; then
  BOSHURL[prosody]=http://127.0.0.1:$((15280 + SHIFT))/http-bind
  BOSHURL[ejabberd]=http://127.0.0.1:$((25280 + SHIFT))/http-bind
fi

priv_ejctl() {
  setpriv --reuid=ejabberd --regid=ejabberd --init-groups env HOME=/var/lib/ejabberd \
    ejabberdctl --config-dir "$PRIV/ejabberd/etc" --spool "$PRIV/ejabberd/db" \
    --logs "$PRIV/ejabberd/log" --node boshbench@localhost "$@"
}

priv_stop() { # server: a private copy started by priv_start
  case $1 in
    prosody) [ -f "$PRIV/prosody/prosody.pid" ] && kill "$(cat "$PRIV/prosody/prosody.pid")" 2>/dev/null
             sleep 1; rm -f "$PRIV/prosody/prosody.pid" ;;
    ejabberd) priv_ejctl stop >/dev/null 2>&1; priv_ejctl stopped >/dev/null 2>&1
              rm -f "$PRIV/ejabberd/ejabberd.pid" ;;
  esac
}

priv_start() { # server: BOSH_SHIFT set (other work on this machine holds the anchors' ports):
               # a private copy of anchors.sh's generated config with every port shifted, its
               # own pid file, logs and (ejabberd: its own node and spool, accounts registered
               # in-band once) state, with mod_bosh
  local s=$1 d="$PRIV/$1" sh=$SHIFT
  priv_stop "$s"
  mkdir -p "$d/log"
  case $s in
    prosody)
      sed -e "s/15222/$((15222 + sh))/; s/15280/$((15280 + sh))/; s/15269/$((15269 + sh))/" \
        -e "s/15347/$((15347 + sh))/" -e "s|^pidfile = .*|pidfile = \"$d/prosody.pid\"|" \
        -e "s|^log = .*|log = { warn = \"$d/log/prosody.log\" }|" \
        "$RUN/prosody/prosody.cfg.lua" > "$d/prosody.cfg.lua"
      grep -q '"bosh";' "$d/prosody.cfg.lua" || sed -i \
        's/"register"; "posix";/"register"; "posix"; "bosh";/' "$d/prosody.cfg.lua"
      grep -q '^consider_bosh_secure' "$d/prosody.cfg.lua" || sed -i \
        's/^c2s_require_encryption = false/c2s_require_encryption = false\nconsider_bosh_secure = true/' \
        "$d/prosody.cfg.lua"
      (ulimit -n "$(ulimit -Hn)"; cd "$d" && setsid prosody --config "$d/prosody.cfg.lua" -F \
        >"$d/log/stdout.log" 2>&1 &)
      PIDF[prosody]="$d/prosody.pid"
      ;;
    ejabberd)
      mkdir -p "$d/etc" "$d/db"
      sed -e "s/port: 25222/port: $((25222 + sh))/; s/port: 25280/port: $((25280 + sh))/" \
        "$RUN/ejabberd/etc/ejabberd.yml" > "$d/etc/ejabberd.yml"
      grep -q "/http-bind: mod_bosh" "$d/etc/ejabberd.yml" || sed -i \
        's|      /api: mod_http_api|      /api: mod_http_api\n      /http-bind: mod_bosh|' "$d/etc/ejabberd.yml"
      grep -q "^  mod_bosh:" "$d/etc/ejabberd.yml" || sed -i \
        's|^modules:|modules:\n  mod_bosh: {}|' "$d/etc/ejabberd.yml"
      sed -e "s|^ERLANG_NODE=.*|ERLANG_NODE=boshbench@localhost|" \
        -e "s|^EJABBERD_PID_PATH=.*|EJABBERD_PID_PATH=$d/ejabberd.pid|" \
        "$RUN/ejabberd/etc/ejabberdctl.cfg" > "$d/etc/ejabberdctl.cfg"
      cp "$RUN/ejabberd/etc/inetrc" "$d/etc/" 2>/dev/null
      chown -R ejabberd:ejabberd "$d"
      (ulimit -n "$(ulimit -Hn)"; cd "$d/db" && priv_ejctl start)
      priv_ejctl started >/dev/null 2>&1
      PIDF[ejabberd]="$d/ejabberd.pid"
      local n=$((${BOSH_CLIENTS:-2000} + 100))
      if [ ! -f "$d/accounts.$n" ]; then
        timeout 600 "$PY" "$LOAD" --port $((25222 + sh)) --workers 2 --concurrency 200 \
          register --users "$n" | cut -c1-200 && touch "$d/accounts.$n"
      fi
      ;;
  esac
}

bosh_start() { # server: started with XMPP over BOSH on its HTTP port, as ws_start does for
               # WebSocket: Prosody restarted with mod_bosh, ejabberd given a mod_bosh handler
               # and module, then told to reload its config (BOSH_SHIFT: private copies,
               # priv_start)
  local s=$1 run="$RUN/$1"
  if [ -n "$SHIFT" ] && [ "$s" != hongyan ]; then priv_start "$s"; s=private; fi
  case $s in
    private) ;;
    hongyan) HY_HTTP=true hy_start || return 1 ;;
    prosody)
      start prosody || return 1
      $A stop prosody >/dev/null 2>&1
      sed -i -e 's/"register"; "posix";/"register"; "posix"; "bosh";/' \
        -e 's/^c2s_require_encryption = false/c2s_require_encryption = false\nconsider_bosh_secure = true/' \
        "$run/prosody.cfg.lua"
      (cd "$run" && setsid prosody --config "$run/prosody.cfg.lua" -F >"$run/log/stdout.log" 2>&1 &)
      ;;
    ejabberd)
      start ejabberd || return 1
      grep -q "/http-bind: mod_bosh" "$run/etc/ejabberd.yml" || sed -i \
        's|      /api: mod_http_api|      /api: mod_http_api\n      /http-bind: mod_bosh|' "$run/etc/ejabberd.yml"
      grep -q "^  mod_bosh:" "$run/etc/ejabberd.yml" || sed -i \
        's|^modules:|modules:\n  mod_bosh: {}|' "$run/etc/ejabberd.yml"
      setpriv --reuid=ejabberd --regid=ejabberd --init-groups env HOME=/var/lib/ejabberd \
        ejabberdctl --config-dir "$run/etc" --spool "$run/db" --logs "$run/log" \
        --node bench@localhost reload_config >/dev/null
      ;;
  esac
  s=$1
  local url="${BOSHURL[$s]}" code
  for i in $(seq 1 300); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -m 2 "$url")
    [ "$code" != 000 ] && [ "$code" != 404 ] && { sleep 2; return 0; }
    if [ $s = ejabberd ] && [ -z "$SHIFT" ] && [ $((i % 50)) = 0 ]; then  # a reload before it was ready
      setpriv --reuid=ejabberd --regid=ejabberd --init-groups env HOME=/var/lib/ejabberd \
        ejabberdctl --config-dir "$run/etc" --spool "$run/db" --logs "$run/log" \
        --node bench@localhost reload_config >/dev/null
    fi
    sleep 0.2
  done
  echo "$s serves no BOSH at $url" >&2; return 1
}

bosh() { # memory per idle BOSH session (one request held each) and 1:1 throughput over BOSH
         # (issue 18), every server freshly started
  for ((r = 1; r <= REPS; r++)); do
    for s in $SERVERS; do
      bosh_start $s || continue
      echo "== $(date +%T) $s bosh_idle r$r" >&2
      (cd "$ROOT" && timeout 900 .venv/bin/python -m bench.boshload --url "${BOSHURL[$s]}" \
        --pid "$(cat "${PIDF[$s]}")" --clients "${BOSH_CLIENTS:-2000}" --label "bosh_idle r$r" \
        --json "$OUT") | cut -c1-300
      echo "== $(date +%T) $s bosh_tput r$r" >&2
      (cd "$ROOT" && timeout 300 .venv/bin/python -m bench.boshload --url "${BOSHURL[$s]}" \
        --pid "$(cat "${PIDF[$s]}")" --label "bosh_tput r$r" --json "$OUT" throughput \
        --pairs 50 --window 10 --duration "$DUR" --warmup 3) | cut -c1-300
      if [ -n "$SHIFT" ] && [ $s != hongyan ]; then priv_stop $s; else stop $s; fi
    done
  done
}

cleanup() {
  for s in prosody ejabberd; do $A stop $s >/dev/null 2>&1; done; hy_stop
  if [ -n "$SHIFT" ]; then priv_stop prosody; priv_stop ejabberd; fi
}
trap cleanup EXIT

gen() { # server label [global opts...] -- subcommand args...
  local s=$1 label=$2; shift 2
  local glob=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do glob+=("$1"); shift; done
  shift
  echo "== $(date +%T) $s $label" >&2
  timeout 600 "$PY" "$LOAD" --port "${PORT[$s]}" --server-pidfile "${PIDF[$s]}" \
    --label "$label" --json "$OUT" "${glob[@]}" "$@" | cut -c1-300
}

hy_accounts() { # make user1..user10000 / pass once
  hy_config
  local mark="$HYRUN/data/.accounts-10000${HY_STORAGE_URL:+-$(echo "$HY_STORAGE_URL" | md5sum | cut -c1-8)}"
  if [ ! -f "$mark" ]; then
    # straight into the database (bench/accounts.py): in-band registration is limited per
    # address and hour now ([registration] per_ip_per_hour)
    hy_stop
    (cd "$ROOT" && timeout 600 .venv/bin/python -m bench.accounts --config "$HYRUN/hongyan.toml" \
      --users 10000) && touch "$mark"
  fi
}

mem10000() { # server label: the memory row, on a freshly started server (RSS per idle session
              # after 10,000 PLAIN logins)
  start "$1" && gen "$1" "$2" --concurrency 100 -- login --clients 10000 --settle 5
}

main() {
  for ((r = 1; r <= REPS; r++)); do
    for s in $SERVERS; do
      mem10000 $s "mem10000 r$r"
      start $s || continue
      gen $s "tput r$r" -- throughput --pairs 50 --window 10 --duration "$DUR" --warmup 3
      gen $s "lat5000 r$r" -- latency --pairs 50 --rate 5000 --duration "$DUR" --warmup 2
      if [ $s != hongyan ] || [ -n "${HY_MUC:-}" ]; then
        gen $s "muc100 r$r" -- muc --occupants 100 --senders 10 --window 5 --duration "$DUR" --warmup 3
      fi
      stop $s
      if [ $s = hongyan ] && [ -n "${HY_ALSO_W1:-}" ] && [ "${HY_WORKERS:-1}" != 1 ]; then
        # the same rows on one worker process, for comparison
        local w=$HY_WORKERS; HY_WORKERS=1
        mem10000 hongyan "mem10000-w1 r$r"
        if start hongyan; then
          gen hongyan "tput-w1 r$r" -- throughput --pairs 50 --window 10 --duration "$DUR" --warmup 3
          gen hongyan "lat5000-w1 r$r" -- latency --pairs 50 --rate 5000 --duration "$DUR" --warmup 2
          stop hongyan
        fi
        HY_WORKERS=$w
      fi
    done
  done
}

pinned() { # one core for the server: Hongyan runs one worker process there
  local w=${HY_WORKERS:-1}; HY_WORKERS=1
  for ((r = 1; r <= REPS; r++)); do
    for s in $SERVERS; do
      start $s 0 || continue
      gen $s "pinned-tput r$r" --workers 1 --gen-cpus 1 -- throughput --pairs 50 --window 10 --duration "$DUR" --warmup 3
      stop $s
    done
  done
  HY_WORKERS=$w
}

scram() {
  for s in $SERVERS; do
    start $s && gen $s "warm-scram" --sasl scram-sha-1 -- warm-scram --users 10000
    stop $s
  done
  for ((r = 1; r <= REPS; r++)); do
    for s in $SERVERS; do
      start $s && gen $s "scram10000 r$r" --sasl scram-sha-1 --concurrency 100 -- login --clients 10000 --settle 5
      start $s && gen $s "plain10000 r$r" --concurrency 100 -- login --clients 10000 --settle 5
      stop $s
    done
  done
}

idle() { # Hongyan only (the issue's row has no anchor figures): 100,000 idle sessions, on
         # HY_IDLE_WORKERS worker processes (default 6: each may hold at most 20,000 files here)
  local n=${IDLE_CLIENTS:-100000} saved=${HY_WORKERS:-1}
  HY_WORKERS=${HY_IDLE_WORKERS:-6}
  hy_stop; hy_config  # accounts written straight into the database (bench/accounts.py)
  (cd "$ROOT" && .venv/bin/python -m bench.accounts --config "$HYRUN/hongyan.toml" \
    --users $((n + 100))) || return 1
  ulimit -Hn 1048576 2>/dev/null; ulimit -n 1048576 2>/dev/null
  start hongyan || return 1
  echo "== $(date +%T) hongyan idle$n" >&2
  (cd "$ROOT" && timeout 2400 .venv/bin/python -m bench.idle --port $HYPORT --clients "$n" \
    --pidfile "$HYRUN/hongyan.pid" --label "idle$n-w$HY_WORKERS" --json "$OUT")
  stop hongyan
  HY_WORKERS=$saved
}

tls() { # memory per idle session and login rate over STARTTLS (the anchors' RSA-2048 cert;
         # Hongyan's self-signed one), 1,000 clients as in ../shared/bench/RESULTS-anchors.md
  for ((r = 1; r <= REPS; r++)); do
    for s in $SERVERS; do
      start $s && gen $s "tls1000 r$r" --tls --concurrency 100 -- login --clients 1000 --settle 5
      start $s && gen $s "plain1000 r$r" --concurrency 100 -- login --clients 1000 --settle 5
      stop $s
    done
  done
}

archive() { # Hongyan only: throughput without and with the message archive (MAM), A B A B
  local saved=${HY_OFF-mam}
  for ((r = 1; r <= REPS; r++)); do
    for mode in nomam mam; do
      if [ $mode = mam ]; then HY_OFF=""; else HY_OFF=$saved; fi
      start hongyan && gen hongyan "archive-$mode-tput r$r" -- throughput --pairs 50 --window 10 --duration "$DUR" --warmup 3
      HY_WORKERS=1 start hongyan 0 && gen hongyan "archive-$mode-pinned-tput r$r" --workers 1 --gen-cpus 1 -- throughput --pairs 50 --window 10 --duration "$DUR" --warmup 3
      stop hongyan
    done
  done
  HY_OFF=$saved
}

events() { # Hongyan only: throughput with the event stream (issue 24) off and publishing every
          # event to Redis (HY_EVENTS_REDIS) or to NATS JetStream (HY_EVENTS_NATS; the stream
          # HONGYAN_BENCH is made here), or to Redis without message events (nomsg),
          # interleaved per repetition (HY_EVENTS_MODES: off redis nats nomsg)
  local redis=${HY_EVENTS_REDIS:-redis://127.0.0.1:6379/15} nats=${HY_EVENTS_NATS:-nats://127.0.0.1:4222}
  if [[ " ${HY_EVENTS_MODES:-off redis nats} " == *" nats "* ]]; then
    "$ROOT/.venv/bin/python" - "$nats" <<'PY' || return 1
import asyncio, sys
import nats
from nats.js.api import StreamConfig
async def main() -> None:
    nc = await nats.connect(sys.argv[1])
    js = nc.jetstream()
    cfg = StreamConfig(name="HONGYAN_BENCH", subjects=["hongyanbench.>"], max_msgs=10000)
    try:
        await js.update_stream(cfg)
    except Exception:
        await js.add_stream(cfg)
    await nc.close()
asyncio.run(main())
PY
  fi
  for ((r = 1; r <= REPS; r++)); do
    for mode in ${HY_EVENTS_MODES:-off redis nats}; do
      case $mode in
        redis) HY_EXTRA=$(printf '[eventstream]\nenabled = true\nredis_url = "%s"\nredis_stream = "hongyan:bench"\nredis_maxlen = 10000' "$redis") ;;
        nomsg) HY_EXTRA=$(printf '[eventstream]\nenabled = true\nredis_url = "%s"\nredis_stream = "hongyan:bench"\nredis_maxlen = 10000\nevents = ["presence", "login", "logout", "room"]' "$redis") ;;
        nats) HY_EXTRA=$(printf '[eventstream]\nenabled = true\nnats_url = "%s"\nnats_subject = "hongyanbench"' "$nats") ;;
        *) HY_EXTRA="" ;;
      esac
      start hongyan && gen hongyan "events-$mode-tput r$r" -- throughput --pairs 50 --window 10 --duration "$DUR" --warmup 3
      stop hongyan
    done
  done
  HY_EXTRA=""
}

muc() { # the MUC row alone, all servers side by side (Hongyan on HY_WORKERS workers)
  for ((r = 1; r <= REPS; r++)); do
    for s in $SERVERS; do
      start $s || continue
      gen $s "muc100 r$r" -- muc --occupants 100 --senders 10 --window 5 --duration "$DUR" --warmup 3
      stop $s
    done
  done
}

PGURL=${PG_URL:-postgresql://postgres@127.0.0.1:5432}
mam_db() { # server storage: a fresh, empty archive store for the server's next start
  local s=$1 st=$2 run="$RUN/$1"
  case $st in
    sqlite)
      case $s in
        hongyan) [ -f "$HYRUN/data/hongyan.db" ] && "$PY" -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('DELETE FROM mam_messages'); c.commit()" "$HYRUN/data/hongyan.db" 2>/dev/null ;;
        prosody) rm -f "$run/data/mam.sqlite" ;;
        ejabberd) rm -f "$run/db/mam.db" ;;
      esac ;;
    postgresql)
      psql -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS bench_${s}_mam" -c "CREATE DATABASE bench_${s}_mam" >/dev/null
      [ "$s" = hongyan ] && rm -f "$HYRUN"/data/.accounts-10000-*  # (its accounts went with it)
      # ejabberd creates no tables in PostgreSQL itself: its schema, as Debian ships it
      [ "$s" = ejabberd ] && psql -q "$PGURL/bench_${s}_mam" -f /usr/share/ejabberd/sql/pg.sql >/dev/null 2>&1
      ;;
  esac
}

mam_start() { # server storage: started with its message archive on, on that SQL storage
              # (Hongyan: everything on it; the anchors: accounts as before, the archive on
              # SQL): Prosody with mod_mam on storage "sql" (LuaDBI), ejabberd with mod_mam
              # db_type sql, both archiving every 1:1 message (default policy: always)
  local s=$1 st=$2 run="$RUN/$1"
  mam_db "$s" "$st"
  case $s in
    hongyan)
      if [ "$st" = postgresql ]; then HY_STORAGE_URL="$PGURL/bench_hongyan_mam" hy_accounts; fi
      HY_OFF="" HY_STORAGE_URL="${HY_STORAGE_URL_MAM:-}" hy_start || return 1 ;;
    prosody)
      start prosody || return 1
      $A stop prosody >/dev/null 2>&1
      local sql='sql = { driver = "SQLite3", database = "mam.sqlite" }'
      [ "$st" = postgresql ] && sql='sql = { driver = "PostgreSQL", database = "bench_prosody_mam", host = "127.0.0.1", port = 5432, username = "postgres", password = "" }'
      sed -i -e 's/"register"; "posix";/"register"; "posix"; "mam";/' \
        -e "s/^storage = \"internal\"/storage = { archive = \"sql\" }\\n$sql\\ndefault_archive_policy = true\\narchive_expires_after = \"never\"/" \
        "$run/prosody.cfg.lua"
      (ulimit -n "$(ulimit -Hn)"; cd "$run" && setsid prosody --config "$run/prosody.cfg.lua" -F \
        >"$run/log/stdout.log" 2>&1 &)
      ;;
    ejabberd)
      start ejabberd || return 1
      $A stop ejabberd >/dev/null 2>&1
      local db="sql_type: sqlite\nsql_database: \"$run/db/mam.db\""
      [ "$st" = postgresql ] && db="sql_type: pgsql\nsql_server: \"127.0.0.1\"\nsql_port: 5432\nsql_database: \"bench_ejabberd_mam\"\nsql_username: \"postgres\"\nsql_password: \"\""
      sed -i -e "s|^auth_method: internal|$db\nauth_method: internal|" \
        -e 's|^modules:|modules:\n  mod_mam:\n    db_type: sql\n    default: always|' "$run/etc/ejabberd.yml"
      chown -R ejabberd:ejabberd "$run"
      (ulimit -n "$(ulimit -Hn)"; cd "$run/db" && setpriv --reuid=ejabberd --regid=ejabberd \
        --init-groups env HOME=/var/lib/ejabberd ejabberdctl --config-dir "$run/etc" \
        --spool "$run/db" --logs "$run/log" --node bench@localhost start)
      setpriv --reuid=ejabberd --regid=ejabberd --init-groups env HOME=/var/lib/ejabberd \
        ejabberdctl --config-dir "$run/etc" --spool "$run/db" --logs "$run/log" \
        --node bench@localhost started >/dev/null 2>&1
      ;;
  esac
  local i
  for i in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/${PORT[$s]}") 2>/dev/null && { sleep 3; return 0; }
    sleep 0.1
  done
  echo "$s did not start with its archive" >&2; return 1
}

mam_rows() { # server storage label: how many messages the archive holds (after the server
             # stopped: Hongyan's batched writer has flushed), as a JSON line in $OUT, so a
             # row whose archive stayed empty (a config the server ignored) shows as such
  local s=$1 st=$2 label=$3 run="$RUN/$1" q n=""
  case $s in
    hongyan) q="SELECT count(*) FROM mam_messages" ;;
    prosody) q="SELECT count(*) FROM prosodyarchive" ;;
    ejabberd) q="SELECT count(*) FROM archive" ;;
  esac
  if [ "$st" = postgresql ]; then
    n=$(psql -qtA "$PGURL/bench_${s}_mam" -c "$q" 2>/dev/null)
  else
    local f
    case $s in
      hongyan) f="$HYRUN/data/hongyan.db" ;;
      prosody) f="$run/data/mam.sqlite" ;;
      ejabberd) f="$run/db/mam.db" ;;
    esac
    n=$("$PY" -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])" "$f" "$q" 2>/dev/null)
  fi
  printf '{"test": "archive_rows", "label": "%s", "target": "127.0.0.1:%s", "rows": %s}\n' \
    "$label" "${PORT[$s]}" "${n:-null}" >> "$OUT"
  echo "   $s archive rows: ${n:-unknown}" >&2
}

mamcmp() { # issue 22 item 2: every server's throughput with and without its message archive
           # on SQL storage (MAM_STORAGES: sqlite, postgresql), fresh servers and fresh
           # archives, A B C interleaved per repetition; Hongyan on HY_WORKERS workers.
           # 100 messages in flight, not main's 500: an archive that commits every message
           # (the anchors' SQL archives) delivers tens to hundreds a second here, and a window
           # of 500 would hold all of the measured interval's messages behind the warm-up's
  local mgen="${MAM_GEN:---pairs 50 --window 2 --duration $DUR --warmup 5}"
  for ((r = 1; r <= REPS; r++)); do
    for st in ${MAM_STORAGES:-sqlite}; do
      for s in $SERVERS; do
        # shellcheck disable=SC2086
        start $s && gen $s "nomam-tput r$r" -- throughput $mgen
        stop $s
        if [ $s = hongyan ] && [ "$st" = postgresql ]; then
          HY_STORAGE_URL_MAM="$PGURL/bench_hongyan_mam"; else HY_STORAGE_URL_MAM=""; fi
        if mam_start $s "$st"; then
          # shellcheck disable=SC2086
          gen $s "mam-$st-tput r$r" -- throughput $mgen
          stop $s
          mam_rows $s "$st" "mam-$st-rows r$r"
        fi
      done
    done
  done
}

tput() { # throughput only, unpinned (HY_WORKERS=1,2 to compare worker counts)
  for ((r = 1; r <= REPS; r++)); do
    for s in $SERVERS; do
      for w in ${HY_WORKER_COUNTS:-${HY_WORKERS:-1}}; do
        [ $s = hongyan ] && HY_WORKERS=$w
        start $s && gen $s "tput-w$w r$r" -- throughput --pairs 50 --window 10 --duration "$DUR" --warmup 3
        stop $s
        [ $s = hongyan ] || break
      done
    done
  done
}

mem() { # the memory row alone: RSS per idle session, 10,000 PLAIN logins, fresh server each time
  for ((r = 1; r <= REPS; r++)); do
    for s in $SERVERS; do
      mem10000 $s "mem10000 r$r"
      stop $s
    done
  done
}

quick() { # one short pass of the main figures, for a development check
  for s in $SERVERS; do
    start $s && gen $s "mem1000 r1" -- login --clients 1000 --settle 3
    start $s || continue
    gen $s "tput r1" -- throughput --pairs 50 --window 10 --duration 10 --warmup 3
    gen $s "lat5000 r1" -- latency --pairs 50 --rate 5000 --duration 10 --warmup 2
    stop $s
  done
}

echo "results -> $OUT" >&2
[[ " $SERVERS " == *" hongyan "* ]] && hy_accounts
case "${1:-main}" in
  quick) quick ;;
  tput) tput ;;
  main) main ;;
  pinned) pinned ;;
  scram) scram ;;
  idle) idle ;;
  archive) archive ;;
  mamcmp) mamcmp ;;
  events) events ;;
  muc) muc ;;
  mem) mem ;;
  tls) tls ;;
  ws) ws ;;
  bosh) bosh ;;
  all) main; pinned; scram; tls; archive; mamcmp; idle; muc; ws; bosh ;;
  *) echo "usage: $0 [quick|tput|main|pinned|scram|tls|archive|mamcmp|events|muc|mem|idle|ws|bosh|all]" >&2; exit 2 ;;
esac
# the report: every row's medians, Hongyan's ratios to each anchor, machine and commit, a chart
NAMES="$PPORT=prosody,$EPORT=ejabberd,$HYPORT=hongyan,$PHTTP=prosody,$EHTTP=ejabberd,$HYHTTP=hongyan"
(cd "$ROOT" && .venv/bin/python -m bench.report "$OUT" --names "$NAMES" \
   --out "${OUT%.jsonl}.md" --png "${OUT%.jsonl}.png") && echo "summary: ${OUT%.jsonl}.md" >&2
