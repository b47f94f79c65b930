#!/usr/bin/env bash
# bench/compare.sh — pinhole side by side with its peers, on one machine.
#
# For each server in turn (the echo responder for the generator's ceiling,
# pinhole, Kamailio, OpenSIPS when an `opensips` binary is on PATH) and each
# scenario, it starts the server afresh on the same address, pinned to
# SERVER_CORE, offers the same load from bench/cmd/sipload pinned to
# GEN_CORE, stops the server, and prints a table with ratios against
# pinhole. Then, for CAPACITY_SCENARIOS, it climbs the CAPACITY_RATES ladder
# until a rate is not sustained (bench/cmd/benchtable says when) and prints
# the highest sustained rate of each server; against the echo responder that
# is the generator's own ceiling. Last, memory per binding at each MEMORY size.
#
# Everything runs on loopback (127.0.0.1 for the server, 127.80.0.0/12
# sources for the devices): no namespace is needed because all of
# 127.0.0.0/8 is local on Linux. Configurations of the peers are written
# here, into OUT.
#
# Settings (environment):
#   DEVICES=5000  RATE=2000  DURATION=6s  WARMUP=2s  PREPARE_RATE=2000
#   SCENARIOS="register refresh keepalive flood calls"
#   CAPACITY_SCENARIOS="register refresh"  CAPACITY_DURATION=4s
#   CAPACITY_RATES="1000 2000 4000 8000 16000 32000 64000"  (each server climbs until it fails)
#   CEILING_RATES="16000 32000 64000 128000"          (the echo responder's ladder)
#   SERVERS="echo pinhole kamailio opensips"
#   MEMORY=""  binding counts for memory per binding, e.g. "100000 1000000"
#              (each waits ~2 min for a GC after the registrations)
#   MEMORY_RATE=3000  registrations per second while filling
#   CALL_RATE=200 CALL_HOLD=1s FLOOD_RATE=20000
#   SERVER_CORE=0 GEN_CORE=1 KAM_CHILDREN=2 OUT=bench/out
#   FD_BUDGET=<hard open-file limit - 1000>  sockets before devices share them
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICES=${DEVICES:-5000}
RATE=${RATE:-2000}
DURATION=${DURATION:-6s}
WARMUP=${WARMUP:-2s}
CAPACITY_SCENARIOS=${CAPACITY_SCENARIOS-"register refresh"}
CAPACITY_RATES=${CAPACITY_RATES:-"1000 2000 4000 8000 16000 32000 64000"}
CEILING_RATES=${CEILING_RATES:-"16000 32000 64000 128000"}
CAPACITY_DURATION=${CAPACITY_DURATION:-4s}
PREPARE_RATE=${PREPARE_RATE:-2000}
SCENARIOS=${SCENARIOS-"register refresh keepalive flood calls"}
SERVERS=${SERVERS-"echo pinhole kamailio opensips"}
MEMORY=${MEMORY:-}
MEMORY_RATE=${MEMORY_RATE:-3000}
CALL_RATE=${CALL_RATE:-200}
CALL_HOLD=${CALL_HOLD:-1s}
FLOOD_RATE=${FLOOD_RATE:-20000}
SERVER_CORE=${SERVER_CORE:-0}
GEN_CORE=${GEN_CORE:-1}
KAM_CHILDREN=${KAM_CHILDREN:-2}
OUT=${OUT:-bench/out}
# Sockets the generator may open: one per device up to this, shared beyond.
FD_BUDGET=${FD_BUDGET:-$(($(ulimit -Hn) - 1000))}
HOST=127.0.0.1
PORT=${PORT:-25060}
METRICS_PORT=${METRICS_PORT:-29060}

OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
BIN=$OUT/bin
mkdir -p "$BIN"
echo "== building into $BIN"
go build -o "$BIN/" ./cmd/pinhole ./bench/cmd/sipload ./bench/cmd/echo-responder ./bench/cmd/benchtable ./bench/cmd/kamailio-cfg

max_devices=$DEVICES
for n in $MEMORY; do ((n > max_devices)) && max_devices=$n; done
"$BIN/sipload" -write-credentials "$OUT/users.txt" -realm pinhole -devices "$max_devices"

# shellcheck source=bench/lib.sh
source bench/lib.sh
trap stop_server EXIT


write_pinhole_cfg() {
  cat >"$OUT/pinhole.yaml" <<YAML
listen: {udp: ["$HOST:$PORT"], tcp: [], tls: [], ws: [], wss: []}
domains: ["$HOST"]
data_dir: $OUT/pinhole-data
registrar: {min_expires: 60, max_expires: 7200, default_expires: 3600, max_contacts: 10}
auth: {realm: pinhole, credentials: $OUT/users.txt, algorithms: [MD5], nonce_ttl: 300s}
log: {level: info}
metrics: {listen: "$HOST:$METRICS_PORT"}
api: {listen: ""}
YAML
}

# Kamailio as a registrar: usrloc in memory, digest auth with qop=auth and
# the password sipload's devices use; calls relayed statefully with
# Record-Route. bench/cmd/kamailio-cfg writes it from the template the
# integration tests use too, with this machine's module directory.
write_kamailio_cfg() {
  "$BIN/kamailio-cfg" -listen "$HOST:$PORT" -domain "$HOST" -children "$KAM_CHILDREN" \
    -ctl "$OUT/kamailio.ctl" -hash-size 14 -auth derived >"$OUT/kamailio.cfg"
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

start_server() { # name
  local name=$1
  case $name in
  echo)
    taskset -c "$SERVER_CORE" "$BIN/echo-responder" -listen "$HOST:$PORT" >"$OUT/echo.log" 2>&1 &
    ;;
  pinhole)
    rm -rf "$OUT/pinhole-data"
    write_pinhole_cfg
    taskset -c "$SERVER_CORE" "$BIN/pinhole" -config "$OUT/pinhole.yaml" >"$OUT/pinhole.log" 2>&1 &
    ;;
  kamailio)
    write_kamailio_cfg
    taskset -c "$SERVER_CORE" kamailio -f "$OUT/kamailio.cfg" -DD -E -m 4096 -M 64 >"$OUT/kamailio.log" 2>&1 &
    ;;
  opensips)
    write_opensips_cfg
    taskset -c "$SERVER_CORE" "$BIN/echo-responder" -listen "$HOST:$((PORT + 1))" >"$OUT/opensips-upstream.log" 2>&1 &
    OPENSIPS_UPSTREAM=$!
    taskset -c "$SERVER_CORE" opensips -f "$OUT/opensips.cfg" -F -m 4096 -M 64 >"$OUT/opensips.log" 2>&1 &
    ;;
  esac
  SERVER_PID=$!
  wait_udp "$name"
  sleep 1 # let it finish starting (Kamailio forks its workers after binding)
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

rss_kb() {
  local total=0 pid
  for pid in $(server_pid_tree); do
    # Private resident memory: Kamailio's workers share one shm segment,
    # which would be counted once per process in RSS.
    local kb
    kb=$(awk '/^(Private_Clean|Private_Dirty):/ {s += $2} END {print s + 0}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
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

# pinhole: live heap at the last GC, from the GC target: with GOGC=100,
# next_gc = live heap + (live heap + stacks + globals), so half of it is the
# live heap plus half the (small) stacks and globals.
heap_bytes() { echo $(($(metric go_memstats_next_gc_bytes) / 2)); }

shm_bytes() { # Kamailio: shared memory in use
  PATH=$PATH:/usr/sbin kamcmd -s "unix:$OUT/kamailio.ctl" core.shmmem | awk '/real_used:/ {print $2}'
}

gen() { # scenario source-prefix extra-args...
  local sc=$1 src=$2
  shift 2
  local per=1
  ((DEVICES > FD_BUDGET)) && per=$(((DEVICES + FD_BUDGET - 1) / FD_BUDGET))
  taskset -c "$GEN_CORE" "$BIN/sipload" -devices-per-socket "$per" -server "$HOST:$PORT" -domain "$HOST" -sources "$src" \
    -scenario "$sc" -devices "$DEVICES" -rate "$RATE" -duration "$DURATION" -warmup "$WARMUP" \
    -prepare-rate "$PREPARE_RATE" -call-hold "$CALL_HOLD" -flood-rate "$FLOOD_RATE" "$@"
}

echo "== machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r)"
echo "== devices $DEVICES, rate $RATE/s, duration $DURATION (warm-up $WARMUP), server on core $SERVER_CORE, generator on core $GEN_CORE"
rm -f "$OUT"/*.json "$OUT"/table.txt
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
    echo "== $srv: $sc"
    start_server "$srv"
    # Each scenario from its own sources: a server may still retransmit to
    # the previous run's devices.
    gen "$sc" "127.$((80 + k)).0.0/16" "${rate_args[@]}" -q -out "$OUT/$srv-$sc.json" -plot "$OUT/$srv-$sc" |
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

capacity_step() { # server scenario rate k: run one rung, report whether it was sustained
  local srv=$1 sc=$2 r=$3 k=$4
  start_server "$srv"
  DURATION=$CAPACITY_DURATION WARMUP=1s RATE=$r gen "$sc" "127.$((80 + k)).0.0/16" -q -out "$OUT/cap-$srv-$sc-$r.json" >/dev/null 2>&1 || true
  stop_server
  [[ -n ${OPENSIPS_UPSTREAM:-} ]] && { kill "$OPENSIPS_UPSTREAM" 2>/dev/null || true; OPENSIPS_UPSTREAM=; }
  [[ -f "$OUT/cap-$srv-$sc-$r.json" ]] || return 1
  echo -n "$srv: "
  "$BIN/benchtable" -pass "$OUT/cap-$srv-$sc-$r.json"
}

if [[ -n $CAPACITY_SCENARIOS ]]; then
  echo
  echo "== capacity: highest sustained rate on one core"
  for srv in $SERVERS; do
    available "$srv" || continue
    k=10
    rates=$CAPACITY_RATES
    [[ $srv == echo ]] && rates=$CEILING_RATES
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
          capacity_step "$srv" "$sc" "$(awk -v a="$passed" -v b="$r" 'BEGIN {printf "%d", int(sqrt(a * b) / 100) * 100}')" "$k" || true
        fi
        break
      done
    done
  done
  echo
  "$BIN/benchtable" -capacity "$OUT" | tee -a "$OUT/table.txt"
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
  for srv in pinhole kamailio; do
    available "$srv" || continue
    start_server "$srv"
    if [[ $srv == pinhole ]]; then
      wait_gc_after "$(date +%s)"
      before_mem=$(heap_bytes)
    else
      before_mem=$(shm_bytes)
    fi
    before_rss=$(rss_kb)
    # Past the open-file limit devices share sockets (gen sets
    # -devices-per-socket): bindings differ by user, as phones behind one
    # NAT address would.
    DEVICES=$n gen idle 127.96.0.0/12 -rate 1 -duration 3s -warmup 1s -prepare-rate "$MEMORY_RATE" \
      >"$OUT/memory-$srv-$n.txt" 2>&1 || true
    registered=$(grep -o 'prepared: .*' "$OUT/memory-$srv-$n.txt" | head -1 || true)
    if [[ $srv == pinhole ]]; then
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
