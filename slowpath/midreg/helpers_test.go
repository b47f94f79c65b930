package midreg

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/slowpath/registrar"
)

// clock is a settable time source shared by the mid-registrar and store.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// upstream is a fake main registrar: it records what reaches it and
// answers by its fields.
type upstream struct {
	mu       sync.Mutex
	sent     []*sip.Request
	to       []string // destination of each request
	down     map[string]bool
	grant    int  // expiry granted in the 200; 0 echoes what was asked
	challnge bool // answer 401 to a REGISTER without Authorization
}

var errDown = errors.New("upstream down")

func (u *upstream) Send(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.sent = append(u.sent, req)
	u.to = append(u.to, req.Destination())
	if u.down[req.Destination()] {
		return nil, errDown
	}
	if u.challnge && req.GetHeader("Authorization") == nil {
		res := sip.NewResponseFromRequest(req, 401, "Unauthorized", nil)
		res.AppendHeader(sip.NewHeader("WWW-Authenticate", `Digest realm="example.com", nonce="n1"`))
		res.AppendHeader(sip.NewHeader("Server", "secret-core-v1"))
		return res, nil
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	for _, h := range req.GetHeaders("Contact") {
		ch := h.(*sip.ContactHeader).Clone()
		if u.grant > 0 && ch.Params.GetOr("expires", "0") != "0" {
			ch.Params.Add("expires", strconv.Itoa(u.grant))
		}
		res.AppendHeader(ch)
	}
	return res, nil
}

func (u *upstream) count() int { u.mu.Lock(); defer u.mu.Unlock(); return len(u.sent) }

// split counts the requests that reached the upstream with the device's
// Call-ID (relayed) apart from pinhole's own (its de-registrations, sent by
// the lapse worker whenever it gets to them).
func (u *upstream) split(callID string) (relayed, own int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, r := range u.sent {
		if c := r.CallID(); c != nil && c.Value() == callID {
			relayed++
		} else {
			own++
		}
	}
	return relayed, own
}

func (u *upstream) last(t *testing.T) *sip.Request {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.sent) == 0 {
		t.Fatal("nothing reached the upstream")
	}
	return u.sent[len(u.sent)-1]
}

var (
	deviceFlow = location.Flow{
		Transport: location.TransportUDP,
		Remote:    netip.MustParseAddrPort("198.51.100.7:40000"),
		Local:     netip.MustParseAddrPort("203.0.113.1:5060"),
	}
	up1 = netip.MustParseAddrPort("10.0.0.3:5060")
	up2 = netip.MustParseAddrPort("10.0.0.4:5060")
)

// fixture is a mid-registrar over a memory store and a fake upstream.
type fixture struct {
	t     testing.TB
	m     *MidRegistrar
	up    *upstream
	store *location.Memory
	clock *clock
}

func newFixture(t testing.TB, edit func(*Config)) *fixture {
	t.Helper()
	c := &clock{now: time.Unix(1_750_000_000, 0)}
	cfg := Config{
		Upstreams:       []Upstream{{Addr: up1, Transport: "UDP"}},
		Mode:            ModeContact,
		OutgoingExpires: 3600,
		RenewalMargin:   10,
		Timeout:         time.Second,
		RetryAfter:      30,
		Listeners:       []Listener{{Transport: "UDP", Local: deviceFlow.Local, Host: "edge.example.net", Port: 5060}},
		Registrar: registrar.Config{
			Domains: []string{"example.com"}, MinExpires: 1, MaxExpires: 3600, DefaultExpires: 60, MaxContacts: 10,
			Now: c.Now,
		},
	}
	if edit != nil {
		edit(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	store, err := location.Open(location.Options{Now: c.Now, OnExpire: m.OnExpire})
	if err != nil {
		t.Fatal(err)
	}
	up := &upstream{down: map[string]bool{}}
	m.Start(store, up)
	t.Cleanup(func() { m.Close(); store.Close() })
	return &fixture{t: t, m: m, up: up, store: store, clock: c}
}

// request builds a REGISTER for alice with extra header lines.
func request(t testing.TB, callID string, cseq int, flow location.Flow, lines ...string) *sip.Request {
	t.Helper()
	raw := "REGISTER sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 192.168.1.2:5060;branch=z9hG4bK-" + callID + strconv.Itoa(cseq) + ";rport\r\n" +
		"From: <sip:alice@example.com>;tag=f1\r\nTo: <sip:alice@example.com>\r\n" +
		"Call-ID: " + callID + "\r\nCSeq: " + strconv.Itoa(cseq) + " REGISTER\r\nMax-Forwards: 70\r\n"
	for _, l := range lines {
		raw += l + "\r\n"
	}
	raw += "Content-Length: 0\r\n\r\n"
	msg, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatalf("parse test request: %v\n%s", err, raw)
	}
	req := msg.(*sip.Request)
	req.SetTransport(flow.Transport.String())
	req.SetSource(flow.Remote.String())
	return req
}

func (f *fixture) register(callID string, cseq int, flow location.Flow, lines ...string) *sip.Response {
	f.t.Helper()
	return f.m.Process(context.Background(), request(f.t, callID, cseq, flow, lines...), flow)
}

func expectStatus(t testing.TB, res *sip.Response, code int) {
	t.Helper()
	if res.StatusCode != code {
		t.Fatalf("status = %d %s, want %d\n%s", res.StatusCode, res.Reason, code, res)
	}
}

func headerValues(m sip.Message, name string) []string {
	var out []string
	for _, h := range m.GetHeaders(name) {
		out = append(out, h.Value())
	}
	return out
}

const dev = "sip:alice@192.168.1.2:5060"

func contactLine(uri string) string { return "Contact: <" + uri + ">" }

// waitFor polls cond for up to two seconds (the store's expiry pass is
// a one-second ticker).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}
