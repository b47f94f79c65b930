#!/usr/bin/env bash
# netns-cleanup.sh removes the network namespaces and veth links that
# pinhole's integration tests leave behind when a test process dies before
# its cleanups run (SIGKILL, a CI time-out). Tests name everything with the
# prefixes below (internal/testutil: NamePrefix), so nothing else is touched.
#
#   scripts/netns-cleanup.sh          remove leftovers of any run
#   scripts/netns-cleanup.sh -n       only list what would be removed
set -euo pipefail

ns_prefix=phtest-
link_prefix=phv

dry=0
if [ "${1-}" = "-n" ]; then
	dry=1
fi

act() {
	if [ "$dry" -eq 1 ]; then
		echo "would run: $*"
	else
		echo "running: $*"
		"$@" || echo "netns-cleanup: failed: $*" >&2
	fi
}

# Processes left inside a namespace keep it (and its links) alive after
# `ip netns delete`: end them first. `ip netns pids` lists only processes of
# that namespace, so this never reaches anything outside the tests.
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${ns_prefix}" || true); do
	for pid in $(ip netns pids "$ns" 2>/dev/null || true); do
		act kill -KILL "$pid"
	done
	act ip netns delete "$ns"
done

# A veth end on the host outlives a test only if its namespace peer was
# never moved; delete it by its exact name. Deleting one end of a pair
# deletes the other, so check each is still there.
for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep "^${link_prefix}[0-9a-f]\{8\}[ab]$" || true); do
	if [ "$dry" -eq 0 ] && ! ip link show "$link" >/dev/null 2>&1; then
		continue
	fi
	act ip link delete "$link"
done
