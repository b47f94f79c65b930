#!/usr/bin/env bash
# bench/fastpath/run.sh — absorbed REGISTER refreshes per second on one
# core, against the slow path, Kamailio's registrar (and OpenSIPS when
# present) and a bare UDP echo of the same packets (bench/cmd/echo-responder:
# recvmmsg/sendmmsg, no parsing), the physical limit. docs/fastpath.md has
# the figures and the machine.
#
# Each server in turn runs pinned to SERVER_CORE on 127.0.0.1:PORT; the
# batched generator (bench/cmd/sipload, scenario refresh: same Call-ID,
# rising CSeq) runs pinned to GEN_CORE, and each server climbs RATES until a
# rate is not sustained twice (bench/cmd/benchtable -pass decides). No
# digest authentication anywhere: the standalone registrar's fast path
# absorbs only without it (docs/fastpath.md), and the peers are configured
# alike. Servers: echo, pinhole (fastpath.enabled false: the slow path),
# fastpath (fastpath.enabled true, one loop), kamailio, opensips.
#
# Settings (environment): DEVICES=20000 DURATION=4s PREPARE_RATE=4000
#   RATES="16000 32000 64000 96000 128000 192000"
#   SERVERS="echo pinhole fastpath kamailio opensips" SERVER_CORE=0 GEN_CORE=1
#   KAM_CHILDREN=1 OUT=bench/out/fastpath PORT=26060
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/install-deps.sh bench # kamailio, taskset

DEVICES=${DEVICES:-20000}
DURATION=${DURATION:-4s}
PREPARE_RATE=${PREPARE_RATE:-4000}
RATES=${RATES:-"16000 32000 64000 96000 128000 192000"}
SERVERS=${SERVERS-"echo pinhole fastpath kamailio opensips"}
SERVER_CORE=${SERVER_CORE:-0}
GEN_CORE=${GEN_CORE:-1}
KAM_CHILDREN=${KAM_CHILDREN:-1}
OUT=${OUT:-bench/out/fastpath}
PORT=${PORT:-26060}
HOST=127.0.0.1
BIN=$OUT/bin
FD_BUDGET=${FD_BUDGET:-$(($(ulimit -Hn) - 1000))}

mkdir -p "$OUT" "$BIN"
go build -o "$BIN/" ./cmd/pinhole ./bench/cmd/sipload ./bench/cmd/echo-responder ./bench/cmd/benchtable ./bench/cmd/kamailio-cfg

# shellcheck source=bench/lib.sh
source bench/lib.sh
trap stop_server EXIT

pinhole_cfg() { # fast: true|false
  cat >"$OUT/pinhole.yaml" <<YAML
listen: {udp: ["$HOST:$PORT"], tcp: [], tls: [], ws: [], wss: []}
domains: ["$HOST"]
data_dir: $OUT/pinhole-data
metrics: {listen: ""}
api: {listen: ""}
log: {level: warn}
natping: {interval: 0s}
registrar: {min_expires: 60, max_expires: 3600, default_expires: 3600, max_contacts: 10}
fastpath: {enabled: $1, loops: 1}
YAML
}

kamailio_cfg() { # a registrar without authentication, usrloc in memory
  "$BIN/kamailio-cfg" -listen "$HOST:$PORT" -children "$KAM_CHILDREN" -auth none >"$OUT/kamailio.cfg"
}

opensips_cfg() {
  cat >"$OUT/opensips.cfg" <<OSIPS
log_level=1
stderror_enabled=yes
udp_workers=$KAM_CHILDREN
socket=udp:$HOST:$PORT
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "signaling.so"
modparam("usrloc", "working_mode_preset", "single-instance-no-db")
route {
	if (is_method("REGISTER")) { save("location"); exit; }
	sl_send_reply(405, "Method Not Allowed");
}
OSIPS
}

available() {
  case $1 in
  kamailio) command -v kamailio >/dev/null || [[ -x /usr/sbin/kamailio ]] ;;
  opensips) command -v opensips >/dev/null ;;
  *) true ;;
  esac
}

start_server() {
  case $1 in
  echo) taskset -c "$SERVER_CORE" "$BIN/echo-responder" -listen "$HOST:$PORT" >"$OUT/echo.log" 2>&1 & ;;
  pinhole | fastpath)
    rm -rf "$OUT/pinhole-data"
    pinhole_cfg "$([[ $1 == fastpath ]] && echo true || echo false)"
    taskset -c "$SERVER_CORE" "$BIN/pinhole" -config "$OUT/pinhole.yaml" >"$OUT/$1.log" 2>&1 &
    ;;
  kamailio) kamailio_cfg; taskset -c "$SERVER_CORE" kamailio -f "$OUT/kamailio.cfg" -DD -E -m 2048 -M 64 >"$OUT/kamailio.log" 2>&1 & ;;
  opensips) opensips_cfg; taskset -c "$SERVER_CORE" opensips -f "$OUT/opensips.cfg" -F -m 2048 -M 64 >"$OUT/opensips.log" 2>&1 & ;;
  esac
  SERVER_PID=$!
  for _ in $(seq 100); do ss -Hlun "sport = :$PORT" | grep -q . && break; sleep 0.1; done
  sleep 1
}

step() { # server rate k: one rung; prints benchtable's verdict, succeeds when sustained
  local srv=$1 r=$2 k=$3 per=1
  ((DEVICES > FD_BUDGET)) && per=$(((DEVICES + FD_BUDGET - 1) / FD_BUDGET))
  start_server "$srv"
  taskset -c "$GEN_CORE" "$BIN/sipload" -devices-per-socket "$per" -server "$HOST:$PORT" -domain "$HOST" \
    -sources "127.$((80 + k % 100)).0.0/16" -scenario refresh -devices "$DEVICES" -rate "$r" -duration "$DURATION" \
    -warmup 1s -prepare-rate "$PREPARE_RATE" -q -out "$OUT/cap-$srv-refresh-$r.json" >/dev/null 2>&1 || true
  stop_server
  [[ -f "$OUT/cap-$srv-refresh-$r.json" ]] || return 1
  echo -n "$srv @ $r/s: "
  "$BIN/benchtable" -pass "$OUT/cap-$srv-refresh-$r.json"
}

echo "== machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r)"
echo "== refresh, $DEVICES devices, server on core $SERVER_CORE, generator on core $GEN_CORE, $DURATION per rung"
rm -f "$OUT"/*.json
k=0
for srv in $SERVERS; do
  if ! available "$srv"; then
    echo "== $srv: skipped, not installed"
    continue
  fi
  for r in $RATES; do
    k=$((k + 1))
    step "$srv" "$r" "$k" || { k=$((k + 1)); step "$srv" "$r" "$k"; } || break
  done
done
echo
"$BIN/benchtable" -capacity "$OUT" | tee "$OUT/table.txt"
