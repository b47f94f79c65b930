package resolve

import (
	"context"
	"testing"

	"github.com/miekg/dns"
)

// replay answers every query with one message read from fuzz input, with
// the question and ID of the query: what a hostile or broken name server
// could send.
type replay struct{ wire []byte }

func (r replay) exchange(_ context.Context, m *dns.Msg) (*dns.Msg, error) {
	in := new(dns.Msg)
	if err := in.Unpack(r.wire); err != nil {
		return nil, err
	}
	in.Id = m.Id
	in.Question = m.Question
	return in, nil
}

// FuzzResolve: whatever records a name server sends (any types in any
// section, odd NAPTR services, SRV targets of ".", glue for other names),
// resolution neither panics nor returns a target without an address and
// a transport pinhole sends on.
func FuzzResolve(f *testing.F) {
	seed := func(rrs ...string) {
		m := new(dns.Msg)
		m.SetQuestion("f.test.", dns.TypeNAPTR)
		for _, s := range rrs {
			rr, err := dns.NewRR(s)
			if err != nil {
				f.Fatal(err)
			}
			m.Answer = append(m.Answer, rr)
			m.Extra = append(m.Extra, rr)
		}
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(`f.test. 60 IN NAPTR 10 10 "s" "SIP+D2U" "" _sip._udp.f.test.`, `_sip._udp.f.test. 60 IN SRV 0 5 5060 a.f.test.`, `a.f.test. 60 IN A 10.0.0.1`)
	seed(`_sip._udp.f.test. 60 IN SRV 0 0 0 .`, `f.test. 60 IN AAAA 2001:db8::1`, `f.test. 60 IN CNAME g.test.`)
	seed(`f.test. 60 IN NAPTR 1 1 "S" "SIPS+D2T" "" _sips._tcp.f.test.`, `_sips._tcp.f.test. 60 IN SRV 1 1 5061 f.test.`, `f.test. 0 IN A 0.0.0.0`)
	f.Fuzz(func(t *testing.T, wire []byte) {
		r := &Resolver{cfg: Config{MinTTL: DefaultMinTTL, MaxTTL: DefaultMaxTTL, NegativeTTL: DefaultNegativeTTL, Transports: []string{UDP, TCP, TLS}, IPv6: true}, ask: replay{wire}}
		for _, uri := range []string{"sip:f.test", "sips:f.test", "sip:f.test;transport=tcp", "sip:f.test:5070"} {
			d, err := ParseURI(uri)
			if err != nil {
				t.Fatal(err)
			}
			ts, ttl, err := r.resolve(context.Background(), d)
			if err != nil {
				continue
			}
			if ttl < r.cfg.MinTTL && len(ts) > 0 {
				t.Fatalf("%s: TTL %s below min_ttl", uri, ttl)
			}
			for _, tg := range ts {
				if !tg.Addr.IsValid() || tg.Addr.Addr().IsUnspecified() || !r.usable(tg.Transport, false) {
					t.Fatalf("%s: target %+v", uri, tg)
				}
			}
		}
	})
}
