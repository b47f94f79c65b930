package fastpath_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/fastpath"
	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/slowpath"
)

// server is one in-process pinhole slow path, with or without the fast
// path in front of its UDP listener.
type server struct {
	addr string
	srv  *slowpath.Server
	fp   *fastpath.FastPath // nil: fastpath.enabled false
}

func freePort(t testing.TB, host string) int {
	t.Helper()
	c, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// start runs a server on host with extra YAML appended; fast turns the
// fast path on.
func start(t testing.TB, host string, fast bool, extra string, opt fastpath.Options) *server {
	t.Helper()
	addr := net.JoinHostPort(host, strconv.Itoa(freePort(t, host)))
	yaml := fmt.Sprintf("listen:\n  udp: [%q]\ndomains: [example.com]\ndata_dir: %q\nmetrics:\n  listen: \"\"\n"+
		"natping:\n  interval: 0s\nfastpath:\n  enabled: %v\n  loops: 1\n%s", addr, t.TempDir(), fast, extra)
	cfg, err := config.Parse([]byte(yaml), "test")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := slowpath.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{addr: addr, srv: srv}
	if fast {
		if s.fp, err = fastpath.Attach(srv, cfg, log, opt); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Close(context.Background())
		if s.fp != nil {
			s.fp.Close()
		}
	})
	return s
}

// device is a UDP socket talking to one server.
type device struct {
	t    testing.TB
	c    *net.UDPConn
	host string
	port string
}

func dial(t testing.TB, addr string) *device {
	t.Helper()
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, ra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	la := c.LocalAddr().(*net.UDPAddr)
	return &device{t: t, c: c, host: la.IP.String(), port: strconv.Itoa(la.Port)}
}

// local is the device's address as it writes it in Via and Contact.
func (d *device) local() string { return net.JoinHostPort(d.host, d.port) }

// send writes msg and returns the reply ("" after a timeout).
func (d *device) send(msg string, wait time.Duration) string {
	d.t.Helper()
	if _, err := d.c.Write([]byte(msg)); err != nil {
		d.t.Fatal(err)
	}
	_ = d.c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	n, err := d.c.Read(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// corpusEntry is one REGISTER format from testdata/corpus.
type corpusEntry struct {
	name   string
	absorb bool // the fast path must absorb its refreshes
	why    string
	tmpl   string
}

func loadCorpus(t testing.TB) []corpusEntry {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "corpus", "*.sip"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	var out []corpusEntry
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		first, rest, _ := strings.Cut(string(b), "\n")
		verdict, why, ok := strings.Cut(strings.TrimPrefix(first, "# "), ": ")
		if !ok || (verdict != "absorb" && verdict != "decline") {
			t.Fatalf("%s: first line must be \"# absorb: why\" or \"# decline: why\"", f)
		}
		out = append(out, corpusEntry{
			name: strings.TrimSuffix(filepath.Base(f), ".sip"), absorb: verdict == "absorb", why: why,
			tmpl: strings.ReplaceAll(rest, "\n", "\r\n"),
		})
	}
	return out
}

func (e corpusEntry) render(d *device, callID string, cseq int, branch string) string {
	r := strings.NewReplacer("{{LOCAL}}", d.local(), "{{PORT}}", d.port, "{{CALLID}}", callID,
		"{{CSEQ}}", strconv.Itoa(cseq), "{{BRANCH}}", branch)
	return r.Replace(e.tmpl)
}

var (
	toTag = regexp.MustCompile(`(?m)^(To: .*;tag=)[0-9a-f-]{36}\r$`)
	date  = regexp.MustCompile(`(?m)^Date: (.*)\r$`)
)

// normalize makes two servers' replies comparable: the device's port and
// the server's differ, the To tag is random, Date may tick between them.
func normalize(t testing.TB, reply string, d *device) []string {
	t.Helper()
	if m := date.FindStringSubmatch(reply); m != nil {
		if _, err := time.Parse(time.RFC1123, m[1]); err != nil || !strings.HasSuffix(m[1], " UTC") {
			t.Errorf("Date %q is not RFC 1123 in UTC", m[1])
		}
	}
	reply = date.ReplaceAllString(reply, "Date: DATE\r")
	reply = toTag.ReplaceAllString(reply, "${1}TAG\r")
	reply = strings.ReplaceAll(reply, d.local(), "DEVICE")
	reply = strings.ReplaceAll(reply, "rport="+d.port, "rport=PORT")
	reply = strings.ReplaceAll(reply, ":"+d.port+";", ":PORT;")
	return strings.Split(reply, "\r\n")
}

func tagOf(reply string) string {
	if m := toTag.FindStringSubmatch(reply); m != nil {
		i := strings.Index(reply, m[1])
		return reply[i+len(m[1]) : i+len(m[1])+36]
	}
	return ""
}

// TestRefreshCorpus sends each device format's first REGISTER, a refresh
// and a retransmission of the refresh to pinhole with the fast path off
// and on: every reply must be the same header for header (the To tag,
// Date and the device's port aside), and the refreshes of the formats the
// fast path vouches for must have been absorbed — else the comparison
// would prove nothing.
func TestRefreshCorpus(t *testing.T) {
	slow := start(t, "127.0.0.1", false, "", fastpath.Options{})
	fast := start(t, "127.0.0.1", true, "", fastpath.Options{})
	for i, e := range loadCorpus(t) {
		t.Run(e.name, func(t *testing.T) {
			ds, df := dial(t, slow.addr), dial(t, fast.addr)
			callID := fmt.Sprintf("corpus-%d-%s@device", i, e.name)
			before := fast.fp.Cache().Absorbed()
			var lastS, lastF string
			for step, cseq := range []int{1, 2, 2, 3} { // first, refresh, its retransmission, refresh
				branch := fmt.Sprintf("%s%d", e.name, cseq)
				absorbed, fills := fast.fp.Cache().Absorbed(), fast.fp.Cache().Fills()
				rs := ds.send(e.render(ds, callID, cseq, branch), 2*time.Second)
				rf := df.send(e.render(df, callID, cseq, branch), 2*time.Second)
				if rs == "" || rf == "" {
					t.Fatalf("step %d: no reply (slow %q, fast %q)", step, rs, rf)
				}
				if diff := cmp.Diff(normalize(t, rs, ds), normalize(t, rf, df)); diff != "" {
					t.Fatalf("step %d (CSeq %d): replies differ (-slow +fast):\n%s", step, cseq, diff)
				}
				if step == 2 {
					// A retransmission gets the same answer, same To tag.
					if tagOf(rs) != tagOf(lastS) || tagOf(rf) != tagOf(lastF) {
						t.Errorf("retransmission: To tag changed (slow %s→%s, fast %s→%s)", tagOf(lastS), tagOf(rs), tagOf(lastF), tagOf(rf))
					}
				}
				lastS, lastF = rs, rf
				if step != 2 { // the retransmission (step 2) is answered by a transaction: no fill follows
					fast.settle(t, absorbed, fills)
				}
			}
			got := fast.fp.Cache().Absorbed() - before
			if e.absorb && got != 3 {
				var m strings.Builder
				fast.fp.Cache().WriteMetrics(&m)
				t.Errorf("absorbed %d of 3 refreshes (%s); counters:\n%s", got, e.why, nonZero(m.String()))
			}
			if !e.absorb && got != 0 {
				t.Errorf("absorbed %d refreshes, want none (%s)", got, e.why)
			}
		})
	}
}

// nonZero keeps the metric lines whose value is not 0.
func nonZero(text string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if l != "" && !strings.HasSuffix(l, " 0") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// settle waits, when the slow path answered (nothing was absorbed since
// absorbedBefore), for the fill that follows its reply (it runs after the
// reply is sent) and for ristretto to apply the Set, so that the next
// refresh finds the entry.
func (s *server) settle(t testing.TB, absorbedBefore, fillsBefore uint64) {
	t.Helper()
	c := s.fp.Cache()
	if c.Absorbed() > absorbedBefore {
		return
	}
	for deadline := time.Now().Add(2 * time.Second); c.Fills() == fillsBefore && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	c.Wait()
}

// startEvicting starts a pinhole whose cache refuses half of its Sets and
// evicts half of its hits at random, and dials n devices to it; tmpl is
// the sipp REGISTER of the corpus.
func startEvicting(t *testing.T, n int) (*server, corpusEntry, []*device) {
	t.Helper()
	fast := start(t, "127.0.0.1", true, "", fastpath.Options{Refuse: func() bool { return rand.IntN(2) == 0 }})
	var tmpl corpusEntry
	for _, e := range loadCorpus(t) {
		if e.name == "sipp" {
			tmpl = e
		}
	}
	ds := make([]*device, n)
	for i := range ds {
		ds[i] = dial(t, fast.addr)
	}
	return fast, tmpl, ds
}

// TestRandomEviction refuses half of the cache's Sets and evicts half of
// its hits at random: every refresh must still get its 200 with the
// device's binding, and the store must end with every binding at its last
// CSeq — a miss costs speed, never a binding or a reply.
func TestRandomEviction(t *testing.T) {
	const devices, refreshes = 8, 25
	fast, tmpl, ds := startEvicting(t, devices)
	for cseq := 1; cseq <= refreshes; cseq++ {
		for i, d := range ds {
			msg := strings.ReplaceAll(tmpl.render(d, fmt.Sprintf("evict-%d", i), cseq, fmt.Sprintf("e%d-%d", i, cseq)),
				"sip:ivy@", fmt.Sprintf("sip:ivy%d@", i))
			r := d.send(msg, 2*time.Second)
			if !strings.HasPrefix(r, "SIP/2.0 200 OK\r\n") || !strings.Contains(r, "\r\nContact: <sip:ivy"+strconv.Itoa(i)+"@"+d.local()+">;expires=120\r\n") ||
				!strings.Contains(r, "\r\nCSeq: "+strconv.Itoa(cseq)+" REGISTER\r\n") {
				t.Fatalf("device %d refresh %d: reply\n%s", i, cseq, r)
			}
		}
	}
	c := fast.fp.Cache()
	if a := c.Absorbed(); a == 0 || a == devices*(refreshes-1) {
		t.Errorf("absorbed %d of %d refreshes: the hook did not mix hits and misses", a, devices*(refreshes-1))
	}
	c.Flush()
	now := time.Now()
	for i, d := range ds {
		bs := fast.srv.Store().Lookup(fmt.Sprintf("ivy%d@example.com", i))
		if len(bs) != 1 || bs[0].CSeq != refreshes || bs[0].Contact != "sip:ivy"+strconv.Itoa(i)+"@"+d.local() {
			t.Fatalf("device %d: store holds %+v", i, bs)
		}
		if left := bs[0].Expires.Sub(now); left < 115*time.Second || left > 121*time.Second {
			t.Errorf("device %d: binding expires in %v, want about 120s", i, left)
		}
	}
}
