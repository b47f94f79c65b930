// Package nat decides whether a device sits behind NAT and records the
// flow it really talks from, so that every later message to it goes to
// that address and leaves from the socket it used: a NAT pinhole opens
// only for that pair of addresses (docs/architecture.md, "One address, one
// port").
package nat
