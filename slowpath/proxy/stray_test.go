package proxy

import (
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/emiago/sipgo/sip"
	"github.com/google/go-cmp/cmp"
)

// TestStrayAnswerAfterFailover: a call rings through proxy a; a dies (its
// sockets closed, as kill -9 leaves them) and b, holding the same route
// key, takes its address; bob's 200 then reaches b, which has no client
// transaction for it. b forwards it to the caller as a would have, header
// for header, and the caller's ACK and BYE reach bob over his flow from
// b's socket. The same call without the failover gives the 200 to compare.
func TestStrayAnswerAfterFailover(t *testing.T) {
	stateful := ringAndAnswer(t, false)
	forwarded := ringAndAnswer(t, true)
	if diff := cmp.Diff(normalise(stateful), normalise(forwarded)); diff != "" {
		t.Errorf("200 forwarded without the transaction differs from the one relayed with it (-stateful +stateless):\n%s", diff)
	}
}

// ringAndAnswer runs one call from alice to bob through a proxy; with
// failover the proxy is replaced by another on its address while bob
// rings. It returns the 200 alice got, after checking that her ACK and
// BYE reached bob from the proxy's socket.
func ringAndAnswer(t *testing.T, failover bool) string {
	t.Helper()
	a := startProxy(t, func(c *Config) { c.Keys = testKeys })
	answerNow := make(chan struct{})
	bob := newDevice(t, "bob", "sip:bob@192.0.2.1:5999", func(d *device, req *sip.Request, tx sip.ServerTransaction) {
		d.respond(req, tx, 180, "Ringing")
		<-answerNow
		d.respond(req, tx, 200, "OK")
	})
	a.loc.add("bob@example.com", bob.binding(a, 1000))
	alice := newDevice(t, "alice", "sip:alice@192.0.2.2:5998", nil)

	inv, tx := alice.invite(a, "sip:bob@example.com")
	bob.expect(sip.INVITE)
	waitFor(t, tx, 180)
	proxyAddr := a.udp
	before := mStrayForwarded.Get()
	if failover {
		a.stop()
		startProxyOn(t, a.udp.String(), func(c *Config) { c.Keys = testKeys })
	}
	close(answerNow)
	rs := responses(t, tx)
	ok := rs[len(rs)-1]
	if ok.StatusCode != 200 {
		t.Fatalf("caller's final response %d, want 200", ok.StatusCode)
	}
	// The proxy counts a forwarded response once its write returned,
	// which may be after alice read it.
	want := map[bool]uint64{false: 0, true: 1}[failover]
	for deadline := time.Now().Add(time.Second); mStrayForwarded.Get()-before < want && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if got := mStrayForwarded.Get() - before; got != want {
		t.Errorf("stray responses forwarded: %d, want %d", got, want)
	}
	if ok.Source() != proxyAddr.String() {
		t.Errorf("200 came from %s, want the proxy's address %s", ok.Source(), proxyAddr)
	}

	ack := fromCaller(sip.ACK, inv, ok, inv.CSeq().SeqNo)
	if err := alice.cli.WriteRequest(ack); err != nil {
		t.Fatal(err)
	}
	if got := bob.expect(sip.ACK).Source(); got != proxyAddr.String() {
		t.Errorf("ACK reached bob from %s, want %s", got, proxyAddr)
	}
	if res := alice.do(fromCaller(sip.BYE, inv, ok, inv.CSeq().SeqNo+1)); res.StatusCode != 200 {
		t.Errorf("BYE answered %d", res.StatusCode)
	}
	if got := bob.expect(sip.BYE).Source(); got != proxyAddr.String() {
		t.Errorf("BYE reached bob from %s, want %s", got, proxyAddr)
	}
	return ok.String()
}

// normalise blanks what differs between two runs of the same call: tags,
// Call-ID, CSeq number, branches, MACs, flows and loopback ports.
var normaliseRes = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`(tag|branch|sig|nc|nr|rport)=[^;>,\s]+`), "$1=X"},
	{regexp.MustCompile(`Call-ID: [^\r\n]*`), "Call-ID: X"},
	{regexp.MustCompile(`CSeq: \d+`), "CSeq: X"},
	{regexp.MustCompile(`127\.0\.0\.1:\d+`), "127.0.0.1:P"},
}

func normalise(msg string) string {
	for _, n := range normaliseRes {
		msg = n.re.ReplaceAllString(msg, n.with)
	}
	return msg
}

// TestStrayDropped: a stray response is forwarded only under a branch
// MAC of pinhole's for its Call-ID and next hop; everything else is
// dropped, counted, and sends nothing anywhere: pinhole reflects no
// forged response.
func TestStrayDropped(t *testing.T) {
	tp := startProxy(t, func(c *Config) { c.Keys = testKeys })
	target := listenUDP(t)
	other := listenUDP(t)
	ours := "SIP/2.0/UDP " + tp.udp.String()
	hop := func(to netip.AddrPort) string {
		return "SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bK.caller;received=127.0.0.1;rport=" + strconv.Itoa(int(to.Port()))
	}
	signed := func(callID string, to netip.AddrPort) string {
		b := branchParts{base: "z9hG4bK.abcdefgh"}
		b.mac = tp.p.branchMAC(b, callID, "UDP "+to.String())
		return b.String()
	}
	good := signed("cid1", target.addr)
	forgedMAC := good[:len(good)-1] + map[bool]string{true: "b", false: "a"}[strings.HasSuffix(good, "a")]

	for _, tc := range []struct {
		name    string
		code    int
		vias    []string
		callID  string
		counter string
		reaches *udpSink // who gets it; nil: nobody
	}{
		{"signed", 200, []string{ours + ";branch=" + good, hop(target.addr)}, "cid1", "forwarded", target},
		{"signed 180", 180, []string{ours + ";branch=" + good, hop(target.addr)}, "cid1", "forwarded", target},
		{"forged MAC", 200, []string{ours + ";branch=" + forgedMAC, hop(target.addr)}, "cid1", "forged", nil},
		{"another call's branch", 200, []string{ours + ";branch=" + good, hop(target.addr)}, "cid2", "forged", nil},
		{"another next hop", 200, []string{ours + ";branch=" + good, hop(other.addr)}, "cid1", "forged", nil},
		{"foreign top Via", 200, []string{"SIP/2.0/UDP 10.2.2.2:5060;branch=" + good, hop(target.addr)}, "cid1", "not_ours", nil},
		{"one Via", 200, []string{ours + ";branch=" + good}, "cid1", "last_via", nil},
		{"unsigned", 200, []string{ours + ";branch=z9hG4bK.abcdefgh", hop(target.addr)}, "cid1", "unsigned", nil},
		{"not pinhole's branch", 200, []string{ours + ";branch=z9hG4bK-ph0123", hop(target.addr)}, "cid1", "unsigned", nil},
		{"100 Trying", 100, []string{ours + ";branch=" + good, hop(target.addr)}, "cid1", "hop_by_hop", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := `pinhole_proxy_stray_responses_total{result="` + tc.counter + `"}`
			before := metrics.GetOrCreateCounter(name).Get()
			tp.p.ForwardStray(parseResponse(t, tc.code, tc.vias, tc.callID))
			if got := metrics.GetOrCreateCounter(name).Get() - before; got != 1 {
				t.Errorf("%s went up by %d, want 1", name, got)
			}
			for _, s := range []*udpSink{target, other} {
				msg, got := s.read(map[bool]time.Duration{true: 2 * time.Second, false: 200 * time.Millisecond}[s == tc.reaches])
				if got != (s == tc.reaches) {
					t.Errorf("%s received %q; want a message: %v", s.addr, msg, s == tc.reaches)
				}
				if got && strings.Contains(msg, tp.udp.String()) {
					t.Errorf("forwarded response still carries pinhole's Via:\n%s", msg)
				}
			}
		})
	}
}

func parseResponse(t *testing.T, code int, vias []string, callID string) *sip.Response {
	t.Helper()
	var b strings.Builder
	b.WriteString("SIP/2.0 " + strconv.Itoa(code) + " Whatever\r\n")
	for _, v := range vias {
		b.WriteString("Via: " + v + "\r\n")
	}
	b.WriteString("From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>;tag=b1\r\n")
	b.WriteString("Call-ID: " + callID + "\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
	m, err := sip.ParseMessage([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return m.(*sip.Response)
}

// udpSink is a socket that records what reaches it.
type udpSink struct {
	c    net.PacketConn
	addr netip.AddrPort
}

func listenUDP(t *testing.T) *udpSink {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &udpSink{c: c, addr: netip.MustParseAddrPort(c.LocalAddr().String())}
}

// read returns the next datagram within wait.
func (s *udpSink) read(wait time.Duration) (string, bool) {
	buf := make([]byte, 65535)
	s.c.SetReadDeadline(time.Now().Add(wait))
	n, _, err := s.c.ReadFrom(buf)
	if err != nil {
		return "", false
	}
	return string(buf[:n]), true
}

// TestCancelAfterFailover: a call rings through proxy a; a dies and b,
// holding the same route key and location store, takes its address; the
// caller cancels. b has no transaction for the call, yet the CANCEL
// reaches bob under the branch a gave the INVITE, so bob's transaction
// layer matches it (RFC 3261 §9.2) and answers 487; b answers the
// caller's CANCEL 200 and forwards the 487 as a stray response. The
// caller's ACK for the 487, hop by hop (§17.1.1.3), reaches bob under the
// same branch, so his INVITE transaction stops retransmitting the 487.
func TestCancelAfterFailover(t *testing.T) {
	a := startProxy(t, func(c *Config) { c.Keys = testKeys })
	// bob rings; the ACK his INVITE transaction takes (for its 487) is
	// passed on to the test.
	bob := newDevice(t, "bob", "sip:bob@192.0.2.1:5999", func(d *device, req *sip.Request, tx sip.ServerTransaction) {
		d.respond(req, tx, 180, "Ringing")
		select {
		case ack := <-tx.Acks():
			d.got <- ack
		case <-tx.Done():
		case <-time.After(10 * time.Second):
		}
	})
	a.loc.add("bob@example.com", bob.binding(a, 1000))
	alice := newDevice(t, "alice", "sip:alice@192.0.2.2:5998", nil)

	inv, tx := alice.invite(a, "sip:bob@example.com")
	sent := bob.expect(sip.INVITE)
	waitFor(t, tx, 180)
	a.stop()
	b := startProxyOn(t, a.udp.String(), func(c *Config) { c.Keys = testKeys })
	b.loc.add("bob@example.com", bob.binding(b, 1000))
	branch := sent.Via().Params.GetOr("branch", "")

	cancels, acks, strays := mStrayCancels.forwarded.Get(), mStrayAcks.forwarded.Get(), mStrayForwarded.Get()
	if res := alice.do(cancelOf(inv, b.udp)); res.StatusCode != 200 {
		t.Errorf("CANCEL answered %d, want 200", res.StatusCode)
	}
	got := bob.expect(sip.CANCEL)
	if got.Source() != b.udp.String() {
		t.Errorf("CANCEL reached bob from %s, want %s", got.Source(), b.udp)
	}
	if have := got.Via().Params.GetOr("branch", ""); have != branch {
		t.Errorf("CANCEL's branch %q, want the INVITE's %q", have, branch)
	}
	rs := responses(t, tx)
	last := rs[len(rs)-1]
	if last.StatusCode != 487 || last.Source() != b.udp.String() {
		t.Errorf("caller's final response %d from %s, want 487 from %s", last.StatusCode, last.Source(), b.udp)
	}
	if n := mStrayCancels.forwarded.Get() - cancels; n != 1 {
		t.Errorf("stray CANCELs forwarded: %d, want 1", n)
	}
	// sipgo's INVITE client transaction ACKs the 487 by itself; bob's
	// INVITE server transaction must take it.
	ack := bob.expect(sip.ACK)
	if ack.Source() != b.udp.String() || ack.Via().Params.GetOr("branch", "") != branch {
		t.Errorf("ACK reached bob from %s with branch %q, want from %s with the INVITE's %q",
			ack.Source(), ack.Via().Params.GetOr("branch", ""), b.udp, branch)
	}
	// Counted once their writes returned, which may be after the peer
	// read them; bob may have retransmitted the 487 meanwhile (timer G).
	for deadline := time.Now().Add(time.Second); (mStrayForwarded.Get() == strays || mStrayAcks.forwarded.Get() == acks) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if mStrayForwarded.Get() == strays {
		t.Errorf("the 487 was not counted as a forwarded stray response")
	}
	if n := mStrayAcks.forwarded.Get() - acks; n < 1 {
		t.Errorf("stray ACKs forwarded: %d, want at least 1", n)
	}
}
