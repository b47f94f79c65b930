package main

import (
	"fmt"
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/pinhole-sip/pinhole/bench/xdp/bare"
)

// attachPass attaches a program that passes every frame to ifname, in
// native mode, for as long as this process lives: native XDP_TX on a veth
// delivers to the peer only if the peer runs an XDP program too.
func attachPass(ifname string) (func(), error) {
	iface, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("-xdp-pass: %w", err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "xdp_pass", Type: ebpf.XDP, License: "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2 /* XDP_PASS */), asm.Return()},
	})
	if err != nil {
		return nil, fmt.Errorf("load pass-through XDP program: %w", err)
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: iface.Index, Flags: link.XDPDriverMode})
	if err != nil {
		prog.Close()
		return nil, fmt.Errorf("attach pass-through XDP program to %s: %w", ifname, err)
	}
	return func() { l.Close(); prog.Close() }, nil
}

// attachBare attaches the bare XDP baseline to ifname in native mode for as
// long as this process lives.
func attachBare(ifname string) (func(), error) {
	p, err := bare.Load()
	if err != nil {
		return nil, fmt.Errorf("-xdp-bare: %w", err)
	}
	if err := p.Attach(ifname); err != nil {
		p.Close()
		return nil, fmt.Errorf("-xdp-bare: %w", err)
	}
	return func() { p.Close() }, nil
}
