// Package bpf loads pinhole's XDP program, xdp_sip, and gives typed access to
// its maps: the SIP ports it watches, the blocklist, the per-source rate
// limit, the scanner signatures, the NAT pings it expects replies to, the
// liveness of devices and the verdict counters.
//
// The program answers double-CRLF (RFC 5626 §3.5.1) and STUN Binding
// (RFC 5389) keepalives with XDP_TX, swallows devices' replies to pinhole's
// own OPTIONS pings, and drops what a SIP server should never see. It is
// optional: pinhole runs, slower, where it cannot be loaded. See docs/xdp.md.
//
// The C source is xdp_sip.c; xdp_bpfel.go and xdp_bpfel.o are generated from
// it by bpf2go (go generate ./bpf) and committed, so building pinhole never
// needs clang.
package bpf
