# bench/netns.sh — the veth mode of the bench scripts; source it, do not run it.
#
# Two network namespaces made for this run and removed by veth_down:
#
#   $GEN_NS (devices: sources 10.64.0.0/10 routed local to lo, 10.201.0.2)
#       ══ veth ══ $SRV_NS (the server: 10.201.0.1)
#
# Each veth end gets GRO, hence a NAPI instance (veth has no NAPI without
# GRO or an XDP program), made threaded (a napi/<dev>-<id> kthread), and the
# kthread is pinned: the server end's receive work to SERVER_CORE, as a NIC
# queue's interrupt would be, the generator end's to GEN_CORE. On loopback,
# by contrast, the sender's core does the receiver's softirq work, so a
# server looked cheaper than it is and the generator dearer.
#
# Callers set SERVER_CORE and GEN_CORE, then call veth_up; after that
# HOST is the server's address, in_srv/in_gen run a command in a namespace.

VETH_ID=${VETH_ID:-$(printf '%04x' $((RANDOM)))}
GEN_NS=phbg-$VETH_ID SRV_NS=phbs-$VETH_ID
GEN_IF=phg$VETH_ID SRV_IF=phs$VETH_ID # short: kthread names are cut at 15 characters
VETH_SRV_ADDR=10.201.0.1 VETH_GEN_ADDR=10.201.0.2
VETH_SOURCES=10.64.0.0/10 # /16s 10.80.0.0 … 10.127.0.0 for the runs' devices

in_srv() { ip netns exec "$SRV_NS" "$@"; }
in_gen() { ip netns exec "$GEN_NS" "$@"; }

# napi_pids DEV: the NAPI kthreads of a veth end.
napi_pids() { ps -eo pid=,comm= | awk -v d="napi/$1-" 'index($2, d) == 1 {print $1}'; }

# veth_pin: attaching or detaching XDP, or a link going down and up,
# re-creates the kthreads; call it after each server start.
veth_pin() {
  local p
  for p in $(napi_pids "$SRV_IF"); do taskset -pc "$SERVER_CORE" "$p" >/dev/null; done
  for p in $(napi_pids "$GEN_IF"); do taskset -pc "$GEN_CORE" "$p" >/dev/null; done
}

veth_up() {
  command -v ethtool >/dev/null || { echo "netns.sh: ethtool missing: scripts/install-deps.sh bench" >&2; return 1; }
  veth_down
  ip netns add "$GEN_NS"
  ip netns add "$SRV_NS"
  in_gen ip link set lo up
  in_srv ip link set lo up
  ip link add "$GEN_IF" netns "$GEN_NS" type veth peer name "$SRV_IF" netns "$SRV_NS"
  in_srv ip addr add "$VETH_SRV_ADDR/24" dev "$SRV_IF"
  in_gen ip addr add "$VETH_GEN_ADDR/24" dev "$GEN_IF"
  local x
  for x in "$GEN_NS $GEN_IF" "$SRV_NS $SRV_IF"; do
    set -- $x
    ip -n "$1" link set "$2" up || return 1
    ip netns exec "$1" ethtool -K "$2" gro on >/dev/null || return 1
    ip netns exec "$1" sh -c "echo 1 > /sys/class/net/$2/threaded" || return 1
  done
  # The devices' addresses are local to the generator's namespace without
  # one alias each; the server routes them back over the veth.
  in_gen ip route add local "$VETH_SOURCES" dev lo || return 1
  in_srv ip route add "$VETH_SOURCES" via "$VETH_GEN_ADDR" || return 1
  # Deep socket buffers may be asked for (the servers and the generator
  # ask; the generator forces them as root).
  in_srv sysctl -qw net.core.rmem_max=16777216 net.core.wmem_max=16777216 2>/dev/null || true
  in_gen sysctl -qw net.core.rmem_max=16777216 net.core.wmem_max=16777216 2>/dev/null || true
  HOST=$VETH_SRV_ADDR
  veth_pin
  [[ -n $(napi_pids "$SRV_IF") ]] || { echo "netns.sh: no threaded NAPI on $SRV_IF" >&2; return 1; }
}

veth_down() {
  ip netns del "$GEN_NS" 2>/dev/null || true
  ip netns del "$SRV_NS" 2>/dev/null || true
}
