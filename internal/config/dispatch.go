package config

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/pinhole-sip/pinhole/internal/resolve"
)

// Dispatch configures the edge proxy toward a farm (docs/dispatch.md).
// Three registration modes exist and at most one is chosen: standalone
// registrar (the default: pinhole keeps bindings), mid-registrar
// (midregistrar.upstreams: pinhole keeps bindings and relays to a main
// registrar) and edge relay (dispatch.register: pinhole keeps no binding and
// relays REGISTER with a Path header to a node of a set).
type Dispatch struct {
	Sets  []DispatchSet  `yaml:"sets"`
	Rules []DispatchRule `yaml:"rules"`
	// Register names the set REGISTER is relayed to; empty: not relayed.
	Register string           `yaml:"register"`
	Probe    DispatchProbe    `yaml:"probe"`
	Failover DispatchFailover `yaml:"failover"`
	// TopologyHiding keeps the farm's addresses out of every message that
	// reaches a device: Via, Record-Route and Contact.
	TopologyHiding bool             `yaml:"topology_hiding"`
	Oversize       DispatchOversize `yaml:"oversize"`
}

// DispatchSet is a named set of destinations.
type DispatchSet struct {
	Name string `yaml:"name"`
	// Algorithm: round_robin, weighted, hash_user, hash_domain,
	// hash_callid or least_calls.
	Algorithm    string                `yaml:"algorithm"`
	Destinations []DispatchDestination `yaml:"destinations"`
}

// DispatchDestination is one node of a set.
type DispatchDestination struct {
	URI      string            `yaml:"uri"` // sip:IP:PORT[;transport=tcp], or sip:NAME[:PORT][;transport=...] (docs/dns.md)
	Weight   int               `yaml:"weight"`
	Priority int               `yaml:"priority"` // lowest first; higher are spares
	Attrs    map[string]string `yaml:"attrs,omitempty"`
}

// DispatchRule sends matching requests to a set; empty conditions match all.
//
// The conditions, like a destination's attrs, are left out of marshalled
// YAML when empty: an entry of a list takes no default, so absent and
// empty read back the same, and a marshalled Config reads back equal.
type DispatchRule struct {
	Set     string   `yaml:"set"`
	Methods []string `yaml:"methods,omitempty"`
	Domains []string `yaml:"domains,omitempty"`
	Prefix  string   `yaml:"prefix,omitempty"`  // request-URI user prefix
	Sources []string `yaml:"sources,omitempty"` // CIDR prefixes of the sender
}

// DispatchProbe configures OPTIONS probing of destinations.
type DispatchProbe struct {
	Interval  time.Duration `yaml:"interval"` // 0: no probing
	Timeout   time.Duration `yaml:"timeout"`
	DownAfter int           `yaml:"down_after"`
	UpAfter   int           `yaml:"up_after"`
}

// DispatchFailover says when a request tries the next destination.
type DispatchFailover struct {
	Codes     []int         `yaml:"codes"`
	DownOn503 bool          `yaml:"down_on_503"`
	Timeout   time.Duration `yaml:"timeout"` // silence before the next node; 0: timer B
	MaxTries  int           `yaml:"max_tries"`
}

// DispatchOversize bounds device-bound requests over UDP (RFC 3261
// §18.1.1): past MTU minus Headroom they are shrunk.
type DispatchOversize struct {
	MTU          int      `yaml:"mtu"` // 0: no limit
	Headroom     int      `yaml:"headroom"`
	StripHeaders []string `yaml:"strip_headers"`
	// TCP sends an oversized request over TCP instead when the device is
	// not behind NAT and its Contact allows TCP.
	TCP bool `yaml:"tcp"`
}

// Enabled reports whether any set is configured.
func (d Dispatch) Enabled() bool { return len(d.Sets) > 0 }

var dispatchAlgorithms = []string{"round_robin", "weighted", "hash_user", "hash_domain", "hash_callid", "least_calls"}

func (c *Config) validateDispatch() error {
	d := &c.Dispatch
	sets := map[string]bool{}
	for i, s := range d.Sets {
		if s.Name == "" || strings.ContainsAny(s.Name, " \t\"") {
			return bad("dispatch.sets", "entry %d: name %q: want a word", i, s.Name)
		}
		if sets[s.Name] {
			return bad("dispatch.sets", "entry %d: name %q is used twice", i, s.Name)
		}
		sets[s.Name] = true
		if !slices.Contains(dispatchAlgorithms, s.Algorithm) {
			return bad("dispatch.sets", "set %s: algorithm %q: want one of %s", s.Name, s.Algorithm, strings.Join(dispatchAlgorithms, ", "))
		}
		if len(s.Destinations) == 0 {
			return bad("dispatch.sets", "set %s: no destinations", s.Name)
		}
		for j, dst := range s.Destinations {
			if !validDestination(dst.URI) {
				return bad("dispatch.sets", "set %s destination %d: uri %q: want sip:IP:PORT or sip:NAME[:PORT], with an optional ;transport=udp or tcp", s.Name, j, dst.URI)
			}
			if dst.Weight < 0 || dst.Weight > 1000 {
				return bad("dispatch.sets", "set %s destination %d: weight %d: want 0..1000", s.Name, j, dst.Weight)
			}
			if dst.Priority < 0 || dst.Priority > 100 {
				return bad("dispatch.sets", "set %s destination %d: priority %d: want 0..100", s.Name, j, dst.Priority)
			}
		}
	}
	for i, r := range d.Rules {
		if !sets[r.Set] {
			return bad("dispatch.rules", "entry %d: set %q is not in dispatch.sets", i, r.Set)
		}
		for _, m := range r.Methods {
			if m == "REGISTER" {
				return bad("dispatch.rules", "entry %d: REGISTER goes by dispatch.register, not by a rule", i)
			}
			if m == "" || strings.ToUpper(m) != m || strings.ContainsAny(m, " \t") {
				return bad("dispatch.rules", "entry %d: method %q: want an upper-case method name", i, m)
			}
		}
		for _, p := range r.Sources {
			if _, err := netip.ParsePrefix(p); err != nil {
				return bad("dispatch.rules", "entry %d: source %q is not a CIDR prefix", i, p)
			}
		}
	}
	if d.Register != "" {
		if !sets[d.Register] {
			return bad("dispatch.register", "%q is not in dispatch.sets", d.Register)
		}
		if c.MidRegistrar.Enabled() {
			return bad("dispatch.register", "relaying REGISTER to a farm and the mid-registrar (midregistrar.upstreams) exclude each other: choose one")
		}
		if c.Auth.Enabled() {
			return bad("auth.credentials", "with dispatch.register the farm's registrar authenticates: leave credentials empty")
		}
	}
	p := d.Probe
	if p.Interval != 0 && (p.Interval < 500*time.Millisecond || p.Interval > time.Hour) {
		return bad("dispatch.probe.interval", "%s: must be 0 (off) or between 500ms and 1h", p.Interval)
	}
	if p.Interval != 0 && (p.Timeout <= 0 || p.Timeout > p.Interval) {
		return bad("dispatch.probe.timeout", "%s: must be above 0 and at most the interval %s", p.Timeout, p.Interval)
	}
	if p.DownAfter < 1 || p.DownAfter > 100 {
		return bad("dispatch.probe.down_after", "%d: must be between 1 and 100", p.DownAfter)
	}
	if p.UpAfter < 1 || p.UpAfter > 100 {
		return bad("dispatch.probe.up_after", "%d: must be between 1 and 100", p.UpAfter)
	}
	f := d.Failover
	for _, code := range f.Codes {
		if code < 300 || code > 699 {
			return bad("dispatch.failover.codes", "%d: must be a final error status (300..699)", code)
		}
	}
	if f.Timeout < 0 || f.Timeout > 32*time.Second {
		// Past 64*T1 a UDP caller's own transaction has ended.
		return bad("dispatch.failover.timeout", "%s: must be between 0 (timer B only) and 32s", f.Timeout)
	}
	if f.MaxTries < 0 {
		return bad("dispatch.failover.max_tries", "%d: must be 0 (every destination) or more", f.MaxTries)
	}
	o := d.Oversize
	if o.MTU != 0 && (o.MTU < 576 || o.MTU > 65535) {
		return bad("dispatch.oversize.mtu", "%d: must be 0 (no limit) or between 576 and 65535", o.MTU)
	}
	if o.Headroom < 0 || (o.MTU != 0 && o.MTU-o.Headroom < 500) {
		return bad("dispatch.oversize.headroom", "%d: must be at least 0 and leave at least 500 bytes of the mtu %d", o.Headroom, o.MTU)
	}
	for _, h := range o.StripHeaders {
		switch strings.ToLower(h) {
		case "via", "v", "from", "f", "to", "t", "call-id", "i", "cseq", "max-forwards", "route", "record-route", "contact", "m", "content-length", "l", "content-type", "c":
			return bad("dispatch.oversize.strip_headers", "%q is needed to route or parse the request: it cannot be stripped", h)
		}
		if h == "" || strings.ContainsAny(h, ": \t") {
			return bad("dispatch.oversize.strip_headers", "%q is not a header name", h)
		}
	}
	return nil
}

// validDestination checks a destination URI's form; slowpath/dispatch
// parses it again with the same rules. A name is resolved by RFC 3263
// (dns.go, docs/dns.md).
func validDestination(u string) bool {
	if d, err := resolve.ParseURI(u); err == nil && d.IsName() {
		return !d.Secure && (d.Transport == "" || d.Transport == resolve.UDP || d.Transport == resolve.TCP)
	}
	rest, ok := strings.CutPrefix(u, "sip:")
	if !ok {
		return false
	}
	hostport, params, _ := strings.Cut(rest, ";")
	switch strings.ToLower(params) {
	case "", "transport=udp", "transport=tcp", "lr":
	default:
		return false
	}
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return ap.Port() != 0 && !ap.Addr().IsUnspecified()
	}
	a, err := netip.ParseAddr(strings.Trim(hostport, "[]"))
	return err == nil && !a.IsUnspecified() && !strings.Contains(hostport, "%")
}
