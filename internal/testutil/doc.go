// Package testutil runs pinhole's integration tests as scenarios on real
// peers: network namespaces joined by veth pairs (one of them a masquerading
// router, so pinhole sees a translated source port as it would in the field),
// sipp processes playing devices, and the pinhole binary itself started from a
// configuration the test writes.
//
// Everything a helper creates is tied to the test that asked for it and
// removed in t.Cleanup, even when the test fails. Names of namespaces and
// links carry NamePrefix and a random part, so parallel test processes and the
// leftovers of a crashed run (see scripts/netns-cleanup.sh) never collide.
//
// The helpers need root, iproute2, nftables or iptables, sipp and, for the
// media tests, rtpengine (scripts/install-deps.sh test). They fail the test
// when something is missing instead of skipping it: CI runs as root, and a
// skipped integration test hides a broken harness.
package testutil
