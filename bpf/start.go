package bpf

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// Config is what the daemon asks of the kernel fast path.
type Config struct {
	// Interfaces to attach to; none means no XDP.
	Interfaces []string
	// Mode is "auto", "native", "generic" or "off".
	Mode string
	// Ports are the UDP ports pinhole serves SIP on.
	Ports []uint16
	// Rate and Burst configure RateLimit; rate 0 = no limit.
	Rate, Burst uint64
	// Blocklist prefixes are blocked forever.
	Blocklist []netip.Prefix
	// Signatures are scanner User-Agent prefixes; nil = none.
	Signatures []string
}

// ErrAttach is wrapped by Start's error when a required mode could not be
// attached.
var ErrAttach = errors.New("attach XDP")

// Start loads xdp_sip, configures it and attaches it to every interface of
// cfg, each through a BPF link owned by this process: the kernel detaches
// the program when pinhole exits, even by SIGKILL, so a crash never leaves
// a program behind that drops traffic.
//
// In mode "auto" it is optional (docs/architecture.md, "Three paths,
// cheapest first"): an interface that
// takes neither native nor generic mode is skipped with one warning line,
// and if the program cannot be loaded or attached anywhere Start logs one
// warning line and returns nil, nil: pinhole keeps working, slower. In mode
// "native" or "generic" any failure is an error. Mode "off" or no
// interfaces return nil, nil without loading.
func Start(cfg Config, log *slog.Logger) (*Objects, error) {
	if cfg.Mode == "off" || len(cfg.Interfaces) == 0 {
		log.Info("xdp: off", "reason", offReason(cfg))
		return nil, nil
	}
	var mode Mode
	switch cfg.Mode {
	case "auto", "":
		mode = ModeAuto
	case "native":
		mode = ModeNative
	case "generic":
		mode = ModeGeneric
	default:
		return nil, fmt.Errorf("xdp mode %q: must be auto, native, generic or off", cfg.Mode)
	}
	fallback := func(what string, err error) (*Objects, error) {
		if mode != ModeAuto {
			return nil, fmt.Errorf("%w: %s: %w", ErrAttach, what, err)
		}
		log.Warn("xdp: running WITHOUT the kernel fast path (slower: keepalives, NAT-ping replies and floods reach userspace)",
			"reason", what, "error", err)
		return nil, nil
	}
	sigs := append([]string{}, cfg.Signatures...) // never nil: nil would mean the defaults
	o, err := Load(Options{Ports: cfg.Ports, Signatures: sigs})
	if err != nil {
		return fallback("cannot load the program (needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)", err)
	}
	if err := o.configure(cfg); err != nil {
		o.Close()
		return nil, err
	}
	attached := 0
	for _, ifname := range cfg.Interfaces {
		got, err := o.Attach(ifname, mode)
		if err != nil {
			if mode != ModeAuto {
				o.Close()
				return nil, fmt.Errorf("%w: %w", ErrAttach, err)
			}
			log.Warn("xdp: not attached to this interface; its traffic skips the kernel fast path", "interface", ifname, "error", err)
			continue
		}
		attached++
		log.Info("xdp: attached", "interface", ifname, "mode", got.String())
	}
	if attached == 0 {
		o.Close()
		return fallback("attached to no interface", fmt.Errorf("tried %v", cfg.Interfaces))
	}
	return o, nil
}

func offReason(cfg Config) string {
	if cfg.Mode == "off" {
		return "xdp.mode is off"
	}
	return "no xdp.interfaces configured"
}

func (o *Objects) configure(cfg Config) error {
	if err := o.RateLimit.Set(cfg.Rate, cfg.Burst); err != nil {
		return err
	}
	for _, p := range cfg.Blocklist {
		if err := o.Blocklist.Add(p, time.Time{}); err != nil {
			return err
		}
	}
	return nil
}
