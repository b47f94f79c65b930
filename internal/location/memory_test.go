package location

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestTransport(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Transport
	}{
		{"UDP", TransportUDP}, {"udp", TransportUDP}, {"Tcp", TransportTCP},
		{"TLS", TransportTLS}, {"ws", TransportWS}, {"WSS", TransportWSS},
	} {
		got, err := ParseTransport(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseTransport(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if got.String() != tt.want.String() {
			t.Errorf("String() = %q", got.String())
		}
	}
	for _, bad := range []string{"", "SCTP", "udp ", "WS S"} {
		if _, err := ParseTransport(bad); !errors.Is(err, ErrUnknownTransport) {
			t.Errorf("ParseTransport(%q) error = %v, want ErrUnknownTransport", bad, err)
		}
	}
	if got := TransportWSS.String(); got != "WSS" {
		t.Errorf("TransportWSS = %q", got)
	}
	if got := Transport(9).String(); got != "Transport(9)" {
		t.Errorf("Transport(9) = %q", got)
	}
}

func TestLookupOrder(t *testing.T) {
	c := newClock()
	m := openTest(t, Options{Now: c.Now})
	now := c.Now()
	mk := func(contact string, q uint16, updatedAgo time.Duration) Binding {
		return Binding{AOR: "alice@example.com", Contact: contact, Q: q,
			Expires: now.Add(time.Hour), Updated: now.Add(-updatedAgo), Flow: Flow{Transport: TransportUDP}}
	}
	stored := put(t, m,
		mk("sip:low@a", 100, 0),
		mk("sip:old@a", 1000, 2*time.Minute),
		mk("sip:new@a", 1000, time.Minute),
		mk("sip:mid@a", 500, 0),
		mk("sip:tie-b@a", 1000, time.Minute),
	)
	want := []string{"sip:new@a", "sip:tie-b@a", "sip:old@a", "sip:mid@a", "sip:low@a"}
	contacts := func(bs []Binding) []string {
		var out []string
		for _, b := range bs {
			out = append(out, b.Contact)
		}
		return out
	}
	if diff := cmp.Diff(want, contacts(stored)); diff != "" {
		t.Errorf("Update order (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, contacts(m.Lookup("alice@example.com"))); diff != "" {
		t.Errorf("Lookup order (-want +got):\n%s", diff)
	}
	// A Touch makes its binding the most recently updated of its q.
	c.Advance(time.Second)
	if !m.Touch(Refresh{AOR: "alice@example.com", Contact: "sip:old@a", Flow: Flow{Transport: TransportUDP}, CSeq: 1, Expires: now.Add(2 * time.Hour)}) {
		t.Fatal("Touch failed")
	}
	want = []string{"sip:old@a", "sip:new@a", "sip:tie-b@a", "sip:mid@a", "sip:low@a"}
	if diff := cmp.Diff(want, contacts(m.Lookup("alice@example.com"))); diff != "" {
		t.Errorf("Lookup order after Touch (-want +got):\n%s", diff)
	}
}

func TestUpdateStoresWhatLookupReturns(t *testing.T) {
	c := newClock()
	m := openTest(t, Options{Now: c.Now})
	now := c.Now()
	in := Binding{
		AOR: "ignored", Contact: "sip:bob@[fe80::1%eth0]:5062;transport=tls", Instance: "urn:uuid:00000000-0000-4000-8000-000000000001",
		RegID: 7, CallID: "c1", CSeq: 42, Q: 700, Expires: now.Add(90*time.Second + 400*time.Millisecond),
		Flow: Flow{Transport: TransportTLS, Remote: netip.MustParseAddrPort("[fe80::1%eth0]:5062"), Local: netip.MustParseAddrPort("[2001:db8::1]:5061")},
		NAT:  true, Path: "<sip:edge.example.net;lr>", UserAgent: "Zoiper rv2.10",
	}
	want := in
	want.AOR = "bob@example.com"
	want.Expires = time.Unix(now.Add(90*time.Second).Unix(), 0)
	want.Updated = time.Unix(now.Unix(), 0) // zero Updated means now
	got, err := m.Update("bob@example.com", func(cur []Binding) ([]Binding, error) { return []Binding{in}, nil })
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Binding{want}, got, addrPortEqual); diff != "" {
		t.Errorf("Update (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]Binding{want}, m.Lookup("bob@example.com"), addrPortEqual); diff != "" {
		t.Errorf("Lookup (-want +got):\n%s", diff)
	}
}

func TestUpdateRejects(t *testing.T) {
	c := newClock()
	m := openTest(t, Options{Now: c.Now})
	exp := c.Now().Add(time.Hour)
	orig := put(t, m, Binding{AOR: "a@x", Contact: "sip:1@x", Expires: exp, Q: 1000})
	fnErr := errors.New("registrar says no")
	for _, tt := range []struct {
		name string
		fn   func([]Binding) ([]Binding, error)
		want error
	}{
		{"fn error", func(cur []Binding) ([]Binding, error) { return nil, fnErr }, fnErr},
		{"fn error after editing cur", func(cur []Binding) ([]Binding, error) {
			cur[0].Contact = "sip:changed@x"
			return cur, fnErr
		}, fnErr},
		{"duplicate contact", func([]Binding) ([]Binding, error) {
			return []Binding{{Contact: "sip:d@x", Expires: exp}, {Contact: "sip:d@x", Expires: exp}}, nil
		}, ErrInvalidBinding},
		{"empty contact", func([]Binding) ([]Binding, error) { return []Binding{{Expires: exp}}, nil }, ErrInvalidBinding},
		{"bad transport", func([]Binding) ([]Binding, error) {
			return []Binding{{Contact: "sip:t@x", Expires: exp, Flow: Flow{Transport: 6}}}, nil
		}, ErrInvalidBinding},
		{"set too large", func([]Binding) ([]Binding, error) {
			var bs []Binding
			for i := range 70 {
				bs = append(bs, Binding{Contact: fmt.Sprintf("sip:%d@x", i), UserAgent: string(make([]byte, 1000)), Expires: exp})
			}
			return bs, nil
		}, ErrInvalidBinding},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := m.Update("a@x", tt.fn); !errors.Is(err, tt.want) {
				t.Fatalf("Update error = %v, want %v", err, tt.want)
			}
			if diff := cmp.Diff(orig, m.Lookup("a@x"), addrPortEqual); diff != "" {
				t.Errorf("state changed (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUpdateRemoves(t *testing.T) {
	c := newClock()
	m := openTest(t, Options{Now: c.Now})
	exp := c.Now().Add(time.Hour)
	put(t, m, Binding{AOR: "a@x", Contact: "sip:1@x", Expires: exp}, Binding{AOR: "a@x", Contact: "sip:2@x", Expires: exp})
	// Returning an expired binding (Expires: 0 in REGISTER) removes it.
	got, err := m.Update("a@x", func(cur []Binding) ([]Binding, error) {
		cur[0].Expires = c.Now()
		return cur, nil
	})
	if err != nil || len(got) != 1 {
		t.Fatalf("Update = %v, %v; want one binding", got, err)
	}
	if a, b := m.Len(); a != 1 || b != 1 {
		t.Errorf("Len = %d, %d; want 1, 1", a, b)
	}
	if _, err := m.Update("a@x", func([]Binding) ([]Binding, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if a, b := m.Len(); a != 0 || b != 0 {
		t.Errorf("Len = %d, %d; want 0, 0", a, b)
	}
	if got := m.Lookup("a@x"); len(got) != 0 {
		t.Errorf("Lookup after removal = %v", got)
	}
}

// TestUpdateConcurrent: read-modify-write through Update must lose no
// increment, whatever the interleaving (run with -race).
func TestUpdateConcurrent(t *testing.T) {
	m := openTest(t, Options{Shards: 4})
	const goroutines, rounds = 32, 200
	exp := time.Now().Add(time.Hour)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range rounds {
				_, err := m.Update("hot@x", func(cur []Binding) ([]Binding, error) {
					if len(cur) == 0 {
						return []Binding{{Contact: "sip:hot@x", CSeq: 1, Expires: exp}}, nil
					}
					// A binding per goroutine, added then removed, to churn the set.
					extra := Binding{Contact: fmt.Sprintf("sip:%d@x", g), Expires: exp}
					var out []Binding
					found := false
					for _, b := range cur {
						switch b.Contact {
						case "sip:hot@x":
							b.CSeq++
						case extra.Contact:
							found = true
							continue
						}
						out = append(out, b)
					}
					if !found {
						out = append(out, extra)
					}
					return out, nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range rounds {
				for _, b := range m.Lookup("hot@x") {
					if b.Contact == "" || b.AOR != "hot@x" {
						t.Errorf("torn binding %+v", b)
					}
				}
				m.Touch(Refresh{AOR: "hot@x", Contact: "sip:nobody@x", CSeq: 1, Expires: exp})
			}
		}()
	}
	wg.Wait()
	var hot Binding
	for _, b := range m.Lookup("hot@x") {
		if b.Contact == "sip:hot@x" {
			hot = b
		}
	}
	if want := uint32(goroutines * rounds); hot.CSeq != want {
		t.Errorf("CSeq = %d, want %d: an update was lost", hot.CSeq, want)
	}
	_, n := m.Len()
	if got := len(m.Lookup("hot@x")); got != n {
		t.Errorf("Len bindings = %d, Lookup has %d", n, got)
	}
}

func TestTouch(t *testing.T) {
	c := newClock()
	now := c.Now()
	later := now.Add(2 * time.Hour)
	flow := Flow{Transport: TransportUDP, Remote: netip.MustParseAddrPort("203.0.113.7:40000"), Local: netip.MustParseAddrPort("198.51.100.1:5060")}
	moved := flow
	moved.Remote = netip.MustParseAddrPort("203.0.113.7:40001")
	tcp := flow
	tcp.Transport = TransportTCP
	r := func(aor, contact, callID string, f Flow, cseq uint32) Refresh {
		return Refresh{AOR: aor, Contact: contact, CallID: callID, Flow: f, CSeq: cseq, Expires: later}
	}
	for _, tt := range []struct {
		name string
		r    Refresh
		want bool
	}{
		{"higher cseq", r("a@x", "sip:1@x", "c1", flow, 11), true},
		{"equal cseq", r("a@x", "sip:1@x", "c1", flow, 10), false},
		{"lower cseq", r("a@x", "sip:1@x", "c1", flow, 9), false},
		{"unknown contact", r("a@x", "sip:9@x", "c1", flow, 11), false},
		{"unknown aor", r("b@x", "sip:1@x", "c1", flow, 11), false},
		{"contact of an expired binding", r("a@x", "sip:gone@x", "c1", flow, 11), false},
		// A refresh absorbed under an older registration, applied after
		// the device registered afresh: its CSeq must not reach the new
		// binding, or the device's next refresh is refused as out of order.
		{"another Call-ID", r("a@x", "sip:1@x", "c0", flow, 1000), false},
		{"another source port", r("a@x", "sip:1@x", "c1", moved, 11), false},
		{"another transport", r("a@x", "sip:1@x", "c1", tcp, 11), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := openTest(t, Options{Now: c.Now})
			put(t, m,
				Binding{AOR: "a@x", Contact: "sip:1@x", CallID: "c1", Flow: flow, CSeq: 10, Expires: now.Add(time.Hour)},
				Binding{AOR: "a@x", Contact: "sip:gone@x", CallID: "c1", Flow: flow, CSeq: 10, Expires: now.Add(time.Second)},
			)
			c.Advance(time.Second)
			defer c.Advance(-time.Second)
			if got := m.Touch(tt.r); got != tt.want {
				t.Fatalf("Touch(%+v) = %v, want %v", tt.r, got, tt.want)
			}
			bs := m.Lookup("a@x")
			wantExp, wantCSeq := now.Add(time.Hour), uint32(10)
			if tt.want {
				wantExp, wantCSeq = later, tt.r.CSeq
			}
			if len(bs) != 1 || !bs[0].Expires.Equal(wantExp) || bs[0].CSeq != wantCSeq {
				t.Errorf("after Touch: %+v; want expires %v cseq %d", bs, wantExp, wantCSeq)
			}
		})
	}
}

func TestRange(t *testing.T) {
	c := newClock()
	m := openTest(t, Options{Now: c.Now, Shards: 8})
	exp := c.Now().Add(time.Hour)
	want := map[string]bool{}
	for i := range 100 {
		b := typical(i, exp)
		put(t, m, b)
		want[b.Contact] = true
	}
	put(t, m, Binding{AOR: "short@x", Contact: "sip:short@x", Expires: c.Now().Add(time.Second)})
	c.Advance(time.Second) // lapsed, not yet removed: Range must skip it
	got := map[string]bool{}
	m.Range(func(b Binding) bool {
		got[b.Contact] = true
		return true
	})
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Range (-want +got):\n%s", diff)
	}
	n := 0
	m.Range(func(Binding) bool { n++; return n < 10 })
	if n != 10 {
		t.Errorf("Range went on after false: %d calls", n)
	}
}

func TestOpenOptions(t *testing.T) {
	for _, opts := range []Options{{Shards: 3}, {Shards: -4}, {FlushInterval: -time.Second}} {
		if m, err := Open(opts); err == nil {
			m.Close()
			t.Errorf("Open(%+v) succeeded", opts)
		}
	}
}
