#!/bin/sh
# bench/xdp/run.sh: what a keepalive, a NAT-ping answer and a REGISTER
# flood cost pinhole's core, with and without XDP, in one run.
#
# Topology (namespaces made here, removed on exit; needs root):
#
#   phbx-c (client, 10.88.0.2) --veth-- phbx-s (pinhole, 10.88.0.1:5060) --veth-- phbx-a (attacker, 10.88.1.2)
#
# Pinning: pinhole (or the bare echo) and the receive work of pinhole's
# veth ends run on CPU 1: GRO on the veth ends gives them NAPI, threaded
# NAPI turns it into a kthread (napi/<dev>-<id>), taskset pins it. The
# load generators and the client ends' NAPI threads run on CPU 0. kaload
# reports the CPU time of the server process and of the NAPI threads of
# pinhole's veth ends (schedstat, ns) per datagram sent, and CPU 1's busy
# time from /proc/stat (which also counts anything else running there).
#
# The baseline is measured in the same run: the bare XDP program
# (bench/xdp/bare: a CRLF keepalive answered by XDP_TX, anything else to
# port 5060 dropped) held on pinhole's veth end by kaload, loaded the same
# way; the summary gives pinhole's XDP cost per keepalive and per swallowed
# NAT-ping answer as a ratio to it, next to the userspace answers.
#
# Usage: bench/xdp/run.sh [seconds per case, default 10]
#   CASES="1 2 3" (3: the REGISTER flood)  RATE=100000  FLOOD=250000  REGRATE=200
set -eu
cd "$(dirname "$0")/../.."
scripts/install-deps.sh bench # ethtool (veth GRO and threaded NAPI), iproute2, taskset
SECS=${1:-10}
RATE=${RATE:-100000}         # keepalives or answers per second: under userspace's ceiling
FLOOD=${FLOOD:-250000}       # attacker datagrams per second
REGRATE=${REGRATE:-200}      # legitimate registrations per second
CASES=${CASES:-1 2 3}
S=phbx-s C=phbx-c A=phbx-a
BIN=$(mktemp -d)
PIDS=""

cleanup() {
	for p in $PIDS; do kill "$p" 2>/dev/null || true; done
	sleep 0.5
	for n in $S $C $A; do ip netns del "$n" 2>/dev/null || true; done
	rm -rf "$BIN"
}
trap cleanup EXIT INT TERM

go build -o "$BIN/pinhole" ./cmd/pinhole
go build -o "$BIN/kaload" ./bench/xdp/kaload
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== $(uname -r), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $LOAD0, commit $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"

for n in $S $C $A; do ip netns del "$n" 2>/dev/null || true; ip netns add "$n"; ip -n "$n" link set lo up; done
ip link add phbxs netns $S type veth peer name phbxc netns $C
ip link add phbxs2 netns $S type veth peer name phbxa netns $A
ip -n $S addr add 10.88.0.1/24 dev phbxs
ip -n $S addr add 10.88.1.1/24 dev phbxs2
ip -n $C addr add 10.88.0.2/24 dev phbxc
ip -n $A addr add 10.88.1.2/24 dev phbxa
for x in "$S phbxs" "$S phbxs2" "$C phbxc" "$A phbxa"; do
	set -- $x
	ip -n "$1" link set "$2" up
	ip netns exec "$1" ethtool -K "$2" gro on >/dev/null # veth NAPI without an XDP program
	ip netns exec "$1" sh -c "echo 1 > /sys/class/net/$2/threaded"
done
ip -n $A route add 10.88.0.0/24 via 10.88.1.1
# Native XDP_TX on a veth is delivered only if the peer end runs an XDP
# program too: pass-through programs on the client ends, for the whole run.
for x in "$C phbxc" "$A phbxa"; do
	set -- $x
	ip netns exec "$1" "$BIN/kaload" -mode hold -xdp-pass "$2" -duration 10m &
	PIDS="$PIDS $!"
done
sleep 1

# pin moves every NAPI kthread of a device to a CPU.
napi() { ps -eo pid=,comm= | awk -v d="napi/$1-" 'index($2, d) == 1 {print $1}'; }
pin() {
	for pid in $(napi "$1"); do
		taskset -pc "$2" "$pid" >/dev/null
	done
}
pin_all() {
	pin phbxs 1; pin phbxs2 1; pin phbxc 0; pin phbxa 0
}
pin_all

# start_pinhole MODE [NATPING_INTERVAL]: pinhole on CPU 1 with XDP MODE.
start_pinhole() {
	d=$(mktemp -d "$BIN/run.XXXX")
	cat >"$d/pinhole.yaml" <<-YAML
	listen: {udp: ["10.88.0.1:5060"], tcp: [], tls: [], ws: [], wss: []}
	domains: [localhost]
	data_dir: $d/data
	metrics: {listen: "127.0.0.1:9060"}
	api: {listen: ""}
	log: {level: info}
	xdp: {interfaces: [phbxs, phbxs2], mode: $1, rate: 1000, burst: 2000}
	natping: {interval: ${2:-0s}, method: options, max_missed: 0}
	YAML
	ip netns exec $S taskset -c 1 "$BIN/pinhole" -config "$d/pinhole.yaml" >"$d/log" 2>&1 &
	PH=$!
	PIDS="$PIDS $PH"
	for _ in $(seq 50); do grep -qs "pinhole ready" "$d/log" && break; sleep 0.2; done
	grep -q "pinhole ready" "$d/log" || { cat "$d/log"; exit 1; }
	pin_all # attaching XDP re-creates the veth NAPI instances
}
stop_pinhole() {
	ip netns exec $S sh -c 'curl -s 127.0.0.1:9060/metrics' | grep -E 'pinhole_xdp_verdicts_total|pinhole_keepalive|pinhole_natping_(sent|answered)' | grep -v ' 0$' | sed 's/^/     /' || true
	kill "$PH"; wait "$PH" 2>/dev/null || true
	pin_all # detaching XDP re-creates the veth NAPI threads
}
load() { # NS SERVER_PID ARGS...: kaload on CPU 0, timing the server and
	# the NAPI threads of pinhole's veth ends
	ns=$1; srv=$2; shift 2
	ip netns exec "$ns" taskset -c 0 "$BIN/kaload" -cpu 1 -pids "$srv $(napi phbxs) $(napi phbxs2)" "$@"
}

# record NAME CMD...: runs CMD, showing its output and keeping it for the summary.
record() {
	name=$1; shift
	"$@" | tee "$BIN/res.$name"
}

# bare_xdp MODE: the bare XDP program on pinhole's veth end (held by kaload
# on CPU 1, idle), loaded by kaload -mode MODE: its cost is the NAPI threads'.
bare_xdp() {
	ip netns exec $S taskset -c 1 "$BIN/kaload" -mode hold -xdp-bare phbxs -duration $((SECS + 10))s &
	HOLD=$!; PIDS="$PIDS $HOLD"; sleep 1
	pin_all # attaching XDP re-creates the veth NAPI threads
	load $C $HOLD -mode "$1" -target 10.88.0.1:5060 -rate "$RATE" -duration "${SECS}s"
	kill $HOLD 2>/dev/null; wait $HOLD 2>/dev/null || true
	pin_all
}

# bare MODE: the bare userspace server (kaload -mode serve) on CPU 1,
# loaded by kaload -mode MODE.
bare() {
	pin_all # detaching XDP from the last pinhole re-created the NAPI threads
	ip netns exec $S taskset -c 1 "$BIN/kaload" -mode serve -local 10.88.0.1:5060 -duration $((SECS + 5))s >/dev/null &
	ECHO=$!; PIDS="$PIDS $ECHO"; sleep 0.5
	load $C $ECHO -mode "$1" -target 10.88.0.1:5060 -rate "$RATE" -duration "${SECS}s"
	kill $ECHO 2>/dev/null; wait $ECHO 2>/dev/null || true
}

case1() {
echo "== 1. CRLF keepalives at $RATE/s for ${SECS}s (us_per_sent = CPU 1 busy time per keepalive)"
printf '%s' "-- bare userspace echo (one Go socket): "
record ka-bare-user bare crlf
printf '%s' "-- bare XDP program (XDP_TX of CRLF): "
record ka-bare-xdp bare_xdp crlf
for mode in off native; do
	printf '%s' "-- pinhole, xdp $mode: "
	start_pinhole $mode
	record ka-pinhole-$mode load $C $PH -mode crlf -target 10.88.0.1:5060 -rate "$RATE" -duration "${SECS}s"
	stop_pinhole
done
}

case2() {
echo "== 2. Answers to NAT pings at $RATE/s for ${SECS}s"
printf '%s' "-- bare userspace receive-and-drop: "
record np-bare-user bare reply
printf '%s' "-- bare XDP program (XDP_DROP): "
record np-bare-xdp bare_xdp reply
for mode in off native; do
	echo "-- pinhole, xdp $mode (waits for pinhole's first ping): "
	# The token stays valid until the next ping: the interval outlasts the run.
	start_pinhole $mode "$((SECS + 20))s"
	record np-pinhole-$mode load $C $PH -mode natping -target 10.88.0.1:5060 -rate "$RATE" -duration "${SECS}s"
	stop_pinhole
done
}

case3() {
echo "== 3. REGISTER at $REGRATE/s from a device while an attacker floods $FLOOD REGISTER/s"
for mode in native off; do
	echo "-- pinhole, xdp $mode (rate limit 1000/s, burst 2000 per source address):"
	start_pinhole $mode
	load $A $PH -mode flood -target 10.88.0.1:5060 -rate "$FLOOD" -duration "$((SECS + 4))s" | sed 's/^/     attacker: /' &
	F=$!; sleep 2
	load $C $PH -mode register -target 10.88.0.1:5060 -rate "$REGRATE" -duration "${SECS}s" | sed 's/^/     device:   /'
	wait $F || true
	stop_pinhole
done
}

# us NAME [cpu]: a recorded case's CPU per datagram: the server's and its
# NAPI threads' (default) or CPU 1's busy time.
us() {
	key=pids_us_per_sent
	[ "${2:-}" = cpu ] && key=us_per_sent
	grep -o " $key=[0-9.]*" "$BIN/res.$1" 2>/dev/null | cut -d= -f2 | tail -1
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else printf "n/a" }'; }

summary() { # TITLE PREFIX: one case's four rows and its ratios
	echo "$1"
	for x in "bare-user:bare userspace" "pinhole-off:pinhole userspace (XDP off)" "bare-xdp:bare XDP program" "pinhole-native:pinhole XDP (native)"; do
		printf '  %-36s %8s %10s\n' "${x#*:}" "$(us "$2-${x%%:*}")" "$(us "$2-${x%%:*}" cpu)"
	done
	echo "  pinhole XDP / bare XDP:        $(ratio "$(us "$2-pinhole-native")" "$(us "$2-bare-xdp")") (server + NAPI threads), $(ratio "$(us "$2-pinhole-native" cpu)" "$(us "$2-bare-xdp" cpu)") (CPU 1)"
	echo "  pinhole userspace / pinhole XDP: $(ratio "$(us "$2-pinhole-off")" "$(us "$2-pinhole-native")") (server + NAPI threads), $(ratio "$(us "$2-pinhole-off" cpu)" "$(us "$2-pinhole-native" cpu)") (CPU 1)"
}

for c in $CASES; do "case$c"; done

echo
echo "== summary: µs of CPU per datagram at $RATE/s, ${SECS}s per case; load $LOAD0 before, $(cut -d' ' -f1-3 /proc/loadavg) after"
printf '  %-36s %8s %10s\n' "" "srv+napi" "CPU 1 busy"
case " $CASES " in *" 1 "*) summary "CRLF keepalive answered:" ka ;; esac
case " $CASES " in *" 2 "*) summary "NAT-ping answer swallowed:" np ;; esac
