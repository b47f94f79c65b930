#!/usr/bin/env bash
# install-deps.sh installs the Debian packages pinhole needs for a purpose.
#
#   scripts/install-deps.sh [test|bpf|bench|run]...   (default: test)
#
#   test  peers and network tools for the integration tests: sipp, iproute2,
#         nftables and iptables (NAT namespaces), procps, kamailio (the main
#         registrar that later tests put behind pinhole, and a TLS peer;
#         its sipcapture module is also the HEP collector of the capture
#         tests), rtpengine-daemon (the media relay, run in userspace by the
#         tests), openssl (s_client for the TLS tests), dnsmasq-base (the
#         name server of the DNS tests, without a system service), tshark
#         (records what crosses the wire in the capture tests),
#         redis-server and redis-tools (the Redis Cluster location backing
#         and its redis-cli), keepalived (moves the virtual address of an
#         active/standby pair by VRRP), chromium and npm (a browser calling through
#         pinhole, with JsSIP from the npm registry)
#   bpf   the toolchain that regenerates the committed BPF objects
#   bench what bench/ needs besides `test`: ethtool (GRO and threaded NAPI
#         on the veth pairs), util-linux (taskset), curl (pinhole's metrics
#         from inside a namespace), and the peers compared; redis-server
#         and redis-tools for the servers backed by a Redis Cluster
#   run   what the daemon itself needs at run time (iproute2 only for now)
#
# It is idempotent: it asks apt only about packages that are missing and runs
# `apt-get update` only when at least one is, so CI pays nothing on a machine
# that already has everything.
set -euo pipefail

usage() {
	echo "usage: $0 [test|bpf|bench|run]..." >&2
	exit 2
}

packages_for() {
	case "$1" in
	test)
		# kamailio-tls-modules: Kamailio talks TLS to pinhole as a trusted
		# peer (Debian's sipp is built without TLS); openssl: s_client
		# checks the certificate served per SNI and the refused versions.
		# rtpengine-daemon: the tests start the binary themselves, without
		# its kernel module (--table=-1). tshark: the capture tests compare
		# the HEP copies with the wire it records.
		# redis-server, redis-tools: the tests start their own Redis Cluster.
		# keepalived: the pair's test runs one per box namespace, and the
		# packaging test checks the example configuration with it.
		# chromium, npm: the browser e2e test runs headless Chromium with
		# JsSIP, which it installs from the npm registry at test time.
		# ethtool, util-linux (taskset): the veth equality run gives the
		# server's veth end threaded NAPI pinned to pinhole's core.
		echo sip-tester iproute2 nftables iptables procps kamailio kamailio-tls-modules systemd rtpengine-daemon openssl dnsmasq-base tshark redis-server redis-tools keepalived chromium npm ethtool util-linux
		;;
	bpf)
		echo clang llvm libbpf-dev bpftool
		;;
	bench)
		echo ethtool iproute2 util-linux procps curl kamailio redis-server redis-tools
		;;
	run)
		echo iproute2
		;;
	*)
		usage
		;;
	esac
}

if [ "$#" -eq 0 ]; then
	set -- test
fi

wanted=()
for purpose in "$@"; do
	# shellcheck disable=SC2207 # package names never contain spaces
	wanted+=($(packages_for "$purpose"))
done

# provided reports whether a command already gives what a package would:
# the machine's Node.js (from another source than Debian) brings its own
# npm, and Debian's npm package conflicts with it.
provided() {
	case "$1" in
	npm) command -v npm >/dev/null ;;
	*) false ;;
	esac
}

missing=()
for pkg in "${wanted[@]}"; do
	if provided "$pkg"; then
		continue
	fi
	# dpkg-query prints "install ok installed" only for a fully installed package;
	# a half-configured one is installed again.
	status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
	if [ "$status" != "install ok installed" ]; then
		case " ${missing[*]-} " in
		*" $pkg "*) ;;
		*) missing+=("$pkg") ;;
		esac
	fi
done

if [ "${#missing[@]}" -eq 0 ]; then
	echo "install-deps: nothing to install for: $*"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: need root to install: ${missing[*]}" >&2
	exit 1
fi

# Installing kamailio must not start a system-wide Kamailio on :5060, which
# would take the port the tests give pinhole, nor rtpengine-daemon one on
# the ng port 2223, nor redis-server one on 6379. Debian consults policy-rc.d
# before starting a service; add a refusing one only for the time of this
# install, and only when the machine has none of its own.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	trap 'rm -f "$policy"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
# tshark's package asks whether non-root users may capture; answer no
# beforehand so the install never waits for a question.
if command -v debconf-set-selections >/dev/null; then
	echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections
fi
echo "install-deps: installing: ${missing[*]}"
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: installed: ${missing[*]}"
