package registrar

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pinhole-sip/pinhole/internal/location"
)

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

type fixture struct {
	t     *testing.T
	r     *Registrar
	store *location.Memory
	now   time.Time
	cseq  int
}

func newFixture(t *testing.T, authz Authorizer) *fixture {
	t.Helper()
	f := &fixture{t: t, now: t0}
	store, err := location.Open(location.Options{Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	f.store = store
	r, err := New(Config{
		Domains: []string{"example.com"}, MinExpires: 60, MaxExpires: 3600, DefaultExpires: 1800, MaxContacts: 3,
		Now: func() time.Time { return f.now },
	}, store, authz)
	if err != nil {
		t.Fatal(err)
	}
	f.r = r
	return f
}

var public = location.Flow{
	Transport: location.TransportUDP,
	Remote:    netip.MustParseAddrPort("198.51.100.7:5060"),
	Local:     netip.MustParseAddrPort("203.0.113.1:5060"),
}

// register sends a REGISTER for alice with the given extra header lines
// (Contact, Expires, ...) and Call-ID, and returns the response.
func (f *fixture) register(callID string, cseq int, flow location.Flow, lines ...string) *sip.Response {
	f.t.Helper()
	raw := "REGISTER sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + flow.Remote.String() + ";branch=z9hG4bK-" + callID + ";rport\r\n" +
		"From: <sip:alice@example.com>;tag=f1\r\nTo: <sip:alice@example.com>\r\n" +
		"Call-ID: " + callID + "\r\nCSeq: " + strconv.Itoa(cseq) + " REGISTER\r\nMax-Forwards: 70\r\n" +
		strings.Join(lines, "\r\n")
	if len(lines) > 0 {
		raw += "\r\n"
	}
	raw += "Content-Length: 0\r\n\r\n"
	msg, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		f.t.Fatalf("parse test request: %v\n%s", err, raw)
	}
	req := msg.(*sip.Request)
	req.SetTransport(flow.Transport.String())
	req.SetSource(flow.Remote.String())
	return f.r.Process(req, flow)
}

// contacts returns the 200's Contact values.
func contacts(res *sip.Response) []string {
	var out []string
	for _, h := range res.GetHeaders("Contact") {
		out = append(out, h.Value())
	}
	return out
}

func expectStatus(t *testing.T, res *sip.Response, code int) {
	t.Helper()
	if res.StatusCode != code {
		t.Fatalf("status = %d %s, want %d\n%s", res.StatusCode, res.Reason, code, res)
	}
}

func TestRegisterExpiries(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		want  []string
	}{
		{"default", []string{"Contact: <sip:alice@198.51.100.7:5060>"}, []string{"<sip:alice@198.51.100.7:5060>;expires=1800"}},
		{"header", []string{"Contact: <sip:alice@198.51.100.7:5060>", "Expires: 120"}, []string{"<sip:alice@198.51.100.7:5060>;expires=120"}},
		{"param beats header", []string{"Contact: <sip:alice@198.51.100.7:5060>;expires=300", "Expires: 120"}, []string{"<sip:alice@198.51.100.7:5060>;expires=300"}},
		{"capped at max", []string{"Contact: <sip:alice@198.51.100.7:5060>;expires=99999"}, []string{"<sip:alice@198.51.100.7:5060>;expires=3600"}},
		{"q kept, sorted", []string{"Contact: <sip:alice@198.51.100.7:5062>;q=0.5, <sip:alice@198.51.100.7:5060>;q=0.9"},
			[]string{"<sip:alice@198.51.100.7:5060>;expires=1800;q=0.9", "<sip:alice@198.51.100.7:5062>;expires=1800;q=0.5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			res := f.register("c1", 1, public, tt.lines...)
			expectStatus(t, res, 200)
			if diff := cmp.Diff(tt.want, contacts(res)); diff != "" {
				t.Errorf("contacts (-want +got):\n%s", diff)
			}
			if res.GetHeader("Date") == nil {
				t.Error("200 without Date (RFC 3261 §10.3 step 8)")
			}
		})
	}
}

func TestRegisterRefusals(t *testing.T) {
	tests := []struct {
		name   string
		ruri   string
		lines  []string
		code   int
		header string // a header the refusal must carry, "Name: value"
	}{
		{"too brief", "", []string{"Contact: <sip:alice@198.51.100.7>", "Expires: 30"}, 423, "Min-Expires: 60"},
		{"too brief in param", "", []string{"Contact: <sip:alice@198.51.100.7>;expires=59"}, 423, "Min-Expires: 60"},
		{"wildcard with expiry", "", []string{"Contact: *", "Expires: 60"}, 400, ""},
		{"wildcard without Expires", "", []string{"Contact: *"}, 400, ""},
		{"wildcard with other contact", "", []string{"Contact: *", "Contact: <sip:alice@198.51.100.7>", "Expires: 0"}, 400, ""},
		{"bad expires", "", []string{"Contact: <sip:alice@198.51.100.7>", "Expires: soon"}, 400, ""},
		{"bad q", "", []string{"Contact: <sip:alice@198.51.100.7>;q=2"}, 400, ""},
		{"tel contact", "", []string{"Contact: <tel:+123>"}, 400, ""},
		{"two contacts with reg-id", "", []string{"Contact: <sip:a@198.51.100.7>;+sip.instance=\"<urn:uuid:1>\";reg-id=1, <sip:b@198.51.100.7>"}, 400, ""},
		{"unknown extension", "", []string{"Contact: <sip:alice@198.51.100.7>", "Require: gruu, path, foo"}, 420, "Unsupported: gruu, foo"},
		{"foreign domain", "sip:other.net", []string{"Contact: <sip:alice@198.51.100.7>"}, 403, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			lines := tt.lines
			var res *sip.Response
			if tt.ruri != "" {
				raw := "REGISTER " + tt.ruri + " SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1\r\nFrom: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\nCall-ID: x\r\nCSeq: 1 REGISTER\r\n" + strings.Join(lines, "\r\n") + "\r\nContent-Length: 0\r\n\r\n"
				msg, err := sip.ParseMessage([]byte(raw))
				if err != nil {
					t.Fatal(err)
				}
				req := msg.(*sip.Request)
				req.SetSource(public.Remote.String())
				res = f.r.Process(req, public)
			} else {
				res = f.register("c1", 1, public, lines...)
			}
			expectStatus(t, res, tt.code)
			if tt.header != "" {
				name, value, _ := strings.Cut(tt.header, ": ")
				h := res.GetHeader(name)
				if h == nil || h.Value() != value {
					t.Errorf("%s = %v, want %q", name, h, value)
				}
			}
			if aors, n := f.store.Len(); aors != 0 || n != 0 {
				t.Errorf("a refused REGISTER left %d bindings", n)
			}
		})
	}
}

func TestAddRemoveAndWildcard(t *testing.T) {
	f := newFixture(t, nil)
	a := "<sip:alice@198.51.100.7:5060>"
	b := "<sip:alice@198.51.100.8:5060>"
	expectStatus(t, f.register("c1", 1, public, "Contact: "+a, "Expires: 600"), 200)
	f.now = f.now.Add(time.Second)
	res := f.register("c2", 1, public, "Contact: "+b, "Expires: 600")
	expectStatus(t, res, 200)
	// Same q: by Contact, not by which was written last (the fast path
	// must list them in the same order without reading the store), each
	// with what is left of its expiry.
	if diff := cmp.Diff([]string{a + ";expires=599", b + ";expires=600"}, contacts(res)); diff != "" {
		t.Errorf("after adding b (-want +got):\n%s", diff)
	}
	// Time passes: remaining expiries shrink.
	f.now = f.now.Add(99 * time.Second)
	res = f.register("c1", 2, public, "Contact: "+a+";expires=0")
	expectStatus(t, res, 200)
	if diff := cmp.Diff([]string{b + ";expires=501"}, contacts(res)); diff != "" {
		t.Errorf("after removing a (-want +got):\n%s", diff)
	}
	// A query changes nothing.
	res = f.register("c9", 1, public)
	if diff := cmp.Diff([]string{b + ";expires=501"}, contacts(res)); diff != "" {
		t.Errorf("query (-want +got):\n%s", diff)
	}
	res = f.register("c3", 1, public, "Contact: *", "Expires: 0")
	expectStatus(t, res, 200)
	if got := contacts(res); len(got) != 0 {
		t.Errorf("after *: %v", got)
	}
	if _, n := f.store.Len(); n != 0 {
		t.Errorf("store still has %d bindings", n)
	}
}

func TestCSeqOrdering(t *testing.T) {
	f := newFixture(t, nil)
	c := "Contact: <sip:alice@198.51.100.7:5060>"
	expectStatus(t, f.register("c1", 10, public, c), 200)
	expectStatus(t, f.register("c1", 10, public, c, "Expires: 0"), 400) // same CSeq: a stale request
	expectStatus(t, f.register("c1", 9, public, c, "Expires: 0"), 400)
	if got := f.store.Lookup("alice@example.com"); len(got) != 1 {
		t.Fatalf("stale de-registration removed the binding: %v", got)
	}
	expectStatus(t, f.register("c1", 11, public, c), 200)
	// Another Call-ID (a rebooted phone) may start low.
	expectStatus(t, f.register("other", 1, public, c, "Expires: 0"), 200)
	if got := f.store.Lookup("alice@example.com"); len(got) != 0 {
		t.Fatalf("binding survived: %v", got)
	}
}

func TestOutboundInstanceReplacesFlow(t *testing.T) {
	f := newFixture(t, nil)
	first := "Contact: <sip:alice@192.168.1.2:5060;ob>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\";reg-id=1"
	res := f.register("c1", 1, public, first, "Supported: outbound, path")
	expectStatus(t, res, 200)
	if h := res.GetHeader("Require"); h == nil || h.Value() != "outbound" {
		t.Errorf("Require = %v, want outbound", h)
	}
	// The phone moves networks: new address, new Call-ID, same instance and reg-id.
	moved := location.Flow{Transport: location.TransportUDP, Remote: netip.MustParseAddrPort("192.0.2.50:41000"), Local: public.Local}
	second := "Contact: <sip:alice@10.1.2.3:5060;ob>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\";reg-id=1"
	expectStatus(t, f.register("c2", 1, moved, second), 200)
	got := f.store.Lookup("alice@example.com")
	if len(got) != 1 {
		t.Fatalf("bindings = %d, want the old flow replaced: %+v", len(got), got)
	}
	if got[0].Flow != moved || !got[0].NAT || got[0].Contact != "sip:alice@10.1.2.3:5060;ob" {
		t.Errorf("binding = %+v", got[0])
	}
	// A second flow of the same instance (reg-id 2) is kept beside it.
	third := "Contact: <sip:alice@10.1.2.3:5060;ob>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\";reg-id=2"
	expectStatus(t, f.register("c3", 1, moved, third), 200)
	if got := f.store.Lookup("alice@example.com"); len(got) != 2 {
		t.Errorf("bindings = %d, want 2 flows", len(got))
	}
}

func TestMaxContacts(t *testing.T) {
	f := newFixture(t, nil)
	for _, port := range []string{"5061", "5062", "5063"} {
		expectStatus(t, f.register("c"+port, 1, public, "Contact: <sip:alice@198.51.100.7:"+port+">"), 200)
	}
	res := f.register("c5064", 1, public, "Contact: <sip:alice@198.51.100.7:5064>")
	expectStatus(t, res, 503)
	// A refresh of an existing contact still works at the limit.
	expectStatus(t, f.register("c5061", 2, public, "Contact: <sip:alice@198.51.100.7:5061>"), 200)
}

func TestNATFlowStored(t *testing.T) {
	f := newFixture(t, nil)
	natted := location.Flow{Transport: location.TransportUDP, Remote: netip.MustParseAddrPort("203.0.113.77:40111"), Local: public.Local}
	raw := "Contact: <sip:alice@192.168.0.90:2048;line=abc>"
	expectStatus(t, f.register("c1", 1, natted, raw, "User-Agent: Linphone/5.2"), 200)
	got := f.store.Lookup("alice@example.com")
	if len(got) != 1 {
		t.Fatalf("bindings: %+v", got)
	}
	want := location.Binding{
		AOR: "alice@example.com", Contact: "sip:alice@192.168.0.90:2048;line=abc", CallID: "c1", CSeq: 1, Q: 1000,
		Expires: t0.Add(1800 * time.Second), Updated: t0, Flow: natted, NAT: true, UserAgent: "Linphone/5.2",
	}
	if diff := cmp.Diff(want, got[0], cmpopts.EquateComparable(netip.AddrPort{})); diff != "" {
		t.Errorf("binding (-want +got):\n%s", diff)
	}
}

func TestReceivedAdded(t *testing.T) {
	f := newFixture(t, nil)
	natted := location.Flow{Transport: location.TransportUDP, Remote: netip.MustParseAddrPort("203.0.113.77:40111"), Local: public.Local}
	raw := "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.0.90:2048;branch=z9hG4bK1\r\nFrom: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\nCall-ID: x\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@192.168.0.90:2048>\r\nContent-Length: 0\r\n\r\n"
	msg, _ := sip.ParseMessage([]byte(raw))
	req := msg.(*sip.Request)
	req.SetSource(natted.Remote.String())
	res := f.r.Process(req, natted)
	if v, _ := res.Via().Params.Get("received"); v != "203.0.113.77" {
		t.Errorf("Via = %s, want received=203.0.113.77", res.Via())
	}
}

type denyAll struct{ calls int }

func (d *denyAll) Authorize(req *sip.Request, aor string) *sip.Response {
	d.calls++
	res := sip.NewResponseFromRequest(req, 401, "Unauthorized", nil)
	res.AppendHeader(sip.NewHeader("WWW-Authenticate", `Digest realm="pinhole", nonce="n"`))
	return res
}

func TestAuthorizerRefusalIsSentAndNothingStored(t *testing.T) {
	d := &denyAll{}
	f := newFixture(t, d)
	res := f.register("c1", 1, public, "Contact: <sip:alice@198.51.100.7>")
	expectStatus(t, res, 401)
	if d.calls != 1 || res.GetHeader("WWW-Authenticate") == nil {
		t.Errorf("calls=%d challenge=%v", d.calls, res.GetHeader("WWW-Authenticate"))
	}
	if _, n := f.store.Len(); n != 0 {
		t.Errorf("%d bindings stored without authentication", n)
	}
}

func TestQValues(t *testing.T) {
	for in, want := range map[string]uint16{"1": 1000, "0": 0, "0.5": 500, "0.333": 333, "1.0": 1000} {
		got, err := parseQ(in)
		if err != nil || got != want {
			t.Errorf("parseQ(%q) = %d, %v; want %d", in, got, err, want)
		}
		if back, _ := parseQ(FormatQ(got)); back != got {
			t.Errorf("FormatQ(%d) = %q does not parse back", got, FormatQ(got))
		}
	}
	for _, in := range []string{"-1", "1.5", "x", ""} {
		if _, err := parseQ(in); err == nil {
			t.Errorf("parseQ(%q) accepted", in)
		}
	}
}

// TestEdgeRecorded: every binding records the edge it registered through,
// and a refresh through another edge (the device moved) moves it there:
// requests for the device must follow the flow it uses now.
func TestEdgeRecorded(t *testing.T) {
	f := newFixture(t, nil)
	f.r.cfg.Edge = "a"
	contact := "Contact: <sip:alice@192.168.0.90:2048>"
	expectStatus(t, f.register("c1", 1, public, contact), 200)
	if got := f.store.Lookup("alice@example.com"); len(got) != 1 || got[0].Edge != "a" {
		t.Fatalf("bindings after registering through edge a: %+v", got)
	}
	f.r.cfg.Edge = "b"
	expectStatus(t, f.register("c1", 2, public, contact), 200)
	if got := f.store.Lookup("alice@example.com"); len(got) != 1 || got[0].Edge != "b" {
		t.Fatalf("bindings after a refresh through edge b: %+v", got)
	}
}
