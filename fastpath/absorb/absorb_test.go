package absorb

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/internal/scan"
	"github.com/pinhole-sip/pinhole/slowpath/registrar"
)

var (
	lim    = scan.Limits{MaxMessageBytes: 4096, MaxHeaders: 64}
	local  = netip.MustParseAddrPort("192.0.2.1:5060")
	remote = netip.MustParseAddrPort("198.51.100.7:40021")
	flow   = location.Flow{Transport: location.TransportUDP, Remote: remote, Local: local}
)

// refresh is a device's REGISTER with a fixed-width CSeq, so that a
// benchmark can count it up in place.
func refresh(cseq int) []byte {
	return []byte("REGISTER sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK-" + fmt.Sprintf("%010d", cseq) + ";rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:alice@example.com>\r\n" +
		"Call-ID: c1@device\r\nCSeq: " + fmt.Sprintf("%010d", cseq) + " REGISTER\r\n" +
		"Contact: <sip:alice@10.0.0.2:5060;ob>;+sip.instance=\"<urn:uuid:1>\"\r\n" +
		"Expires: 600\r\nUser-Agent: test\r\nContent-Length: 0\r\n\r\n")
}

// fixture is a store, a registrar over it (the slow path's rules) and a
// cache filled from the registrar's answers.
type fixture struct {
	store *location.Memory
	reg   *registrar.Registrar
	cache *Cache
}

func newFixture(tb testing.TB, opt Options) *fixture {
	tb.Helper()
	store, err := location.Open(location.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	opt.Store = store
	if opt.MaxEntries == 0 {
		opt.MaxEntries = 1000
	}
	c, err := New(opt)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	reg, err := registrar.New(registrar.Config{Domains: []string{"example.com"}, MinExpires: 60, MaxExpires: 3600, DefaultExpires: 600, MaxContacts: 5}, store, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return &fixture{store: store, reg: reg, cache: c}
}

// slow answers data as the slow path would and fills the cache.
func (f *fixture) slow(tb testing.TB, data []byte) *sip.Response {
	tb.Helper()
	_, res := f.slowReq(tb, data)
	return res
}

func (f *fixture) slowReq(tb testing.TB, data []byte) (*sip.Request, *sip.Response) {
	tb.Helper()
	req, err := sip.NewParser().ParseSIP(data)
	if err != nil {
		tb.Fatal(err)
	}
	r := req.(*sip.Request)
	r.SetSource(remote.String())
	r.SetTransport("UDP")
	res := f.reg.Process(r, flow)
	f.cache.Fill(r, res, flow)
	f.cache.Wait()
	return r, res
}

func TestAbsorbMovesTheBinding(t *testing.T) {
	f := newFixture(t, Options{})
	if res := f.slow(t, refresh(1)); res.StatusCode != 200 {
		t.Fatalf("slow path answered %d", res.StatusCode)
	}
	l := f.cache.NewLoop()
	now := time.Now()
	reply, d := l.Absorb(refresh(2), lim, local, remote, now)
	if d != Absorbed {
		t.Fatalf("declined: %v", d)
	}
	for _, want := range []string{
		"SIP/2.0 200 OK\r\n",
		"Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK-0000000002;rport=40021;received=198.51.100.7\r\n",
		"CSeq: 2 REGISTER\r\n",
		"Contact: <sip:alice@10.0.0.2:5060;ob>;expires=600;+sip.instance=\"<urn:uuid:1>\"\r\n",
	} {
		if !strings.Contains(string(reply), want) {
			t.Errorf("reply lacks %q:\n%s", want, reply)
		}
	}
	// The same CSeq again is the retransmission only with the same branch.
	if _, d := l.Absorb(refresh(2), lim, local, remote, now); d != Absorbed {
		t.Errorf("retransmission declined: %v", d)
	}
	other := refresh(1)
	if _, d := l.Absorb(other, lim, local, remote, now); d != Order {
		t.Errorf("lower CSeq: %v, want order", d)
	}
	if _, d := l.Absorb(refresh(3), lim, local, netip.MustParseAddrPort("198.51.100.7:40022"), now); d != Flow {
		t.Errorf("other source port: %v, want flow", d)
	}
	f.cache.Flush()
	bs := f.store.Lookup("alice@example.com")
	if len(bs) != 1 || bs[0].CSeq != 2 || bs[0].Expires.Unix() != now.Unix()+600 {
		t.Fatalf("store after the refresh: %+v", bs)
	}
	// A change in the store forgets the AOR.
	f.cache.Invalidate("alice@example.com")
	if _, d := l.Absorb(refresh(4), lim, local, remote, now); d != Miss {
		t.Errorf("after invalidation: %v, want miss", d)
	}
}

func TestMidRegistrarDue(t *testing.T) {
	f := newFixture(t, Options{Mode: MidRegistrar, RenewalMargin: 10 * time.Second})
	req, res := f.slowReq(t, refresh(1)) // no upstream registration recorded: nothing stored
	l := f.cache.NewLoop()
	if _, d := l.Absorb(refresh(2), lim, local, remote, time.Now()); d != Miss {
		t.Fatalf("without an upstream registration: %v, want miss", d)
	}
	// As the mid-registrar records it after the main registrar's 200.
	now := time.Now().Truncate(time.Second)
	_, err := f.store.Update("alice@example.com", func(cur []location.Binding) ([]location.Binding, error) {
		cur[0].UpExpires = now.Add(700 * time.Second)
		return cur, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	f.cache.Fill(req, res, flow)
	f.cache.Wait()
	// 600 s + 10 s margin fit in 700 s now, not 100 s later.
	if _, d := l.Absorb(refresh(2), lim, local, remote, now); d != Absorbed {
		t.Errorf("upstream not due: %v, want absorbed", d)
	}
	if _, d := l.Absorb(refresh(3), lim, local, remote, now.Add(100*time.Second)); d != Due {
		t.Errorf("upstream due: %v, want due", d)
	}
}

// BenchmarkAbsorb is one refresh through pinhole's absorb path: scan,
// cache look-up, reply build and the expiry hand-off (the touch ring,
// drained into the store every 10 000 refreshes, as the flusher would).
func BenchmarkAbsorb(b *testing.B) {
	f := newFixture(b, Options{})
	f.slow(b, refresh(1))
	l := f.cache.NewLoop()
	data := refresh(2)
	at := strings.Index(string(data), "CSeq: ") + len("CSeq: ")
	br := strings.Index(string(data), "z9hG4bK-") + len("z9hG4bK-")
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	cpu := startCPUTimer(b)
	for i := 0; i < b.N; i++ {
		n := uint64(i + 2)
		for k := 9; k >= 0; k-- {
			data[at+k] = byte('0' + n%10)
			data[br+k] = data[at+k]
			n /= 10
		}
		if _, d := l.Absorb(data, lim, local, remote, now); d != Absorbed {
			b.Fatalf("refresh %d declined: %v", i, d)
		}
		if i%10000 == 9999 {
			f.cache.Flush()
		}
	}
	cpu.report()
}

// A refresh absorbed just before the device registered afresh (a reboot:
// new Call-ID, CSeq from 1) reaches the store after that registration. It
// must leave the new binding alone: stamping its higher CSeq there made the
// device's next refresh, under the new Call-ID, a 400 Out Of Order CSeq.
func TestLateTouchSparesNewRegistration(t *testing.T) {
	f := newFixture(t, Options{})
	if res := f.slow(t, refresh(1)); res.StatusCode != 200 {
		t.Fatalf("slow path answered %d", res.StatusCode)
	}
	l := f.cache.NewLoop()
	if _, d := l.Absorb(refresh(50), lim, local, remote, time.Now()); d != Absorbed {
		t.Fatalf("declined: %v", d)
	}
	rebooted := func(cseq int) []byte {
		return []byte(strings.Replace(string(refresh(cseq)), "Call-ID: c1@device", "Call-ID: c2@device", 1))
	}
	if res := f.slow(t, rebooted(1)); res.StatusCode != 200 {
		t.Fatalf("registration after the reboot: %d %s", res.StatusCode, res.Reason)
	}
	f.cache.Flush() // the touch of CSeq 50 under c1@device arrives now
	bs := f.store.Lookup("alice@example.com")
	if len(bs) != 1 || bs[0].CallID != "c2@device" || bs[0].CSeq != 1 {
		t.Fatalf("store after the late touch: %+v, want c2@device with CSeq 1", bs)
	}
	if res := f.slow(t, rebooted(2)); res.StatusCode != 200 {
		t.Errorf("the device's next refresh: %d %s, want 200", res.StatusCode, res.Reason)
	}
}
