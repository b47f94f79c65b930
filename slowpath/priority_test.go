package slowpath

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/digest"
	"github.com/pinhole-sip/pinhole/slowpath/sanity"
)

// TestVouchedRefreshOutlivesFlood: with the workers held and the queue
// full of REGISTERs whose credentials were guessed (pinhole's nonce, a
// wrong password), the guesses past half the queue are
// shed and counted, while a device's refresh whose credentials verify
// against pinhole's nonce is queued ahead of them and answered 200 first
// once a worker runs. With one queue for both, the refresh was shed with
// the guesses: sending more junk took a real device's registration.
func TestVouchedRefreshOutlivesFlood(t *testing.T) {
	creds := writeTestCreds(t)
	s, addr := startStateless(t, "registrar:\n  workers: 1\n  queue: 16\nauth:\n  credentials: "+creds+"\n  algorithms: [MD5]\n")
	sl := s.sl
	dev, attacker := client(t), client(t)
	local := dev.LocalAddr().String()
	got := exchange(t, dev, addr, register("alice", "vouched", 1, local), 2*time.Second)
	nonce := between(string(got), `nonce="`, `"`)
	if nonce == "" {
		t.Fatalf("no challenge: %q", got)
	}

	// Hold the workers: what take queues stays queued.
	sl.stop()
	sl.done = make(chan struct{})

	listen, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	from := func(c *net.UDPConn) sip.TransportReadProps {
		return sip.TransportReadProps{Transport: "UDP", LocalAddr: listen, RemoteAddr: c.LocalAddr()}
	}
	// A nonce pinhole never issued earns a fresh challenge, answered from
	// the bytes at once: it takes no place in the queue.
	bogus := strings.Replace(string(register("mallory", "bogus", 2, attacker.LocalAddr().String())), "Content-Length: 0",
		`Authorization: Digest username="mallory", realm="pinhole", nonce="bogus", uri="sip:example.com", `+
			`response="0123456789abcdef0123456789abcdef", algorithm=MD5`+"\r\nContent-Length: 0", 1)
	challenged := sl.rawAnswered.Load()
	if !sl.take(from(attacker), []byte(bogus)) || len(sl.q) != 0 || sl.rawAnswered.Load() != challenged+1 {
		t.Fatalf("a made-up nonce: %d queued, %d raw challenges; want 0, %d", len(sl.q), sl.rawAnswered.Load(), challenged+1)
	}
	const guesses = 40
	for i := range guesses {
		user := strconv.Itoa(100 + i)
		guess := strings.Replace(string(register(user, "guess"+user, 2, attacker.LocalAddr().String())), "Content-Length: 0",
			`Authorization: Digest username="`+user+`", realm="pinhole", nonce="`+nonce+`", uri="sip:example.com", `+
				`response="0123456789abcdef0123456789abcdef", algorithm=MD5`+"\r\nContent-Length: 0", 1)
		if !sl.take(from(attacker), []byte(guess)) {
			t.Fatalf("guess %d not taken by the stateless path", i)
		}
	}
	half := cap(sl.q) / 2
	if len(sl.q) != half || sl.shed.Load() != guesses-uint64(half) {
		t.Fatalf("after %d guesses: %d queued, %d shed; want %d queued (half the queue), %d shed",
			guesses, len(sl.q), sl.shed.Load(), half, guesses-half)
	}

	authz := `Authorization: Digest username="alice", realm="pinhole", nonce="` + nonce +
		`", uri="sip:example.com", algorithm=MD5, qop=auth, nc=00000001, cnonce="c1", response="` +
		digestMD5("pinhole", "alice", "REGISTER", "sip:example.com", nonce, "00000001", "c1") + `"` + "\r\n"
	refresh := strings.Replace(string(register("alice", "vouched", 2, local)), "Content-Length: 0", authz+"Content-Length: 0", 1)
	if !sl.take(from(dev), []byte(refresh)) {
		t.Fatal("the refresh was not taken by the stateless path")
	}
	if sl.queuedVouched.Load() != 1 || len(sl.vq) != 1 || sl.shedVouched.Load() != 0 {
		t.Fatalf("refresh: %d vouched queued, %d waiting, %d vouched shed; want 1, 1, 0",
			sl.queuedVouched.Load(), len(sl.vq), sl.shedVouched.Load())
	}
	if n := sl.shed.Load(); n != guesses-uint64(half) {
		t.Fatalf("%d shed after the refresh, want still %d", n, guesses-half)
	}

	// One worker again: it takes the refresh before the guesses.
	sl.wg.Add(1)
	go sl.work()
	_ = dev.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, _, err := dev.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("no answer to the refresh: %v", err)
	}
	if status(buf[:n]) != "SIP/2.0 200 OK" {
		t.Fatalf("refresh answered %q", status(buf[:n]))
	}
	if bs := s.store.Lookup("alice@example.com"); len(bs) != 1 || bs[0].CSeq != 2 {
		t.Errorf("alice's bindings after the refresh: %+v", bs)
	}
}

// TestVouched: which REGISTERs the read filter vouches for.
func TestVouched(t *testing.T) {
	creds := writeTestCreds(t)
	s, _ := startStateless(t, "auth:\n  credentials: "+creds+"\n  algorithms: [MD5]\n")
	v := s.ops.authn.Load().Verifier()
	nonce := string(v.AppendNonce(nil, v.Now()))
	withAuth := func(user, nonce, resp string) []byte {
		authz := `Authorization: Digest username="` + user + `", realm="pinhole", nonce="` + nonce +
			`", uri="sip:example.com", algorithm=MD5, qop=auth, nc=00000001, cnonce="c1", response="` + resp + `"` + "\r\n"
		return []byte(strings.Replace(string(register(user, "v", 2, "127.0.0.1:5999")), "Content-Length: 0", authz+"Content-Length: 0", 1))
	}
	good := digestMD5("pinhole", "alice", "REGISTER", "sip:example.com", nonce, "00000001", "c1")
	for _, tc := range []struct {
		name string
		msg  []byte
		want bool
	}{
		{"right response, pinhole's nonce", withAuth("alice", nonce, good), true},
		{"no credentials", register("alice", "v", 1, "127.0.0.1:5999"), false},
		{"a nonce pinhole never issued", withAuth("alice", "bogus1", digestMD5("pinhole", "alice", "REGISTER", "sip:example.com", "bogus1", "00000001", "c1")), false},
		{"pinhole's nonce, wrong response", withAuth("alice", nonce, "0123456789abcdef0123456789abcdef"), false},
		{"pinhole's nonce, unknown user", withAuth("mallory", nonce, digestMD5("pinhole", "mallory", "REGISTER", "sip:example.com", nonce, "00000001", "c1")), false},
		{"not SIP", []byte("\x00\x01junk\r\n\r\n"), false},
	} {
		var vc vouch
		if got := s.sl.vouched(tc.msg, &vc); got != tc.want {
			t.Errorf("%s: vouched %v, want %v", tc.name, got, tc.want)
		}
		if (vc.v != nil) != tc.want {
			t.Errorf("%s: verdict kept for the worker: %v, want %v", tc.name, vc.v != nil, tc.want)
		}
	}

	// The worker's raw 200 takes the verdict from the same verifier as it
	// is, and checks again with any other (a reload swapped it).
	remote := netip.MustParseAddrPort("127.0.0.1:5999")
	authn := s.ops.authn.Load()
	msg := withAuth("alice", nonce, good)
	var vc vouch
	if !s.sl.vouched(msg, &vc) {
		t.Fatal("the right response not vouched for")
	}
	var rs raw200
	if why := s.sl.prepareRaw200(&rs, msg, remote, authn, &vc); why != raw200OK || rs.checked != vc.checked || rs.now != vc.now {
		t.Fatalf("with the filter's verdict: %s, checked %+v at %v, want ok, %+v at %v", raw200WhyNames[why], rs.checked, rs.now, vc.checked, vc.now)
	}
	wrong := withAuth("alice", nonce, "0123456789abcdef0123456789abcdef")
	other := vc
	other.v = new(digest.Verifier)
	if why := s.sl.prepareRaw200(&rs, wrong, remote, authn, &other); why != raw200Auth {
		t.Errorf("a verdict from another verifier taken as it is: %s, want auth", raw200WhyNames[why])
	}
	twice := []byte(strings.Replace(string(msg), "Content-Length: 0", "Authorization: Digest username=\"alice\"\r\nContent-Length: 0", 1))
	if why := s.sl.prepareRaw200(&rs, twice, remote, authn, &vc); why != raw200Auth {
		t.Errorf("two Authorization values answered raw on the filter's verdict: %s, want auth", raw200WhyNames[why])
	}

	// Scanned by the filter into the job's state, the datagram is not
	// scanned again: the raw 200 reads the filter's scan (here, one the
	// test then spoils, to see which is read), unless the limits were
	// swapped meanwhile (a reload), when it scans afresh.
	var sv vouch
	var js raw200
	if !s.sl.vouchedScan(msg, &sv, &js.reg) || sv.scanned != &js.reg {
		t.Fatal("vouchedScan did not record its scan")
	}
	if why := s.sl.prepareRaw200(&js, msg, remote, authn, &sv); why != raw200OK {
		t.Fatalf("with the filter's scan: %s, want ok", raw200WhyNames[why])
	}
	sv2 := vouch{}
	if !s.sl.vouchedScan(msg, &sv2, &js.reg) {
		t.Fatal("not vouched for the second time")
	}
	js.reg.NumVias = 2 // what a fresh scan of msg would not say
	if why := s.sl.prepareRaw200(&js, msg, remote, authn, &sv2); why != raw200Form {
		t.Errorf("the filter's scan not used: %s, want form (from the spoiled scan)", raw200WhyNames[why])
	}
	js.reg.NumVias = 2
	lim := *s.ops.limits.Load()
	s.ops.limits.Store(&lim) // the same values, another reload's pointer
	if why := s.sl.prepareRaw200(&js, msg, remote, authn, &sv2); why != raw200OK {
		t.Errorf("after a reload of the limits: %s, want ok from a fresh scan", raw200WhyNames[why])
	}
}

// FuzzVouched: vouched never fails on any datagram, and whatever it
// vouches for — the input as it is, or signed for its To user with a
// fresh nonce — the registrar through sipgo does not refuse for its
// credentials (401 or 403): a place in the devices' queue is never won
// with credentials the registrar would turn away. The seeds are the
// device formats of testdata/rawchallenge.
func FuzzVouched(f *testing.F) {
	for _, c := range loadRawCases(f) {
		f.Add(c.render("fuzz@device"))
	}
	// The store in memory: with the bbolt file every registration the
	// registrar made waited for its fsyncs, and the fuzzer stalled.
	s := newRaw200ServerWith(f, time.Now(), raw200Setup{memory: true})
	lim := *s.ops.limits.Load()
	callID := regexp.MustCompile(`(?mi)^(Call-ID|i):[ \t]*`)
	n := 0
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(msg []byte) {
			if !s.sl.vouched(msg, nil) || sanity.Check(nil, msg, lim).Action != sanity.Pass {
				return
			}
			if got := viaSipgo(t, s, msg); strings.HasPrefix(got, "SIP/2.0 401 ") || strings.HasPrefix(got, "SIP/2.0 403 ") {
				t.Fatalf("vouched for credentials the registrar refuses:\n%s\nanswer:\n%s", msg, got)
			}
		}
		check(data)
		// A new Call-ID per input: one input's binding must not make the
		// next one's CSeq out of order.
		n++
		data = callID.ReplaceAll(data, []byte(fmt.Sprintf("${1}: v%d-", n)))
		if signed, ok := trySign(s, data); ok {
			check(signed)
		}
	})
}
