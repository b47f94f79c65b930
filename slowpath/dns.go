package slowpath

import (
	"context"
	"fmt"
	"sync"

	"github.com/pinhole-sip/pinhole/internal/resolve"
)

// dnsResolver is the one resolver of the process (docs/dns.md), made when
// the first configured name needs it: a configuration without names never
// reads /etc/resolv.conf.
type dnsResolver struct {
	mu  sync.Mutex
	res *resolve.Resolver
}

// resolver returns the resolver, creating it from the dns section.
func (s *Server) resolver() (*resolve.Resolver, error) {
	s.dns.mu.Lock()
	defer s.dns.mu.Unlock()
	if s.dns.res != nil {
		return s.dns.res, nil
	}
	c := s.cfg.DNS
	var transports []string
	for _, l := range s.cfg.Listen.Listeners() {
		switch l.Transport {
		case resolve.UDP, resolve.TCP, resolve.TLS:
			transports = append(transports, l.Transport)
		}
	}
	res, err := resolve.New(resolve.Config{
		Servers: c.Servers, Timeout: c.Timeout,
		MinTTL: c.MinTTL, MaxTTL: c.MaxTTL, NegativeTTL: c.NegativeTTL,
		IPv6: c.IPv6, Transports: transports,
	})
	if err != nil {
		return nil, fmt.Errorf("set up dns: %w", err)
	}
	s.dns.res = res
	return res, nil
}

// warm resolves names before the configuration that names them serves
// its first request, all at once, each bounded by the resolver's own
// timeouts. A name that does not resolve is logged and left to the
// refresher: the set routes over its other destinations meanwhile.
func (s *Server) warm(res *resolve.Resolver, names []resolve.Dest) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*s.cfg.DNS.Timeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, d := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := res.Lookup(ctx, d); err != nil {
				s.log.Warn("destination does not resolve yet; retrying in the background", "destination", d.String(), "error", err)
			}
		}()
	}
	wg.Wait()
}

// closeDNS stops the resolver's refresher.
func (s *Server) closeDNS() {
	s.dns.mu.Lock()
	defer s.dns.mu.Unlock()
	if s.dns.res != nil {
		s.dns.res.Close()
		s.dns.res = nil
	}
}
