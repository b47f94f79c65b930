package bpf

import (
	"errors"
	"fmt"
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
)

// Options size the maps and set the initial configuration. The zero value is
// a node for a million devices listening on port 5060.
type Options struct {
	// Ports are the UDP ports treated as SIP; default 5060.
	Ports []uint16
	// MaxSources is the number of source addresses the rate limiter
	// tracks (LRU); default 1 000 000.
	MaxSources uint32
	// MaxDevices bounds the alive and NAT-ping maps (LRU); default 1 000 000.
	MaxDevices uint32
	// MaxBlocked bounds each blocklist trie (IPv4, IPv6); default 65 536.
	MaxBlocked uint32
	// Signatures are User-Agent prefixes to drop; nil means
	// DefaultSignatures, an empty non-nil slice means none.
	Signatures []string
	// LogSize, when non-zero, keeps a verifier log of that many bytes,
	// returned in errors; for debugging a change to the C.
	LogSize int
}

// DefaultSignatures are the User-Agents of common SIP scanners.
var DefaultSignatures = []string{
	"friendly-scanner", "sipvicious", "sipcli", "sip-scan",
	"VaxSIPUserAgent", "iWar", "sundayddr",
}

// Objects is a loaded xdp_sip with its maps. Close detaches it from every
// interface it was attached to and frees it.
type Objects struct {
	// Program is the XDP program, for Attach or for tests with
	// Program.Run.
	Program *ebpf.Program

	Ports      *Ports
	Blocklist  *Blocklist
	RateLimit  *RateLimit
	Buckets    *Buckets
	Signatures *Signatures
	NATPings   *NATPings
	Alive      *Alive
	Counters   *Counters

	objs  xdpObjects
	links []link.Link
}

// Load loads xdp_sip into the kernel and configures it from opts. It does not
// attach it anywhere.
func Load(opts Options) (*Objects, error) {
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}
	spec, err := loadXdp()
	if err != nil {
		return nil, fmt.Errorf("load xdp_sip spec: %w", err)
	}
	size := func(name string, n, def uint32) {
		if n == 0 {
			n = def
		}
		spec.Maps[name].MaxEntries = n
	}
	size(xdpMapBuckets, opts.MaxSources, 1_000_000)
	size(xdpMapAlive, opts.MaxDevices, 1_000_000)
	size(xdpMapNatpings, opts.MaxDevices, 1_000_000)
	size(xdpMapBlock4, opts.MaxBlocked, 65_536)
	size(xdpMapBlock6, opts.MaxBlocked, 65_536)

	o := &Objects{}
	copts := &ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{LogSizeStart: uint32(opts.LogSize)}}
	if opts.LogSize > 0 {
		copts.Programs.LogLevel = ebpf.LogLevelInstruction
	}
	if err := spec.LoadAndAssign(&o.objs, copts); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load xdp_sip: %+v", verr)
		}
		return nil, fmt.Errorf("load xdp_sip: %w", err)
	}
	m := &o.objs.xdpMaps
	o.Program = o.objs.XdpSip
	o.Ports = &Ports{m: m.Ports}
	o.Blocklist = &Blocklist{v4: m.Block4, v6: m.Block6}
	o.RateLimit = &RateLimit{m: m.Ratelimit}
	o.Buckets = &Buckets{m: m.Buckets}
	o.Signatures = &Signatures{m: m.Signatures}
	o.NATPings = &NATPings{m: m.Natpings}
	o.Alive = &Alive{m: m.Alive}
	o.Counters = &Counters{m: m.Counters}

	ports := opts.Ports
	if ports == nil {
		ports = []uint16{5060}
	}
	sigs := opts.Signatures
	if sigs == nil {
		sigs = DefaultSignatures
	}
	if err := o.Ports.Set(ports); err != nil {
		o.Close()
		return nil, err
	}
	if err := o.Signatures.Set(sigs); err != nil {
		o.Close()
		return nil, err
	}
	return o, nil
}

// Mode is how the program is attached to an interface.
type Mode int

const (
	// ModeAuto tries native (driver) mode and falls back to generic.
	ModeAuto Mode = iota
	// ModeNative runs in the driver, before any allocation.
	ModeNative
	// ModeGeneric runs after the skb is built: works on any interface,
	// at a fraction of native speed.
	ModeGeneric
)

func (m Mode) String() string {
	switch m {
	case ModeNative:
		return "native"
	case ModeGeneric:
		return "generic"
	}
	return "auto"
}

// Attach attaches the program to the interface through a BPF link owned by
// this process: if pinhole dies, the kernel detaches it. It returns the mode
// that took.
func (o *Objects) Attach(ifname string, mode Mode) (Mode, error) {
	iface, err := net.InterfaceByName(ifname)
	if err != nil {
		return mode, fmt.Errorf("look up interface %q: %w", ifname, err)
	}
	try := []Mode{mode}
	if mode == ModeAuto {
		try = []Mode{ModeNative, ModeGeneric}
	}
	var errs []error
	for _, m := range try {
		flags := link.XDPDriverMode
		if m == ModeGeneric {
			flags = link.XDPGenericMode
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: o.Program, Interface: iface.Index, Flags: flags})
		if err == nil {
			o.links = append(o.links, l)
			return m, nil
		}
		errs = append(errs, fmt.Errorf("%s mode: %w", m, err))
	}
	return mode, fmt.Errorf("attach xdp_sip to %q: %w", ifname, errors.Join(errs...))
}

// Close detaches the program from every interface and frees it and its maps.
func (o *Objects) Close() error {
	var errs []error
	for _, l := range o.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach xdp_sip: %w", err))
		}
	}
	o.links = nil
	if err := o.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close xdp_sip objects: %w", err))
	}
	return errors.Join(errs...)
}
