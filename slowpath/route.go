package slowpath

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/internal/resolve"
	"github.com/pinhole-sip/pinhole/slowpath/auth"
	"github.com/pinhole-sip/pinhole/slowpath/dispatch"
	"github.com/pinhole-sip/pinhole/slowpath/midreg"
	"github.com/pinhole-sip/pinhole/slowpath/proxy"
	"github.com/pinhole-sip/pinhole/slowpath/registrar"
	"github.com/pinhole-sip/pinhole/slowpath/trust"
)

// routeRequests hands every method but REGISTER to the proxy, through
// handleProxy so that a reload can swap it (ops.go).
func (s *Server) routeRequests() error {
	if err := s.startMedia(); err != nil {
		return err
	}
	p, farm, err := s.buildProxy(s.cfg.Dispatch)
	if err != nil {
		return err
	}
	s.ops.proxy.Store(p)
	s.ops.farm.Store(farm)
	for _, m := range proxy.Methods {
		s.srv.OnRequest(m, s.observe(m, s.handleProxy))
	}
	if farm != nil && farm.RegisterSet() != nil {
		// Edge relay (docs/dispatch.md): the farm is the registrar and
		// pinhole keeps no binding. Configuration refuses this together
		// with the mid-registrar, so nothing else wants REGISTER.
		s.srv.OnRegister(s.observe(sip.REGISTER, s.handleProxy))
	}
	return nil
}

// buildProxy builds the proxy and, when dc has sets, the dispatcher it
// relays to (nil otherwise).
func (s *Server) buildProxy(dc config.Dispatch) (*proxy.Proxy, *dispatch.Dispatcher, error) {
	forking, err := proxy.ParseForking(s.cfg.Proxy.Forking)
	if err != nil {
		return nil, nil, fmt.Errorf("proxy.forking: %w", err)
	}
	var ls []proxy.Listener
	for _, l := range s.cfg.Listen.Listeners() {
		tr, err := location.ParseTransport(l.Transport)
		if err != nil {
			return nil, nil, err
		}
		ls = append(ls, proxy.Listener{Transport: tr, Local: l.Addr, Host: s.cfg.Advertise.Host, Port: s.cfg.Advertise.Port})
	}
	trusted, err := trustList(s.cfg)
	if err != nil {
		return nil, nil, err
	}
	var authz proxy.Authorizer
	if s.authOn {
		authn := s.ops.authn.Load // the current one: a reload swaps it
		authz = proxy.AuthorizerFunc(func(r *sip.Request) proxy.Verdict {
			res := authn().Check(r, false)
			if res.Status == 403 {
				// Wrong credentials on INVITE or MESSAGE guess passwords
				// as well as on REGISTER: the same ban counts them. A 407
				// challenge is the first step of every honest call and
				// is not counted.
				s.authFailed(r)
			}
			return proxy.Verdict(res)
		})
	}
	var farm *dispatch.Dispatcher
	if dc.Enabled() {
		fc, err := dispatch.FromConfig(dc)
		if err != nil {
			return nil, nil, err
		}
		if names := fc.Names(); len(names) > 0 {
			res, err := s.resolver()
			if err != nil {
				return nil, nil, err
			}
			s.warm(res, names)
			fc.DNS = res
		}
		if farm, err = dispatch.New(fc); err != nil {
			return nil, nil, fmt.Errorf("set up dispatch: %w", err)
		}
	}
	outDNS, err := s.outboundResolver()
	if err != nil {
		if farm != nil {
			farm.Close()
		}
		return nil, nil, err
	}
	p, err := proxy.New(proxy.Config{
		Domains:        s.cfg.Domains,
		Listeners:      ls,
		Forking:        forking,
		Outbound:       s.cfg.Proxy.Outbound,
		OutboundDNS:    outDNS,
		Farm:           farm,
		TopologyHiding: dc.TopologyHiding,
		Keys:           s.keys,
		Trusted:        trusted,
		Peers:          s.upstreamPeer(),
		MaxBreadth:     s.cfg.Proxy.MaxBreadth,
		FlowOpen:       s.flowOpen,
		Media:          s.proxyMedia(),
		Edge:           s.cfg.Cluster.EdgeID,
		Edges:          otherEdges(s.cfg.Cluster),
		EdgeAddr:       edgeAddr(s.cfg.Cluster),
		Oversize: proxy.Oversize{
			Limit: dispatch.Limit(dc.Oversize),
			Strip: dc.Oversize.StripHeaders,
			TCP:   dc.Oversize.TCP,
		},
	}, s.cli, locator{store: s.store, authn: s.ops.authn.Load, mid: s.mid}, authz, s.log.With("component", "proxy"))
	if err != nil {
		if farm != nil {
			farm.Close()
		}
		return nil, nil, fmt.Errorf("set up proxy: %w", err)
	}
	return p, farm, nil
}

// outboundResolver returns the resolver when proxy.outbound names its
// host by DNS name, after resolving it; nil otherwise. The name is then
// resolved by RFC 3263 from the cache, not by sipgo per request.
func (s *Server) outboundResolver() (proxy.Resolver, error) {
	if s.cfg.Proxy.Outbound == "" {
		return nil, nil
	}
	var u sip.Uri
	if err := sip.ParseUri(s.cfg.Proxy.Outbound, &u); err != nil {
		return nil, fmt.Errorf("proxy.outbound: %w", err)
	}
	d, ok := proxy.OutboundName(&u)
	if !ok {
		return nil, nil
	}
	res, err := s.resolver()
	if err != nil {
		return nil, err
	}
	s.warm(res, []resolve.Dest{d})
	return res, nil
}

// upstreamPeer believes the mid-registrar's upstreams given by name at
// the addresses they resolve to now; nil without a mid-registrar.
func (s *Server) upstreamPeer() func(netip.Addr) bool {
	if s.mid == nil {
		return nil
	}
	return s.mid.IsUpstream
}

// locator answers the proxy's look-ups from the store, and tells an
// unknown user (404) from a known one without contacts (480) by the
// credentials file; without one, only a user with bindings is known.
type locator struct {
	store location.Store
	authn func() *auth.Authenticator // the current one (nil: no auth); a reload swaps it
	mid   *midreg.MidRegistrar       // nil: no mid-registrar
}

// Lookup resolves first a contact or Path the mid-registrar inserted
// upstream (the main side's requests name its token), then the store.
func (l locator) Lookup(aor string) []location.Binding {
	if l.mid != nil {
		if bs, ok := l.mid.Resolve(aor); ok {
			return bs
		}
	}
	return l.store.Lookup(aor)
}

func (l locator) Known(aor string) bool {
	if l.mid != nil {
		if _, ok := l.mid.Resolve(aor); ok {
			return true // a token pinhole inserted: its device is gone for now (480)
		}
	}
	a := l.authn()
	if a == nil {
		return len(l.store.Lookup(aor)) > 0
	}
	return a.Knows(aor) // in the realm of aor's domain: users are per domain
}

// newMidRegistrar builds the mid-registrar from the configuration: the
// registrar section's bounds are what devices are granted, and requests
// to an upstream leave from the first listener of its transport.
// Upstreams given by name are resolved before it is built (dns.go).
func (s *Server) newMidRegistrar() (*midreg.MidRegistrar, error) {
	cfg := s.cfg
	mc := cfg.MidRegistrar
	mode, err := midreg.ParseMode(mc.Mode)
	if err != nil {
		return nil, fmt.Errorf("midregistrar.mode: %w", err)
	}
	ins, err := midreg.ParseInsertion(mc.Insertion)
	if err != nil {
		return nil, fmt.Errorf("midregistrar.insertion: %w", err)
	}
	trusted, err := trustList(cfg)
	if err != nil {
		return nil, err
	}
	c := midreg.Config{
		Mode: mode, Insertion: ins,
		OutgoingExpires: mc.OutgoingExpires, RenewalMargin: mc.RenewalMargin,
		Timeout: mc.Timeout, RetryAfter: mc.RetryAfter,
		Registrar: registrar.Config{
			Domains:        cfg.Domains,
			MinExpires:     cfg.Registrar.MinExpires,
			MaxExpires:     cfg.Registrar.MaxExpires,
			DefaultExpires: cfg.Registrar.DefaultExpires,
			MaxContacts:    cfg.Registrar.MaxContacts,
			Settle:         s.settle, // the fast path's absorbed refreshes first
			Trusted:        trusted,
			Edge:           cfg.Cluster.EdgeID,
		},
	}
	var names []resolve.Dest
	for _, u := range mc.Upstreams {
		up := midreg.Upstream{Transport: strings.ToUpper(u.Transport)}
		if ap, err := netip.ParseAddrPort(u.Addr); err == nil {
			up.Addr = ap
		} else {
			d, err := resolve.ParseHostPort(u.Addr)
			if err != nil {
				return nil, fmt.Errorf("midregistrar.upstreams: %w", err)
			}
			d.Transport = up.Transport
			up.Name = d
			names = append(names, d)
		}
		c.Upstreams = append(c.Upstreams, up)
	}
	if len(names) > 0 {
		res, err := s.resolver()
		if err != nil {
			return nil, err
		}
		s.warm(res, names)
		c.DNS = res
	}
	for _, l := range cfg.Listen.Listeners() {
		if l.Transport != "UDP" && l.Transport != "TCP" {
			continue
		}
		ml := midreg.Listener{Transport: l.Transport, Local: l.Addr, Host: cfg.Advertise.Host, Port: cfg.Advertise.Port}
		if ml.Host == "" {
			ml.Host = l.Addr.Addr().Unmap().String()
		}
		if ml.Port == 0 {
			ml.Port = int(l.Addr.Port())
		}
		c.Listeners = append(c.Listeners, ml)
	}
	m, err := midreg.New(c)
	if err != nil {
		return nil, fmt.Errorf("set up mid-registrar: %w", err)
	}
	return m, nil
}

// trustList is the configured peers plus the main registrars the
// mid-registrar relays to: they are peers by construction. Farm nodes the
// proxy asks its dispatcher about, which a reload may change, and
// upstreams given by name the mid-registrar (their addresses follow DNS).
func trustList(cfg *config.Config) (*trust.List, error) {
	l, err := trust.Parse(cfg.Trust.Peers)
	if err != nil {
		return nil, fmt.Errorf("trust.peers: %w", err)
	}
	var ups []netip.Prefix
	for _, u := range cfg.MidRegistrar.Upstreams {
		if ap, err := netip.ParseAddrPort(u.Addr); err == nil {
			ups = append(ups, netip.PrefixFrom(ap.Addr(), ap.Addr().BitLen()))
		}
	}
	return l.With(append(ups, edgePeers(cfg.Cluster)...)...), nil
}
