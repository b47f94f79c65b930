package bpf

// The object is built for little-endian hosts only (x86-64, arm64): the C
// loads packet words unaligned and in host order. Paths are relative so the
// committed object is byte-for-byte reproducible; check-generated.sh proves it.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target bpfel xdp xdp_sip.c -- -Wall -Werror -mcpu=v3 -Iinclude -I/usr/include/x86_64-linux-gnu
