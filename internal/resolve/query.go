package resolve

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// exchanger sends one query and returns the response of the first server
// that gave one.
type exchanger interface {
	exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error)
}

// dnsClient asks the servers in order: a server that times out or fails is
// followed by the next. A truncated UDP answer is asked again over TCP
// (RFC 1035 §4.2.1), which long SRV sets need.
type dnsClient struct {
	servers []string
	timeout time.Duration
}

func (c *dnsClient) exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	var errs []error
	for _, s := range c.servers {
		udp := &dns.Client{Net: "udp", Timeout: c.timeout}
		in, _, err := udp.ExchangeContext(ctx, m, s)
		if err == nil && in.Truncated {
			tcp := &dns.Client{Net: "tcp", Timeout: c.timeout}
			in, _, err = tcp.ExchangeContext(ctx, m, s)
		}
		if err == nil && (in.Rcode == dns.RcodeSuccess || in.Rcode == dns.RcodeNameError) {
			return in, nil
		}
		if err == nil {
			err = fmt.Errorf("%s answered %s", s, dns.RcodeToString[in.Rcode])
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// result of one query: the records of the type asked, the additional
// section, and the smallest TTL among them (or the SOA minimum of a
// negative answer).
type result struct {
	answer     []dns.RR
	additional []dns.RR
	ttl        uint32
}

// query asks one question. NXDOMAIN and an empty answer are results with
// no records; a timeout, SERVFAIL or REFUSED from every server is an error.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (result, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	in, err := r.ask.exchange(ctx, m)
	typ := dns.TypeToString[qtype]
	if err != nil {
		if ctx.Err() != nil || isTimeout(err) {
			lookupCounter(typ, "timeout").Inc()
		} else {
			lookupCounter(typ, "error").Inc()
		}
		return result{}, fmt.Errorf("%s %s: %w", typ, name, err)
	}
	res := result{ttl: math.MaxUint32}
	for _, rr := range in.Answer {
		if rr.Header().Rrtype == qtype {
			res.answer = append(res.answer, rr)
			res.ttl = min(res.ttl, rr.Header().Ttl)
		}
	}
	res.additional = in.Extra
	switch {
	case in.Rcode == dns.RcodeNameError:
		lookupCounter(typ, "nxdomain").Inc()
	case len(res.answer) == 0:
		lookupCounter(typ, "nodata").Inc()
	default:
		lookupCounter(typ, "ok").Inc()
	}
	if len(res.answer) == 0 {
		res.ttl = 0 // the caller uses the negative TTL
	}
	return res, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// resolve runs RFC 3263 §4 for d and returns its targets, sorted, with the
// TTL to keep them for. Any failed query fails the whole resolution, so a
// half answer never replaces a whole one.
func (r *Resolver) resolve(ctx context.Context, d Dest) ([]Target, time.Duration, error) {
	if a, ok := literal(d); ok {
		return a.Targets, r.cfg.MaxTTL, nil
	}
	var ts []Target
	ttl := uint32(math.MaxUint32)
	var err error
	switch {
	case d.Port != 0:
		// §4.2: a port is given: A/AAAA only.
		ts, ttl, err = r.addresses(ctx, d.Host, d.Port, d.defaultTransport(), 0, 1, ttl)
	case d.Transport != "":
		// §4.2: a transport but no port: SRV for it, else A/AAAA.
		ts, ttl, err = r.srv(ctx, srvName(d.Transport, d.Host), d.Transport, ttl)
		if err == nil && len(ts) == 0 {
			ts, ttl, err = r.addresses(ctx, d.Host, defaultPort(d.Transport), d.Transport, 0, 1, ttl)
		}
	default:
		ts, ttl, err = r.naptr(ctx, d, ttl)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("resolve %s: %w", d, err)
	}
	slices.SortFunc(ts, compareTargets)
	ts = slices.CompactFunc(ts, func(a, b Target) bool { return a.Addr == b.Addr && a.Transport == b.Transport })
	return ts, r.ttl(ttl, len(ts) == 0), nil
}

// naptrServices maps the NAPTR services of RFC 3263 §4.1 to transports.
var naptrServices = map[string]string{
	"sip+d2u":  UDP,
	"sip+d2t":  TCP,
	"sips+d2t": TLS,
}

// naptr is §4.1 with no transport and no port: NAPTR records for a
// transport pinhole can use, in order and preference, each followed to
// SRV; without any, SRV of each transport in pinhole's preference; without
// any, A/AAAA on the default port.
func (r *Resolver) naptr(ctx context.Context, d Dest, ttl uint32) ([]Target, uint32, error) {
	res, err := r.query(ctx, d.Host, dns.TypeNAPTR)
	if err != nil {
		return nil, 0, err
	}
	var recs []*dns.NAPTR
	for _, rr := range res.answer {
		n := rr.(*dns.NAPTR)
		tr, ok := naptrServices[strings.ToLower(n.Service)]
		if !ok || !strings.EqualFold(n.Flags, "s") || !r.usable(tr, d.Secure) {
			continue
		}
		recs = append(recs, n)
	}
	if len(recs) > 0 {
		ttl = min(ttl, res.ttl)
	}
	slices.SortStableFunc(recs, func(a, b *dns.NAPTR) int {
		return cmp.Or(cmp.Compare(a.Order, b.Order), cmp.Compare(a.Preference, b.Preference))
	})
	for _, n := range recs {
		ts, t, err := r.srv(ctx, n.Replacement, naptrServices[strings.ToLower(n.Service)], ttl)
		if err != nil {
			return nil, 0, err
		}
		if len(ts) > 0 {
			return ts, t, nil
		}
	}
	for _, tr := range r.cfg.Transports {
		if !r.usable(tr, d.Secure) {
			continue
		}
		ts, t, err := r.srv(ctx, srvName(tr, d.Host), tr, ttl)
		if err != nil {
			return nil, 0, err
		}
		if len(ts) > 0 {
			return ts, t, nil
		}
	}
	tr := d.defaultTransport()
	return r.addresses(ctx, d.Host, defaultPort(tr), tr, 0, 1, ttl)
}

// usable reports whether pinhole sends on tr, and tr is TLS for sips.
func (r *Resolver) usable(tr string, secure bool) bool {
	return slices.Contains(r.cfg.Transports, tr) && (!secure || tr == TLS)
}

func srvName(transport, host string) string {
	switch transport {
	case TCP:
		return "_sip._tcp." + host
	case TLS:
		return "_sips._tcp." + host
	}
	return "_sip._udp." + host
}

// srv looks up an SRV name and the addresses of its targets (from the
// additional section when the server sent them, RFC 2782 "the
// Additional Data section", else with A/AAAA queries).
func (r *Resolver) srv(ctx context.Context, name, transport string, ttl uint32) ([]Target, uint32, error) {
	res, err := r.query(ctx, name, dns.TypeSRV)
	if err != nil {
		return nil, 0, err
	}
	if len(res.answer) == 0 {
		return nil, ttl, nil
	}
	ttl = min(ttl, res.ttl)
	var out []Target
	for _, rr := range res.answer {
		s := rr.(*dns.SRV)
		if s.Target == "." {
			// RFC 2782: "the service is decidedly not available".
			continue
		}
		if ts, t, ok := r.glue(res.additional, s, transport); ok {
			out = append(out, ts...)
			ttl = min(ttl, t)
			continue
		}
		ts, t, err := r.addresses(ctx, s.Target, s.Port, transport, s.Priority, s.Weight, ttl)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, ts...)
		ttl = t
	}
	return out, ttl, nil
}

// glue returns the addresses of an SRV target given in the additional
// section.
func (r *Resolver) glue(extra []dns.RR, s *dns.SRV, transport string) ([]Target, uint32, bool) {
	var out []Target
	ttl := uint32(math.MaxUint32)
	for _, rr := range extra {
		if !strings.EqualFold(rr.Header().Name, s.Target) {
			continue
		}
		var a netip.Addr
		switch v := rr.(type) {
		case *dns.A:
			a, _ = netip.AddrFromSlice(v.A.To4())
		case *dns.AAAA:
			if !r.cfg.IPv6 {
				continue
			}
			a, _ = netip.AddrFromSlice(v.AAAA)
		default:
			continue
		}
		if !a.IsValid() || a.IsUnspecified() {
			continue
		}
		out = append(out, Target{Addr: netip.AddrPortFrom(a.Unmap(), s.Port), Transport: transport, Priority: s.Priority, Weight: s.Weight})
		ttl = min(ttl, rr.Header().Ttl)
	}
	return out, ttl, len(out) > 0
}

// addresses looks up A (and AAAA when configured) for host.
func (r *Resolver) addresses(ctx context.Context, host string, port uint16, transport string, prio, weight uint16, ttl uint32) ([]Target, uint32, error) {
	types := []uint16{dns.TypeA}
	if r.cfg.IPv6 {
		types = append(types, dns.TypeAAAA)
	}
	var out []Target
	for _, qt := range types {
		res, err := r.query(ctx, host, qt)
		if err != nil {
			return nil, 0, err
		}
		for _, rr := range res.answer {
			var a netip.Addr
			switch v := rr.(type) {
			case *dns.A:
				a, _ = netip.AddrFromSlice(v.A.To4())
			case *dns.AAAA:
				a, _ = netip.AddrFromSlice(v.AAAA)
			}
			if !a.IsValid() || a.IsUnspecified() {
				continue
			}
			out = append(out, Target{Addr: netip.AddrPortFrom(a.Unmap(), port), Transport: transport, Priority: prio, Weight: weight})
		}
		if len(res.answer) > 0 {
			ttl = min(ttl, res.ttl)
		}
	}
	return out, ttl, nil
}

// nameServers returns cfg.Servers with a port, or resolv.conf's.
func nameServers(cfg Config) ([]string, error) {
	var out []string
	for _, s := range cfg.Servers {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			out = append(out, ap.String())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("dns: server %q: want IP or IP:port", s)
		}
		out = append(out, netip.AddrPortFrom(a, 53).String())
	}
	if len(out) > 0 {
		return out, nil
	}
	path := cmp.Or(cfg.ResolvConf, "/etc/resolv.conf")
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("dns: read name servers: %w", err)
	}
	for _, s := range cc.Servers {
		out = append(out, net.JoinHostPort(s, cc.Port))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("dns: %s names no name server", path)
	}
	return out, nil
}
