#!/usr/bin/env bash
# bench/ab.sh — the quick A/B: pinhole builds side by side at one rate.
#
#   bash bench/ab.sh BIN_A [BIN_B ...]
#
# A binary named echo-responder* is run as bench/cmd/echo-responder: what
# the generator and the veth alone add to every figure; one named
# echo-responder-loop* with -wait loop (an event loop's system calls).
# For each round and each binary in turn: pinhole started afresh in its own
# network namespace on SERVER_CORE (its veth end's receive work there too,
# bench/netns.sh), sipload offering SCENARIO at RATE from another namespace
# on GEN_CORE, then one line: delivered per second, p50 / p99, the server's
# CPU per answer, what its own metrics say it absorbed and shed (the
# hand-off's and the registrar's, counted since start), and how
# many garbage collections ran meanwhile. Rounds
# alternate the binaries so that a drift of the machine hits both.
#
# Settings (environment):
#   SCENARIO=refresh  RATE=32000  DEVICES=20000  DURATION=6s  WARMUP=2s
#   ROUNDS=2  FASTPATH=true  AUTH=1 (0: no digest)  BATCH=64
#   SERVER_CORE=0 GEN_CORE=1  OUT=bench/out/ab
#   TRACE=N  (a runtime trace of N seconds from the middle of each run,
#            OUT/<round>-<i>.trace: go tool trace)
#   PROFILE=N (a CPU profile of N seconds, OUT/<round>-<i>.pprof;
#            PROFILE_KIND=allocs: what was allocated in those seconds)
set -euo pipefail
cd "$(dirname "$0")/.."
(($# > 0)) || { echo "usage: bench/ab.sh BIN_A [BIN_B ...]" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "ab.sh: needs root for its namespaces" >&2; exit 2; }

SCENARIO=${SCENARIO:-refresh} RATE=${RATE:-32000} DEVICES=${DEVICES:-20000}
DURATION=${DURATION:-6s} WARMUP=${WARMUP:-2s} ROUNDS=${ROUNDS:-2}
FASTPATH=${FASTPATH:-true} AUTH=${AUTH:-1} BATCH=${BATCH:-64}
SERVER_CORE=${SERVER_CORE:-0} GEN_CORE=${GEN_CORE:-1}
OUT=${OUT:-bench/out/ab} TRACE=${TRACE:-} PROFILE=${PROFILE:-} PROFILE_KIND=${PROFILE_KIND:-profile}
PORT=25060 METRICS_PORT=29060
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

. bench/lib.sh
. bench/netns.sh
trap 'stop_server; veth_down' EXIT
veth_up
NETNS_EXEC="ip netns exec $SRV_NS"

go build -o "$OUT/sipload" ./bench/cmd/sipload
"$OUT/sipload" -write-credentials "$OUT/users.txt" -realm pinhole -devices "$DEVICES"
# Metrics on the loopback of pinhole's namespace: profiles are served
# there only.
AUTH=$AUTH METRICS_HOST=127.0.0.1 write_pinhole_cfg "$FASTPATH" "$BATCH"

# metric NAME: the sum of a metric's series on the running server.
metric() { { in_srv curl -s "http://127.0.0.1:$METRICS_PORT/metrics" || true; } | awk -v m="$1" 'index($1, m) == 1 {s += $2} END {printf "%.0f", s}'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
secs() { local d=${1%s}; echo "${d%.*}"; }

echo "== $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r), load $(cut -d' ' -f1 /proc/loadavg); $SCENARIO at $RATE/s, $DEVICES devices, fast path $FASTPATH, digest $AUTH"
src=0
for round in $(seq "$ROUNDS"); do
  i=0
  for bin in "$@"; do
    i=$((i + 1)) src=$((src + 1))
    rm -rf "$OUT/pinhole-data"
    # Not in_srv: a function would run in a subshell, and SERVER_PID must be
    # pinhole itself (ip netns exec and taskset exec it).
    args=(-config "$OUT/pinhole.yaml")
    # bench/cmd/echo-responder: the instrument's own floor in the same run.
    [[ $(basename "$bin") == echo-responder* ]] && args=(-listen "$HOST:$PORT")
    # echo-responder-loop*: the same echo with an event loop's system calls
    # (its -wait loop): the fast path's batching without the fast path.
    [[ $(basename "$bin") == echo-responder-loop* ]] && args+=(-wait loop)
    ip netns exec "$SRV_NS" taskset -c "$SERVER_CORE" "$bin" "${args[@]}" >"$OUT/server.log" 2>&1 &
    SERVER_PID=$!
    wait_udp server.log
    sleep 1
    veth_pin
    # The devices register before the measured part (sipload's prepare
    # phase); the server's CPU is counted from the warm-up's end.
    in_gen taskset -c "$GEN_CORE" "$OUT/sipload" -allow-non-loopback -io batch -server "$HOST:$PORT" -domain "$HOST" \
      -sources "10.$((64 + src % 64)).0.0/16" -scenario "$SCENARIO" -devices "$DEVICES" -rate "$RATE" \
      -duration "$DURATION" -warmup "$WARMUP" -prepare-rate 4000 >"$OUT/gen.txt" 2>&1 &
    gen=$!
    # The run phase's first progress line comes a second into it.
    for _ in $(seq 1200); do grep -q "^run " "$OUT/gen.txt" 2>/dev/null && break; sleep 0.1; done
    wait_s=$(($(secs "$WARMUP") - 1))
    if ((wait_s > 0)); then sleep "$wait_s"; fi
    t0=$(cpu_ticks) a0=$(metric pinhole_fastpath_absorbed_total) gc0=$(metric go_gc_duration_seconds_count)
    half=$(($(secs "$DURATION") / 2))
    if [[ -n $TRACE ]]; then
      sleep "$half"
      in_srv curl -s -o "$OUT/$round-$i.trace" "http://127.0.0.1:$METRICS_PORT/debug/pprof/trace?seconds=$TRACE"
    elif [[ -n $PROFILE ]]; then
      in_srv curl -s -o "$OUT/$round-$i.pprof" "http://127.0.0.1:$METRICS_PORT/debug/pprof/$PROFILE_KIND?seconds=$PROFILE"
    fi
    wait "$gen" || true
    t1=$(cpu_ticks) a1=$(metric pinhole_fastpath_absorbed_total) gc1=$(metric go_gc_duration_seconds_count) shed=$(($(metric pinhole_fastpath_handoff_shed_total) + $(metric pinhole_registrar_shed_total)))
    stop_server
    awk -v bin="$bin" -v c=$((t1 - t0)) -v a=$((a1 - a0))  -v shed="$shed" -v gc=$((gc1 - gc0)) -v d="$(($(secs "$DURATION") - $(secs "$WARMUP")))" '
      $1 == "action" {actions = 1}
      actions && $1 == scen {ok = $3; printf "%-28s %8s/s p50 %6s p99 %7s ms  cpu %5.1f us/answer  absorbed %d/s  shed %s  GCs %d\n", bin, $3, $8, $9, (ok > 0 ? c / 100 * 1e6 / (ok * d) : 0), a / d, shed, gc}
    ' scen="${SCENARIO%-noauth}" "$OUT/gen.txt"
  done
done
