package proxy

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/location"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

func TestMain(m *testing.M) {
	// sipgo logs unmatched retransmissions and the like at info level.
	sip.SetDefaultLogger(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

// fakeLocator is a location store in memory.
type fakeLocator struct {
	mu       sync.Mutex
	bindings map[string][]location.Binding
	known    map[string]bool
}

func newFakeLocator() *fakeLocator {
	return &fakeLocator{bindings: map[string][]location.Binding{}, known: map[string]bool{}}
}

func (f *fakeLocator) Lookup(aor string) []location.Binding {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.bindings[aor])
}

func (f *fakeLocator) Known(aor string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.known[aor]
}

func (f *fakeLocator) add(aor string, b ...location.Binding) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.known[aor] = true
	f.bindings[aor] = append(f.bindings[aor], b...)
}

// testProxy is pinhole's proxy on loopback UDP and TCP ports.
type testProxy struct {
	p        *Proxy
	udp, tcp netip.AddrPort
	loc      *fakeLocator
	// stop closes its sockets, as a kill -9 would: its transactions end
	// with nothing sent.
	stop func()
}

func startProxy(t *testing.T, mutate func(*Config)) *testProxy {
	t.Helper()
	return startProxyOn(t, "127.0.0.1:0", mutate)
}

// startProxyOn is startProxy with its UDP socket on udpAddr: a standby
// taking over the address of a stopped proxy.
func startProxyOn(t *testing.T, udpAddr string, mutate func(*Config)) *testProxy {
	t.Helper()
	// As slowpath.Server wires it: responses no transaction takes go to
	// the proxy (stray.go).
	var px atomic.Pointer[Proxy]
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("pinhole"),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerUnhandledResponseHandler(func(r *sip.Response) {
			if p := px.Load(); p != nil {
				p.ForwardStray(r)
			}
		})))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := sipgo.NewClient(ua)
	if err != nil {
		t.Fatal(err)
	}
	uc, err := net.ListenPacket("udp4", udpAddr)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tp := &testProxy{
		udp: netip.MustParseAddrPort(uc.LocalAddr().String()),
		tcp: netip.MustParseAddrPort(tl.Addr().String()),
		loc: newFakeLocator(),
	}
	cfg := Config{
		Domains: []string{"example.com"},
		Listeners: []Listener{
			{Transport: location.TransportUDP, Local: tp.udp},
			{Transport: location.TransportTCP, Local: tp.tcp},
		},
		InviteTimeout: 5 * time.Second,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	tp.p, err = New(cfg, cli, tp.loc, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	px.Store(tp.p)
	for _, m := range Methods {
		srv.OnRequest(m, tp.p.Handle)
	}
	if cfg.Farm != nil && cfg.Farm.RegisterSet() != nil {
		srv.OnRequest(sip.REGISTER, tp.p.Handle) // edge relay (farm_test.go)
	}
	go srv.ServeUDP(uc)
	go srv.ServeTCP(tl)
	waitListening(t, ua, tp.udp)
	var once sync.Once
	tp.stop = func() {
		once.Do(func() {
			// The sockets first, as kill -9 leaves them: closing the
			// transaction layer first let the dying proxy end its
			// transactions with answers of its own (a 500 to the caller)
			// before its socket closed.
			uc.Close()
			tl.Close()
			ua.Close()
		})
	}
	t.Cleanup(tp.stop)
	return tp
}

// waitListening waits until sipgo has a UDP listener in its pool: before
// that, a request forced to leave from it fails.
func waitListening(t *testing.T, ua *sipgo.UserAgent, addr netip.AddrPort) {
	t.Helper()
	for range 200 {
		if c, err := ua.TransportLayer().GetConnection("udp", addr.String()); err == nil && c != nil {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("UDP listener %v not ready", addr)
}

// device is a SIP phone on its own UDP socket. It advertises a Contact
// and Via address that is not where it really is, as a phone behind NAT.
type device struct {
	t       *testing.T
	name    string
	addr    netip.AddrPort // where it really is
	contact sip.Uri        // what it claims
	cli     *sipgo.Client
	got     chan *sip.Request // every request it received, CANCEL included
	behave  func(d *device, req *sip.Request, tx sip.ServerTransaction)

	mu      sync.Mutex
	lastInv *sip.Request // last INVITE received
	tag     string       // its To tag for that INVITE
}

func newDevice(t *testing.T, name, contact string, behave func(*device, *sip.Request, sip.ServerTransaction)) *device {
	t.Helper()
	uc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &device{t: t, name: name, addr: netip.MustParseAddrPort(uc.LocalAddr().String()), got: make(chan *sip.Request, 32), behave: behave}
	if err := sip.ParseUri(contact, &d.contact); err != nil {
		t.Fatal(err)
	}
	ua, err := sipgo.NewUA(sipgo.WithUserAgent(name))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	d.cli, err = sipgo.NewClient(ua,
		sipgo.WithClientHostname(d.contact.Host), sipgo.WithClientPort(d.contact.Port),
		sipgo.WithClientNAT(), sipgo.WithClientConnectionAddr(d.addr.String()))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range Methods {
		srv.OnRequest(m, d.handle)
	}
	go srv.ServeUDP(uc)
	waitListening(t, ua, d.addr)
	t.Cleanup(func() {
		ua.Close()
		uc.Close()
	})
	return d
}

func (d *device) handle(req *sip.Request, tx sip.ServerTransaction) {
	d.got <- req
	switch req.Method {
	case sip.ACK:
	case sip.INVITE:
		d.mu.Lock()
		d.lastInv, d.tag = req, sip.GenerateTagN(8)
		d.mu.Unlock()
		tx.OnCancel(func(r *sip.Request) { d.got <- r })
		if d.behave != nil {
			d.behave(d, req, tx)
		}
	default:
		d.respond(req, tx, 200, "OK")
	}
}

// respond answers with the device's tag and Contact.
func (d *device) respond(req *sip.Request, tx sip.ServerTransaction, code int, reason string) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	if req.IsInvite() {
		d.mu.Lock()
		res.To().Params.Add("tag", d.tag)
		d.mu.Unlock()
	}
	res.AppendHeader(&sip.ContactHeader{Address: d.contact})
	if err := tx.Respond(res); err != nil {
		d.t.Logf("%s: respond %d: %v", d.name, code, err)
	}
}

// Behaviours of a called device.
func answer(after time.Duration) func(*device, *sip.Request, sip.ServerTransaction) {
	return func(d *device, req *sip.Request, tx sip.ServerTransaction) {
		d.respond(req, tx, 180, "Ringing")
		time.Sleep(after)
		d.respond(req, tx, 200, "OK")
	}
}

func ring(d *device, req *sip.Request, tx sip.ServerTransaction) {
	d.respond(req, tx, 180, "Ringing")
	waitTx(tx)
}

func busy(d *device, req *sip.Request, tx sip.ServerTransaction) {
	d.respond(req, tx, 486, "Busy Here")
}

// silent never answers; sipgo's transaction still sends 100 Trying.
func silent(d *device, req *sip.Request, tx sip.ServerTransaction) { waitTx(tx) }

func waitTx(tx sip.ServerTransaction) {
	select {
	case <-tx.Done():
	case <-time.After(10 * time.Second):
	}
}

// binding is how the device registered: from its real socket to the
// proxy's UDP listener, behind NAT, Contact as it claims.
func (d *device) binding(tp *testProxy, q uint16) location.Binding {
	return location.Binding{
		AOR: "bob@example.com", Contact: d.contact.String(), Q: q, NAT: true,
		Flow: location.Flow{Transport: location.TransportUDP, Remote: d.addr, Local: tp.udp},
	}
}

// expect waits for the next request of a method, skipping others.
func (d *device) expect(method sip.RequestMethod) *sip.Request {
	d.t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case r := <-d.got:
			if r.Method == method {
				return r
			}
		case <-timeout:
			d.t.Fatalf("%s: no %s received", d.name, method)
			return nil
		}
	}
}

// quiet reports a request of a method arriving within d.
func (d *device) quiet(method sip.RequestMethod, wait time.Duration) {
	d.t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case r := <-d.got:
			if r.Method == method {
				d.t.Errorf("%s: unexpected %s", d.name, r.StartLine())
			}
		case <-timeout:
			return
		}
	}
}

// invite sends an INVITE through the proxy and returns its transaction.
func (d *device) invite(tp *testProxy, to string, hdrs ...sip.Header) (*sip.Request, sip.ClientTransaction) {
	d.t.Helper()
	var ruri sip.Uri
	if err := sip.ParseUri(to, &ruri); err != nil {
		d.t.Fatal(err)
	}
	req := sip.NewRequest(sip.INVITE, ruri)
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: d.name, Host: "example.com"}, Params: sip.HeaderParams{{K: "tag", V: sip.GenerateTagN(8)}}})
	req.AppendHeader(&sip.ToHeader{Address: ruri})
	req.AppendHeader(&sip.ContactHeader{Address: d.contact})
	for _, h := range hdrs {
		req.AppendHeader(h)
	}
	req.SetDestination(tp.udp.String())
	tx, err := d.cli.TransactionRequest(context.Background(), req)
	if err != nil {
		d.t.Fatalf("%s: send INVITE: %v", d.name, err)
	}
	d.t.Cleanup(tx.Terminate)
	return req, tx
}

// responses collects a transaction's responses up to the final one.
func responses(t *testing.T, tx sip.ClientTransaction) []*sip.Response {
	t.Helper()
	var out []*sip.Response
	timeout := time.After(10 * time.Second)
	for {
		select {
		case r := <-tx.Responses():
			out = append(out, r)
			if !r.IsProvisional() {
				return out
			}
		case <-tx.Done():
			t.Fatalf("transaction ended without final response: %v", tx.Err())
		case <-timeout:
			t.Fatalf("no final response; got %v", codes(out))
		}
	}
}

func codes(rs []*sip.Response) []int {
	out := make([]int, len(rs))
	for i, r := range rs {
		out[i] = r.StatusCode
	}
	return out
}

// fromCaller builds an in-dialog request of the caller after the 2xx: to
// the callee's Contact, through the reversed Record-Route (RFC 3261 §12.1.2).
func fromCaller(method sip.RequestMethod, inv *sip.Request, ok *sip.Response, seq uint32) *sip.Request {
	req := sip.NewRequest(method, ok.Contact().Address)
	rrs := ok.GetHeaders("Record-Route")
	for i := len(rrs) - 1; i >= 0; i-- {
		req.AppendHeader(&sip.RouteHeader{Address: rrs[i].(*sip.RecordRouteHeader).Address})
	}
	req.AppendHeader(sip.HeaderClone(inv.From()))
	req.AppendHeader(sip.HeaderClone(ok.To()))
	req.AppendHeader(sip.HeaderClone(inv.CallID()))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: method})
	return req
}

// fromCallee builds an in-dialog request of the callee: to the caller's
// Contact, through the Record-Route of the INVITE in order (§12.1.1).
func (d *device) fromCallee(method sip.RequestMethod) *sip.Request {
	d.mu.Lock()
	inv, tag := d.lastInv, d.tag
	d.mu.Unlock()
	req := sip.NewRequest(method, inv.Contact().Address)
	for _, h := range inv.GetHeaders("Record-Route") {
		req.AppendHeader(&sip.RouteHeader{Address: h.(*sip.RecordRouteHeader).Address})
	}
	from := &sip.FromHeader{Address: inv.To().Address, Params: sip.HeaderParams{{K: "tag", V: tag}}}
	to := &sip.ToHeader{Address: inv.From().Address, Params: inv.From().Params.Clone()}
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(sip.HeaderClone(inv.CallID()))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: method})
	return req
}

// do sends a request in its own transaction and returns the final response.
func (d *device) do(req *sip.Request) *sip.Response {
	d.t.Helper()
	tx, err := d.cli.TransactionRequest(context.Background(), req)
	if err != nil {
		d.t.Fatalf("%s: send %s: %v", d.name, req.Method, err)
	}
	defer tx.Terminate()
	rs := responses(d.t, tx)
	return rs[len(rs)-1]
}
