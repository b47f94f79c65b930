#!/usr/bin/env bash
# bench/compare.sh — pinhole side by side with its peers, on one machine.
#
# For each server in turn (the echo responder, pinhole's slow path, pinhole
# with its userspace fast path, Kamailio, OpenSIPS when an `opensips` binary
# is on PATH) and each scenario, it starts the server afresh on the same
# address, pinned to SERVER_CORE, offers the same load from
# bench/cmd/sipload pinned to GEN_CORE, stops the server, and prints a
# table with ratios against pinhole. First it measures the generator's own
# ceiling (the batched generator flat out against the echo responder).
# Then, for CAPACITY_SCENARIOS, it climbs the CAPACITY_RATES ladder until
# a rate is not sustained (bench/cmd/benchtable says when): the capacity
# curves, delivered against offered. Then the carrier's scenarios: the
# avalanche (AVALANCHE_DEVICES devices registering at once on a fresh
# server, or with AVALANCHE_RESTART=1 after the server was killed and
# started again on its data: the time until every one holds a 200, and
# each server's peak and settled memory) and the mixed day (first
# registrations, refreshes every 60 s, keepalives every 15 s, calls at 1 %
# of devices per hour, all at once: success and latency per kind). Last,
# memory per binding at each MEMORY size (loopback only).
#
# NET=veth (the default; root): the generator in one network namespace,
# the server in another, joined by a veth pair with threaded NAPI, the
# server end's receive work pinned to SERVER_CORE and the generator end's
# to GEN_CORE (bench/netns.sh), so the server's core pays for its own
# receive path as behind a NIC queue. NET=loopback: 127.0.0.1 for the
# server and 127.80.0.0/12 sources, the quick mode (the sender's core then
# does the receiver's softirq work). Configurations of the peers are
# written here, into OUT; every JSON result carries them.
#
# Scenario refresh-noauth is refresh with every server configured without
# digest authentication (the case pinhole's fast path absorbs).
#
# Settings (environment):
#   NET=veth  DEVICES=5000  RATE=2000  DURATION=6s  WARMUP=2s  PREPARE_RATE=2000
#   SCENARIOS="register refresh refresh-noauth keepalive flood calls"
#   CAPACITY_SCENARIOS="refresh-noauth register"  CAPACITY_DURATION=5s CAPACITY_WARMUP=2s
#   CAPACITY_RATES="4000 8000 16000 32000 64000 128000"  (each server climbs until it fails twice)
#   OVERLOAD=1  (then offers twice the sustained rate once: does the server keep delivering?)
#   OVERLOAD_DURATION=10s OVERLOAD_WARMUP=4s  (that run's length and the start it leaves out)
#   CEILING_RATE=400000  (offered to the echo responder for the generator's ceiling)
#   SERVERS="echo pinhole fastpath kamailio opensips"  IO=batch  SOCKETS=8
#     (also fastpath-nobatch: the fast path with fastpath.batch 1;
#     pinhole-redis and fastpath-redis: pinhole and fastpath with
#     location.backend redis, on a Redis Cluster of three masters and no
#     replicas started for each run in the server's namespace, pinned to
#     SERVER_CORE with the server; REDIS_PORT=PORT+2000 and the next two)
#   MEMORY=""  binding counts for memory per binding, e.g. "100000 1000000"
#              (each waits ~2 min for a GC after the registrations)
#   MEMORY_RATE=3000  registrations per second while filling
#   MEMORY_SERVERS="pinhole fastpath kamailio"  (fastpath: the same bindings
#              plus the fast path's prepared answers, the default product)
#   CALL_RATE=200 CALL_HOLD=1s FLOOD_RATE=20000
#   SERVER_CORE=0 GEN_CORE=1 KAM_CHILDREN=2 OUT=bench/out
#   FD_BUDGET=<hard open-file limit - 1000>  sockets before devices share them
#   AVALANCHE_SERVERS="pinhole kamailio"  AVALANCHE_DEVICES=20000
#   AVALANCHE_RATE=20000 (devices arriving per second: all within a second)
#   AVALANCHE_LIMIT=60s (the longest the avalanche may take)
#   AVALANCHE_SETTLE=35 (seconds before the settled memory: sipgo and tm
#                        keep transactions about 32 s)
#   AVALANCHE_AUTH=1 ("1 0": with digest, then without)
#   AVALANCHE_RESTART=0 (1: the avalanche after a restart: devices register
#     at AVALANCHE_PREPARE_RATE=3000, the server is killed with
#     AVALANCHE_KILL=KILL (or TERM) and started again on its data, then
#     every device re-registers; AVALANCHE_FRESH_CALLID=1: with a new
#     Call-ID, as after a reboot, instead of its own with the next CSeq)
#   MIX_SERVERS="pinhole fastpath kamailio"  MIX_DEVICES=50000  MIX_DURATION=20s
#   MIX_PREPARE_RATE=4000  MIX_CALLS_PER_DEVICE_HOUR=0.01  MIX_REBOOTS_PER_DEVICE_DAY=1
set -euo pipefail
cd "$(dirname "$0")/.."

NET=${NET:-veth}
IO=${IO:-batch}
SOCKETS=${SOCKETS:-8}
DEVICES=${DEVICES:-5000}
RATE=${RATE:-2000}
DURATION=${DURATION:-6s}
WARMUP=${WARMUP:-2s}
CAPACITY_SCENARIOS=${CAPACITY_SCENARIOS-"refresh-noauth register"}
CAPACITY_RATES=${CAPACITY_RATES:-"4000 8000 16000 32000 64000 128000"}
CEILING_RATE=${CEILING_RATE:-400000}
CAPACITY_DURATION=${CAPACITY_DURATION:-5s}
CAPACITY_WARMUP=${CAPACITY_WARMUP:-2s}
OVERLOAD=${OVERLOAD:-1}
OVERLOAD_DURATION=${OVERLOAD_DURATION:-10s}
OVERLOAD_WARMUP=${OVERLOAD_WARMUP:-4s}
PREPARE_RATE=${PREPARE_RATE:-2000}
SCENARIOS=${SCENARIOS-"register refresh refresh-noauth keepalive flood calls"}
SERVERS=${SERVERS-"echo pinhole fastpath kamailio opensips"}
MEMORY=${MEMORY:-}
MEMORY_RATE=${MEMORY_RATE:-3000}
MEMORY_SERVERS=${MEMORY_SERVERS-"pinhole fastpath kamailio"}
CALL_RATE=${CALL_RATE:-200}
CALL_HOLD=${CALL_HOLD:-1s}
FLOOD_RATE=${FLOOD_RATE:-20000}
SERVER_CORE=${SERVER_CORE:-0}
GEN_CORE=${GEN_CORE:-1}
KAM_CHILDREN=${KAM_CHILDREN:-2}
OUT=${OUT:-bench/out}
AVALANCHE_SERVERS=${AVALANCHE_SERVERS-"pinhole kamailio"}
AVALANCHE_DEVICES=${AVALANCHE_DEVICES:-20000}
AVALANCHE_RATE=${AVALANCHE_RATE:-20000}
AVALANCHE_LIMIT=${AVALANCHE_LIMIT:-60s}
AVALANCHE_SETTLE=${AVALANCHE_SETTLE:-35}
AVALANCHE_AUTH=${AVALANCHE_AUTH:-1}
AVALANCHE_RESTART=${AVALANCHE_RESTART:-0}
AVALANCHE_PREPARE_RATE=${AVALANCHE_PREPARE_RATE:-3000}
AVALANCHE_FRESH_CALLID=${AVALANCHE_FRESH_CALLID:-0}
AVALANCHE_KILL=${AVALANCHE_KILL:-KILL}
MIX_SERVERS=${MIX_SERVERS-"pinhole fastpath kamailio"}
MIX_DEVICES=${MIX_DEVICES:-50000}
MIX_DURATION=${MIX_DURATION:-20s}
MIX_PREPARE_RATE=${MIX_PREPARE_RATE:-4000}
MIX_CALLS_PER_DEVICE_HOUR=${MIX_CALLS_PER_DEVICE_HOUR:-0.01}
MIX_REBOOTS_PER_DEVICE_DAY=${MIX_REBOOTS_PER_DEVICE_DAY:-1}
# Sockets the generator may open: one per device up to this, shared beyond.
FD_BUDGET=${FD_BUDGET:-$(($(ulimit -Hn) - 1000))}
HOST=127.0.0.1
PORT=${PORT:-25060}
METRICS_PORT=${METRICS_PORT:-29060}
REDIS_PORT=${REDIS_PORT:-$((PORT + 2000))}

OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
BIN=$OUT/bin
mkdir -p "$BIN"
scripts/install-deps.sh bench
echo "== building into $BIN"
go build -o "$BIN/" ./cmd/pinhole ./bench/cmd/sipload ./bench/cmd/echo-responder ./bench/cmd/benchtable ./bench/cmd/kamailio-cfg
COMMIT=$(git rev-parse HEAD 2>/dev/null || echo unknown)
DIRTY=false
[[ -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]] && DIRTY=true

max_devices=$DEVICES
[[ -n $AVALANCHE_SERVERS ]] && ((AVALANCHE_DEVICES > max_devices)) && max_devices=$AVALANCHE_DEVICES
[[ -n $MIX_SERVERS ]] && ((MIX_DEVICES > max_devices)) && max_devices=$MIX_DEVICES
for n in $MEMORY; do ((n > max_devices)) && max_devices=$n; done
"$BIN/sipload" -write-credentials "$OUT/users.txt" -realm pinhole -devices "$max_devices"

# shellcheck source=bench/lib.sh
source bench/lib.sh
# shellcheck source=bench/netns.sh
source bench/netns.sh
SRV=() GEN=()
case $NET in
veth)
  trap 'stop_server; veth_down' EXIT
  veth_up
  SRV=(ip netns exec "$SRV_NS") GEN=(ip netns exec "$GEN_NS")
  [[ -z $MEMORY ]] || { echo "compare: MEMORY runs on NET=loopback only" >&2; exit 2; }
  ;;
loopback) trap stop_server EXIT ;;
*) echo "compare: NET=$NET, want veth or loopback" >&2; exit 2 ;;
esac
NETNS_EXEC="${SRV[*]}" # lib.sh's wait_udp looks in the server's namespace

# sources K: the devices' prefix for run K, fresh for each run so that a
# server still retransmitting to a previous run's devices disturbs nothing.
sources() {
  if [[ $NET == veth ]]; then echo "10.$((64 + $1 % 64)).0.0/16"; else echo "127.$((80 + $1 % 120)).0.0/16"; fi
}


# is_pinhole SERVER: pinhole in any of its forms (slow path alone, fast
# path, fast path without batched I/O, either on a Redis Cluster).
is_pinhole() { [[ $1 == pinhole || $1 == fastpath || $1 == fastpath-nobatch || $1 == pinhole-redis || $1 == fastpath-redis ]]; }

# start_redis: the Redis Cluster of the *-redis servers, three masters
# without replicas (a replica would only add the copying to the same
# core; the durability it buys is docs/cluster.md's subject, not this
# bench's), in the server's namespace on its loopback and pinned to
# SERVER_CORE: on one box the store's CPU is the server's. Without
# persistence (no AOF, no snapshots), as a cluster that relies on its
# replicas runs; bbolt, by contrast, fsyncs every batch. Fresh for each
# start, as pinhole's data_dir is, except for a restart (KEEP_DATA=1),
# which keeps the running cluster. Sets REDIS_ADDRS for the configuration.
start_redis() {
  local i port dir addrs=() quoted=()
  for i in 0 1 2; do
    port=$((REDIS_PORT + i))
    addrs+=("127.0.0.1:$port") quoted+=("\"127.0.0.1:$port\"")
  done
  REDIS_ADDRS=$(IFS=,; echo "${quoted[*]}")
  [[ ${KEEP_DATA:-0} == 1 && -n $SERVER_AUX_PIDS ]] && return 0
  for i in 0 1 2; do
    port=$((REDIS_PORT + i)) dir=$OUT/redis-$i
    rm -rf "$dir" && mkdir -p "$dir"
    "${SRV[@]}" taskset -c "$SERVER_CORE" redis-server --port "$port" --bind 127.0.0.1 \
      --cluster-enabled yes --cluster-config-file "$dir/nodes.conf" --cluster-node-timeout 5000 \
      --appendonly no --save '' --dir "$dir" --daemonize no --logfile "$dir/redis.log" &
    SERVER_AUX_PIDS+=" $!"
  done
  for i in 0 1 2; do
    port=$((REDIS_PORT + i))
    for _ in $(seq 100); do "${SRV[@]}" redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
  done
  "${SRV[@]}" redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >"$OUT/redis-create.log" 2>&1 ||
    { echo "compare: redis cluster not created; see $OUT/redis-create.log" >&2; return 1; }
  for i in 0 1 2; do
    port=$((REDIS_PORT + i))
    for _ in $(seq 100); do "${SRV[@]}" redis-cli -p "$port" cluster info | grep -q 'cluster_state:ok' && break; sleep 0.1; done
  done
}

# Kamailio as a registrar: usrloc in memory, digest auth with qop=auth and
# the password sipload's devices use; calls relayed statefully with
# Record-Route. bench/cmd/kamailio-cfg writes it from the template the
# integration tests use too, with this machine's module directory.
write_kamailio_cfg() { # AUTH=0: no digest authentication
  local auth=derived
  [[ ${AUTH:-1} == 0 ]] && auth=none
  "$BIN/kamailio-cfg" -listen "$HOST:$PORT" -domain "$HOST" -children "$KAM_CHILDREN" \
    -ctl "$OUT/kamailio.ctl" -hash-size 14 -auth "$auth" >"$OUT/kamailio.cfg"
}

# OpenSIPS with mid_registrar in contact throttling mode, the mode an edge
# uses to absorb refreshes (docs/architecture.md, "Mid-registrar modes").
# Its main registrar is the echo responder on PORT+1, which accepts every
# REGISTER, so what is measured is OpenSIPS's own work. Not exercised here: Debian has no opensips package.
write_opensips_cfg() {
  cat >"$OUT/opensips.cfg" <<OSIPS
log_level=1
udp_workers=$KAM_CHILDREN
socket=udp:$HOST:$PORT
mpath="/usr/lib/x86_64-linux-gnu/opensips/modules/"
loadmodule "signaling.so"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "mid_registrar.so"
loadmodule "proto_udp.so"
modparam("usrloc", "working_mode_preset", "single-instance-no-db")
modparam("mid_registrar", "mode", 1)
modparam("mid_registrar", "outgoing_expires", 3600)
route {
	if (!mf_process_maxfwd_header(10)) { send_reply(483, "Too Many Hops"); exit; }
	if (is_method("REGISTER")) {
		mid_registrar_save("location");
		switch (\$retcode) {
		case 1:
			\$ru = "sip:$HOST:$((PORT + 1))";
			t_relay();
			break;
		}
		exit;
	}
	if (has_totag()) { if (loose_route()) { t_relay(); } exit; }
	if (is_method("INVITE")) {
		record_route();
		if (!mid_registrar_lookup("location")) { send_reply(404, "Not Found"); exit; }
		t_relay();
		exit;
	}
	send_reply(405, "Method Not Allowed");
}
OSIPS
}

start_server() { # name; sets SERVER_PID, SERVER_SETTINGS (the file it ran with) and SERVER_VERSION
  local name=$1
  SERVER_SETTINGS=/dev/null
  case $name in
  echo)
    "${SRV[@]}" taskset -c "$SERVER_CORE" "$BIN/echo-responder" -listen "$HOST:$PORT" >"$OUT/echo.log" 2>&1 &
    SERVER_VERSION="echo-responder $COMMIT"
    ;;
  pinhole | fastpath | fastpath-nobatch | pinhole-redis | fastpath-redis)
    # KEEP_DATA=1: a restart, on the bindings the last one left on disk.
    [[ ${KEEP_DATA:-0} == 1 ]] || rm -rf "$OUT/pinhole-data"
    REDIS_ADDRS=
    if [[ $name == *-redis ]]; then start_redis; fi
    # fastpath-nobatch: the loops with gnet's one system call per datagram
    # (fastpath.batch 1), to see what batching buys in the same run.
    write_pinhole_cfg "$([[ $name == fastpath* ]] && echo true || echo false)" "$([[ $name == fastpath-nobatch ]] && echo 1 || echo 64)" "$REDIS_ADDRS"
    "${SRV[@]}" taskset -c "$SERVER_CORE" "$BIN/pinhole" -config "$OUT/pinhole.yaml" >"$OUT/$name.log" 2>&1 &
    SERVER_SETTINGS=$OUT/pinhole.yaml SERVER_VERSION="pinhole $COMMIT"
    if [[ $name == *-redis ]]; then SERVER_VERSION+=", $(redis-server --version | cut -d' ' -f1-3)"; fi
    ;;
  kamailio)
    write_kamailio_cfg
    "${SRV[@]}" taskset -c "$SERVER_CORE" kamailio -f "$OUT/kamailio.cfg" -DD -E -m 4096 -M 64 >"$OUT/kamailio.log" 2>&1 &
    SERVER_SETTINGS=$OUT/kamailio.cfg SERVER_VERSION=$(kamailio -v 2>/dev/null | head -1)
    ;;
  opensips)
    write_opensips_cfg
    "${SRV[@]}" taskset -c "$SERVER_CORE" "$BIN/echo-responder" -listen "$HOST:$((PORT + 1))" >"$OUT/opensips-upstream.log" 2>&1 &
    OPENSIPS_UPSTREAM=$!
    "${SRV[@]}" taskset -c "$SERVER_CORE" opensips -f "$OUT/opensips.cfg" -F -m 4096 -M 64 >"$OUT/opensips.log" 2>&1 &
    SERVER_SETTINGS=$OUT/opensips.cfg SERVER_VERSION=$(opensips -V 2>/dev/null | head -1)
    ;;
  esac
  SERVER_PID=$! # ip netns exec and taskset exec: this is the server itself
  wait_udp "$name"
  sleep 1 # let it finish starting (Kamailio forks its workers after binding)
  if [[ $NET == veth ]]; then veth_pin; fi
}

available() {
  case $1 in
  kamailio) command -v kamailio >/dev/null || [[ -x /usr/sbin/kamailio ]] ;;
  opensips) command -v opensips >/dev/null ;;
  *) true ;;
  esac
}

server_pid_tree() { # the server and its children (Kamailio forks workers)
  echo "$SERVER_PID" $(pgrep -P "$SERVER_PID" || true)
}

rss_kb() { # [FIELDS]: the smaps_rollup fields summed (default the private ones)
  local total=0 pid fields=${1:-Private_Clean|Private_Dirty}
  for pid in $(server_pid_tree); do
    # Private resident memory: Kamailio's workers share one shm segment,
    # which would be counted once per process in RSS.
    local kb
    kb=$(awk -v f="^($fields):" '$0 ~ f {s += $2} END {print s + 0}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
    total=$((total + kb))
  done
  echo "$total"
}

metric() { # pinhole: one value from /metrics (bash's /dev/tcp: no curl needed)
  local out
  exec 3<>"/dev/tcp/$HOST/$METRICS_PORT"
  printf 'GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n' "$HOST" >&3
  out=$(cat <&3)
  exec 3>&-
  awk -v m="$1" '$1 == m {printf "%.0f", $2}' <<<"$out"
}

# pinhole: the live heap the last GC found, as pinhole reports it (the GC
# target is no measure of it since pinhole paces its collector itself).
heap_bytes() { metric pinhole_gc_live_heap_bytes; }

shm_bytes() { # Kamailio: shared memory in use (real_used), or FIELD (max_used: the peak)
  PATH=$PATH:/usr/sbin kamcmd -s "unix:$OUT/kamailio.ctl" core.shmmem | awk -v f="${1:-real_used}:" '$1 == f {print $2}'
}

# srv_get PATH: an HTTP GET of pinhole's metrics listener from inside the
# server's namespace (in veth mode nothing else reaches it when it listens
# on loopback, which is where pinhole serves /debug/pprof).
srv_get() {
  "${SRV[@]}" curl -sf --max-time 5 "http://${METRICS_HOST:-$HOST}:$METRICS_PORT$1"
}
srv_metric() { srv_get /metrics | awk -v m="$1" '$1 == m {printf "%.0f\n", $2}'; }

# bindings_held SERVER: the bindings the server holds now, by its own
# count (pinhole_location_bindings; Kamailio: usrloc's location_contacts).
bindings_held() {
  if is_pinhole "$1"; then
    srv_metric pinhole_location_bindings
  else
    PATH=$PATH:/usr/sbin kamcmd -s "unix:$OUT/kamailio.ctl" stats.get_statistics usrloc: |
      awk '$1 == "usrloc:location_contacts" {print $3}'
  fi
}

proc_kb() { # FIELD of /proc/SERVER_PID/status in kB (VmHWM: peak RSS, VmRSS)
  awk -v f="$1:" '$1 == f {print $2}' "/proc/$SERVER_PID/status"
}

gen() { # server scenario source-prefix extra-args...
  local srv=$1 sc=${2%-noauth} src=$3
  shift 3
  local per=1 server_args=()
  [[ $IO == socket ]] && ((DEVICES > FD_BUDGET)) && per=$(((DEVICES + FD_BUDGET - 1) / FD_BUDGET))
  # The generator reads pinhole's metrics from its own namespace: only
  # when they listen on the server's address.
  if is_pinhole "$srv" && [[ ${METRICS_HOST:-$HOST} == "$HOST" ]]; then
    server_args=(-server-metrics "http://$HOST:$METRICS_PORT/metrics")
  fi
  [[ -n ${SERVER_PID:-} ]] && server_args+=(-server-pid "$SERVER_PID")
  "${GEN[@]}" taskset -c "$GEN_CORE" "$BIN/sipload" -allow-non-loopback -io "$IO" -sockets "$SOCKETS" \
    -devices-per-socket "$per" -server "$HOST:$PORT" -domain "$HOST" -sources "$src" \
    -scenario "$sc" -devices "$DEVICES" -rate "$RATE" -duration "$DURATION" -warmup "$WARMUP" \
    -prepare-rate "$PREPARE_RATE" -call-hold "$CALL_HOLD" -flood-rate "$FLOOD_RATE" "${server_args[@]}" \
    -label "server=$srv" -label "server_version=${SERVER_VERSION:-}" -label "settings=$(cat "${SERVER_SETTINGS:-/dev/null}")" \
    -label "net=$NET" -label "server_core=$SERVER_CORE" -label "commit=$COMMIT" -label "dirty=$DIRTY" "$@"
}

echo "== machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== $NET, $IO io, devices $DEVICES, rate $RATE/s, duration $DURATION (warm-up $WARMUP), server on core $SERVER_CORE, generator on core $GEN_CORE, commit ${COMMIT:0:12} (dirty $DIRTY)"
rm -f "$OUT"/*.json "$OUT"/*.png "$OUT"/table.txt "$OUT"/avalanche-*-memory.txt "$OUT"/avalanche-*.txt "$OUT"/avalanche-*.pause

# The generator's ceiling: flat out against the echo responder, which does
# next to nothing; what it moves per second of its core's busy time bounds
# every figure below.
if [[ -n $SERVERS ]]; then
  c=0
  for sc in refresh keepalive; do
    c=$((c + 1))
    start_server echo
    RATE=$CEILING_RATE DURATION=4s WARMUP=1s gen echo "$sc" "$(sources $((60 + c)))" -q -out "$OUT/ceiling-$sc.json" |
      grep -E '^generator' || echo "compare: ceiling run failed" >&2
    stop_server
  done
fi
for srv in $SERVERS; do
  if ! available "$srv"; then
    echo "== $srv: skipped, no $srv binary on PATH (Debian does not package it; install it to compare)"
    continue
  fi
  k=0
  for sc in $SCENARIOS; do
    k=$((k + 1))
    rate_args=()
    [[ $sc == calls ]] && rate_args=(-rate "$CALL_RATE")
    AUTH=1
    [[ $sc == *-noauth ]] && AUTH=0
    echo "== $srv: $sc"
    start_server "$srv"
    # Each scenario from its own sources: a server may still retransmit to
    # the previous run's devices.
    gen "$srv" "$sc" "$(sources "$k")" "${rate_args[@]}" -q -out "$OUT/$srv-$sc.json" -plot "$OUT/$srv-$sc" |
      sed -n '/^scenario/,$p' || echo "compare: sipload failed for $srv $sc" >&2
    stop_server
    [[ -n ${OPENSIPS_UPSTREAM:-} ]] && { kill "$OPENSIPS_UPSTREAM" 2>/dev/null || true; OPENSIPS_UPSTREAM=; }
  done
done

if [[ -n $SCENARIOS && -n $SERVERS ]]; then
  echo
  echo "== comparison ($OUT)"
  "$BIN/benchtable" "$OUT" | tee "$OUT/table.txt"
fi

# fresh_run KIND server scenario rate k: the server started afresh and one
# generator run against it, kept as KIND-<server>-<scenario>-<rate>.json.
#
# KIND cap is a rung of the capacity search. Its first second at a rate
# near capacity is a transient (pinhole's heap, response cache and bbolt
# file grow from nothing; every server's queues fill while it warms),
# whose backlog drains in the second after: measured from the third.
#
# KIND over is the run past saturation: longer than a rung, its start left
# out, as the question is the state a server settles into. In the first
# seconds every server fills its queues and socket buffers and answers
# late while it does (a 3 s run measured mostly that: pinhole's slow path
# delivered 72 % in its first second at twice its rate and 104-116 % from
# the third on, 2026-12-07, veth); a collapse is what stays.
fresh_run() {
  local kind=$1 srv=$2 sc=$3 r=$4 k=$5 dur=$CAPACITY_DURATION warm=$CAPACITY_WARMUP
  [[ $kind == over ]] && dur=$OVERLOAD_DURATION warm=$OVERLOAD_WARMUP
  AUTH=1
  [[ $sc == *-noauth ]] && AUTH=0
  # A retried rung keeps only its last attempt: a file left by the first
  # would stand for a run that did not happen this time.
  rm -f "$OUT/$kind-$srv-$sc-$r.json"
  start_server "$srv"
  DURATION=$dur WARMUP=$warm RATE=$r gen "$srv" "$sc" "$(sources "$k")" -q -out "$OUT/$kind-$srv-$sc-$r.json" >/dev/null 2>&1 || true
  stop_server
  [[ -n ${OPENSIPS_UPSTREAM:-} ]] && { kill "$OPENSIPS_UPSTREAM" 2>/dev/null || true; OPENSIPS_UPSTREAM=; }
  return 0
}

capacity_step() { # server scenario rate k: run one rung, report whether it was sustained
  fresh_run cap "$@"
  [[ -f "$OUT/cap-$1-$2-$3.json" ]] || return 1
  echo -n "$1: "
  "$BIN/benchtable" -pass "$OUT/cap-$1-$2-$3.json"
}

overload_step() { # server scenario rate k: one run past saturation, kept as over-*.json
  fresh_run over "$@"
  echo "$1: $2 offered $3/s past saturation"
}

if [[ -n $CAPACITY_SCENARIOS ]]; then
  echo
  echo "== capacity: highest sustained rate on one core"
  for srv in $SERVERS; do
    available "$srv" || continue
    k=10
    rates=$CAPACITY_RATES
    for sc in $CAPACITY_SCENARIOS; do
      # Double until a rate fails, then try once between the last rate that
      # passed and the first that failed (√2 apart).
      passed=0
      for r in $rates; do
        k=$((k + 1))
        # A rung must fail twice: one hiccup of a shared machine (or of a
        # server's first seconds) is not its capacity.
        if capacity_step "$srv" "$sc" "$r" "$k" || capacity_step "$srv" "$sc" "$r" "$((k + 100))"; then
          passed=$r
          continue
        fi
        if ((passed > 0)); then
          k=$((k + 1))
          mid=$(awk -v a="$passed" -v b="$r" 'BEGIN {printf "%d", int(sqrt(a * b) / 100) * 100}')
          capacity_step "$srv" "$sc" "$mid" "$k" && passed=$mid
        fi
        break
      done
      # Past saturation: offered twice the sustained rate, a server must
      # keep delivering (>= 90 % of that rate, benchtable says), not
      # collapse into retransmissions.
      if ((OVERLOAD && passed > 0)); then
        k=$((k + 1))
        overload_step "$srv" "$sc" "$((2 * passed))" "$k"
      fi
    done
  done
  echo
  "$BIN/benchtable" -capacity "$OUT" | tee -a "$OUT/table.txt"
fi
if [[ -n $SERVERS ]]; then
  "$BIN/benchtable" -plot "$OUT"
  "$BIN/benchtable" -ceiling "$OUT" | tee -a "$OUT/table.txt"
fi

# The avalanche: AVALANCHE_DEVICES devices registering at AVALANCHE_RATE,
# each starting over after a failure; the generator reports the time
# until every device holds a 200, and the server's own count of bindings
# must then equal the devices registered (bindings_held). Once with digest
# and once without for each of AVALANCHE_AUTH ("1 0").
#
# AVALANCHE_RESTART=0: a fresh server, every registration a first one.
# AVALANCHE_RESTART=1: the avalanche after a restart. The devices first
# register at AVALANCHE_PREPARE_RATE (sipload -reregister, which then
# creates a pause file and waits); the server is killed (AVALANCHE_KILL,
# SIGKILL by default: an outage or a crash, the case the disk must
# survive; TERM for a planned restart) and started again on the same
# data_dir, so pinhole reads its bindings back (Kamailio, usrloc in memory,
# starts empty: its avalanche is first registrations of the same devices);
# then the pause file goes and every device registers again at once: the
# same Call-ID with the next CSeq and its cached credentials, as phones do
# when a refresh failed (AVALANCHE_FRESH_CALLID=1: a new Call-ID, as after
# a reboot). The time counts from the first REGISTER to the restarted
# server.
#
# Memory: pinhole's peak RSS (VmHWM, kept by the kernel) and peak live
# heap (go_memstats_heap_alloc_bytes, sampled every 0.5 s), then,
# AVALANCHE_SETTLE seconds later, after a forced garbage collection
# (/debug/pprof/heap?gc=1, served on loopback only: the metrics listen on
# loopback in the server's namespace for this run), heap, RSS and private
# RSS; Kamailio's shared memory at its peak (max_used) and settled
# (real_used) and its processes' private RSS. "before" is the server the
# avalanche meets (after a restart: the restarted one, pinhole holding
# its bindings read back); with a restart "empty" is the first server
# just started, what per-binding figures are counted from.

# mem_snapshot KEY SERVER: KEY_… lines of the server's memory now
# (pinhole: after a forced GC).
mem_snapshot() {
  if is_pinhole "$2"; then
    srv_get '/debug/pprof/heap?gc=1' >/dev/null || echo "compare: no forced GC (pprof)" >&2
    echo "$1_heap_bytes $(srv_metric go_memstats_heap_alloc_bytes)"
    echo "$1_rss_bytes $(($(proc_kb VmRSS) * 1024))"
  else
    echo "$1_shm_bytes $(shm_bytes)"
  fi
  echo "$1_private_rss_bytes $(($(rss_kb) * 1024))"
  # The anonymous part of it: private RSS also counts file pages only this
  # process maps (pinhole's bindings.db, the binary), which the kernel can
  # drop and read again; anonymous memory it cannot (docs/operations.md,
  # "Memory").
  echo "$1_anon_rss_bytes $(($(rss_kb Anonymous) * 1024))"
}

# restart_server SERVER AUTH: kill the server (AVALANCHE_KILL) and start it
# again, pinhole on the same data_dir; RESTART_S is the seconds from the
# signal until it listens again (start_server's one second of settling
# left out).
restart_server() {
  local sig=${AVALANCHE_KILL:-KILL} t0 pids pid alive
  pids=$(server_pid_tree)
  # Out of the job table: a killed job would otherwise be reported with a
  # "Killed" line in the middle of the output (the loop below waits).
  disown "$SERVER_PID" 2>/dev/null || true
  t0=$(date +%s.%N)
  if [[ $sig == KILL ]]; then
    # Every process at once: Kamailio's workers outlive a killed parent.
    for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
  else
    kill "-$sig" "$SERVER_PID" 2>/dev/null || true
  fi
  for _ in $(seq 600); do
    alive=0
    for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  { wait "$SERVER_PID"; } 2>/dev/null || true # no "Killed" line from the shell
  SERVER_PID=
  # The killed server's log, kept: the new one starts its own.
  mv "$OUT/$1.log" "$OUT/$1-before-restart.log" 2>/dev/null || true
  # pinhole may take a while to read a million bindings back.
  UDP_WAIT_S=300 KEEP_DATA=1 AUTH=$2 start_server "$1"
  RESTART_S=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a - 1}')
}

avalanche_run() { # server k auth(1|0)
  local srv=$1 k=$2 auth=$3 name=$1 sampler="" peak_heap=0 line registered held sockets restart_args=()
  [[ $auth == 0 ]] && name=$srv-noauth
  local f="$OUT/avalanche-$name-memory.txt" pause="$OUT/avalanche-$name.pause" txt="$OUT/avalanche-$name.txt"
  # Past ~65 000 endpoints a /16 of sources runs out of addresses: more
  # sockets (ports per address) instead.
  sockets=$SOCKETS
  ((AVALANCHE_DEVICES > sockets * 60000)) && sockets=$(((AVALANCHE_DEVICES + 59999) / 60000))
  METRICS_HOST=127.0.0.1
  AUTH=$auth start_server "$srv"
  echo "devices $AVALANCHE_DEVICES" >"$f"
  if [[ $AVALANCHE_RESTART == 1 ]]; then
    mem_snapshot empty "$srv" >>"$f"
    restart_args=(-reregister -pause-file "$pause" -prepare-rate "$AVALANCHE_PREPARE_RATE")
    [[ $AVALANCHE_FRESH_CALLID == 1 ]] && restart_args+=(-fresh-call-id)
    rm -f "$pause"
    # In the background: it registers every device, creates the pause
    # file and waits for its removal. Its -server-pid would name the
    # killed process: left out.
    SERVER_PID='' DEVICES=$AVALANCHE_DEVICES RATE=$AVALANCHE_RATE DURATION=$AVALANCHE_LIMIT WARMUP=0s SOCKETS=$sockets \
      gen "$srv" avalanche "$(sources "$k")" "${restart_args[@]}" -out "$OUT/avalanche-$name.json" >"$txt" 2>&1 &
    local genpid=$!
    while [[ ! -f $pause ]] && kill -0 "$genpid" 2>/dev/null; do sleep 0.2; done
    if [[ -f $pause ]]; then
      grep -o 'prepared: .*' "$txt" | sed 's/^/   /' || true
      echo "bindings_before_restart $(bindings_held "$srv")" >>"$f"
      restart_server "$srv" "$auth"
      echo "restart_s $RESTART_S" >>"$f"
      echo "bindings_after_restart $(bindings_held "$srv")" >>"$f"
      echo "   $srv killed (SIG${AVALANCHE_KILL:-KILL}) and started again: $(awk '$1 ~ /restart/ {printf "%s %s  ", $1, $2}' "$f")"
      mem_snapshot before "$srv" >>"$f"
    else
      echo "compare: avalanche: sipload for $srv ended before the restart; see $txt" >&2
    fi
  else
    mem_snapshot before "$srv" >>"$f"
  fi
  if is_pinhole "$srv"; then
    while kill -0 "$SERVER_PID" 2>/dev/null; do srv_metric go_memstats_heap_alloc_bytes || true; sleep 0.5; done >"$f.samples" &
    sampler=$!
  fi
  if [[ $AVALANCHE_RESTART == 1 ]]; then
    rm -f "$pause"
    wait "$genpid" || echo "compare: avalanche failed for $name; see $txt" >&2
  else
    DEVICES=$AVALANCHE_DEVICES RATE=$AVALANCHE_RATE DURATION=$AVALANCHE_LIMIT WARMUP=0s SOCKETS=$sockets \
      gen "$srv" avalanche "$(sources "$k")" -q -out "$OUT/avalanche-$name.json" >"$txt" 2>&1 ||
      echo "compare: avalanche failed for $name; see $txt" >&2
  fi
  line=$(grep -E '^avalanche' "$txt" || true)
  echo "   $line"
  # The server's truth: one registration held per device that got its 200
  # (a 200 without a stored binding, or a binding stored twice, shows here).
  registered=$(awk '{print $2}' <<<"$line")
  held=$(bindings_held "$srv" || true)
  if [[ -n $registered && $held == "$registered" ]]; then
    echo "   $srv holds $held bindings: one per registered device"
  else
    echo "compare: avalanche: $srv holds ${held:-an unknown number of} bindings for ${registered:-?} registered devices" >&2
  fi
  {
    echo "settle_s $AVALANCHE_SETTLE"
    echo "bindings_held ${held:-0}"
    if [[ -n $sampler ]]; then
      kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
      peak_heap=$(sort -n "$f.samples" | tail -1)
      echo "peak_rss_bytes $(($(proc_kb VmHWM) * 1024))"
      echo "peak_heap_bytes ${peak_heap:-0}"
    else
      echo "peak_shm_bytes $(shm_bytes max_used)"
    fi
    sleep "$AVALANCHE_SETTLE"
    mem_snapshot after "$srv"
  } >>"$f"
  rm -f "$f.samples"
  stop_server
  unset METRICS_HOST
  echo "   $name memory: $("$BIN/benchtable" -memory "$f")"
}

if [[ -n $AVALANCHE_SERVERS ]]; then
  echo
  if [[ $AVALANCHE_RESTART == 1 ]]; then
    echo "== avalanche after a restart: $AVALANCHE_DEVICES devices registered at $AVALANCHE_PREPARE_RATE/s, the server killed (SIG${AVALANCHE_KILL:-KILL}) and started again, then all registering again at $AVALANCHE_RATE/s ($([[ $AVALANCHE_FRESH_CALLID == 1 ]] && echo "new Call-ID" || echo "same Call-ID, next CSeq")), at most $AVALANCHE_LIMIT; load $(cut -d' ' -f1-3 /proc/loadavg)"
  else
    echo "== avalanche: $AVALANCHE_DEVICES devices registering at $AVALANCHE_RATE/s on a fresh server, at most $AVALANCHE_LIMIT; load $(cut -d' ' -f1-3 /proc/loadavg)"
  fi
  k=40
  for auth in $AVALANCHE_AUTH; do
    for srv in $AVALANCHE_SERVERS; do
      available "$srv" || continue
      k=$((k + 1))
      echo "-- $srv, $([[ $auth == 0 ]] && echo "no digest" || echo digest)"
      avalanche_run "$srv" "$k" "$auth"
    done
  done
fi

# The mixed day: MIX_DEVICES registered devices (the preparation), then
# for MIX_DURATION every device refreshes every 60 s and sends a keepalive
# every 15 s, calls come at MIX_CALLS_PER_DEVICE_HOUR per device per hour
# and first registrations (reboots) at MIX_REBOOTS_PER_DEVICE_DAY per
# device per day, all at once; success and latency per kind.
if [[ -n $MIX_SERVERS ]]; then
  call_rate=$(awk -v n="$MIX_DEVICES" -v p="$MIX_CALLS_PER_DEVICE_HOUR" 'BEGIN {printf "%.4f", n * p / 3600}')
  reg_rate=$(awk -v n="$MIX_DEVICES" -v p="$MIX_REBOOTS_PER_DEVICE_DAY" 'BEGIN {printf "%.4f", n * p / 86400}')
  echo
  echo "== mixed day: $MIX_DEVICES devices, refresh 60 s, keepalive 15 s, $call_rate calls/s, $reg_rate first registrations/s, $MIX_DURATION"
  k=50
  for srv in $MIX_SERVERS; do
    available "$srv" || continue
    k=$((k + 1))
    AUTH=1 start_server "$srv"
    DEVICES=$MIX_DEVICES DURATION=$MIX_DURATION PREPARE_RATE=$MIX_PREPARE_RATE \
      gen "$srv" mix "$(sources "$k")" -refresh 60s -keepalive 15s -call-rate "$call_rate" -register-rate "$reg_rate" \
      -q -out "$OUT/mix-$srv.json" >/dev/null || echo "compare: mixed day failed for $srv" >&2
    stop_server
  done
fi
if [[ -n $AVALANCHE_SERVERS || -n $MIX_SERVERS ]]; then
  echo
  "$BIN/benchtable" -carrier "$OUT" | tee -a "$OUT/table.txt"
fi

# Memory per binding: register n devices on a fresh server and compare its
# memory before and after, each time once transient state is gone. pinhole:
# the live heap after a garbage collection that started after the server
# settled (its start-up parses the credentials file) and after one that
# started more than 35 s after the last registration (sipgo keeps a server
# transaction about 32 s); Go forces a collection at least every two
# minutes, so each wait is at most that. Kamailio: shared memory in use,
# with the same 35 s for tm's transactions to go.
wait_gc_after() { # pinhole: until a GC started after epoch second $1
  for _ in $(seq 200); do
    awk -v g="$(metric go_memstats_last_gc_time_seconds)" -v d="$1" 'BEGIN { exit !(g > d) }' && return 0
    sleep 1
  done
  echo "compare: no garbage collection in 200 s" >&2
}

for n in $MEMORY; do
  for srv in $MEMORY_SERVERS; do
    available "$srv" || continue
    start_server "$srv"
    if is_pinhole "$srv"; then
      wait_gc_after "$(date +%s)"
      before_mem=$(heap_bytes)
    else
      before_mem=$(shm_bytes)
    fi
    before_rss=$(rss_kb)
    # Past the open-file limit devices share sockets (gen sets
    # -devices-per-socket): bindings differ by user, as phones behind one
    # NAT address would.
    DEVICES=$n gen "$srv" idle 127.96.0.0/12 -rate 1 -duration 3s -warmup 1s -prepare-rate "$MEMORY_RATE" \
      >"$OUT/memory-$srv-$n.txt" 2>&1 || true
    registered=$(grep -o 'prepared: .*' "$OUT/memory-$srv-$n.txt" | head -1 || true)
    if is_pinhole "$srv"; then
      wait_gc_after "$(($(date +%s) + 35))"
      after_mem=$(heap_bytes)
    else
      sleep 35
      after_mem=$(shm_bytes)
    fi
    after_rss=$(rss_kb)
    what=heap
    [[ $srv == kamailio ]] && what=shm
    awk -v s="$srv" -v n="$n" -v w="$what" -v b="$before_mem" -v a="$after_mem" -v rb="$before_rss" -v ra="$after_rss" 'BEGIN {
      printf "memory %-9s %8d bindings: %s %6.0f bytes/binding (%.1f MB), private RSS %6.0f bytes/binding (%.1f MB)\n",
        s, n, w, (a - b) / n, (a - b) / 1048576, (ra - rb) * 1024 / n, (ra - rb) / 1024 }' | tee -a "$OUT/table.txt"
    echo "       ($registered)" | tee -a "$OUT/table.txt"
    stop_server
  done
done
