package slowpath

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/slowpath/retrans"
)

// startStateless runs the slow path like startServer, but any REGISTER
// that reaches sipgo's transaction layer fails the test: over UDP the
// standalone registrar must answer without a server transaction.
func startStateless(t testing.TB, extra string) (*Server, string) {
	t.Helper()
	return startStatelessWith(t, extra, nil)
}

// startStatelessWith is startStateless with before run on the server
// before it starts (sipgo's handlers must be set before it serves).
func startStatelessWith(t testing.TB, extra string, before func(*Server)) (*Server, string) {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(freeUDPPort(t))
	yaml := fmt.Sprintf("listen:\n  udp: [%q]\n%sdomains: [example.com]\ndata_dir: %q\nmetrics:\n  listen: \"\"\n", addr, extra, t.TempDir())
	cfg, err := config.Parse([]byte(yaml), "test")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if s.sl == nil {
		t.Fatal("the standalone registrar has no stateless path")
	}
	s.srv.OnRegister(func(req *sip.Request, tx sip.ServerTransaction) {
		t.Errorf("REGISTER reached a sipgo server transaction: %s", req.StartLine())
	})
	if before != nil {
		before(s)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s, addr
}

// TestRetransmittedRegister: a retransmission (same bytes, same branch)
// gets the very bytes of the first answer — To tag and Date included —
// and changes nothing a second time.
func TestRetransmittedRegister(t *testing.T) {
	s, addr := startStateless(t, "")
	c := client(t)
	local := c.LocalAddr().String()
	req := register("alice", "rt-1", 1, local)
	first := exchange(t, c, addr, req, 5*time.Second)
	if status(first) != "SIP/2.0 200 OK" {
		t.Fatalf("REGISTER: %q", first)
	}
	if !bytes.Contains(first, []byte(";rport=")) || !bytes.Contains(first, []byte(";received=127.0.0.1")) {
		t.Fatalf("Via of the answer lacks rport/received (RFC 3581):\n%s", first)
	}
	before := s.Store().Lookup("alice@example.com")
	writes := s.store.Stats().Writes
	time.Sleep(1100 * time.Millisecond) // a re-processing would show a new Date and Updated
	for i := range 3 {
		again := exchange(t, c, addr, req, 5*time.Second)
		if !bytes.Equal(again, first) {
			t.Fatalf("retransmission %d answered\n%s\nfirst answer\n%s", i, again, first)
		}
	}
	after := s.Store().Lookup("alice@example.com")
	if len(after) != 1 || !after[0].Updated.Equal(before[0].Updated) || after[0].CSeq != 1 {
		t.Fatalf("binding changed by retransmissions: %+v, was %+v", after, before)
	}
	if w := s.store.Stats().Writes; w != writes {
		t.Fatalf("retransmissions wrote %d sets", w-writes)
	}
	if st := s.sl.cache.Stats(); st.Answered != 3 {
		t.Fatalf("cache answered %d retransmissions, want 3", st.Answered)
	}
	if n := s.sl.unparsed.Load(); n != 3 {
		t.Fatalf("%d retransmissions answered before parsing, want 3", n)
	}
}

// TestRetransmissionAfterEviction: once the answer is out of the cache a
// retransmission is processed again and refused as out of order (RFC 3261
// §10.3 step 7, a CSeq equal to the stored one): an answer, and no change.
func TestRetransmissionAfterEviction(t *testing.T) {
	// The smallest cache: 32 answers of 512 bytes.
	s, addr := startStateless(t, "registrar:\n  response_cache_rate: 1\n")
	c := client(t)
	local := c.LocalAddr().String()
	req := register("alice", "ev-1", 7, local)
	if got := status(exchange(t, c, addr, req, 5*time.Second)); got != "SIP/2.0 200 OK" {
		t.Fatalf("REGISTER: %q", got)
	}
	before := s.Store().Lookup("alice@example.com")
	for i := range 100 {
		u := "bob" + strconv.Itoa(i)
		if got := status(exchange(t, c, addr, register(u, "ev-"+u, 1, local), 5*time.Second)); got != "SIP/2.0 200 OK" {
			t.Fatalf("REGISTER %s: %q", u, got)
		}
	}
	if st := s.sl.cache.Stats(); st.Evicted == 0 {
		t.Fatalf("nothing evicted: %+v", st)
	}
	if got := status(exchange(t, c, addr, req, 5*time.Second)); got != "SIP/2.0 400 Out Of Order CSeq" {
		t.Fatalf("retransmission after eviction: %q", got)
	}
	after := s.Store().Lookup("alice@example.com")
	if len(after) != 1 || after[0].CSeq != before[0].CSeq || !after[0].Expires.Equal(before[0].Expires) {
		t.Fatalf("binding changed: %+v, was %+v", after, before)
	}
}

// TestOutOfOrderCSeqStateless: new transactions (new branches) of the
// same Call-ID with a CSeq not above the stored one are refused with 400,
// as through sipgo before; a higher one is applied.
func TestOutOfOrderCSeqStateless(t *testing.T) {
	_, addr := startStateless(t, "")
	c := client(t)
	local := c.LocalAddr().String()
	if got := status(exchange(t, c, addr, register("alice", "oo-1", 5, local), 5*time.Second)); got != "SIP/2.0 200 OK" {
		t.Fatalf("REGISTER: %q", got)
	}
	for _, cseq := range []int{4, 5} {
		req := bytes.Replace(register("alice", "oo-1", cseq, local), []byte("branch=z9hG4bK-"), []byte("branch=z9hG4bK-new-"), 1)
		if got := status(exchange(t, c, addr, req, 5*time.Second)); got != "SIP/2.0 400 Out Of Order CSeq" {
			t.Fatalf("CSeq %d after 5: %q", cseq, got)
		}
	}
	if got := status(exchange(t, c, addr, register("alice", "oo-1", 6, local), 5*time.Second)); got != "SIP/2.0 200 OK" {
		t.Fatalf("CSeq 6: %q", got)
	}
}

// TestRetransmittedAuthenticatedRegister: with digest, a retransmission
// of the authenticated REGISTER gets the same 200 — not a 401 for a
// replayed nonce count, nor a 403 — and a retransmitted unauthenticated
// REGISTER is challenged again (challenges are not remembered).
func TestRetransmittedAuthenticatedRegister(t *testing.T) {
	creds := writeTestCreds(t)
	s, addr := startStateless(t, "auth:\n  credentials: "+creds+"\n  algorithms: [MD5]\n")
	c := client(t)
	local := c.LocalAddr().String()
	first := register("alice", "da-1", 1, local)
	got := exchange(t, c, addr, first, 2*time.Second)
	if !strings.HasPrefix(string(got), "SIP/2.0 401") {
		t.Fatalf("first REGISTER: %q", got)
	}
	if again := exchange(t, c, addr, first, 2*time.Second); !strings.HasPrefix(string(again), "SIP/2.0 401") {
		t.Fatalf("retransmitted first REGISTER: %q", again)
	}
	nonce := between(string(got), `nonce="`, `"`)
	authz := `Authorization: Digest username="alice", realm="pinhole", nonce="` + nonce +
		`", uri="sip:example.com", algorithm=MD5, qop=auth, nc=00000001, cnonce="c1", response="` +
		digestMD5("pinhole", "alice", "REGISTER", "sip:example.com", nonce, "00000001", "c1") + `"` + "\r\n"
	signed := []byte(strings.Replace(string(register("alice", "da-1", 2, local)), "Content-Length: 0", authz+"Content-Length: 0", 1))
	ok := exchange(t, c, addr, signed, 2*time.Second)
	if status(ok) != "SIP/2.0 200 OK" {
		t.Fatalf("authenticated REGISTER: %q", ok)
	}
	for i := range 2 {
		if again := exchange(t, c, addr, signed, 2*time.Second); !bytes.Equal(again, ok) {
			t.Fatalf("retransmission %d of the authenticated REGISTER:\n%s\nfirst answer\n%s", i, again, ok)
		}
	}
	if b := s.Store().Lookup("alice@example.com"); len(b) != 1 || b[0].CSeq != 2 {
		t.Fatalf("bindings %+v", b)
	}
}

// TestStatelessShedsPastQueue: the reading goroutine never waits for a
// worker: past the queue's capacity a REGISTER is dropped and counted, and
// anything but REGISTER is left to sipgo. Here authentication is off:
// nothing proves more than anything else, so the whole queue serves. With
// it on, past half the queue a REGISTER whose credentials pinhole cannot
// verify is shed as one without them is (TestVouchedRefreshOutlivesFlood).
func TestStatelessShedsPastQueue(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s := &Server{}
	s.udp.add(pc)
	sl := &stateless{s: s, cache: retrans.New(1), q: make(chan *slJob, 16), vq: make(chan *slJob, 16), done: make(chan struct{})} // no workers
	p := sip.TransportReadProps{Transport: "UDP", LocalAddr: pc.LocalAddr(), RemoteAddr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5999}}
	reg := register("alice", "sh-1", 1, "127.0.0.1:5999")
	// Credentials that cannot be verified count for nothing either.
	signed := bytes.Replace(reg, []byte("Expires: 600\r\n"), []byte("Expires: 600\r\nauthorization : Digest username=\"alice\"\r\n"), 1)
	for i := range 20 {
		m := reg
		if i >= 12 {
			m = signed
		}
		if !sl.take(p, m) {
			t.Fatal("REGISTER not taken")
		}
	}
	if len(sl.q) != 16 || sl.shed.Load() != 4 || s.ops.inflight.Load() != 16 || len(sl.vq) != 0 {
		t.Fatalf("queued %d shed %d in flight %d vouched %d; want 16, 4, 16, 0", len(sl.q), sl.shed.Load(), s.ops.inflight.Load(), len(sl.vq))
	}
	for _, m := range []string{"SIP/2.0 200 OK\r\n", "INVITE sip:bob@example.com SIP/2.0\r\n", "OPTIONS sip:example.com SIP/2.0\r\n"} {
		if sl.take(p, []byte(m)) {
			t.Fatalf("%q taken by the REGISTER path", m)
		}
	}
	p.Transport = "TCP"
	if sl.take(p, reg) {
		t.Fatal("a TCP REGISTER taken by the UDP path")
	}
}

func TestHasCredentials(t *testing.T) {
	for _, tt := range []struct {
		msg  string
		want bool
	}{
		{"REGISTER sip:a SIP/2.0\r\nVia: x\r\nAuthorization: Digest a=b\r\n\r\n", true},
		{"REGISTER sip:a SIP/2.0\r\nAUTHORIZATION\t: Digest a=b\r\n\r\n", true},
		{"REGISTER sip:a SIP/2.0\nVia: x\nAuthorization: Digest a=b\n\n", true},
		{"REGISTER sip:a SIP/2.0\r\nProxy-Authorization: Digest a=b\r\n\r\n", false},
		{"REGISTER sip:a SIP/2.0\r\nVia: x\r\n\r\nAuthorization: in the body\r\n", false},
		{"REGISTER sip:a SIP/2.0\r\nX-Note: Authorization: no\r\n\r\n", false},
		{"REGISTER sip:a SIP/2.0", false},
	} {
		if got := hasCredentials([]byte(tt.msg)); got != tt.want {
			t.Errorf("hasCredentials(%q) = %v, want %v", tt.msg, got, tt.want)
		}
	}
}

// TestNoStatelessForRelayedRegister: the mid-registrar and the edge relay
// answer REGISTER only after another registrar did; they keep sipgo's
// transactions.
func TestNoStatelessForRelayedRegister(t *testing.T) {
	up := "127.0.0.1:" + strconv.Itoa(freeUDPPort(t))
	s, _ := startServer(t, "midregistrar:\n  upstreams: [{addr: \""+up+"\", transport: udp}]\n")
	if s.sl != nil {
		t.Fatal("mid-registrar answers REGISTER statelessly")
	}
}

// TestStatelessOptions: an OPTIONS for pinhole itself (no user, pinhole's
// address or a served domain, no Route) is answered without a sipgo
// transaction, with what the proxy answers through one; its
// retransmission is answered again. An OPTIONS for a user, or with a
// Route, is the proxy's to route and still reaches sipgo.
func TestStatelessOptions(t *testing.T) {
	var routed []string
	var mu sync.Mutex
	s, addr := startStatelessWith(t, "", func(s *Server) {
		s.srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
			mu.Lock()
			routed = append(routed, req.Recipient.String())
			mu.Unlock()
			_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusNotFound, "Not Found", nil))
		})
	})
	c := client(t)
	options := func(ruri, branch, extra string) []byte {
		return []byte("OPTIONS " + ruri + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + c.LocalAddr().String() + ";rport;branch=z9hG4bK-" + branch + "\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:mon@example.net>;tag=m1\r\nTo: <" + ruri + ">\r\n" +
			"Call-ID: opt-" + branch + "\r\nCSeq: 1 OPTIONS\r\n" + extra + "Content-Length: 0\r\n\r\n")
	}
	before := s.sl.options.Load()
	for i, ruri := range []string{"sip:example.com", "sip:" + addr, "sip:EXAMPLE.com.;transport=udp"} {
		req := options(ruri, "self-"+strconv.Itoa(i), "")
		for range 2 { // the second is a retransmission
			res := exchange(t, c, addr, req, 5*time.Second)
			if status(res) != "SIP/2.0 200 OK" || !bytes.Contains(res, []byte("\r\nAllow: ")) || !bytes.Contains(res, []byte("\r\nSupported: path")) {
				t.Fatalf("OPTIONS %s: %q", ruri, res)
			}
		}
	}
	if got := s.sl.options.Load() - before; got != 6 {
		t.Errorf("%d OPTIONS answered statelessly, want 6", got)
	}
	for i, tc := range []struct{ ruri, extra string }{
		{"sip:bob@example.com", ""},
		{"sip:example.com", "Route: <sip:192.0.2.1;lr>\r\n"},
		{"sip:example.org", ""},
	} {
		res := exchange(t, c, addr, options(tc.ruri, "routed-"+strconv.Itoa(i), tc.extra), 5*time.Second)
		if status(res) != "SIP/2.0 404 Not Found" {
			t.Errorf("OPTIONS %s %q: %q, want the transaction path's 404", tc.ruri, tc.extra, res)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(routed) != 3 {
		t.Errorf("OPTIONS through sipgo: %v, want the three that are not for pinhole", routed)
	}
}
