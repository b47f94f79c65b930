package bare

import (
	"errors"
	"fmt"
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
)

// Port is the UDP port the program answers and drops on (fixed in bare.c).
const Port = 5060

// Program is the loaded bare program.
type Program struct {
	*ebpf.Program
	links []link.Link
}

// Load loads the program into the kernel (root, or CAP_BPF and CAP_NET_ADMIN).
func Load() (*Program, error) {
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("bare: %w", err)
	}
	var o bareObjects
	if err := loadBareObjects(&o, nil); err != nil {
		return nil, fmt.Errorf("bare: load xdp_bare: %w", err)
	}
	return &Program{Program: o.XdpBare}, nil
}

// Attach attaches the program to ifname in native (driver) mode, the mode
// pinhole's program is measured in.
func (p *Program) Attach(ifname string) error {
	iface, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("bare: %w", err)
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: p.Program, Interface: iface.Index, Flags: link.XDPDriverMode})
	if err != nil {
		return fmt.Errorf("bare: attach to %s: %w", ifname, err)
	}
	p.links = append(p.links, l)
	return nil
}

// Close detaches the program everywhere and unloads it.
func (p *Program) Close() error {
	var errs []error
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
	p.links = nil
	return errors.Join(append(errs, p.Program.Close())...)
}
