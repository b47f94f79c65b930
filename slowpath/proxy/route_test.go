package proxy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/pinhole-sip/pinhole/internal/location"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/slowpath/routesig"
	"github.com/pinhole-sip/pinhole/slowpath/trust"
)

// fakeTx is a server transaction that keeps what the proxy answers.
type fakeTx struct {
	sip.ServerTransaction
	res []*sip.Response
}

func (f *fakeTx) Respond(r *sip.Response) error { f.res = append(f.res, r); return nil }

var (
	unitUDP = netip.MustParseAddrPort("198.51.100.1:5060")
	unitTCP = netip.MustParseAddrPort("198.51.100.1:5060")
)

func unitProxy(t testing.TB, mutate func(*Config)) (*Proxy, *fakeLocator) {
	t.Helper()
	ua, err := sipgo.NewUA()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	cli, err := sipgo.NewClient(ua)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Domains: []string{"example.com"},
		Listeners: []Listener{
			{Transport: location.TransportUDP, Local: unitUDP, Host: "edge.example.com"},
			{Transport: location.TransportTCP, Local: unitTCP, Host: "edge.example.com"},
		},
	}
	cfg.Keys = testKeys
	if mutate != nil {
		mutate(&cfg)
	}
	loc := newFakeLocator()
	p, err := New(cfg, cli, loc, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p, loc
}

// testKeys sign the routing state of unit tests, so a test can write a
// Record-Route entry pinhole would have written.
var testKeys = routesig.NewStatic([routesig.KeySize]byte{7})

// signedRR returns our Record-Route URI uri with the MAC pinhole would have
// added for the dialog with Call-ID id.
func signedRR(t testing.TB, id, uri string) string {
	t.Helper()
	var u sip.Uri
	if err := sip.ParseUri(uri, &u); err != nil {
		t.Fatal(err)
	}
	(&Proxy{keys: testKeys}).signRecordRoute(id, &u)
	return u.String()
}

// request parses a request written with \n line ends.
func request(t testing.TB, text string) *sip.Request {
	t.Helper()
	msg, err := sip.ParseMessage([]byte(strings.ReplaceAll(strings.TrimLeft(text, "\n"), "\n", "\r\n") + "\r\n"))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	req := msg.(*sip.Request)
	req.SetSource("203.0.113.9:40000")
	return req
}

func msg(method, ruri string, extra ...string) string {
	s := fmt.Sprintf("%s %s SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bK-1;rport\nFrom: <sip:alice@example.com>;tag=a1\nTo: <%s>\nCall-ID: c1\nCSeq: 1 %s\nContact: <sip:alice@10.0.0.9:5060>\n", method, ruri, ruri, method)
	for _, e := range extra {
		s += e + "\n"
	}
	return s + "Content-Length: 0\n"
}

// TestLocalReplies: what the proxy answers itself.
func TestLocalReplies(t *testing.T) {
	tests := []struct {
		name     string
		outbound string
		req      string
		want     int
		header   string // a header the reply must carry
	}{
		{name: "unknown user", req: msg("INVITE", "sip:nobody@example.com"), want: 404},
		{name: "known user without contact", req: msg("MESSAGE", "sip:carol@example.com"), want: 480},
		{name: "domain case", req: msg("INVITE", "sip:carol@EXAMPLE.com"), want: 480},
		{name: "user at our address", req: msg("INVITE", "sip:carol@198.51.100.1:5060"), want: 480},
		{name: "max-forwards zero", req: msg("INVITE", "sip:carol@example.com", "Max-Forwards: 0"), want: 483},
		{name: "options max-forwards zero", req: msg("OPTIONS", "sip:carol@example.com", "Max-Forwards: 0"), want: 200, header: "Allow"},
		{name: "options to pinhole", req: msg("OPTIONS", "sip:edge.example.com"), want: 200, header: "Supported"},
		{name: "options to domain", req: msg("OPTIONS", "sip:example.com"), want: 200, header: "Accept"},
		{name: "invite to pinhole", req: msg("INVITE", "sip:example.com"), want: 404},
		{name: "foreign domain", req: msg("INVITE", "sip:bob@elsewhere.net"), want: 403},
		{name: "foreign to foreign with outbound", outbound: "sip:core.example.net", req: strings.Replace(msg("INVITE", "sip:bob@elsewhere.net"), "alice@example.com", "eve@evil.net", 1), want: 403},
		{name: "tel uri", req: msg("INVITE", "tel:+15551234"), want: 403},
		{name: "pre-loaded foreign route", req: msg("INVITE", "sip:carol@example.com", "Route: <sip:elsewhere.net;lr>"), want: 403},
		// A Path the mid-registrar inserted upstream (RFC 3327): the Route's
		// user names the bindings; the Request-URI is the device's Contact.
		{name: "through our path", req: msg("INVITE", "sip:carol@192.0.2.7:5060", "Route: <sip:carol@edge.example.com:5060;lr>"), want: 480},
		{name: "foreign route with a user", req: msg("INVITE", "sip:carol@192.0.2.7:5060", "Route: <sip:carol@elsewhere.net;lr>"), want: 403},
		{name: "unmatched cancel", req: msg("CANCEL", "sip:carol@example.com"), want: 481},
		{name: "to tag without our route", req: strings.Replace(msg("BYE", "sip:nobody@example.com"), "To: <sip:nobody@example.com>", "To: <sip:nobody@example.com>;tag=x", 1), want: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, loc := unitProxy(t, func(c *Config) { c.Outbound = tt.outbound })
			loc.known["carol@example.com"] = true
			tx := &fakeTx{}
			p.Handle(request(t, tt.req), tx)
			if len(tx.res) != 1 {
				t.Fatalf("got %d responses, want 1", len(tx.res))
			}
			if got := tx.res[0].StatusCode; got != tt.want {
				t.Errorf("status %d %s, want %d", got, tx.res[0].Reason, tt.want)
			}
			if tt.header != "" && tx.res[0].GetHeader(tt.header) == nil {
				t.Errorf("reply lacks %s", tt.header)
			}
		})
	}
}

// TestAuthorization: initial requests from our users need credentials;
// requests from elsewhere and in-dialog requests do not.
func TestAuthorization(t *testing.T) {
	calls := 0
	deny := AuthorizerFunc(func(*sip.Request) Verdict {
		calls++
		return Verdict{Status: 407, Reason: "Proxy Authentication Required", Headers: []sip.Header{sip.NewHeader("Proxy-Authenticate", `Digest realm="example.com", nonce="n"`)}}
	})
	tests := []struct {
		name      string
		req       string
		want      int
		wantCalls int
		trusted   bool // the request comes from a peer on the trust list
	}{
		{name: "our user", req: msg("INVITE", "sip:carol@example.com"), want: 407, wantCalls: 1},
		// Authentication follows the source: a From of another domain
		// does not skip it.
		{name: "foreign caller", req: strings.Replace(msg("INVITE", "sip:carol@example.com"), "alice@example.com", "x@carrier.net", 1), want: 407, wantCalls: 1},
		{name: "trusted peer", trusted: true, req: strings.Replace(msg("INVITE", "sip:carol@example.com"), "alice@example.com", "x@carrier.net", 1), want: 480},
		{name: "ack", req: msg("ACK", "sip:carol@example.com")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls = 0
			p, loc := unitProxy(t, func(c *Config) {
				if tt.trusted {
					c.Trusted = trust.New(netip.MustParsePrefix("203.0.113.0/24"))
				}
			})
			p.auth = deny
			loc.known["carol@example.com"] = true
			tx := &fakeTx{}
			p.Handle(request(t, tt.req), tx)
			var got int
			if len(tx.res) > 0 {
				got = tx.res[0].StatusCode
				if got == 407 && tx.res[0].GetHeader("Proxy-Authenticate") == nil {
					t.Error("407 without challenge")
				}
			}
			if got != tt.want || calls != tt.wantCalls {
				t.Errorf("status %d after %d checks, want %d after %d", got, calls, tt.want, tt.wantCalls)
			}
		})
	}
}

// TestDecideDialog: in-dialog requests are loose-routed (RFC 3261 §16.4)
// and pick the flow of the side they go to.
func TestDecideDialog(t *testing.T) {
	callee := location.Flow{Transport: location.TransportUDP, Remote: netip.MustParseAddrPort("203.0.113.20:1024"), Local: unitUDP}
	caller := location.Flow{Transport: location.TransportTCP, Remote: netip.MustParseAddrPort("203.0.113.9:40000"), Local: unitTCP}
	unsigned := fmt.Sprintf("sip:edge.example.com;transport=udp;lr;ftag=a1;nc=%s;nr=%s", FlowParam(callee), FlowParam(caller))
	ours := signedRR(t, "c1", unsigned)
	// Another flow for the callee, the MAC left as it was: an attacker
	// choosing where pinhole sends from its own socket.
	altered := strings.Replace(ours, FlowParam(callee), FlowParam(location.Flow{Transport: location.TransportUDP, Remote: netip.MustParseAddrPort("192.0.2.66:5060"), Local: unitUDP}), 1)
	bye := func(fromTag, ruri string, routes ...string) string {
		s := msg("BYE", ruri, routes...)
		s = strings.Replace(s, "tag=a1", "tag="+fromTag, 1)
		// The other side's tag: the callee's (b2) on the caller's
		// requests, the caller's (a1) on the callee's.
		toTag := "b2"
		if fromTag == "b2" {
			toTag = "a1"
		}
		return strings.Replace(s, "To: <"+ruri+">", "To: <sip:x@example.com>;tag="+toTag, 1)
	}
	type result struct {
		Act    action
		Ours   int
		Strict bool
		Flow   location.Flow
		ViaFlw bool
	}
	tests := []struct {
		name string
		req  string
		want result
	}{
		{
			name: "caller to callee",
			req:  bye("a1", "sip:bob@10.1.1.1:5060", "Route: <"+ours+">"),
			want: result{Act: actDialog, Ours: 1, Flow: callee, ViaFlw: true},
		},
		{
			name: "callee to caller",
			req:  bye("b2", "sip:alice@10.0.0.9:5060", "Route: <"+ours+">"),
			want: result{Act: actDialog, Ours: 1, Flow: caller, ViaFlw: true},
		},
		{
			name: "double record-route, more hops",
			req:  bye("a1", "sip:bob@10.1.1.1:5060", "Route: <"+ours+">", "Route: <sip:198.51.100.1:5060;transport=tcp;lr>", "Route: <sip:core.example.net;lr>"),
			want: result{Act: actDialog, Ours: 2, Flow: callee, ViaFlw: true},
		},
		{
			name: "no flow parameters",
			req:  bye("a1", "sip:bob@192.0.2.50:5060", "Route: <"+signedRR(t, "c1", "sip:edge.example.com;lr;ftag=a1")+">"),
			want: result{Act: actDialog, Ours: 1},
		},
		{
			name: "signed flow of a socket we no longer have",
			req:  bye("a1", "sip:bob@192.0.2.50:5060", "Route: <"+signedRR(t, "c1", "sip:edge.example.com;lr;ftag=a1;nc="+FlowParam(location.Flow{Transport: location.TransportUDP, Remote: callee.Remote, Local: netip.MustParseAddrPort("192.0.2.99:5060")}))+">"),
			want: result{Act: actDialog, Ours: 1},
		},
		// Forgeries: a To tag and pinhole's address in a Route are not a
		// dialog pinhole record-routed. Each is refused before any flow
		// parameter is read.
		{
			name: "unsigned entry",
			req:  bye("a1", "sip:x@192.0.2.66", "Route: <"+unsigned+">"),
			want: result{Act: actReply},
		},
		{
			name: "bare route to pinhole",
			req:  bye("a1", "sip:x@192.0.2.66", "Route: <sip:edge.example.com;lr>"),
			want: result{Act: actReply},
		},
		{
			name: "altered flow",
			req:  bye("a1", "sip:x@192.0.2.66", "Route: <"+altered+">"),
			want: result{Act: actReply},
		},
		{
			name: "entry of another dialog",
			req:  strings.Replace(bye("a1", "sip:x@192.0.2.66", "Route: <"+ours+">"), "Call-ID: c1", "Call-ID: c2", 1),
			want: result{Act: actReply},
		},
		{
			name: "dialog tags that are not the entry's",
			req:  bye("zz", "sip:x@192.0.2.66", "Route: <"+ours+">"),
			want: result{Act: actReply},
		},
		{
			name: "flow parameter added",
			req:  bye("a1", "sip:x@192.0.2.66", "Route: <"+signedRR(t, "c1", "sip:edge.example.com;lr;ftag=a1")+";nc="+FlowParam(callee)+">"),
			want: result{Act: actReply},
		},
		{
			name: "strict router before us",
			req:  bye("a1", ours, "Route: <sip:bob@10.1.1.1:5060>"),
			want: result{Act: actDialog, Strict: true, Flow: callee, ViaFlw: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := unitProxy(t, nil)
			d := p.decide(request(t, tt.req))
			got := result{Act: d.act, Ours: d.ours, Strict: d.strict, Flow: d.flow, ViaFlw: d.viaFlw}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("decide (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPrepareRoutes: our Route entries go, the strict router's
// Request-URI is restored, the rest of the route set stays in order.
func TestPrepareRoutes(t *testing.T) {
	tests := []struct {
		name       string
		req        string
		wantRURI   string
		wantRoutes []string
	}{
		{
			name:       "loose",
			req:        strings.Replace(msg("BYE", "sip:bob@10.1.1.1:5060", "Route: <"+signedRR(t, "c1", "sip:edge.example.com;lr;ftag=a1")+">", "Route: <sip:core.example.net;lr>"), "To: <sip:bob@10.1.1.1:5060>", "To: <sip:bob@example.com>;tag=b", 1),
			wantRURI:   "sip:bob@10.1.1.1:5060",
			wantRoutes: []string{"<sip:core.example.net;lr>"},
		},
		{
			name:       "strict",
			req:        strings.Replace(msg("BYE", signedRR(t, "c1", "sip:edge.example.com;lr;ftag=a1"), "Route: <sip:core.example.net;lr>", "Route: <sip:bob@10.1.1.1:5060>"), "To: <"+signedRR(t, "c1", "sip:edge.example.com;lr;ftag=a1")+">", "To: <sip:bob@example.com>;tag=b", 1),
			wantRURI:   "sip:bob@10.1.1.1:5060",
			wantRoutes: []string{"<sip:core.example.net;lr>"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := unitProxy(t, nil)
			req := request(t, tt.req)
			d := p.decide(req)
			fwd := p.prepare(req, &d)
			var routes []string
			for _, h := range fwd.GetHeaders("Route") {
				routes = append(routes, h.Value())
			}
			if diff := cmp.Diff(tt.wantRURI, fwd.Recipient.String()); diff != "" {
				t.Errorf("Request-URI (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantRoutes, routes); diff != "" {
				t.Errorf("Route (-want +got):\n%s", diff)
			}
			if via := fwd.Via(); via.Params.GetOr("received", "") != "203.0.113.9" || via.Params.GetOr("rport", "") != "40000" {
				t.Errorf("sender's Via lacks received/rport: %s", via.Value())
			}
		})
	}
}

func TestRank(t *testing.T) {
	// Each list is in order of preference (RFC 3261 §16.7 step 6).
	order := []int{603, 302, 407, 486, 500}
	for i := 1; i < len(order); i++ {
		if rank(order[i-1]) >= rank(order[i]) {
			t.Errorf("%d should beat %d", order[i-1], order[i])
		}
	}
}

func TestConfigRejects(t *testing.T) {
	good := Listener{Transport: location.TransportUDP, Local: unitUDP}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no listeners", Config{}, "listeners"},
		{"udp on any address", Config{Listeners: []Listener{{Transport: location.TransportUDP, Local: netip.MustParseAddrPort("0.0.0.0:5060"), Host: "edge"}}}, "concrete"},
		{"any address without host", Config{Listeners: []Listener{{Transport: location.TransportTCP, Local: netip.MustParseAddrPort("0.0.0.0:5060")}}}, "host"},
		{"bad transport", Config{Listeners: []Listener{{Transport: 7, Local: unitUDP}}}, "transport"},
		{"bad outbound", Config{Listeners: []Listener{good}, Outbound: "mailto:x@y"}, "outbound"},
		{"bad domain", Config{Listeners: []Listener{good}, Domains: []string{"a b"}}, "domains[0]"},
		{"max forwards", Config{Listeners: []Listener{good}, MaxForwards: 300}, "max_forwards"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, err := tt.cfg.validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("validate() = %v, want an error about %q", err, tt.want)
			}
		})
	}
}

// BenchmarkDecide measures the routing decision of an in-dialog request
// carrying our Record-Route with flow parameters, and of an initial one.
func BenchmarkDecide(b *testing.B) {
	p, _ := unitProxy(b, nil)
	callee := location.Flow{Transport: location.TransportUDP, Remote: netip.MustParseAddrPort("203.0.113.20:1024"), Local: unitUDP}
	route := fmt.Sprintf("Route: <sip:edge.example.com;transport=udp;lr;ftag=a1;nc=%s>", FlowParam(callee))
	dialog := request(b, strings.Replace(msg("BYE", "sip:bob@10.1.1.1:5060", route), "To: <sip:bob@10.1.1.1:5060>", "To: <sip:bob@example.com>;tag=b", 1))
	initial := request(b, msg("INVITE", "sip:bob@example.com"))
	for _, bc := range []struct {
		name string
		req  *sip.Request
		want action
	}{{"dialog", dialog, actDialog}, {"initial", initial, actLocate}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if d := p.decide(bc.req); d.act != bc.want {
					b.Fatalf("act %d", d.act)
				}
			}
		})
	}
}
