// Package bare is the bare XDP program bench/xdp/run.sh measures pinhole's
// XDP program against, in the same run: the least an XDP program can do to
// answer a CRLF keepalive (XDP_TX) and to drop an answer to a NAT ping
// (XDP_DROP). See bare.c.
package bare

// Built like bpf/: little-endian only, relative paths, so that the
// committed object is byte for byte what bench/xdp/check-generated.sh
// rebuilds with Debian bookworm's clang 14.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target bpfel bare bare.c -- -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu
