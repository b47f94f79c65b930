package fastpath_test

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/fastpath"
	"github.com/pinhole-sip/pinhole/internal/digest"
)

// TestRetransmissionAfterEntryGone sends each absorbable device format's
// registration and refresh over UDP to pinhole with the fast path off and
// on, with digest authentication off and on; on the fast path the refresh
// is absorbed and its AOR's entry then dropped (as the store's change hook
// does when another phone of the user registers) before the device
// retransmits it, its 200 lost. The retransmission must get the 200 first
// sent, byte for byte, as it does from the slow path alone; on main it
// reached the slow path (the parsed REGISTER without credentials, the raw
// 200 with them) and got 400 Out Of Order CSeq. The same CSeq under another
// branch is a new request and gets that 400 from both.
func TestRetransmissionAfterEntryGone(t *testing.T) {
	corpus := loadCorpus(t)
	for _, auth := range []bool{false, true} {
		t.Run(fmt.Sprintf("digest=%v", auth), func(t *testing.T) {
			var slow, fast *server
			if auth {
				slow, fast = authServers(t, corpus, time.Minute)
			} else {
				slow, fast = start(t, "127.0.0.1", false, "", fastpath.Options{}), start(t, "127.0.0.1", true, "", fastpath.Options{})
			}
			c := fast.fp.Cache()
			for i, e := range corpus {
				if !e.absorb {
					continue
				}
				t.Run(e.name, func(t *testing.T) {
					ds, df := &retransDevice{d: dial(t, slow.addr), auth: auth}, &retransDevice{d: dial(t, fast.addr), auth: auth}
					callID := fmt.Sprintf("retrans-%v-%d-%s@device", auth, i, e.name)
					both := func(step string, cseq int, branch string, nc uint32) (rs, rf string) {
						t.Helper()
						rs, rf = ds.send(t, e, callID, cseq, branch, nc), df.send(t, e, callID, cseq, branch, nc)
						if diff := cmp.Diff(normalizeAuth(t, rs, ds.d), normalizeAuth(t, rf, df.d)); diff != "" {
							t.Fatalf("%s: replies differ (-slow +fast):\n%s", step, diff)
						}
						return rs, rf
					}
					cseq, nc := 1, uint32(0)
					if auth {
						if rs, _ := both("first, no credentials", cseq, "c1", 0); !strings.HasPrefix(rs, "SIP/2.0 401 ") {
							t.Fatalf("first REGISTER: %q", rs)
						}
						cseq, nc = 2, 1
					}
					absorbed, fills := c.Absorbed(), c.Fills()
					if rs, _ := both("registration", cseq, fmt.Sprint("r", cseq), nc); !strings.HasPrefix(rs, "SIP/2.0 200 OK\r\n") {
						t.Fatalf("registration: %q", rs)
					}
					fast.settle(t, absorbed, fills)

					cseq++
					nc++
					branch := fmt.Sprint("r", cseq)
					absorbed = c.Absorbed()
					firstS, firstF := both("refresh", cseq, branch, nc)
					if c.Absorbed() != absorbed+1 {
						t.Fatal("the refresh was not absorbed: the test proves nothing")
					}
					c.Flush() // as the flusher does within 100 ms; the device retransmits after 500
					c.Invalidate(corpusUser.FindStringSubmatch(e.tmpl)[1] + "@example.com")

					rs, rf := both("its retransmission", cseq, branch, nc)
					if rs != firstS {
						t.Errorf("slow path: the retransmission got\n%s\nnot the first answer\n%s", rs, firstS)
					}
					if rf != firstF {
						t.Errorf("fast path: the retransmission got\n%s\nnot the first answer\n%s", rf, firstF)
					}
					if c.Absorbed() != absorbed+2 {
						t.Errorf("the retransmission was not answered by the loop")
					}

					rs, _ = both("the CSeq reused", cseq, branch+"-reused", nc+1)
					if !strings.HasPrefix(rs, "SIP/2.0 400 ") {
						t.Errorf("the CSeq reused under another branch: %q, want 400", rs)
					}
				})
			}
		})
	}
}

// retransDevice sends REGISTERs with the CSeq, branch and nonce count it
// is told, with credentials for the last nonce it was challenged with
// when auth is on and nc is not 0.
type retransDevice struct {
	d     *device
	auth  bool
	nonce string
}

func (r *retransDevice) send(t *testing.T, e corpusEntry, callID string, cseq int, branch string, nc uint32) string {
	t.Helper()
	msg := e.render(r.d, callID, cseq, branch)
	if r.auth && nc > 0 {
		msg = authorize(msg, digest.SHA256, r.nonce, nc, false)
	}
	reply := r.d.send(msg, 2*time.Second)
	if reply == "" {
		t.Fatalf("CSeq %d, branch %s: no reply", cseq, branch)
	}
	if m := nonceParam.FindStringSubmatch(reply); m != nil {
		r.nonce = m[1]
	}
	return reply
}

// TestRandomEvictionRetransmissions is TestRandomEviction with every
// refresh retransmitted once its 200 is in (as if that 200 had been
// lost): half of the cache's Sets refused and half of its hits evicted at
// random, every retransmission must still get the very 200 its refresh
// got — from the loop when the loop answered the refresh, entry or not,
// from the slow path's response memory when the slow path did — and the
// store must end with every binding at its last CSeq.
func TestRandomEvictionRetransmissions(t *testing.T) {
	const devices, refreshes = 8, 20
	fast, tmpl, ds := startEvicting(t, devices)
	for cseq := 1; cseq <= refreshes; cseq++ {
		for i, d := range ds {
			msg := strings.ReplaceAll(tmpl.render(d, fmt.Sprintf("evict-again-%d", i), cseq, fmt.Sprintf("ea%d-%d", i, cseq)),
				"sip:ivy@", fmt.Sprintf("sip:ivy%d@", i))
			first := d.send(msg, 2*time.Second)
			if !strings.HasPrefix(first, "SIP/2.0 200 OK\r\n") || !strings.Contains(first, "\r\nCSeq: "+strconv.Itoa(cseq)+" REGISTER\r\n") {
				t.Fatalf("device %d refresh %d: reply\n%s", i, cseq, first)
			}
			if again := d.send(msg, 2*time.Second); again != first {
				t.Fatalf("device %d refresh %d: the retransmission got\n%s\nnot the first answer\n%s", i, cseq, again, first)
			}
		}
	}
	var m strings.Builder
	c := fast.fp.Cache()
	c.WriteMetrics(&m)
	if !strings.Contains(m.String(), `pinhole_fastpath_retransmissions_total{entry="gone"} `) ||
		strings.Contains(m.String(), `pinhole_fastpath_retransmissions_total{entry="gone"} 0`+"\n") {
		t.Errorf("no retransmission was answered with its entry gone: the test proved nothing; counters:\n%s", nonZero(m.String()))
	}
	c.Flush()
	for i, d := range ds {
		bs := fast.srv.Store().Lookup(fmt.Sprintf("ivy%d@example.com", i))
		if len(bs) != 1 || bs[0].CSeq != refreshes || bs[0].Contact != "sip:ivy"+strconv.Itoa(i)+"@"+d.local() {
			t.Fatalf("device %d: store holds %+v", i, bs)
		}
	}
}

// mainRegistrar answers every REGISTER that reaches it on c with a 200
// listing the Contacts asked, as a main registrar behind the
// mid-registrar would, until the test ends; it counts them in got.
func mainRegistrar(t *testing.T, c net.PacketConn, got *atomic.Int32) {
	t.Helper()
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 65535)
		parser := sip.NewParser()
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			m, err := parser.ParseSIP(append([]byte(nil), buf[:n]...))
			req, ok := m.(*sip.Request)
			if err != nil || !ok {
				continue
			}
			got.Add(1)
			res := sip.NewResponseFromRequest(req, 200, "OK", nil)
			for _, h := range req.GetHeaders("Contact") {
				res.AppendHeader(h.(*sip.ContactHeader).Clone())
			}
			_, _ = c.WriteTo([]byte(res.String()), from)
		}
	}()
}

// TestMidRegistrarRetransmissionAfterEntryGone is
// TestRetransmissionAfterEntryGone behind the mid-registrar (mode
// contact, a main registrar in the test answering 200), where the slow
// path is sipgo's transaction layer: a retransmission of an absorbed
// refresh finds no transaction there (the loop answered the refresh) and
// used to get the registrar's 400. It must get the first 200 byte for
// byte, and reach neither the mid-registrar nor the main registrar.
func TestMidRegistrarRetransmissionAfterEntryGone(t *testing.T) {
	up, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var upstream atomic.Int32
	mainRegistrar(t, up, &upstream)
	fast := start(t, "127.0.0.1", true, fmt.Sprintf("midregistrar:\n  upstreams: [{addr: %q, transport: udp}]\n  outgoing_expires: 600\n", up.LocalAddr().String()), fastpath.Options{})
	var tmpl corpusEntry
	for _, e := range loadCorpus(t) {
		if e.name == "sipp" {
			tmpl = e
		}
	}
	d := dial(t, fast.addr)
	c := fast.fp.Cache()
	absorbed, fills := c.Absorbed(), c.Fills()
	if r := d.send(tmpl.render(d, "mid-again", 1, "m1"), 5*time.Second); !strings.HasPrefix(r, "SIP/2.0 200 OK\r\n") {
		t.Fatalf("registration: %q", r)
	}
	fast.settle(t, absorbed, fills)
	absorbed = c.Absorbed()
	refresh := tmpl.render(d, "mid-again", 2, "m2")
	first := d.send(refresh, 5*time.Second)
	if !strings.HasPrefix(first, "SIP/2.0 200 OK\r\n") || c.Absorbed() != absorbed+1 {
		t.Fatalf("refresh absorbed %d times, answered\n%s", c.Absorbed()-absorbed, first)
	}
	c.Flush()
	c.Invalidate("ivy@example.com")
	relayed := upstream.Load()
	if again := d.send(refresh, 5*time.Second); again != first {
		t.Errorf("the retransmission got\n%s\nnot the first answer\n%s", again, first)
	}
	if c.Absorbed() != absorbed+2 || upstream.Load() != relayed {
		t.Errorf("the retransmission was not answered by the loop alone (absorbed %d, relayed upstream %d)", c.Absorbed()-absorbed-1, upstream.Load()-relayed)
	}
	if r := d.send(tmpl.render(d, "mid-again", 2, "m2-reused"), 5*time.Second); !strings.HasPrefix(r, "SIP/2.0 400 ") {
		t.Errorf("the CSeq reused under another branch: %q, want 400", r)
	}
}
