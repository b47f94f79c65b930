package proxy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/slowpath/dispatch"
	"github.com/pinhole-sip/pinhole/slowpath/routesig"
	"github.com/pinhole-sip/pinhole/slowpath/trust"

	"github.com/emiago/sipgo/sip"
)

// Forking says how a request is sent to several contacts of one AOR.
type Forking uint8

const (
	// ForkParallel sends to all contacts at once (RFC 3261 §16.6).
	ForkParallel Forking = iota
	// ForkSerial tries contacts in groups of equal q value, highest first,
	// moving to the next group when every branch of a group failed
	// (RFC 3261 §16.6, §8.1.3.4).
	ForkSerial
)

func (f Forking) String() string {
	if f == ForkSerial {
		return "serial"
	}
	return "parallel"
}

// ParseForking reads "parallel" or "serial".
func ParseForking(s string) (Forking, error) {
	switch strings.ToLower(s) {
	case "", "parallel":
		return ForkParallel, nil
	case "serial":
		return ForkSerial, nil
	}
	return 0, fmt.Errorf("forking %q: want parallel or serial", s)
}

// Defaults (RFC 3261 §16.6 step 3, §16.8).
const (
	DefaultInviteTimeout = 180 * time.Second
	DefaultMaxForwards   = 70
	// DefaultMaxBreadth is RFC 5393 §5.3.1's suggested Max-Breadth.
	DefaultMaxBreadth = 60
)

// Listener is one socket pinhole serves SIP on.
type Listener struct {
	// Transport of the socket.
	Transport location.Transport
	// Local is the address the socket is bound to, exactly as sipgo's
	// listener reports it: for UDP it selects the socket requests leave
	// from, so it must be a concrete address, not 0.0.0.0.
	Local netip.AddrPort
	// Host and Port are advertised in Via and Record-Route; pinhole may
	// sit behind a virtual IP or a port mapping. Empty Host means
	// Local's address; zero Port means Local's port.
	Host string
	Port int
}

// Config configures a Proxy.
type Config struct {
	// Domains are the SIP domains whose users live in the location store.
	Domains []string
	// Listeners are pinhole's sockets; at least one.
	Listeners []Listener
	// Forking is parallel (default) or serial by q value.
	Forking Forking
	// Outbound is a SIP URI that requests for foreign domains are sent to
	// (for example sip:core.example.net:5060;transport=tcp). Empty means
	// such requests are refused with 403: pinhole is not an open relay.
	Outbound string
	// InviteTimeout is timer C, the time a branch may ring without a
	// final response (RFC 3261 §16.8). Zero means 180 s.
	InviteTimeout time.Duration
	// MaxForwards is the Max-Forwards given to requests that have none
	// (RFC 3261 §16.6 step 3). Zero means 70.
	MaxForwards int
	// Farm, when set, relays the requests its rules match (and REGISTER,
	// when it has a register set) to a farm of servers; see farm.go and
	// docs/dispatch.md.
	Farm *dispatch.Dispatcher
	// TopologyHiding keeps the farm's addresses out of device-bound
	// messages (Via, Record-Route, Contact). Only with Farm.
	TopologyHiding bool
	// Oversize shrinks device-bound requests over UDP. Only with Farm.
	Oversize Oversize
	// Keys sign the routing state pinhole writes into messages (Record-Route,
	// Path, hidden Contacts) and verify it when it comes back. nil: a random
	// key held in memory, so dialogs do not survive a restart (tests).
	Keys *routesig.Keyring
	// Trusted are the peers believed by source address (main registrar,
	// other edges, the farm's nodes): their requests are not challenged
	// and keep their identity headers. nil trusts nobody.
	Trusted *trust.List
	// OutboundDNS resolves Outbound when its host is a name (RFC 3263,
	// docs/dns.md); nil: the name is left to sipgo, which asks Go's
	// resolver for A records when each request is sent.
	OutboundDNS Resolver
	// Peers reports further peers believed by source address whose
	// addresses follow DNS (mid-registrar upstreams given by name,
	// docs/dns.md); nil: none.
	Peers func(netip.Addr) bool
	// MaxBreadth is the Max-Breadth given to a request that arrives
	// without one (RFC 5393 §5.3); zero means 60.
	MaxBreadth int
	// FlowOpen reports whether the connection of a TCP, TLS, WS or WSS
	// flow is still open. A request for a device whose connection is
	// closed is not sent (flowfail.go). nil: every flow is taken as open.
	FlowOpen func(location.Flow) bool
	// Media, when set, relays the media of the calls its rules pick
	// through rtpengine (media.go, docs/media.md). nil: SDP is never
	// touched.
	Media *Media
	// Edge is this edge's id (cluster.edge_id) and Edges the internal
	// address of every other edge by id (edges.go, docs/cluster.md): a
	// binding another listed edge owns is reached through that edge.
	// Empty: one box alone, every binding is delivered here.
	Edge  string
	Edges map[string]netip.AddrPort
	// EdgeAddr is this edge's own address among the edges: hops leave
	// from the UDP listener on it, so that the owner sees them come from
	// the address it trusts as an edge. Invalid, or no listener on it:
	// the first UDP listener.
	EdgeAddr netip.AddrPort
}

// Oversize bounds requests sent to devices over UDP (RFC 3261 §18.1.1).
type Oversize struct {
	// Limit is the largest request sent over UDP as it is (MTU minus
	// headroom); zero: no limit.
	Limit int
	// Strip are header names removed first from a request over Limit.
	Strip []string
	// TCP sends a request still over Limit over TCP when the device is not
	// behind NAT (a NAT'd device cannot take a new connection).
	TCP bool
}

// listener is a Listener prepared for the per-request path.
type listener struct {
	Listener
	transport string   // "UDP", "TCP", ... as sipgo names networks
	laddr     sip.Addr // forced local socket for UDP (sipgo pool key)
}

// validate checks cfg and returns it with defaults applied.
func (cfg Config) validate() (Config, []listener, *sip.Uri, error) {
	if cfg.InviteTimeout == 0 {
		cfg.InviteTimeout = DefaultInviteTimeout
	}
	if cfg.InviteTimeout < 0 {
		return cfg, nil, nil, fmt.Errorf("invite_timeout %v: must be positive", cfg.InviteTimeout)
	}
	if cfg.MaxForwards == 0 {
		cfg.MaxForwards = DefaultMaxForwards
	}
	if cfg.MaxBreadth == 0 {
		cfg.MaxBreadth = DefaultMaxBreadth
	}
	if cfg.MaxBreadth < 1 {
		return cfg, nil, nil, fmt.Errorf("max_breadth %d: must be positive", cfg.MaxBreadth)
	}
	if cfg.MaxForwards < 1 || cfg.MaxForwards > 255 {
		return cfg, nil, nil, fmt.Errorf("max_forwards %d: want 1..255", cfg.MaxForwards)
	}
	if cfg.Forking > ForkSerial {
		return cfg, nil, nil, fmt.Errorf("forking %d: want parallel or serial", cfg.Forking)
	}
	for i, d := range cfg.Domains {
		if d == "" || strings.ContainsAny(d, " ;:@<>") {
			return cfg, nil, nil, fmt.Errorf("domains[%d] %q: not a domain name", i, d)
		}
	}
	if len(cfg.Listeners) == 0 {
		return cfg, nil, nil, errors.New("listeners: at least one is required")
	}
	ls := make([]listener, len(cfg.Listeners))
	for i, l := range cfg.Listeners {
		if l.Transport < location.TransportUDP || l.Transport > location.TransportWSS {
			return cfg, nil, nil, fmt.Errorf("listeners[%d].transport %d: unknown", i, l.Transport)
		}
		if !l.Local.IsValid() || l.Local.Port() == 0 {
			return cfg, nil, nil, fmt.Errorf("listeners[%d].local %v: want address:port", i, l.Local)
		}
		if l.Host == "" {
			if l.Local.Addr().IsUnspecified() {
				return cfg, nil, nil, fmt.Errorf("listeners[%d].host: required when local is %v", i, l.Local.Addr())
			}
			l.Host = l.Local.Addr().Unmap().String()
		}
		if l.Port == 0 {
			l.Port = int(l.Local.Port())
		}
		if l.Port < 1 || l.Port > 65535 {
			return cfg, nil, nil, fmt.Errorf("listeners[%d].port %d: want 1..65535", i, l.Port)
		}
		if l.Transport == location.TransportUDP && l.Local.Addr().IsUnspecified() {
			// sipgo picks the UDP socket by its exact local address.
			return cfg, nil, nil, fmt.Errorf("listeners[%d].local %v: UDP needs a concrete address", i, l.Local)
		}
		cfg.Listeners[i] = l
		ls[i] = listener{
			Listener:  l,
			transport: l.Transport.String(),
			laddr:     sip.Addr{IP: l.Local.Addr().AsSlice(), Port: int(l.Local.Port())},
		}
	}
	if cfg.Media != nil && cfg.Media.Relay == nil {
		return cfg, nil, nil, errors.New("media: a relay is required")
	}
	for id, a := range cfg.Edges {
		if id == "" || id == cfg.Edge || !a.IsValid() || a.Port() == 0 {
			return cfg, nil, nil, fmt.Errorf("edges[%q] %v: want another edge's id and address:port", id, a)
		}
	}
	if len(cfg.Edges) > 0 && cfg.Edge == "" {
		return cfg, nil, nil, errors.New("edges: this edge's id is required with them")
	}
	var outbound *sip.Uri
	if cfg.Outbound != "" {
		outbound = new(sip.Uri)
		if err := sip.ParseUri(cfg.Outbound, outbound); err != nil {
			return cfg, nil, nil, fmt.Errorf("outbound %q: %w", cfg.Outbound, err)
		}
		if outbound.Scheme != "sip" && outbound.Scheme != "sips" || outbound.Host == "" {
			return cfg, nil, nil, fmt.Errorf("outbound %q: want a sip: or sips: URI with a host", cfg.Outbound)
		}
	}
	return cfg, ls, outbound, nil
}
