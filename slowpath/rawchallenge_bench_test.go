package slowpath

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/digest"
	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/internal/scan"
)

// BenchmarkFirstChallenge is the first half of a first registration, a
// REGISTER without credentials answered with a 401, in-process and without
// sockets: "sipgo" as the stateless workers answered it before (parse,
// registrar, response object, StringWrite), "raw" as the read filter
// answers it now (rawChallenge).
//
// With -bench FirstChallenge/stale the REGISTERs carry alice's credentials
// for a nonce pinhole did not issue, as every device's after a restart.
func BenchmarkFirstChallenge(b *testing.B) {
	s := newRawServer(b)
	const users = 4096
	msgs := make([][]byte, users)
	for i := range msgs {
		u := "u" + strconv.Itoa(i)
		msgs[i] = register(u, "fc-"+u, 1, "10.0.0.5:5060")
	}
	b.Run("nocredentials", func(b *testing.B) { benchChallenge(b, s, msgs) })
	stale := make([][]byte, users)
	for i := range stale {
		authz := `Authorization: Digest username="alice", realm="pinhole", nonce="old` + strconv.Itoa(i) +
			`", uri="sip:example.com", algorithm=MD5, qop=auth, nc=00000001, cnonce="c1", response="` +
			digestMD5("pinhole", "alice", "REGISTER", "sip:example.com", "old"+strconv.Itoa(i), "00000001", "c1") + `"` + "\r\n"
		stale[i] = bytes.Replace(register("alice", "st-"+strconv.Itoa(i), 2, "10.0.0.5:5060"), []byte("Content-Length: 0"), []byte(authz+"Content-Length: 0"), 1)
	}
	b.Run("stale", func(b *testing.B) { benchChallenge(b, s, stale) })
}

func benchChallenge(b *testing.B, s *Server, msgs [][]byte) {
	users := len(msgs)
	flow := location.Flow{Transport: location.TransportUDP, Remote: rawDevice, Local: netip.MustParseAddrPort("127.0.0.1:5060")}
	b.Run("sipgo", func(b *testing.B) {
		var out bytes.Buffer
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			msg, err := s.sl.parser.ParseSIP(msgs[i%users])
			if err != nil {
				b.Fatal(err)
			}
			req := msg.(*sip.Request)
			req.SetTransport("UDP")
			req.SetSource(rawDevice.String())
			s.reg.Respond(req, flow, func(res *sip.Response) {
				out.Reset()
				res.StringWrite(&out)
			})
			if !bytes.HasPrefix(out.Bytes(), []byte("SIP/2.0 401")) {
				b.Fatalf("answer %q", out.String())
			}
		}
	})
	b.Run("raw", func(b *testing.B) {
		sc := &rawScratch{}
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			reply, ok := s.sl.rawChallenge(sc, msgs[i%users], nil, rawDevice)
			if !ok || !bytes.HasPrefix(reply, []byte("SIP/2.0 401")) {
				b.Fatalf("answer %q", reply)
			}
		}
	})
}

// BenchmarkAuthenticatedRegister is the second half of a first
// registration, a REGISTER with valid MD5 credentials for a new AOR, as
// the stateless workers answer it: sipgo's parse, the digest check, the
// registrar, the group-committed write to the bbolt store and the 200
// written out. Requests are rendered (and their responses hashed) in
// batches outside the timer; the answers arrive from the committer.
func BenchmarkAuthenticatedRegister(b *testing.B) {
	const users = 2048
	var lines strings.Builder
	for i := range users {
		u := "b" + strconv.Itoa(i)
		fmt.Fprintf(&lines, "%s pinhole %s %s\n", u, digest.HA1(digest.MD5, u, "pinhole", "pw"), digest.HA1(digest.SHA256, u, "pinhole", "pw"))
	}
	creds := filepath.Join(b.TempDir(), "users.txt")
	if err := os.WriteFile(creds, []byte(lines.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	s := newRawServerWith(b, creds, "[MD5]")
	v := s.ops.authn.Load().Verifier()
	flow := location.Flow{Transport: location.TransportUDP, Remote: rawDevice, Local: netip.MustParseAddrPort("127.0.0.1:5060")}
	msgs := make([][]byte, users)
	round := 0
	render := func() {
		round++
		nonce := v.Nonces().Mint(time.Now())
		for i := range msgs {
			u := "b" + strconv.Itoa(i)
			p := digest.Params{Username: u, Realm: "pinhole", Nonce: nonce, URI: "sip:example.com", Algorithm: "MD5",
				CNonce: "c1", QOP: "auth", NC: fmt.Sprintf("%08x", i+1)}
			p.Response = string(digest.AppendResponse(nil, digest.MD5, digest.HA1(digest.MD5, u, "pinhole", "pw"), "REGISTER", &p))
			authz := fmt.Sprintf("Authorization: Digest username=%q, realm=\"pinhole\", nonce=%q, uri=\"sip:example.com\", response=%q, algorithm=MD5, cnonce=\"c1\", qop=auth, nc=%s\r\n",
				u, nonce, p.Response, p.NC)
			m := string(register(u, fmt.Sprintf("ar-%d-%d", round, i), 2, "10.0.0.5:5060"))
			msgs[i] = []byte(strings.Replace(m, "Content-Length: 0", authz+"Content-Length: 0", 1))
		}
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%users == 0 {
			b.StopTimer()
			wg.Wait()
			render()
			b.StartTimer()
		}
		msg, err := s.sl.parser.ParseSIP(msgs[i%users])
		if err != nil {
			b.Fatal(err)
		}
		req := msg.(*sip.Request)
		req.SetTransport("UDP")
		req.SetSource(rawDevice.String())
		wg.Add(1)
		s.reg.Respond(req, flow, func(res *sip.Response) {
			out := slOut.Get().(*bytes.Buffer)
			out.Reset()
			res.StringWrite(out)
			if res.StatusCode != 200 {
				failed.Add(1)
			}
			slOut.Put(out)
			wg.Done()
		})
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d REGISTERs not answered 200", n)
	}
}

// BenchmarkRetransmittedAnswer is one retransmitted REGISTER answered in
// the read filter from the response cache, as past saturation most
// datagrams are: the listener look-up, the raw transaction key, the copy
// of the remembered answer and its write.
func BenchmarkRetransmittedAnswer(b *testing.B) {
	s, addr := startStateless(b, "")
	c := client(b)
	req := register("alice", "rta-1", 1, c.LocalAddr().String())
	if got := status(exchange(b, c, addr, req, 5*time.Second)); got != "SIP/2.0 200 OK" {
		b.Fatalf("REGISTER: %q", got)
	}
	listener, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		b.Fatal(err)
	}
	props := sip.TransportReadProps{Transport: "UDP", LocalAddr: listener, RemoteAddr: c.LocalAddr()}
	before := s.sl.unparsed.Load()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !s.sl.take(props, req) {
			b.Fatal("the retransmission was left to sipgo")
		}
	}
	b.StopTimer()
	if n := s.sl.unparsed.Load() - before; n != uint64(b.N) {
		b.Fatalf("%d of %d retransmissions answered before parsing", n, b.N)
	}
}

// BenchmarkLoopChallenge is the fast path's loop asking for a first
// registration's 401 (LoopChallenge): "scan" scans the REGISTER again, as
// the hook did before; "scanned" reads the scan the loop made of it
// already (done here outside the timer, as the loop does it whatever
// comes next).
func BenchmarkLoopChallenge(b *testing.B) {
	s := newRawServer(b)
	const users = 4096
	msgs := make([][]byte, users)
	scans := make([]scan.Register, users)
	l := s.ops.limits.Load()
	for i := range msgs {
		u := "u" + strconv.Itoa(i)
		msgs[i] = register(u, "lc-"+u, 1, "10.0.0.5:5060")
		if why := scan.Scan(msgs[i], scan.Limits{MaxMessageBytes: l.MaxMessageBytes, MaxHeaders: l.MaxHeaders}, &scans[i]); why != scan.OK {
			b.Fatalf("scan: %v", why)
		}
	}
	for _, mode := range []string{"scan", "scanned"} {
		b.Run(mode, func(b *testing.B) {
			dst := make([]byte, 0, 2048)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				var r *scan.Register
				if mode == "scanned" {
					r = &scans[i%users]
				}
				reply, ok := s.LoopChallenge(dst[:0], msgs[i%users], r, rawDevice)
				if !ok || !bytes.HasPrefix(reply, []byte("SIP/2.0 401")) {
					b.Fatalf("answer %q", reply)
				}
			}
		})
	}
}

// BenchmarkLoopChallengeVerified is the loop asking LoopChallenge about a
// first registration's second REGISTER, whose credentials verify: it must
// decline (the slow path's raw 200 answers it), and the cost is what the
// loop pays to learn that.
func BenchmarkLoopChallengeVerified(b *testing.B) {
	s := newRawServerWith(b, writeTestCreds(b), "[MD5]")
	v := s.ops.authn.Load().Verifier()
	nonce := string(v.AppendNonce(nil, v.Now()))
	authz := `Authorization: Digest username="alice", realm="pinhole", nonce="` + nonce +
		`", uri="sip:example.com", algorithm=MD5, qop=auth, nc=00000001, cnonce="c1", response="` +
		digestMD5("pinhole", "alice", "REGISTER", "sip:example.com", nonce, "00000001", "c1") + `"` + "\r\n"
	msg := []byte(strings.Replace(string(register("alice", "lcv-1", 2, "10.0.0.5:5060")), "Content-Length: 0", authz+"Content-Length: 0", 1))
	l := s.ops.limits.Load()
	var r scan.Register
	if why := scan.Scan(msg, scan.Limits{MaxMessageBytes: l.MaxMessageBytes, MaxHeaders: l.MaxHeaders}, &r); why != scan.OK {
		b.Fatalf("scan: %v", why)
	}
	dst := make([]byte, 0, 2048)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if reply, ok := s.LoopChallenge(dst[:0], msg, &r, rawDevice); ok {
			b.Fatalf("answered %q", reply)
		}
	}
}
