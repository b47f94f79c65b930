//go:build integration

package e2e

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/testutil"
)

// The adversarial suite: an attacker on the public side tries to make
// pinhole relay, loop, spoof an identity or skip authentication. pinhole
// runs in a namespace with no route out (only its two veth links), so a
// bug fails the test instead of sending traffic off the machine. The
// victim namespace stands for every host an attacker would like pinhole to
// reach; the attacker has no route to it. Whatever arrives there came
// through pinhole, and each attack asserts what did.
//
//	attacker 10.77.1.2 ── 10.77.1.1 [pinhole] 10.77.2.1 ── 10.77.2.2 victim
//	                                                         :5060 any host
//	                                                         :5070 the carrier core (proxy.outbound)

const (
	atkEdge     = "10.77.1.1"
	atkAttacker = "10.77.1.2"
	atkVictim   = "10.77.2.2"
	atkDomain   = "edge.test"
	atkUser     = "alice"
	atkPassword = "alice-secret"
)

type attackLab struct {
	edge, attacker, victim *testutil.NetNS
	ph                     *testutil.Pinhole
	sip                    string // pinhole's address, host:port
	anyHost                *sink  // victim:5060
	core                   *sink  // victim:5070, pinhole's outbound proxy
}

func newAttackLab(t *testing.T) *attackLab {
	t.Helper()
	l := &attackLab{
		edge:     testutil.NewNetNS(t),
		attacker: testutil.NewNetNS(t),
		victim:   testutil.NewNetNS(t),
		sip:      atkEdge + ":5060",
	}
	testutil.Veth(t, l.edge, l.attacker, netip.MustParsePrefix(atkEdge+"/24"), netip.MustParsePrefix(atkAttacker+"/24"))
	testutil.Veth(t, l.edge, l.victim, netip.MustParsePrefix("10.77.2.1/24"), netip.MustParsePrefix(atkVictim+"/24"))
	// pinhole's UDP socket is bound to its public address: the victim's
	// answers need a way back to it (and to it alone: the edge namespace
	// does not forward, so the attacker stays out of reach).
	l.victim.AddRoute(t, netip.MustParsePrefix(atkEdge+"/32"), netip.MustParseAddr("10.77.2.1"))
	l.anyHost = newSink(t, l.victim, atkVictim+":5060")
	l.core = newSink(t, l.victim, atkVictim+":5070")

	cfg := testutil.DefaultConfig(t)
	cfg.Listen.UDP = []string{l.sip}
	cfg.Listen.TCP = []string{l.sip}
	cfg.Domains = []string{atkDomain}
	cfg.Auth.Credentials = testutil.WriteCredentials(t, cfg.Auth.Realm, map[string]string{atkUser: atkPassword})
	cfg.Proxy.Outbound = "sip:" + atkVictim + ":5070"
	cfg.Metrics.Listen = "127.0.0.1:9060"
	l.ph = testutil.StartPinhole(t, l.edge, cfg)
	return l
}

// sink records every SIP message that reaches an address in the victim
// namespace and answers INVITEs 486, so that pinhole's transactions end.
type sink struct {
	conn *net.UDPConn
	mu   sync.Mutex
	msgs []sip.Message
}

func newSink(t *testing.T, ns *testutil.NetNS, addr string) *sink {
	t.Helper()
	return sinkOn(ns.ListenUDP(t, netip.MustParseAddrPort(addr)))
}

// sinkOn makes a sink of a socket already open.
func sinkOn(c *net.UDPConn) *sink {
	_ = c.SetReadDeadline(time.Time{})
	s := &sink{conn: c}
	go s.serve()
	return s
}

func (s *sink) serve() {
	buf := make([]byte, 65535)
	for {
		n, from, err := s.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		m, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
		if err != nil {
			continue // keepalives, junk: not SIP that pinhole relayed
		}
		s.mu.Lock()
		s.msgs = append(s.msgs, m)
		s.mu.Unlock()
		if req, ok := m.(*sip.Request); ok && req.IsInvite() {
			res := sip.NewResponseFromRequest(req, 486, "Busy Here", nil)
			s.conn.WriteToUDP([]byte(res.String()), from)
		}
	}
}

// requests returns the requests received so far, one per branch:
// retransmissions of a request share its top Via branch.
func (s *sink) requests() []*sip.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	var out []*sip.Request
	for _, m := range s.msgs {
		req, ok := m.(*sip.Request)
		if !ok {
			continue
		}
		key := req.Method.String()
		if v := req.Via(); v != nil {
			key += v.Params.GetOr("branch", "")
		}
		if !seen[key] {
			seen[key] = true
			out = append(out, req)
		}
	}
	return out
}

// invites returns the INVITEs among requests (not the ACKs of their 486).
func (s *sink) invites() []*sip.Request {
	var out []*sip.Request
	for _, r := range s.requests() {
		if r.IsInvite() {
			out = append(out, r)
		}
	}
	return out
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

// attacker is one UDP socket in the attacker namespace.
type attacker struct {
	t    *testing.T
	conn *net.UDPConn
	addr string
	to   *net.UDPAddr
	seq  int
	last string // the last request sent, for the ACK of a non-2xx
}

func (l *attackLab) newAttacker(t *testing.T, port int) *attacker {
	addr := fmt.Sprintf("%s:%d", atkAttacker, port)
	return &attacker{t: t, conn: l.attacker.ListenUDP(t, netip.MustParseAddrPort(addr)), addr: addr, to: net.UDPAddrFromAddrPort(netip.MustParseAddrPort(l.sip))}
}

// send writes a request: the start line and headers given, with Via,
// Call-ID (unless given), CSeq, Max-Forwards (unless given) and
// Content-Length filled in.
func (a *attacker) send(method, ruri, callID string, headers ...string) {
	a.t.Helper()
	a.seq++
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", method, ruri)
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP %s;branch=z9hG4bK-atk-%s-%d;rport\r\n", a.addr, callID, a.seq)
	hasMF := false
	for _, h := range headers {
		hasMF = hasMF || strings.HasPrefix(h, "Max-Forwards:")
		b.WriteString(h + "\r\n")
	}
	if !hasMF {
		b.WriteString("Max-Forwards: 70\r\n")
	}
	fmt.Fprintf(&b, "Call-ID: %s\r\nCSeq: %d %s\r\nContent-Length: 0\r\n\r\n", callID, a.seq, method)
	a.last = b.String()
	a.write(a.last)
}

func (a *attacker) write(msg string) {
	a.t.Helper()
	if _, err := a.conn.WriteToUDP([]byte(msg), a.to); err != nil {
		a.t.Fatalf("send: %v", err)
	}
}

// ack acknowledges a non-2xx final response to the last INVITE: same
// branch and CSeq number, the response's To (RFC 3261 §17.1.1.3), so that
// pinhole stops retransmitting it.
func (a *attacker) ack(res *sip.Response) {
	a.t.Helper()
	var b strings.Builder
	for i, line := range strings.Split(strings.TrimSuffix(a.last, "\r\n\r\n"), "\r\n") {
		switch {
		case i == 0:
			line = "ACK" + strings.TrimPrefix(line, "INVITE")
		case strings.HasPrefix(line, "To:"):
			line = "To: " + res.To().Value()
		case strings.HasPrefix(line, "CSeq:"):
			line = strings.Replace(line, "INVITE", "ACK", 1)
		case strings.HasPrefix(line, "Contact:"):
			continue
		}
		b.WriteString(line + "\r\n")
	}
	a.write(b.String() + "\r\n")
}

// final waits for the final response to the last request (1xx skipped);
// nil when none comes within d.
func (a *attacker) final(d time.Duration) *sip.Response {
	a.t.Helper()
	buf := make([]byte, 65535)
	deadline := time.Now().Add(d)
	for {
		_ = a.conn.SetReadDeadline(deadline)
		n, err := a.conn.Read(buf)
		if err != nil {
			return nil
		}
		m, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
		if err != nil {
			continue
		}
		res, ok := m.(*sip.Response)
		if ok && res.StatusCode >= 200 && res.CSeq() != nil && int(res.CSeq().SeqNo) == a.seq {
			return res
		}
	}
}

// authorized answers a 401/407 challenge of pinhole with alice's digest
// (RFC 2617 with qop=auth, MD5) for method and uri.
func authorized(t *testing.T, challenge *sip.Response, method, uri string) string {
	t.Helper()
	name, out := "WWW-Authenticate", "Authorization"
	if challenge.StatusCode == 407 {
		name, out = "Proxy-Authenticate", "Proxy-Authorization"
	}
	var realm, nonce string
	for _, h := range challenge.GetHeaders(name) {
		v := h.Value()
		if !strings.Contains(strings.ToUpper(v), "MD5") && strings.Contains(strings.ToUpper(v), "ALGORITHM") {
			continue
		}
		realm, nonce = digestParam(v, "realm"), digestParam(v, "nonce")
		break
	}
	if nonce == "" {
		t.Fatalf("no MD5 challenge in %d", challenge.StatusCode)
	}
	md := func(s string) string { sum := md5.Sum([]byte(s)); return hex.EncodeToString(sum[:]) }
	ha1 := md(atkUser + ":" + realm + ":" + atkPassword)
	ha2 := md(method + ":" + uri)
	const nc, cnonce = "00000001", "0a4f113b"
	resp := md(ha1 + ":" + nonce + ":" + nc + ":" + cnonce + ":auth:" + ha2)
	return fmt.Sprintf(`%s: Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=MD5, qop=auth, nc=%s, cnonce="%s"`,
		out, atkUser, realm, nonce, uri, resp, nc, cnonce)
}

func digestParam(v, name string) string {
	i := strings.Index(v, name+`="`)
	if i < 0 {
		return ""
	}
	rest := v[i+len(name)+2:]
	return rest[:strings.IndexByte(rest, '"')]
}

// authenticated sends a request, answers pinhole's challenge and returns
// the final response to the authenticated retry.
func (a *attacker) authenticated(method, ruri, callID string, headers ...string) *sip.Response {
	a.t.Helper()
	a.send(method, ruri, callID, headers...)
	res := a.final(5 * time.Second)
	if res == nil || (res.StatusCode != 401 && res.StatusCode != 407) {
		a.t.Fatalf("%s %s: want a challenge, got %v", method, ruri, statusOf(res))
	}
	if method == "INVITE" {
		a.ack(res)
	}
	a.send(method, ruri, callID, append(headers, authorized(a.t, res, method, ruri))...)
	if method == "INVITE" {
		// The 486 of the sink or contacts; the branches are what counts.
		return a.final(10 * time.Second)
	}
	return a.final(5 * time.Second)
}

func statusOf(res *sip.Response) string {
	if res == nil {
		return "no response"
	}
	return fmt.Sprintf("%d %s", res.StatusCode, res.Reason)
}

// quiet waits a moment and asserts that nothing reached the victim.
func (l *attackLab) quiet(t *testing.T, what string) {
	t.Helper()
	time.Sleep(700 * time.Millisecond)
	if n := l.anyHost.count(); n != 0 {
		t.Errorf("%s: %d messages reached the victim, first: %s", what, n, l.anyHost.requests())
	}
}

func TestAttacks(t *testing.T) {
	l := newAttackLab(t)
	from := "From: <sip:" + atkUser + "@" + atkDomain + ">;tag=atk"

	// Relay through a forged in-dialog request: a To tag and a Route
	// naming pinhole, the Request-URI at the victim.
	t.Run("forged dialog", func(t *testing.T) {
		a := l.newAttacker(t, 7001)
		a.send("MESSAGE", "sip:x@"+atkVictim+":5060", "relay-1",
			"Route: <sip:"+l.sip+";lr;ftag=atk>", from, "To: <sip:x@"+atkVictim+">;tag=forged")
		if res := a.final(3 * time.Second); res == nil || res.StatusCode != 403 {
			t.Errorf("forged in-dialog MESSAGE: %s, want 403", statusOf(res))
		}
		l.quiet(t, "forged in-dialog MESSAGE")
	})

	// The same with flow parameters that name the victim as the callee's
	// flow, signed with a made-up MAC.
	t.Run("altered flow parameter", func(t *testing.T) {
		a := l.newAttacker(t, 7002)
		// nc: UDP, remote 10.77.2.2:5060, local 10.77.1.1:5060 (FlowParam's encoding).
		flow := flowParam(t, atkVictim+":5060", l.sip)
		a.send("BYE", "sip:x@"+atkVictim+":5060", "relay-2",
			"Route: <sip:"+l.sip+";lr;ftag=atk;nc="+flow+";sig=aaaaaaaaaaaaaaaa>", from, "To: <sip:x@"+atkVictim+">;tag=b")
		if res := a.final(3 * time.Second); res == nil || res.StatusCode != 403 {
			t.Errorf("BYE with a forged flow: %s, want 403", statusOf(res))
		}
		a.send("ACK", "sip:x@"+atkVictim+":5060", "relay-3",
			"Route: <sip:"+l.sip+";lr;ftag=atk;nc="+flow+">", from, "To: <sip:x@"+atkVictim+">;tag=b")
		l.quiet(t, "forged flow parameter")
	})

	// Toll fraud by From domain: an outsider writes a From of another
	// domain (or of the served one with a trailing dot) and asks for the
	// carrier core. Authentication follows the source: it is challenged,
	// and nothing reaches the core.
	t.Run("from domain trick", func(t *testing.T) {
		a := l.newAttacker(t, 7003)
		for i, f := range []string{"From: <sip:x@evil.example>;tag=e", "From: <sip:" + atkUser + "@" + atkDomain + ".>;tag=e"} {
			a.send("INVITE", "sip:+15551234@carrier.example", fmt.Sprintf("toll-%d", i), f, "To: <sip:+15551234@carrier.example>",
				"Contact: <sip:x@"+a.addr+">")
			if res := a.final(3 * time.Second); res == nil || res.StatusCode != 407 {
				t.Errorf("INVITE with %q: %s, want 407", f, statusOf(res))
			}
		}
		time.Sleep(500 * time.Millisecond)
		if n := l.core.count(); n != 0 {
			t.Errorf("%d messages reached the carrier core unauthenticated", n)
		}
	})

	// Identity spoofing: an authenticated subscriber sends its own
	// P-Asserted-Identity; the core must see pinhole's assertion of the
	// subscriber instead.
	t.Run("identity spoof", func(t *testing.T) {
		a := l.newAttacker(t, 7004)
		before := len(l.core.invites())
		res := a.authenticated("INVITE", "sip:+15551234@carrier.example", "pai-1", from, "To: <sip:+15551234@carrier.example>",
			"Contact: <sip:"+atkUser+"@"+a.addr+">", "P-Asserted-Identity: <sip:+15550000@carrier.example>",
			"Remote-Party-ID: <sip:+15550000@carrier.example>;party=calling")
		if res == nil || res.StatusCode != 486 {
			t.Errorf("the caller got %s, want the core's 486", statusOf(res))
		}
		reqs := l.core.invites()
		if len(reqs) != before+1 {
			t.Fatalf("the core got %d INVITEs, want 1", len(reqs)-before)
		}
		got := reqs[len(reqs)-1]
		var pai []string
		for _, h := range got.GetHeaders("P-Asserted-Identity") {
			pai = append(pai, h.Value())
		}
		want := "<sip:" + atkUser + "@" + atkDomain + ">"
		if len(pai) != 1 || pai[0] != want || got.GetHeader("Remote-Party-ID") != nil {
			t.Errorf("the core saw P-Asserted-Identity %q and Remote-Party-ID %v, want only %s", pai, got.GetHeader("Remote-Party-ID"), want)
		}
	})

	// Path loop and reflection: alice registers three contacts with a Path
	// naming pinhole itself, then one naming the victim. Before the trust
	// rule, one INVITE with Max-Forwards 5 started 363 branches.
	t.Run("path loop", func(t *testing.T) {
		// Three phones of alice on one socket: their Contacts name the
		// address the REGISTER comes from, so no NAT is seen and each
		// branch goes to its Contact.
		reg := l.newAttacker(t, 7005)
		var lines []string
		for i := range 3 {
			lines = append(lines, fmt.Sprintf("Contact: <sip:%s-%d@%s>", atkUser, i, reg.addr))
		}
		aor := "sip:" + atkUser + "@" + atkDomain
		for i, path := range []string{"<sip:" + atkUser + "@" + l.sip + ";lr>", "<sip:" + atkVictim + ":5060;lr>"} {
			hs := append([]string{from, "To: <" + aor + ">", "Path: " + path, "Supported: path", "Expires: 60"}, lines...)
			res := reg.authenticated("REGISTER", "sip:"+atkDomain, fmt.Sprintf("loop-reg-%d", i), hs...)
			if res == nil || res.StatusCode != 200 {
				t.Fatalf("REGISTER with Path %s: %s", path, statusOf(res))
			}
			if h := res.GetHeader("Path"); h != nil {
				t.Errorf("the 200 echoes a device's Path %q: it would say pinhole stored it", h.Value())
			}
		}
		branches := func() float64 {
			return testutil.Metrics(t, l.edge, "127.0.0.1:9060")["pinhole_proxy_branches_total"]
		}
		phones := sinkOn(reg.conn)
		b0 := branches()
		caller := l.newAttacker(t, 7006)
		caller.authenticated("INVITE", aor, "loop-call", from, "To: <"+aor+">", "Contact: <sip:"+atkUser+"@"+caller.addr+">", "Max-Forwards: 5")
		time.Sleep(time.Second)
		if got := branches() - b0; got != 3 {
			t.Errorf("one INVITE to an AOR of 3 contacts started %v branches, want 3", got)
		}
		got := map[string]int{}
		for _, r := range phones.invites() {
			got[r.Recipient.User]++
		}
		if want := map[string]int{atkUser + "-0": 1, atkUser + "-1": 1, atkUser + "-2": 1}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("INVITEs per phone %v, want %v", got, want)
		}
		l.quiet(t, "Path naming a third party")
	})
}

// flowParam writes the nc/nr flow parameter pinhole would write for a UDP
// flow from remote to local: flags, addresses and ports in lower-case
// base32 (slowpath/proxy FlowParam), written out here so that the test
// does not trust the code it attacks.
func flowParam(t *testing.T, remote, local string) string {
	t.Helper()
	r, lo := netip.MustParseAddrPort(remote), netip.MustParseAddrPort(local)
	b := []byte{1} // UDP, both IPv4
	ra, la := r.Addr().As4(), lo.Addr().As4()
	b = append(b, ra[:]...)
	b = append(b, byte(r.Port()>>8), byte(r.Port()))
	b = append(b, la[:]...)
	b = append(b, byte(lo.Port()>>8), byte(lo.Port()))
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	var out []byte
	var acc, bits uint
	for _, c := range b {
		acc = acc<<8 | uint(c)
		bits += 8
		for bits >= 5 {
			bits -= 5
			out = append(out, alphabet[(acc>>bits)&31])
		}
	}
	if bits > 0 {
		out = append(out, alphabet[(acc<<(5-bits))&31])
	}
	return string(out)
}
