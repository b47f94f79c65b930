package midreg

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/pinhole-sip/pinhole/internal/resolve"
)

// fakeDNS is a resolver cache whose answers a test sets.
type fakeDNS struct {
	mu  sync.Mutex
	ans map[string]*resolve.Answer
}

func (f *fakeDNS) Cached(d resolve.Dest) *resolve.Answer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ans[d.String()]
}

func (f *fakeDNS) Peek(d resolve.Dest) *resolve.Answer { return f.Cached(d) }

func (f *fakeDNS) set(d resolve.Dest, ts ...resolve.Target) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ans[d.String()] = &resolve.Answer{Targets: ts, Gen: 1}
}

var registrarName = resolve.Dest{Host: "registrar.example.net", Transport: "UDP"}

func namedFixture(t *testing.T, dns *fakeDNS) *fixture {
	t.Helper()
	return newFixture(t, func(c *Config) {
		c.Upstreams = []Upstream{{Name: registrarName, Transport: "UDP"}}
		c.DNS = dns
	})
}

// TestUpstreamByName: an upstream given by name is reached at the targets
// of its answer: one Call-ID always at the same node (a challenge's retry
// meets the node that issued its nonce), Call-IDs spread by SRV weight,
// the next target when one fails, and a 503 while the name has no answer.
func TestUpstreamByName(t *testing.T) {
	dns := &fakeDNS{ans: map[string]*resolve.Answer{}}
	f := namedFixture(t, dns)

	expectStatus(t, f.register("c-none", 1, deviceFlow, contactLine(dev)), 503)

	dns.set(registrarName,
		resolve.Target{Addr: up1, Transport: "UDP", Weight: 80},
		resolve.Target{Addr: up2, Transport: "UDP", Weight: 20},
		resolve.Target{Addr: netip.MustParseAddrPort("10.0.0.9:5060"), Transport: "TCP", Weight: 100})
	for cseq := 1; cseq <= 5; cseq++ {
		// ModeContact absorbs refreshes: a new contact each time is relayed.
		expectStatus(t, f.register("c-sticky", cseq, deviceFlow, contactLine(fmt.Sprintf("sip:alice@192.168.1.2:%d", 5060+cseq))), 200)
	}
	first := f.up.to[len(f.up.to)-5]
	for _, to := range f.up.to[len(f.up.to)-5:] {
		if to != first {
			t.Fatalf("one Call-ID reached %v: want one node", f.up.to[len(f.up.to)-5:])
		}
	}

	byNode := map[string]int{}
	for i := range 200 {
		n := f.up.count()
		expectStatus(t, f.register(fmt.Sprintf("c-%d", i), 1, deviceFlow, contactLine(dev)), 200)
		if f.up.count() != n+1 {
			t.Fatalf("REGISTER %d was sent %d times", i, f.up.count()-n)
		}
		byNode[f.up.to[len(f.up.to)-1]]++
	}
	if byNode["10.0.0.9:5060"] != 0 {
		t.Errorf("a TCP target was used for a UDP upstream: %v", byNode)
	}
	if got := byNode[up1.String()]; got < 140 || got > 180 {
		t.Errorf("weight 80 of 100 took %d of 200 Call-IDs: %v", got, byNode)
	}

	f.up.mu.Lock()
	f.up.down[up1.String()] = true
	f.up.down[up2.String()] = false
	f.up.mu.Unlock()
	callID := ""
	for i := 0; callID == ""; i++ {
		if k := fmt.Sprintf("c-failover-%d", i); f.m.targets(0, k)[0] == up1 {
			callID = k
		}
	}
	n := f.up.count()
	expectStatus(t, f.register(callID, 1, deviceFlow, contactLine(dev)), 200)
	if got := f.up.to[n:]; len(got) != 2 || got[0] != up1.String() || got[1] != up2.String() {
		t.Errorf("with %s down the REGISTER went to %v, want %s then %s", up1, got, up1, up2)
	}

	if !f.m.IsUpstream(up2.Addr()) || f.m.IsUpstream(netip.MustParseAddr("10.0.0.77")) {
		t.Error("IsUpstream does not follow the answer")
	}
}
