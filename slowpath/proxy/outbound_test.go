package proxy

import (
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/resolve"
)

// fakeDNS is a resolver cache whose answer a test sets.
type fakeDNS struct {
	mu  sync.Mutex
	ans *resolve.Answer
	key string
}

func (f *fakeDNS) Cached(d resolve.Dest) *resolve.Answer {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.key = d.String()
	return f.ans
}

func (f *fakeDNS) set(ts ...resolve.Target) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ans = &resolve.Answer{Targets: ts, Gen: 1}
}

// TestOutboundByName: a foreign-domain request goes to the outbound proxy
// at an address of its name's cached answer, lowest SRV priority first,
// follows a new answer, and gets 503 while the name has no address.
func TestOutboundByName(t *testing.T) {
	dns := &fakeDNS{}
	tp := startProxy(t, func(c *Config) {
		c.Outbound = "sip:outbound.example.net"
		c.OutboundDNS = dns
	})
	a := newDevice(t, "a", "sip:a@127.0.0.1", answer(0))
	b := newDevice(t, "b", "sip:b@127.0.0.1", answer(0))
	caller := newDevice(t, "alice", "sip:alice@127.0.0.1", nil)

	call := func() []int {
		_, tx := caller.invite(tp, "sip:bob@foreign.test")
		return codes(responses(t, tx))
	}

	if got := call(); got[len(got)-1] != 503 {
		t.Errorf("without an answer: %v, want 503", got)
	}
	dns.set(
		resolve.Target{Addr: a.addr, Transport: "UDP", Priority: 0, Weight: 10},
		resolve.Target{Addr: b.addr, Transport: "UDP", Priority: 1, Weight: 10})
	if got := call(); got[len(got)-1] != 200 {
		t.Fatalf("with an answer: %v, want 200", got)
	}
	if req := a.expect(sip.INVITE); req.Recipient.Host != "foreign.test" {
		t.Errorf("the outbound proxy got Request-URI %s: it must be kept", req.Recipient.String())
	}
	b.quiet(sip.INVITE, 100*time.Millisecond)
	dns.mu.Lock()
	if dns.key != "sip:outbound.example.net" {
		t.Errorf("asked the cache for %q", dns.key)
	}
	dns.mu.Unlock()

	dns.set(resolve.Target{Addr: b.addr, Transport: "UDP", Weight: 10})
	if got := call(); got[len(got)-1] != 200 {
		t.Fatalf("after the answer changed: %v, want 200", got)
	}
	b.expect(sip.INVITE)
}

func TestOutboundName(t *testing.T) {
	for _, tc := range []struct {
		uri  string
		want string // "" for not a name
	}{
		{"sip:outbound.example.net", "sip:outbound.example.net"},
		{"sips:Outbound.Example.NET:5071", "sips:outbound.example.net:5071"},
		{"sip:outbound.example.net;transport=tcp", "sip:outbound.example.net;transport=tcp"},
		{"sip:10.0.0.1:5060", ""},
		{"sip:[2001:db8::1]:5060", ""},
		{"sip:outbound.example.net;transport=sctp", ""},
	} {
		var u sip.Uri
		if err := sip.ParseUri(tc.uri, &u); err != nil {
			t.Fatal(err)
		}
		d, ok := OutboundName(&u)
		got := ""
		if ok {
			got = d.String()
		}
		if got != tc.want {
			t.Errorf("%s: %q, want %q", tc.uri, got, tc.want)
		}
	}
}

// TestOutboundFailover: RFC 3263 §4.3: a 503 from one address of the
// outbound proxy's name moves the request to the next; a busy 486 is the
// outbound proxy's answer and goes back to the caller.
func TestOutboundFailover(t *testing.T) {
	dns := &fakeDNS{}
	tp := startProxy(t, func(c *Config) {
		c.Outbound = "sip:outbound.example.net"
		c.OutboundDNS = dns
	})
	overloaded := newDevice(t, "overloaded", "sip:o@127.0.0.1", func(d *device, req *sip.Request, tx sip.ServerTransaction) {
		d.respond(req, tx, 503, "Service Unavailable")
	})
	spare := newDevice(t, "spare", "sip:s@127.0.0.1", answer(0))
	caller := newDevice(t, "alice", "sip:alice@127.0.0.1", nil)
	dns.set(
		resolve.Target{Addr: overloaded.addr, Transport: "UDP", Priority: 0, Weight: 10},
		resolve.Target{Addr: spare.addr, Transport: "UDP", Priority: 1, Weight: 10})
	_, tx := caller.invite(tp, "sip:bob@foreign.test")
	if got := codes(responses(t, tx)); got[len(got)-1] != 200 {
		t.Fatalf("with the first address answering 503: %v, want 200 from the next", got)
	}
	overloaded.expect(sip.INVITE)
	spare.expect(sip.INVITE)

	busyOne := newDevice(t, "busy", "sip:b@127.0.0.1", busy)
	dns.set(
		resolve.Target{Addr: busyOne.addr, Transport: "UDP", Priority: 0, Weight: 10},
		resolve.Target{Addr: spare.addr, Transport: "UDP", Priority: 1, Weight: 10})
	_, tx = caller.invite(tp, "sip:bob@foreign.test")
	if got := codes(responses(t, tx)); got[len(got)-1] != 486 {
		t.Fatalf("with the first address busy: %v, want its 486", got)
	}
	busyOne.expect(sip.INVITE)
	spare.quiet(sip.INVITE, 200*time.Millisecond)
}
