#!/usr/bin/env bash
# bench/dispatch/run.sh — calls per second set up and torn down (INVITE,
# 200, ACK, BYE, 200) through a dispatcher in front of three sipp nodes
# playing FreeSWITCH: pinhole's dispatch (round robin) against Kamailio's
# dispatcher module (round robin, ds_select_dst algorithm 4, record-routed,
# failure route), same nodes, same caller, same run.
#
# The server under test is pinned to SERVER_CORE with one worker (pinhole:
# GOMAXPROCS=1; Kamailio: children=1), the nodes and the caller to
# GEN_CORE. The caller offers RATE calls per second, at most LIMIT open at
# once, CALLS in all; the result is successful calls divided by the run's
# wall time, and the failed calls. Everything is on 127.0.0.1; every sipp
# run ends by itself (-m, -timeout).
#
# Settings (environment): CALLS=20000 RATE=3000 LIMIT=200
#   SERVERS="pinhole kamailio" SERVER_CORE=1 GEN_CORE=0 OUT=bench/out/dispatch
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/install-deps.sh test bench # sipp, kamailio, taskset
# shellcheck source=bench/lib.sh
source bench/lib.sh

CALLS=${CALLS:-20000}
RATE=${RATE:-3000}
LIMIT=${LIMIT:-200}
SERVERS=${SERVERS:-"pinhole kamailio"}
SERVER_CORE=${SERVER_CORE:-1}
GEN_CORE=${GEN_CORE:-0}
OUT=${OUT:-bench/out/dispatch}
HOST=127.0.0.1
PORT=${PORT:-26060}
NODE_PORTS=(26071 26072 26073)
HERE=bench/dispatch

OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
mkdir -p "$OUT/bin"
go build -o "$OUT/bin/" ./cmd/pinhole ./bench/cmd/kamailio-cfg

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# The nodes answer probes, and calls with 180 and 200; they stop by
# themselves after 10 minutes.
for p in "${NODE_PORTS[@]}"; do
  taskset -c "$GEN_CORE" sipp -sf "$HERE/node.xml" -i "$HOST" -p "$p" -m 100000000 -nostdin \
    -timeout 600s >"$OUT/node-$p.log" 2>&1 &
  PIDS+=($!)
done
sleep 0.5


start_pinhole() {
  {
    echo "listen: {udp: [\"$HOST:$PORT\"], tcp: [], tls: [], ws: [], wss: []}"
    echo "domains: [\"$HOST\"]"
    echo "data_dir: \"$OUT/pinhole-data\""
    echo "metrics: {listen: \"\"}"
    echo "api: {listen: \"\"}"
    echo "log: {level: warn}"
    echo "natping: {interval: 0s}"
    echo "dispatch:"
    echo "  sets:"
    echo "    - name: fs"
    echo "      algorithm: round_robin"
    echo "      destinations:"
    for p in "${NODE_PORTS[@]}"; do echo "        - uri: \"sip:$HOST:$p\""; done
    echo "  rules: [{set: fs, domains: [bench.example]}]"
  } >"$OUT/pinhole.yaml"
  GOMAXPROCS=1 taskset -c "$SERVER_CORE" "$OUT/bin/pinhole" -config "$OUT/pinhole.yaml" >"$OUT/pinhole.log" 2>&1 &
  PIDS+=($!)
  SERVER_PID=$!
}

start_kamailio() {
  local modules
  modules=$("$OUT/bin/kamailio-cfg" -modules-dir)
  : >"$OUT/dispatcher.list"
  for p in "${NODE_PORTS[@]}"; do echo "1 sip:$HOST:$p" >>"$OUT/dispatcher.list"; done
  cat >"$OUT/kamailio.cfg" <<KAM
#!KAMAILIO
debug=0
log_stderror=yes
children=1
listen=udp:$HOST:$PORT
mpath="$modules"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "dispatcher.so"
modparam("dispatcher", "list_file", "$OUT/dispatcher.list")
modparam("dispatcher", "ds_ping_interval", 10)
modparam("dispatcher", "ds_probing_mode", 1)
modparam("tm", "fr_timer", 2000)

request_route {
  if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
  if (has_totag()) {
    if (loose_route()) { t_relay(); exit; }
    if (is_method("ACK") && t_check_trans()) { t_relay(); }
    exit;
  }
  if (is_method("CANCEL")) { if (t_check_trans()) { t_relay(); } exit; }
  if (is_method("INVITE")) { record_route(); }
  if (!ds_select_dst("1", "4")) { sl_send_reply("503", "No Destination"); exit; }
  t_on_failure("FAILOVER");
  t_relay();
}

failure_route[FAILOVER] {
  if (t_is_canceled()) { exit; }
  if (t_check_status("408|50[234]") && ds_next_dst()) {
    t_on_failure("FAILOVER");
    t_relay();
  }
}
KAM
  taskset -c "$SERVER_CORE" kamailio -f "$OUT/kamailio.cfg" -DD -E -m 512 -M 32 >"$OUT/kamailio.log" 2>&1 &
  PIDS+=($!)
  SERVER_PID=$!
}

results=()
for srv in $SERVERS; do
  "start_$srv"
  wait_udp "$srv"
  sleep 1 # first probes
  start=$(date +%s.%N)
  taskset -c "$GEN_CORE" sipp "$HOST:$PORT" -sf "$HERE/uac.xml" -s conf -i "$HOST" -p $((PORT + 100)) \
    -m "$CALLS" -r "$RATE" -l "$LIMIT" -nostdin -timeout 300s \
    -trace_stat -stf "$OUT/$srv-stats.csv" -fd 1 >"$OUT/$srv-sipp.log" 2>&1 || true
  end=$(date +%s.%N)
  stop_server
  line=$(tail -1 "$OUT/$srv-stats.csv")
  hdr=$(head -1 "$OUT/$srv-stats.csv")
  col() { awk -F';' -v name="$1" -v hdr="$hdr" 'BEGIN{n=split(hdr,h,";"); for(i=1;i<=n;i++) if(h[i]==name) c=i} {print $c}' <<<"$line"; }
  ok=$(col "SuccessfulCall(C)")
  failed=$(col "FailedCall(C)")
  cps=$(awk -v ok="$ok" -v s="$start" -v e="$end" 'BEGIN{printf "%.0f", ok/(e-s)}')
  results+=("$srv $ok $failed $cps")
done

echo
echo "dispatch, $CALLS calls offered at $RATE/s (at most $LIMIT open), server on core $SERVER_CORE"
printf '%-10s %10s %8s %10s\n' server successful failed calls/s
for r in "${results[@]}"; do
  # shellcheck disable=SC2086
  printf '%-10s %10s %8s %10s\n' $r
done
