package proxy

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/slowpath/dispatch"
)

// node is a farm server (a FreeSWITCH, a registrar node) on a loopback
// UDP socket: it answers every request with its handler.
type node struct {
	t      *testing.T
	addr   netip.AddrPort
	cli    *sipgo.Client
	got    chan *sip.Request
	handle func(n *node, req *sip.Request, tx sip.ServerTransaction)
}

func newNode(t *testing.T, handle func(*node, *sip.Request, sip.ServerTransaction)) *node {
	t.Helper()
	uc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, addr: netip.MustParseAddrPort(uc.LocalAddr().String()), got: make(chan *sip.Request, 64), handle: handle}
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("node"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	n.cli, err = sipgo.NewClient(ua, sipgo.WithClientHostname(n.addr.Addr().String()), sipgo.WithClientPort(int(n.addr.Port())),
		sipgo.WithClientConnectionAddr(n.addr.String()))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range append(Methods, sip.REGISTER) {
		srv.OnRequest(m, func(req *sip.Request, tx sip.ServerTransaction) {
			n.got <- req
			if n.handle != nil && req.Method != sip.ACK {
				n.handle(n, req, tx)
			}
		})
	}
	go srv.ServeUDP(uc)
	waitListening(t, ua, n.addr)
	t.Cleanup(func() {
		ua.Close()
		uc.Close()
	})
	return n
}

func (n *node) uri() string { return "sip:" + n.addr.String() }

// status answers every request with code (an INVITE gets a To tag).
func status(code int) func(*node, *sip.Request, sip.ServerTransaction) {
	return func(n *node, req *sip.Request, tx sip.ServerTransaction) {
		res := sip.NewResponseFromRequest(req, code, "", nil)
		if req.IsInvite() {
			res.To().Params.Add("tag", "node")
		}
		res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "fs", Host: n.addr.Addr().String(), Port: int(n.addr.Port())}})
		_ = tx.Respond(res)
	}
}

// deadNode is a UDP socket that reads and drops everything: a node whose
// FreeSWITCH process is gone (no ICMP reaches sipgo's unconnected socket).
func deadNode(t *testing.T) netip.AddrPort {
	t.Helper()
	uc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 65535)
		for {
			if _, _, err := uc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { uc.Close() })
	return netip.MustParseAddrPort(uc.LocalAddr().String())
}

func newFarm(t *testing.T, alg dispatch.Algorithm, register bool, uris ...string) *dispatch.Dispatcher {
	t.Helper()
	var ds []dispatch.DestinationConfig
	for _, u := range uris {
		ds = append(ds, dispatch.DestinationConfig{URI: u})
	}
	cfg := dispatch.Config{
		Sets:     []dispatch.SetConfig{{Name: "fs", Algorithm: alg, Destinations: ds}},
		Rules:    []dispatch.Rule{{Set: "fs", Domains: []string{"farm.example"}}},
		Probe:    dispatch.ProbeConfig{DownAfter: 1, UpAfter: 1},
		Failover: dispatch.FailoverConfig{DownOn503: true, Timeout: 300 * time.Millisecond},
	}
	if register {
		cfg.Register = "fs"
	}
	f, err := dispatch.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

// TestFarmFailover: the first node is dead, the second answers 503, the
// third takes the call. The caller sees only the third's answer; the dead
// node and the 503 node are out afterwards, so the next call goes
// straight to the third.
func TestFarmFailover(t *testing.T) {
	dead := deadNode(t)
	n503 := newNode(t, status(503))
	good := newNode(t, status(200))
	farm := newFarm(t, dispatch.RoundRobin, false, "sip:"+dead.String(), n503.uri(), good.uri())
	tp := startProxy(t, func(c *Config) { c.Farm = farm })
	alice := newDevice(t, "alice", "sip:alice@127.0.0.1:5998", nil)

	_, tx := alice.invite(tp, "sip:conf-1@farm.example")
	rs := responses(t, tx)
	if got := rs[len(rs)-1].StatusCode; got != 200 {
		t.Fatalf("caller got %v, want a 200 after failover", codes(rs))
	}
	if got := n503.expect(sip.INVITE).Recipient.String(); got != "sip:conf-1@farm.example" {
		t.Errorf("node's Request-URI = %s, want the caller's (dispatch does not retarget)", got)
	}
	good.expect(sip.INVITE)
	var states []string
	for _, s := range farm.Destinations() {
		states = append(states, s.State.String())
	}
	if diff := cmp.Diff([]string{"probing", "probing", "up"}, states); diff != "" {
		t.Errorf("states after the call (-want +got):\n%s", diff)
	}
	_, tx = alice.invite(tp, "sip:conf-2@farm.example")
	if rs := responses(t, tx); rs[len(rs)-1].StatusCode != 200 {
		t.Fatalf("second call got %v", codes(rs))
	}
	good.expect(sip.INVITE)
	n503.quietFor(200 * time.Millisecond)
}

func (n *node) expect(m sip.RequestMethod) *sip.Request {
	n.t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case r := <-n.got:
			if r.Method == m {
				return r
			}
		case <-timeout:
			n.t.Fatalf("node %s: no %s", n.addr, m)
			return nil
		}
	}
}

func (n *node) quietFor(d time.Duration) {
	n.t.Helper()
	select {
	case r := <-n.got:
		n.t.Errorf("node %s got %s, want nothing", n.addr, r.StartLine())
	case <-time.After(d):
	}
}

// TestFarmNoFailoverOnBusy: a 486 is the callee's answer, not the node's
// failure; it goes to the caller and no other node is tried.
func TestFarmNoFailoverOnBusy(t *testing.T) {
	busyNode := newNode(t, status(486))
	other := newNode(t, status(200))
	farm := newFarm(t, dispatch.HashUser, false, busyNode.uri(), other.uri())
	tp := startProxy(t, func(c *Config) { c.Farm = farm })
	alice := newDevice(t, "alice", "sip:alice@127.0.0.1:5998", nil)
	// Find a user the hash sends to the busy node first.
	user := ""
	for _, u := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		if ns := farm.Select(farm.Set("fs"), &dispatch.Request{User: u}); ns[0].URI == busyNode.uri() {
			user = u
			break
		}
	}
	if user == "" {
		t.Fatal("no user hashes to the first node")
	}
	_, tx := alice.invite(tp, "sip:"+user+"@farm.example")
	if rs := responses(t, tx); rs[len(rs)-1].StatusCode != 486 {
		t.Fatalf("caller got %v, want 486", codes(rs))
	}
	other.quietFor(300 * time.Millisecond)
}

// TestFarmAllDown: with every node out, pinhole answers 503 with
// Retry-After itself and sends nothing.
func TestFarmAllDown(t *testing.T) {
	n := newNode(t, status(200))
	farm := newFarm(t, dispatch.RoundRobin, false, n.uri())
	if err := farm.SetState("fs", n.uri(), dispatch.Disabled); err != nil {
		t.Fatal(err)
	}
	tp := startProxy(t, func(c *Config) { c.Farm = farm })
	alice := newDevice(t, "alice", "sip:alice@127.0.0.1:5998", nil)
	_, tx := alice.invite(tp, "sip:x@farm.example")
	rs := responses(t, tx)
	last := rs[len(rs)-1]
	if last.StatusCode != 503 || last.GetHeader("Retry-After") == nil {
		t.Fatalf("caller got %v (Retry-After %v), want 503 with Retry-After", codes(rs), last.GetHeader("Retry-After"))
	}
	n.quietFor(200 * time.Millisecond)
}

// registrar is a node that challenges a REGISTER without credentials with
// its own nonce, and accepts one whose nonce it issued.
func registrar(name string, mu *sync.Mutex, calls map[string][]string) func(*node, *sip.Request, sip.ServerTransaction) {
	return func(n *node, req *sip.Request, tx sip.ServerTransaction) {
		if req.Method != sip.REGISTER {
			status(200)(n, req, tx)
			return
		}
		h := req.GetHeader("Authorization")
		mu.Lock()
		if h != nil {
			calls[name] = append(calls[name], h.Value())
		}
		mu.Unlock()
		if h != nil && strings.Contains(h.Value(), `nonce="`+name+`"`) {
			res := sip.NewResponseFromRequest(req, 200, "OK", nil)
			if p := req.GetHeader("Path"); p != nil {
				res.AppendHeader(sip.NewHeader("Path", p.Value()))
			}
			_ = tx.Respond(res)
			return
		}
		res := sip.NewResponseFromRequest(req, 401, "Unauthorized", nil)
		res.AppendHeader(sip.NewHeader("WWW-Authenticate", `Digest realm="farm", nonce="`+name+`"`))
		_ = tx.Respond(res)
	}
}

func register(d *device, tp *testProxy, callID string, seq uint32, auth string) *sip.Response {
	d.t.Helper()
	ruri := sip.Uri{Scheme: "sip", Host: "farm.example"}
	req := sip.NewRequest(sip.REGISTER, ruri)
	aor := sip.Uri{Scheme: "sip", User: d.name, Host: "farm.example"}
	req.AppendHeader(&sip.FromHeader{Address: aor, Params: sip.HeaderParams{{K: "tag", V: "t" + callID}}})
	req.AppendHeader(&sip.ToHeader{Address: aor})
	cid := sip.CallIDHeader(callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: sip.REGISTER})
	req.AppendHeader(&sip.ContactHeader{Address: d.contact})
	req.AppendHeader(sip.NewHeader("Supported", "path"))
	if auth != "" {
		req.AppendHeader(sip.NewHeader("Authorization", auth))
	}
	req.SetDestination(tp.udp.String())
	return d.do(req)
}

// TestFarmChallengeSticky: with round robin over two registrar nodes, the
// authenticated retry of each REGISTER reaches the node that challenged
// it (only that node knows its nonce), never the other one.
func TestFarmChallengeSticky(t *testing.T) {
	var mu sync.Mutex
	calls := map[string][]string{}
	a := newNode(t, registrar("a", &mu, calls))
	b := newNode(t, registrar("b", &mu, calls))
	farm := newFarm(t, dispatch.RoundRobin, true, a.uri(), b.uri())
	tp := startProxy(t, func(c *Config) { c.Farm = farm })
	alice := newDevice(t, "alice", "sip:alice@127.0.0.1:5998", nil)
	for i, id := range []string{"r1", "r2", "r3"} {
		res := register(alice, tp, id, 1, "")
		if res.StatusCode != 401 {
			t.Fatalf("REGISTER %s got %d, want the node's 401", id, res.StatusCode)
		}
		nonce := "a"
		if !strings.Contains(res.GetHeader("WWW-Authenticate").Value(), `nonce="a"`) {
			nonce = "b"
		}
		res = register(alice, tp, id, 2, `Digest username="alice", realm="farm", nonce="`+nonce+`", uri="sip:farm.example", response="x"`)
		if res.StatusCode != 200 {
			t.Errorf("retry %d of %s got %d: it did not reach the challenging node %s", i, id, res.StatusCode, nonce)
		}
	}
}

// TestFarmRegisterPathAndCallBack is the edge-only topology: a device
// behind NAT registers through pinhole to a registrar node, which sees
// pinhole's Path with the device's real address; the node then calls the
// device through that Path, and its BYE finds the device's flow again
// through pinhole's Record-Route (no location look-up in pinhole).
// With topology hiding the device sees no address of the node.
func TestFarmRegisterPathAndCallBack(t *testing.T) {
	for _, hide := range []bool{false, true} {
		name := "plain"
		if hide {
			name = "topology hiding"
		}
		t.Run(name, func(t *testing.T) {
			var mu sync.Mutex
			reg := newNode(t, registrar("a", &mu, map[string][]string{}))
			farm := newFarm(t, dispatch.RoundRobin, true, reg.uri())
			tp := startProxy(t, func(c *Config) { c.Farm = farm; c.TopologyHiding = hide })
			// Contact and Via claim a private address: behind NAT.
			bob := newDevice(t, "bob", "sip:bob@192.168.1.20:5060", answer(10*time.Millisecond))

			register(bob, tp, "reg1", 1, "")
			res := register(bob, tp, "reg1", 2, `Digest username="bob", nonce="a"`)
			if res.StatusCode != 200 {
				t.Fatalf("REGISTER got %d", res.StatusCode)
			}
			got := reg.expect(sip.REGISTER)
			got = reg.expect(sip.REGISTER) // the retry
			path := got.GetHeader("Path")
			if path == nil {
				t.Fatal("REGISTER reached the node without Path")
			}
			if want := "received=sip:" + bob.addr.String(); !strings.Contains(path.Value(), want) {
				t.Errorf("Path %s lacks %s", path.Value(), want)
			}

			// The node calls bob's registered Contact through the Path.
			var pathURI sip.Uri
			v := path.Value()
			if err := sip.ParseUri(v[strings.IndexByte(v, '<')+1:strings.IndexByte(v, '>')], &pathURI); err != nil {
				t.Fatal(err)
			}
			inv := sip.NewRequest(sip.INVITE, bob.contact)
			inv.AppendHeader(&sip.RouteHeader{Address: pathURI})
			from := sip.Uri{Scheme: "sip", User: "fs", Host: "farm.example"}
			inv.AppendHeader(&sip.FromHeader{Address: from, Params: sip.HeaderParams{{K: "tag", V: "fstag"}}})
			inv.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "farm.example"}})
			inv.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "fs", Host: reg.addr.Addr().String(), Port: int(reg.addr.Port())}})
			inv.AppendHeader(&sip.RecordRouteHeader{Address: sip.Uri{Scheme: "sip", Host: "10.9.9.9", UriParams: sip.HeaderParams{{K: "lr"}}}})
			inv.SetDestination(tp.udp.String())
			tx, err := reg.cli.TransactionRequest(context.Background(), inv)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(tx.Terminate)
			gotInv := bob.expect(sip.INVITE)
			if diff := cmp.Diff(bob.contact.String(), gotInv.Recipient.String()); diff != "" {
				t.Errorf("device's Request-URI (-want +got):\n%s", diff)
			}
			rs := responses(t, tx)
			ok := rs[len(rs)-1]
			if ok.StatusCode != 200 {
				t.Fatalf("node's INVITE got %v", codes(rs))
			}
			if n := len(ok.GetHeaders("Via")); n != 1 {
				t.Errorf("2xx reaches the node with %d Via, want its own", n)
			}
			farmAddr := reg.addr.Addr().String()
			leaks := func(r *sip.Request) []string {
				var out []string
				for _, h := range r.Headers() {
					if strings.Contains(h.Value(), farmAddr+":"+itoa(reg.addr.Port())) || strings.Contains(h.Value(), "10.9.9.9") {
						out = append(out, h.Name()+": "+h.Value())
					}
				}
				return out
			}
			if l := leaks(gotInv); hide && len(l) > 0 {
				t.Errorf("device saw farm addresses: %v", l)
			} else if !hide && len(l) == 0 {
				t.Error("without hiding the device sees the node's Via and Contact; the leak check finds nothing")
			}

			// The node hangs up: the BYE follows the Record-Route to bob's flow.
			bye := fromCaller(sip.BYE, inv, ok, 2)
			if hide {
				// The node's own Record-Route entry came back in the 2xx.
				if n := len(ok.GetHeaders("Record-Route")); n != 2 {
					t.Errorf("2xx to the node has %d Record-Route, want pinhole's and its own", n)
				}
				bye.RemoveHeader("Route")
				bye.RemoveHeader("Route")
				for _, h := range ok.GetHeaders("Record-Route") {
					if rr := h.(*sip.RecordRouteHeader); !strings.Contains(rr.Address.Host, "10.9.9.9") {
						bye.AppendHeader(&sip.RouteHeader{Address: rr.Address})
					}
				}
			} else {
				bye.RemoveHeader("Route")
				bye.RemoveHeader("Route")
				bye.AppendHeader(&sip.RouteHeader{Address: ok.RecordRoute().Address})
			}
			bye.SetDestination(tp.udp.String())
			btx, err := reg.cli.TransactionRequest(context.Background(), bye)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(btx.Terminate)
			gotBye := bob.expect(sip.BYE)
			if diff := cmp.Diff(tp.udp.String(), gotBye.Source()); diff != "" {
				t.Errorf("BYE left from another socket (-want +got):\n%s", diff)
			}
			if l := leaks(gotBye); hide && len(l) > 0 {
				t.Errorf("device saw farm addresses in BYE: %v", l)
			}
			if rs := responses(t, btx); rs[len(rs)-1].StatusCode != 200 {
				t.Errorf("BYE got %v", codes(rs))
			}
			if hide {
				// bob's own BYE to the hidden Contact reaches the node.
				req := bob.fromCallee(sip.BYE)
				req.SetDestination(tp.udp.String())
				res := bob.do(req)
				if res.StatusCode != 200 {
					t.Errorf("device's BYE to the hidden Contact got %d", res.StatusCode)
				}
				if c := res.Contact(); c == nil || c.Address.Host == farmAddr && c.Address.Port == int(reg.addr.Port()) {
					t.Errorf("node's answer to the device's BYE shows Contact %v", c)
				}
				if r := reg.expect(sip.BYE); r.Recipient.Host != farmAddr {
					t.Errorf("device's BYE reached the node with Request-URI %s", r.Recipient.String())
				}
			}
		})
	}
}

func itoa(p uint16) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), p).String()[len("0.0.0.0:"):]
}

// TestFarmOversize: a device-bound request over the limit loses the
// configured headers, then takes compact header names.
func TestFarmOversize(t *testing.T) {
	var mu sync.Mutex
	reg := newNode(t, registrar("a", &mu, map[string][]string{}))
	farm := newFarm(t, dispatch.RoundRobin, true, reg.uri())
	tp := startProxy(t, func(c *Config) {
		c.Farm = farm
		c.Oversize = Oversize{Limit: 900, Strip: []string{"X-Junk"}}
	})
	bob := newDevice(t, "bob", "sip:bob@192.168.1.20:5060", answer(0))
	register(bob, tp, "reg1", 1, "")
	register(bob, tp, "reg1", 2, `Digest username="bob", nonce="a"`)
	reg.expect(sip.REGISTER)
	path := reg.expect(sip.REGISTER).GetHeader("Path").Value()
	var pathURI sip.Uri
	if err := sip.ParseUri(path[1:strings.IndexByte(path, '>')], &pathURI); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		junk    int
		compact bool
	}{{"fits", 0, false}, {"stripped", 600, false}, {"compact", 0, true}} {
		t.Run(c.name, func(t *testing.T) {
			msg := sip.NewRequest(sip.MESSAGE, bob.contact)
			msg.AppendHeader(&sip.RouteHeader{Address: pathURI})
			msg.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "fs", Host: "farm.example"}, Params: sip.HeaderParams{{K: "tag", V: "m"}}})
			msg.AppendHeader(&sip.ToHeader{Address: bob.contact})
			if c.junk > 0 {
				msg.AppendHeader(sip.NewHeader("X-Junk", strings.Repeat("j", c.junk)))
			}
			if c.compact {
				msg.AppendHeader(sip.NewHeader("Subject", strings.Repeat("s", 300)))
				msg.AppendHeader(sip.NewHeader("Supported", strings.Repeat("k", 300)))
			}
			msg.SetDestination(tp.udp.String())
			tx, err := reg.cli.TransactionRequest(context.Background(), msg)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Terminate()
			got := bob.expect(sip.MESSAGE)
			if got.GetHeader("X-Junk") != nil {
				t.Error("X-Junk was not stripped")
			}
			if n := len(got.String()); c.name != "fits" && n > 900+200 {
				t.Errorf("device got %d bytes", n)
			}
			responses(t, tx)
		})
	}
}

// TestFarmPing: the prober's OPTIONS leave from pinhole's listener and
// read the node's answer; a dead node times out.
func TestFarmPing(t *testing.T) {
	n := newNode(t, status(404))
	dead := deadNode(t)
	farm := newFarm(t, dispatch.RoundRobin, false, n.uri())
	tp := startProxy(t, func(c *Config) { c.Farm = farm })
	tg, _ := dispatch.ParseURI(n.uri())
	code, err := tp.p.Ping(context.Background(), tg)
	if err != nil || code != 404 {
		t.Errorf("Ping = %d, %v; want 404", code, err)
	}
	if got := n.expect(sip.OPTIONS).Source(); got != tp.udp.String() {
		t.Errorf("probe came from %s, want pinhole's listener %s", got, tp.udp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := tp.p.Ping(ctx, dispatch.Target{Addr: dead, Transport: "UDP"}); err == nil {
		t.Error("Ping of a dead node succeeded")
	}
}

// TestHideUpContacts: topology hiding rewrites every Contact of a node's
// redirect, and none of a REGISTER's 200, whose Contacts are the device's
// own bindings.
func TestHideUpContacts(t *testing.T) {
	farm := newFarm(t, dispatch.RoundRobin, true, "sip:10.1.1.1:5060")
	p, _ := unitProxy(t, func(c *Config) { c.Farm, c.TopologyHiding = farm, true })
	node := farm.NodeByID(farm.Destinations()[0].ID)
	if node == nil {
		t.Fatal("no node")
	}
	for _, tt := range []struct {
		method   string
		status   int
		contacts []string
		hidden   bool
	}{
		{method: "INVITE", status: 302, contacts: []string{"<sip:a@10.1.1.1:5060>", "<sip:b@10.1.1.2:5060>;q=0.5"}, hidden: true},
		{method: "REGISTER", status: 200, contacts: []string{"<sip:alice@192.0.2.10:5060>;expires=60", "<sip:alice@192.0.2.11:5060>;expires=60"}},
	} {
		t.Run(tt.method, func(t *testing.T) {
			req := request(t, msg(tt.method, "sip:farm.example"))
			res := sip.NewResponseFromRequest(req, tt.status, "X", nil)
			for _, c := range tt.contacts {
				var ch sip.ContactHeader
				if _, err := sip.ParseAddressValue(strings.TrimSuffix(strings.Split(c, ";expires")[0], ";q=0.5"), &ch.Address, &ch.Params); err != nil {
					t.Fatal(err)
				}
				res.AppendHeader(&ch)
			}
			c := &call{p: p, req: req, stx: &fakeTx{}, in: &p.listeners[0]}
			c.hideUp(&branch{t: target{node: node}}, res)
			for _, h := range res.GetHeaders("Contact") {
				leaks := strings.Contains(h.Value(), "10.1.1.")
				if tt.hidden && leaks {
					t.Errorf("a node's Contact reached the device: %s", h.Value())
				}
				if !tt.hidden && !strings.Contains(h.Value(), "192.0.2.1") {
					t.Errorf("the device's own binding was rewritten: %s", h.Value())
				}
			}
		})
	}
}
