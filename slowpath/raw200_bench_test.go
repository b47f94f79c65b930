package slowpath

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/fastpath/absorb"
	"github.com/pinhole-sip/pinhole/internal/digest"
	"github.com/pinhole-sip/pinhole/internal/location"
)

// countConn is the listener a benchmark's answers are written on: it
// counts the 200s and tells done of every answer.
type countConn struct {
	net.PacketConn
	mu   sync.Mutex
	oks  int
	done *sync.WaitGroup
}

func (c *countConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	c.mu.Lock()
	if bytes.HasPrefix(b, []byte("SIP/2.0 200 ")) {
		c.oks++
	}
	c.mu.Unlock()
	c.done.Done()
	return len(b), nil
}

// BenchmarkCredentialedRegister is the second half of a first
// registration, a REGISTER with valid MD5 credentials, through the
// stateless worker (stateless.handle) as a queued job: "sipgo" as the
// workers answered it before the raw 200 (sipgo's parse, the registrar on
// sipgo types, a response object and StringWrite; the raw path is kept
// off by a Committed hook that does nothing, as the fast path's would),
// "raw" as they answer it now. Both include the group-committed write to
// the bbolt store and the response cache; requests are rendered in
// batches outside the timer, and the answers arrive from the committer.
// "sipgo+fill" and "raw+fill" have the fast path's hooks set on a real
// absorption cache (fastpath.Attach's): before its raw fill every such
// REGISTER went through sipgo and absorb.Cache.Fill; now the raw 200 and
// absorb.Cache.PrepareRaw answer it and fill the cache.
//
// The "noauth/" cases are the same without authentication (no auth
// section) and without credentials: before, every REGISTER of such a
// registrar went through sipgo; now the raw 200 answers it.
func BenchmarkCredentialedRegister(b *testing.B) {
	const users = 2048
	var lines strings.Builder
	for i := range users {
		u := "c" + strconv.Itoa(i)
		fmt.Fprintf(&lines, "%s pinhole %s %s\n", u, digest.HA1(digest.MD5, u, "pinhole", "pw"), digest.HA1(digest.SHA256, u, "pinhole", "pw"))
	}
	creds := filepath.Join(b.TempDir(), "users.txt")
	if err := os.WriteFile(creds, []byte(lines.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"sipgo", "raw", "sipgo+fill", "raw+fill",
		"noauth/sipgo", "noauth/raw", "noauth/sipgo+fill", "noauth/raw+fill"} {
		b.Run(name, func(b *testing.B) {
			mode, noAuth := strings.CutPrefix(name, "noauth/")
			var s *Server
			if noAuth {
				s = newUnstartedServer(b, "")
			} else {
				s = newRawServerWith(b, creds, "[MD5]")
			}
			if mode == "sipgo" {
				s.SetCommitted(func(*sip.Request, *sip.Response, location.Flow) {})
			}
			var cache *absorb.Cache
			if strings.HasSuffix(mode, "+fill") {
				var err error
				if cache, err = absorb.New(absorb.Options{Store: s.Store(), MaxEntries: 4 * users, Digest: s.Digest}); err != nil {
					b.Fatal(err)
				}
				b.Cleanup(cache.Close)
				s.SetCommitted(cache.Fill)
				s.SetBindingChanged(cache.Invalidate)
				s.SetSettle(cache.Settle)
				if mode == "raw+fill" {
					s.SetRawFill(cache.PrepareRaw)
				}
			}
			msgs := make([][]byte, users)
			round := 0
			render := func() {
				round++
				if noAuth {
					for i := range msgs {
						msgs[i] = register("c"+strconv.Itoa(i), fmt.Sprintf("cr-noauth-%s-%d-%d", mode, round, i), 2, "10.0.0.5:5060")
					}
					return
				}
				v := s.ops.authn.Load().Verifier()
				nonce := v.Nonces().Mint(time.Now())
				for i := range msgs {
					u := "c" + strconv.Itoa(i)
					p := digest.Params{Username: u, Realm: "pinhole", Nonce: nonce, URI: "sip:example.com", Algorithm: "MD5",
						CNonce: "c1", QOP: "auth", NC: fmt.Sprintf("%08x", i+1)}
					p.Response = string(digest.AppendResponse(nil, digest.MD5, digest.HA1(digest.MD5, u, "pinhole", "pw"), "REGISTER", &p))
					authz := fmt.Sprintf("Authorization: Digest username=%q, realm=\"pinhole\", nonce=%q, uri=\"sip:example.com\", response=%q, algorithm=MD5, cnonce=\"c1\", qop=auth, nc=%s\r\n",
						u, nonce, p.Response, p.NC)
					m := string(register(u, fmt.Sprintf("cr-%s-%d-%d", mode, round, i), 2, "10.0.0.5:5060"))
					msgs[i] = []byte(strings.Replace(m, "Content-Length: 0", authz+"Content-Length: 0", 1))
				}
			}
			var wg sync.WaitGroup
			conn := &countConn{done: &wg}
			remote := net.UDPAddrFromAddrPort(rawDevice)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%users == 0 {
					b.StopTimer()
					wg.Wait()
					render()
					b.StartTimer()
				}
				j := slJobs.Get().(*slJob)
				j.buf = append(j.buf[:0], msgs[i%users]...)
				j.conn, j.remote, j.local, j.start = conn, remote, "127.0.0.1:5060", time.Now()
				s.ops.inflight.Add(1)
				wg.Add(1)
				s.sl.handle(j)
			}
			wg.Wait()
			b.StopTimer()
			if conn.oks != b.N {
				b.Fatalf("%d of %d REGISTERs answered 200", conn.oks, b.N)
			}
			raw := strings.HasPrefix(mode, "raw")
			if answered := s.sl.raw200.answered.Load(); raw != (answered == uint64(b.N)) {
				b.Fatalf("%s: %d of %d answered raw", mode, answered, b.N)
			}
			// The fill runs after the write that tells wg.
			for deadline := time.Now().Add(2 * time.Second); cache != nil && cache.Fills() < uint64(b.N) && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			if cache != nil && cache.Fills() != uint64(b.N) {
				b.Fatalf("%s: %d fills for %d 200s", mode, cache.Fills(), b.N)
			}
		})
	}
}
