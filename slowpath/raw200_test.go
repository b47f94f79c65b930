package slowpath

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/slowpath/registrar"
	"github.com/pinhole-sip/pinhole/slowpath/retrans"
	"github.com/pinhole-sip/pinhole/slowpath/sanity"
)

// raw200Users are the users of the REGISTER corpus, each with password
// "secret" in realm "pinhole".
var raw200Users = []string{"alice", "bob", "carol", "dave", "erin", "frank", "henry", "ivy", "jack",
	"gina", "kate", "liam", "mia", "noah", "olga", "pete", "quinn", "rose"}

// newRaw200Server builds (without starting) a standalone registrar with
// digest authentication for every corpus user, and its registrar's clock
// fixed at now, so that two of them answer the same REGISTERs with the
// same Date and expiries.
func newRaw200Server(tb testing.TB, now time.Time) *Server {
	tb.Helper()
	return newRaw200ServerWith(tb, now, raw200Setup{})
}

// raw200Setup is how newRaw200ServerWith builds a registrar.
type raw200Setup struct {
	// noAuth: no auth section, so the registrar asks no REGISTER for
	// credentials (a registrar behind one that authenticates).
	noAuth bool
	// memory: the location store without its bbolt file. The fuzz
	// targets use it: with the file every change waited for its group
	// commit's fsyncs, milliseconds each, and the fuzzer's minimization
	// of an input that registers, thousands of changes, stalled the
	// target at 0 executions per second. What they compare (answers and
	// bindings) does not depend on the file.
	memory bool
}

// newRaw200ServerWith is newRaw200Server built as o says.
func newRaw200ServerWith(tb testing.TB, now time.Time, o raw200Setup) *Server {
	tb.Helper()
	var s *Server
	if o.noAuth {
		s = newUnstartedServer(tb, "")
	} else {
		path := filepath.Join(tb.TempDir(), "users.txt")
		var lines strings.Builder
		for _, u := range raw200Users {
			md := md5.Sum([]byte(u + ":pinhole:secret"))
			sh := sha256.Sum256([]byte(u + ":pinhole:secret"))
			fmt.Fprintf(&lines, "%s pinhole %s %s\n", u, hex.EncodeToString(md[:]), hex.EncodeToString(sh[:]))
		}
		if err := os.WriteFile(path, []byte(lines.String()), 0o600); err != nil {
			tb.Fatal(err)
		}
		s = newRawServerWith(tb, path, "[SHA-256, MD5]")
	}
	if o.memory {
		if err := s.store.Close(); err != nil {
			tb.Fatal(err)
		}
		opts := storeOptions(s.cfg, nil, s.bindingChanged)
		opts.Path = "" // memory only
		st, err := location.Open(opts)
		if err != nil {
			tb.Fatal(err)
		}
		s.store = st
	}
	rc := s.cfg.Registrar
	trusted, err := trustList(s.cfg)
	if err != nil {
		tb.Fatal(err)
	}
	var authz registrar.Authorizer // nil: no authentication, as Server.New
	if !o.noAuth {
		authz = registerAuth{a: s.ops.authn.Load, failed: s.authFailed}
	}
	reg, err := registrar.New(registrar.Config{
		Domains: s.cfg.Domains, MinExpires: rc.MinExpires, MaxExpires: rc.MaxExpires,
		DefaultExpires: rc.DefaultExpires, MaxContacts: rc.MaxContacts,
		Now: func() time.Time { return now }, Trusted: trusted, Committed: s.committed, Settle: s.settle,
	}, s.store, authz)
	if err != nil {
		tb.Fatal(err)
	}
	s.reg = reg
	return s
}

// signed returns data, a REGISTER without credentials, with MD5
// credentials for the user of its To and a fresh nonce of s; as it is
// when s asks for no credentials.
func signed(tb testing.TB, s *Server, data []byte) []byte {
	tb.Helper()
	out, ok := trySign(s, data)
	if !ok {
		tb.Fatalf("cannot sign\n%s", data)
	}
	return out
}

var toUser = regexp.MustCompile(`(?mi)^(?:To|t)[ \t]*:[^\r]*sips?:([^@>;:\r]+)@`)

// trySign is signed for any input; ok is false when data has no end of
// headers, Request-URI or To user to sign for.
func trySign(s *Server, data []byte) ([]byte, bool) {
	if s.ops.authn.Load() == nil {
		return data, true
	}
	msg := string(data)
	line, _, _ := strings.Cut(msg, "\r\n")
	f := strings.Fields(line)
	m := toUser.FindStringSubmatch(msg)
	end := strings.Index(msg, "\r\n\r\n")
	if len(f) < 2 || m == nil || end < 0 {
		return nil, false
	}
	ruri, user := f[1], m[1]
	v := s.ops.authn.Load().Verifier()
	nonce := string(v.AppendNonce(nil, v.Now()))
	h := func(x string) string { sum := md5.Sum([]byte(x)); return hex.EncodeToString(sum[:]) }
	resp := h(h(user+":pinhole:secret") + ":" + nonce + ":00000001:c1:auth:" + h("REGISTER:"+ruri))
	authz := `Authorization: Digest username="` + user + `", realm="pinhole", nonce="` + nonce + `", uri="` + ruri +
		`", algorithm=MD5, qop=auth, nc=00000001, cnonce="c1", response="` + resp + `"`
	return []byte(msg[:end] + "\r\n" + authz + msg[end:]), true
}

// captureConn is the socket a job's answer is written on in tests.
type captureConn struct {
	net.PacketConn
	out chan []byte
}

func (c *captureConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	c.out <- append([]byte(nil), b...)
	return len(b), nil
}

// viaRaw200 runs data from rawDevice through the raw 200 as a worker
// does; ok is false when it declines (and the sipgo path would go on).
func viaRaw200(tb testing.TB, s *Server, data []byte) (string, bool) {
	tb.Helper()
	conn := &captureConn{out: make(chan []byte, 1)}
	j := &slJob{buf: append([]byte(nil), data...), conn: conn, remote: net.UDPAddrFromAddrPort(rawDevice),
		local: "127.0.0.1:5060", start: time.Now()}
	done := make(chan struct{})
	key, ok := s.sl.answerRaw200(j, func() { close(done) })
	if !ok {
		if key != 0 {
			s.sl.cache.Forget(key)
		}
		return "", false
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		tb.Fatal("the raw 200 never finished")
	}
	select {
	case b := <-conn.out:
		return string(b), true
	default:
		tb.Fatal("the raw path took the REGISTER and wrote nothing")
	}
	return "", false
}

// comparable200 blanks the random To tag of a 200 after checking its
// form, and splits it into lines.
func comparable200(tb testing.TB, reply string) []string {
	tb.Helper()
	if !rawTag.MatchString(reply) {
		tb.Errorf("no version 4 UUID To tag in\n%s", reply)
	}
	return strings.Split(rawTag.ReplaceAllString(reply, "${1}TAG\r"), "\r\n")
}

// raw200Pair are two registrars with one clock, one answering through the
// raw 200 and one through sipgo, fed the same REGISTERs.
type raw200Pair struct {
	raw, sipgo *Server
}

func newRaw200Pair(tb testing.TB) raw200Pair {
	return newRaw200PairWith(tb, raw200Setup{})
}

// newRaw200PairWith is newRaw200Pair with registrars built as o says.
func newRaw200PairWith(tb testing.TB, o raw200Setup) raw200Pair {
	now := time.Now().Truncate(time.Second)
	return raw200Pair{raw: newRaw200ServerWith(tb, now, o), sipgo: newRaw200ServerWith(tb, now, o)}
}

// send signs data for each server, answers it through both paths and
// checks the 200s are one and the AOR's bindings are the same. It
// reports whether the raw path answered.
func (p raw200Pair) send(t *testing.T, data []byte, aor string) bool {
	t.Helper()
	got, ok := viaRaw200(t, p.raw, signed(t, p.raw, data))
	if !ok {
		got = viaSipgo(t, p.raw, signed(t, p.raw, data))
	}
	want := viaSipgo(t, p.sipgo, signed(t, p.sipgo, data))
	if ok && !strings.HasPrefix(want, "SIP/2.0 200 ") {
		t.Fatalf("raw path answered where the registrar answers\n%s", want)
	}
	if ok {
		if diff := cmp.Diff(comparable200(t, want), comparable200(t, got)); diff != "" {
			t.Errorf("200 differs (-sipgo +raw):\n%s", diff)
		}
	} else if strings.HasPrefix(want, "SIP/2.0 200 ") {
		// Both through sipgo: a To tag sipgo kept is the same on both.
		blank := func(s string) string { return rawTag.ReplaceAllString(s, "${1}TAG\r") }
		if diff := cmp.Diff(blank(want), blank(got)); diff != "" {
			t.Errorf("200 differs (-sipgo +raw):\n%s", diff)
		}
	}
	if diff := cmp.Diff(p.sipgo.store.Lookup(aor), p.raw.store.Lookup(aor), cmpopts.EquateComparable(netip.AddrPort{})); diff != "" {
		t.Errorf("bindings of %s differ (-sipgo +raw):\n%s", aor, diff)
	}
	return ok
}

// raw200Template is a REGISTER of user for a phone at local ({{LOCAL}}
// in the corpus' form), with extra header lines.
func raw200Template(user, local, contact, extra string) string {
	return "REGISTER sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-{{CALLID}}-{{CSEQ}};rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:" + user + "@example.com>;tag={{CALLID}}\r\nTo: <sip:" + user + "@example.com>\r\n" +
		"Call-ID: {{CALLID}}\r\nCSeq: {{CSEQ}} REGISTER\r\nContact: " + contact + "\r\n" + extra + "Content-Length: 0\r\n\r\n"
}

func renderStep(tmpl, callID string, cseq int) []byte {
	return []byte(strings.NewReplacer("{{CALLID}}", callID, "{{CSEQ}}", fmt.Sprint(cseq)).Replace(tmpl))
}

// strayAuthz is credentials a REGISTER carries where none are asked for
// (a phone set up with a password, behind a registrar that does not
// authenticate): a realm and nonce pinhole never issued, a wrong response.
const strayAuthz = `Authorization: Digest username="alice", realm="elsewhere", nonce="n0", uri="sip:example.com", ` +
	`algorithm=MD5, qop=auth, nc=00000001, cnonce="c1", response="00000000000000000000000000000000"`

// withHeader returns data with the header line h added at the end of its
// header section.
func withHeader(data []byte, h string) []byte {
	end := bytes.Index(data, []byte("\r\n\r\n"))
	if end < 0 {
		return data
	}
	return slices.Concat(data[:end], []byte("\r\n"+h), data[end:])
}

// raw200Setups are the registrars the raw 200 is compared on: with digest
// authentication, and without (no auth section), where every REGISTER,
// with credentials or without, is the raw path's to answer.
var raw200Setups = []struct {
	name  string
	setup raw200Setup
	stray bool // add strayAuthz to every REGISTER
}{
	{"digest", raw200Setup{}, false},
	{"no auth", raw200Setup{noAuth: true}, false},
	{"no auth, credentials anyway", raw200Setup{noAuth: true}, true},
}

// TestRaw200MatchesRegistrar feeds device REGISTER formats to the raw 200
// and to the registrar through sipgo, on two registrars with one clock,
// with credentials where authentication is on, without them (and with
// credentials nobody asked for) where it is off: where the raw path
// answers, its 200 is byte for byte the registrar's (the random To tag
// aside, whose form is checked) and the store holds the same bindings
// afterwards; it answers the formats the raw 401 answers, and declines
// the others.
func TestRaw200MatchesRegistrar(t *testing.T) {
	for _, setup := range raw200Setups {
		t.Run(setup.name, func(t *testing.T) {
			p := newRaw200PairWith(t, setup.setup)
			for i, c := range loadRawCases(t) {
				t.Run(c.name, func(t *testing.T) {
					// A branch of its own: the same one would be a retransmission.
					c.tmpl = strings.ReplaceAll(c.tmpl, "{{BRANCH}}", fmt.Sprintf("raw200-%d", i))
					data := []byte(strings.Replace(string(c.render(fmt.Sprintf("raw200-%d@device", i))), "CSeq: 1 REGISTER", "CSeq: 2 REGISTER", 1))
					if setup.stray {
						data = withHeader(data, strayAuthz)
					}
					m := regexp.MustCompile(`(?mi)^(?:To|t)[ \t]*:[^\r]*sips?:([^@>;:]+)@([^>;:\r]+)`).FindStringSubmatch(string(data))
					aor := m[1] + "@" + strings.ToLower(m[2])
					if ok := p.send(t, data, aor); ok != c.raw {
						t.Fatalf("raw path answered %v, want %v", ok, c.raw)
					}
				})
			}
			if n := p.raw.sl.raw200.answered.Load(); n == 0 {
				t.Error("no 200 written from bytes: the comparison proved nothing")
			}
		})
	}
}

// TestRaw200Sequences: AORs with two and three phones, outbound with
// reg-id, the forms of expires, a removal and a refresh, each step
// answered by both paths with the same 200 and the same bindings.
func TestRaw200Sequences(t *testing.T) {
	type step struct {
		tmpl   string
		callID string
		cseq   int
		raw    bool
	}
	const (
		a = "10.0.0.5:5060"
		b = "10.0.0.6:5062"
		c = "192.0.2.10:40123" // the source itself: not NATed
	)
	sup := "Supported: outbound, path\r\n"
	cases := map[string]struct {
		aor   string
		steps []step
	}{
		"two phones": {"bob@example.com", []step{
			{raw200Template("bob", a, "<sip:bob@"+a+">", "Expires: 600\r\n"), "p1", 1, true},
			{raw200Template("bob", b, "<sip:bob@"+b+">;q=0.5", "Expires: 300\r\n"), "p2", 1, true},
			{raw200Template("bob", a, "<sip:bob@"+a+">", "Expires: 600\r\n"), "p1", 2, true},
		}},
		"three phones": {"carol@example.com", []step{
			{raw200Template("carol", a, "<sip:carol@"+a+">;expires=120", ""), "c1", 1, true},
			{raw200Template("carol", b, "<sip:carol@"+b+";transport=udp>;q=0.8", "Expires: 3600\r\n"), "c2", 5, true},
			{raw200Template("carol", c, "<sip:carol@"+c+">;q=1", "User-Agent: Three/1.0\r\n"), "c3", 1, true},
			// The second phone leaves: the 200 lists the other two.
			{raw200Template("carol", b, "<sip:carol@"+b+";transport=udp>;expires=0", ""), "c2", 6, true},
		}},
		"outbound reg-id": {"dave@example.com", []step{
			{raw200Template("dave", a, `<sip:dave@`+a+`;ob>;+sip.instance="<urn:uuid:0a1b2c3d-0000-4000-8000-000000000001>";reg-id=1`, sup+"Expires: 600\r\n"), "o1", 1, true},
			{raw200Template("dave", b, `<sip:dave@`+b+`;ob>;+sip.instance="<urn:uuid:0a1b2c3d-0000-4000-8000-000000000001>";reg-id=2`, sup+"Expires: 600\r\n"), "o2", 1, true},
			// The same instance and flow from another address replaces it.
			{raw200Template("dave", c, `<sip:dave@`+c+`;ob>;+sip.instance="<urn:uuid:0a1b2c3d-0000-4000-8000-000000000001>";reg-id=1`, "Expires: 600\r\n"), "o3", 1, true},
		}},
		"expires forms": {"erin@example.com", []step{
			{raw200Template("erin", a, "<sip:erin@"+a+">", ""), "e1", 1, true},                                 // the default
			{raw200Template("erin", b, "<sip:erin@"+b+">;expires=99999999", "Expires: 60\r\n"), "e2", 1, true}, // capped at the maximum
			{raw200Template("erin", c, "<sip:erin@"+c+">", "Expires:  4294967295 \r\n"), "e3", 1, true},        // the widest number
		}},
		"refused by the rules": {"frank@example.com", []step{
			{raw200Template("frank", a, "<sip:frank@"+a+">", "Expires: 600\r\n"), "f1", 5, true},
			{raw200Template("frank", a, "<sip:frank@"+a+">", "Expires: 600\r\n"), "f1", 4, false}, // out of order CSeq: 400
			// The same CSeq in a new transaction: 400 as well.
			{strings.Replace(raw200Template("frank", a, "<sip:frank@"+a+">", "Expires: 600\r\n"), "{{CSEQ}};", "{{CSEQ}}-again;", 1), "f1", 5, false},
			{raw200Template("frank", a, "<sip:frank@"+a+">", "Expires: 10\r\n"), "f1", 6, false}, // 423
			{raw200Template("frank", a, "<sip:frank@"+a+">;q=2", ""), "f1", 7, false},            // 400 q-value
		}},
	}
	for _, setup := range raw200Setups {
		t.Run(setup.name, func(t *testing.T) {
			p := newRaw200PairWith(t, setup.setup)
			for name, tc := range cases {
				t.Run(name, func(t *testing.T) {
					for i, st := range tc.steps {
						data := renderStep(st.tmpl, st.callID+"-"+strings.ReplaceAll(name, " ", "_"), st.cseq)
						if setup.stray {
							data = withHeader(data, strayAuthz)
						}
						if got := p.send(t, data, tc.aor); got != st.raw {
							t.Fatalf("step %d: raw path answered %v, want %v", i, got, st.raw)
						}
					}
				})
			}
		})
	}
}

// TestRaw200Declines: the raw 200 leaves to sipgo what it cannot vouch
// for, whatever the answer, and changes nothing when it does.
func TestRaw200Declines(t *testing.T) {
	s := newRaw200Server(t, time.Now().Truncate(time.Second))
	base := raw200Template("alice", "10.0.0.5:5060", "<sip:alice@10.0.0.5:5060>", "Expires: 600\r\n")
	plain := renderStep(base, "dec", 1)
	if _, ok := viaRaw200(t, s, signed(t, s, plain)); !ok {
		t.Fatal("the plain REGISTER is declined: the cases below would prove nothing")
	}
	before := s.store.Lookup("alice@example.com")
	repl := func(old, new string) []byte {
		return signed(t, s, []byte(strings.Replace(string(renderStep(base, "dec", 2)), old, new, 1)))
	}
	v := s.ops.authn.Load().Verifier()
	staleNonce := string(v.AppendNonce(nil, v.Now().Add(-time.Hour)))
	cases := map[string][]byte{
		"no credentials": renderStep(base, "dec", 2),
		"wrong password": []byte(regexp.MustCompile(`response="[0-9a-f]+"`).ReplaceAllString(string(repl("", "")), `response="00000000000000000000000000000000"`)),
		"stale nonce":    []byte(regexp.MustCompile(`nonce="[^"]+"`).ReplaceAllString(string(repl("", "")), `nonce="`+staleNonce+`"`)),
		"other realm":    []byte(strings.Replace(string(repl("", "")), `realm="pinhole"`, `realm="elsewhere"`, 1)),
		"two credentials": []byte(strings.Replace(string(repl("", "")), "Authorization:",
			"Authorization: Digest username=\"alice\", realm=\"x\", nonce=\"n\", uri=\"sip:example.com\", response=\"0\"\r\nAuthorization:", 1)),
		"uri another form": []byte(strings.Replace(string(repl("", "")), `uri="sip:example.com"`, `uri="sip:EXAMPLE.com"`, 1)),
		// bob's valid credentials for alice's AOR: 403.
		"other user":   []byte(strings.Replace(string(signed(t, s, []byte(strings.ReplaceAll(string(renderStep(base, "dec", 2)), "alice", "bob")))), "To: <sip:bob", "To: <sip:alice", 1)),
		"two vias":     repl("Max-Forwards", "Via: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKx\r\nMax-Forwards"),
		"path":         repl("Max-Forwards", "Path: <sip:edge.example.com;lr>\r\nMax-Forwards"),
		"require":      repl("Max-Forwards", "Require: path\r\nMax-Forwards"),
		"wildcard":     repl("<sip:alice@10.0.0.5:5060>", "*"),
		"to tag":       repl("To: <sip:alice@example.com>", "To: <sip:alice@example.com>;tag=1"),
		"other domain": repl("REGISTER sip:example.com", "REGISTER sip:example.org"),
		"too brief":    repl("Expires: 600", "Expires: 5"),
		"out of order": signed(t, s, []byte(strings.Replace(string(renderStep(base, "dec", 1)), "dec-1;", "dec-1b;", 1))),
		"bad q":        repl("10.0.0.5:5060>", "10.0.0.5:5060>;q=x"),
		"two reg-ids":  repl("Contact: <sip:alice@10.0.0.5:5060>", "Contact: <sip:alice@10.0.0.5:5060>;reg-id=1\r\nContact: <sip:alice@10.0.0.6:5060>;reg-id=2"),
		"body":         repl("Content-Length: 0\r\n\r\n", "Content-Length: 2\r\n\r\nhi"),
		"record-route": repl("Max-Forwards", "Record-Route: <sip:p.example.com;lr>\r\nMax-Forwards"),
	}
	assertDeclined(t, s, before, cases)
	// A replay of the accepted REGISTER: its nonce count is used.
	replay := signed(t, s, renderStep(base, "dec", 3))
	if _, ok := viaRaw200(t, s, replay); !ok {
		t.Fatal("a fresh REGISTER was declined")
	}
	again := []byte(strings.Replace(string(replay), "CSeq: 3", "CSeq: 4", 1))
	if _, ok := viaRaw200(t, s, again); ok {
		t.Error("a replayed nonce count answered raw")
	}
	if n := s.sl.raw200.declined[raw200Replay].Load(); n != 1 {
		t.Errorf("%d declined as replays, want 1", n)
	}
	for name, set := range map[string]func(bool){
		"stopping":       func(on bool) { s.ops.draining.Store(on) },
		"fast path hook": func(on bool) { hookCommitted(s, on) },
	} {
		data := signed(t, s, renderStep(base, "dec", 10))
		set(true)
		if _, ok := viaRaw200(t, s, data); ok {
			t.Errorf("answered raw with %s", name)
		}
		set(false)
	}
}

// TestRaw200DeclinesNoAuth: without authentication the raw 200 answers
// REGISTERs without credentials, and with credentials nobody checks, but
// still leaves to sipgo what it cannot vouch for, changing nothing.
func TestRaw200DeclinesNoAuth(t *testing.T) {
	s := newRaw200ServerWith(t, time.Now().Truncate(time.Second), raw200Setup{noAuth: true})
	base := raw200Template("alice", "10.0.0.5:5060", "<sip:alice@10.0.0.5:5060>", "Expires: 600\r\n")
	if _, ok := viaRaw200(t, s, renderStep(base, "dec", 1)); !ok {
		t.Fatal("the plain REGISTER is declined: the cases below would prove nothing")
	}
	if _, ok := viaRaw200(t, s, withHeader(renderStep(base, "dec", 2), strayAuthz)); !ok {
		t.Fatal("a REGISTER with credentials nobody asked for is declined")
	}
	before := s.store.Lookup("alice@example.com")
	repl := func(old, new string) []byte {
		return []byte(strings.Replace(string(renderStep(base, "dec", 3)), old, new, 1))
	}
	cases := map[string][]byte{
		"two vias":     repl("Max-Forwards", "Via: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKx\r\nMax-Forwards"),
		"path":         repl("Max-Forwards", "Path: <sip:edge.example.com;lr>\r\nMax-Forwards"),
		"require":      repl("Max-Forwards", "Require: path\r\nMax-Forwards"),
		"wildcard":     repl("<sip:alice@10.0.0.5:5060>", "*"),
		"to tag":       repl("To: <sip:alice@example.com>", "To: <sip:alice@example.com>;tag=1"),
		"other domain": repl("REGISTER sip:example.com", "REGISTER sip:example.org"),
		"no to user":   repl("To: <sip:alice@example.com>", "To: <sip:example.com>"),
		"too brief":    repl("Expires: 600", "Expires: 5"),
		"out of order": []byte(strings.Replace(string(renderStep(base, "dec", 1)), "dec-1;", "dec-1b;", 1)),
		"bad q":        repl("10.0.0.5:5060>", "10.0.0.5:5060>;q=x"),
		"body":         repl("Content-Length: 0\r\n\r\n", "Content-Length: 2\r\n\r\nhi"),
	}
	assertDeclined(t, s, before, cases)
	for name, set := range map[string]func(bool){
		"stopping":       func(on bool) { s.ops.draining.Store(on) },
		"fast path hook": func(on bool) { hookCommitted(s, on) },
	} {
		set(true)
		if _, ok := viaRaw200(t, s, renderStep(base, "dec", 10)); ok {
			t.Errorf("answered raw with %s", name)
		}
		set(false)
	}
	if n := s.sl.raw200.declined[raw200Auth].Load() + s.sl.raw200.declined[raw200Replay].Load(); n != 0 {
		t.Errorf("%d declined for credentials where none are asked", n)
	}
}

// hookCommitted installs or removes a Committed hook, as the fast path does.
func hookCommitted(s *Server, on bool) {
	if on {
		s.SetCommitted(func(*sip.Request, *sip.Response, location.Flow) {})
	} else {
		s.hooks.committed.Store(nil)
	}
}

// FuzzRaw200VsSipgo: whenever the raw 200 answers a datagram the sanity
// filter passes, the registrar through sipgo answers the same 200 and
// stores the same bindings; with digest authentication (the input signed
// for its To user) and without (the input as it is). The stores are in
// memory (raw200Setup.memory): what is compared does not depend on the
// file, and its fsyncs stalled the fuzzer.
func FuzzRaw200VsSipgo(f *testing.F) {
	pairs := []raw200Pair{newRaw200PairWith(f, raw200Setup{memory: true}), newRaw200PairWith(f, raw200Setup{memory: true, noAuth: true})}
	for _, c := range loadRawCases(f) {
		f.Add(c.render("fuzz@device"))
	}
	lim := *pairs[0].raw.ops.limits.Load()
	callID := regexp.MustCompile(`(?mi)^(Call-ID|i):[ \t]*`)
	to := regexp.MustCompile(`(?mi)^(?:To|t)[ \t]*:[^\r]*sips?:([^@>;:\r]+)@([^>;:\r]+)`)
	n := 0
	f.Fuzz(func(t *testing.T, data []byte) {
		if sanity.Check(nil, data, lim).Action != sanity.Pass {
			return
		}
		n++
		// A new Call-ID per input, so that one input's binding does not
		// make the next one's CSeq out of order on one side only.
		data = callID.ReplaceAll(data, []byte(fmt.Sprintf("${1}: f%d-", n)))
		if sanity.Check(nil, data, lim).Action != sanity.Pass {
			return
		}
		m := to.FindSubmatch(data)
		if m == nil || !slices.Contains(raw200Users, string(m[1])) {
			return
		}
		aor := string(m[1]) + "@" + strings.ToLower(strings.TrimSuffix(string(m[2]), "."))
		for _, p := range pairs {
			rawReq, ok1 := trySign(p.raw, data)
			sipgoReq, ok2 := trySign(p.sipgo, data)
			if !ok1 || !ok2 {
				return
			}
			// A cache of its own: two inputs with one transaction key would
			// be a retransmission and its answer.
			p.raw.sl.cache = retrans.NewSized(1<<16, 64)
			got, ok := viaRaw200(t, p.raw, rawReq)
			if !ok {
				continue
			}
			// The raw side changed: the sipgo side must make the same change.
			want := viaSipgo(t, p.sipgo, sipgoReq)
			if !strings.HasPrefix(want, "SIP/2.0 200 ") {
				t.Fatalf("raw path answered 200 where the registrar answers %q", want)
			}
			if diff := cmp.Diff(comparable200(t, want), comparable200(t, got)); diff != "" {
				t.Fatalf("200 differs (-sipgo +raw):\n%s", diff)
			}
			if diff := cmp.Diff(p.sipgo.store.Lookup(aor), p.raw.store.Lookup(aor), cmpopts.EquateComparable(netip.AddrPort{})); diff != "" {
				t.Fatalf("bindings differ (-sipgo +raw):\n%s", diff)
			}
		}
	})
}

// TestRaw200OverUDP: a first registration over UDP gets its 200 written
// from raw bytes by a worker (counted), a retransmission of that REGISTER
// gets the same bytes again from the response cache and changes nothing
// (the binding keeps its CSeq, no second 200 is counted), and the
// refresh that follows with the next nonce count is answered raw too.
func TestRaw200OverUDP(t *testing.T) {
	creds := writeTestCreds(t)
	s, addr := startStateless(t, "auth:\n  credentials: "+creds+"\n  algorithms: [MD5]\n")
	c := client(t)
	local := c.LocalAddr().String()
	got := exchange(t, c, addr, register("alice", "raw200udp", 1, local), 2*time.Second)
	nonce := between(string(got), `nonce="`, `"`)
	withAuth := func(cseq int, nc string) []byte {
		authz := `Authorization: Digest username="alice", realm="pinhole", nonce="` + nonce +
			`", uri="sip:example.com", algorithm=MD5, qop=auth, nc=` + nc + `, cnonce="c1", response="` +
			digestMD5("pinhole", "alice", "REGISTER", "sip:example.com", nonce, nc, "c1") + `"` + "\r\n"
		return []byte(strings.Replace(string(register("alice", "raw200udp", cseq, local)), "Content-Length: 0", authz+"Content-Length: 0", 1))
	}
	req := withAuth(2, "00000001")
	first := exchange(t, c, addr, req, 2*time.Second)
	if status(first) != "SIP/2.0 200 OK" {
		t.Fatalf("REGISTER with credentials: %q", first)
	}
	if n := s.sl.raw200.answered.Load(); n != 1 {
		t.Fatalf("%d 200s written from raw bytes, want 1", n)
	}
	again := exchange(t, c, addr, req, 2*time.Second)
	if !bytes.Equal(first, again) {
		t.Errorf("the retransmission's answer differs:\n%s\nthen\n%s", first, again)
	}
	if n := s.sl.raw200.answered.Load(); n != 1 {
		t.Errorf("%d 200s written from raw bytes after the retransmission, want 1", n)
	}
	if bs := s.store.Lookup("alice@example.com"); len(bs) != 1 || bs[0].CSeq != 2 {
		t.Errorf("bindings after the retransmission: %+v", bs)
	}
	if got := status(exchange(t, c, addr, withAuth(3, "00000002"), 2*time.Second)); got != "SIP/2.0 200 OK" {
		t.Fatalf("refresh: %q", got)
	}
	if n := s.sl.raw200.answered.Load(); n != 2 {
		t.Errorf("%d 200s written from raw bytes after the refresh, want 2", n)
	}
}

// TestRaw200OverUDPNoAuth: without authentication a first registration
// over UDP gets its 200 written from raw bytes by a worker (counted); a
// retransmission gets the same bytes again from the response cache and
// is applied once; a refresh, and one carrying credentials nobody asked
// for, are answered raw too; an out of order CSeq of the same Call-ID
// (lower, or the same in a new transaction) is left to sipgo, which
// answers 400 as it always did.
func TestRaw200OverUDPNoAuth(t *testing.T) {
	s, addr := startStateless(t, "")
	c := client(t)
	local := c.LocalAddr().String()
	answered := func(want uint64) {
		t.Helper()
		if n := s.sl.raw200.answered.Load(); n != want {
			t.Fatalf("%d 200s written from raw bytes, want %d", n, want)
		}
	}
	req := register("alice", "raw200na", 1, local)
	first := exchange(t, c, addr, req, 2*time.Second)
	if status(first) != "SIP/2.0 200 OK" {
		t.Fatalf("REGISTER: %q", first)
	}
	answered(1)
	again := exchange(t, c, addr, req, 2*time.Second)
	if !bytes.Equal(first, again) {
		t.Errorf("the retransmission's answer differs:\n%s\nthen\n%s", first, again)
	}
	answered(1)
	if bs := s.store.Lookup("alice@example.com"); len(bs) != 1 || bs[0].CSeq != 1 {
		t.Errorf("bindings after the retransmission: %+v", bs)
	}
	if got := status(exchange(t, c, addr, register("alice", "raw200na", 2, local), 2*time.Second)); got != "SIP/2.0 200 OK" {
		t.Fatalf("refresh: %q", got)
	}
	answered(2)
	if got := status(exchange(t, c, addr, withHeader(register("alice", "raw200na", 3, local), strayAuthz), 2*time.Second)); got != "SIP/2.0 200 OK" {
		t.Fatalf("refresh with credentials: %q", got)
	}
	answered(3)
	for name, data := range map[string][]byte{
		"lower":    register("alice", "raw200na", 2, local),
		"the same": bytes.Replace(register("alice", "raw200na", 3, local), []byte("raw200na-3;"), []byte("raw200na-3b;"), 1),
	} {
		// A branch of its own: not a retransmission.
		data = bytes.Replace(data, []byte(";rport"), []byte("x;rport"), 1)
		if got := status(exchange(t, c, addr, data, 2*time.Second)); got != "SIP/2.0 400 Out Of Order CSeq" {
			t.Errorf("%s CSeq: %q", name, got)
		}
	}
	answered(3)
	if n := s.sl.raw200.declined[raw200Rules].Load(); n != 2 {
		t.Errorf("%d declined by the rules, want 2", n)
	}
	if bs := s.store.Lookup("alice@example.com"); len(bs) != 1 || bs[0].CSeq != 3 {
		t.Errorf("bindings at the end: %+v", bs)
	}
}

// TestRaw200Fallback: when another phone of the AOR holds a Contact the
// raw writer cannot vouch for (an IPv6 literal, which sipgo brackets
// itself), the raw path still applies the REGISTER but builds its 200
// through sipgo (counted): the same 200 and bindings as the sipgo path.
func TestRaw200Fallback(t *testing.T) {
	p := newRaw200Pair(t)
	const v6 = "[2001:db8::5]:5060"
	steps := []struct {
		tmpl   string
		callID string
		raw    bool
	}{
		{raw200Template("liam", "10.0.0.5:5060", "<sip:liam@"+v6+">", "Expires: 600\r\n"), "fb1", false},
		{raw200Template("liam", "10.0.0.6:5060", "<sip:liam@10.0.0.6:5060>", "Expires: 600\r\n"), "fb2", true},
	}
	for i, st := range steps {
		if got := p.send(t, renderStep(st.tmpl, st.callID, 1), "liam@example.com"); got != st.raw {
			t.Fatalf("step %d: raw path answered %v, want %v", i, got, st.raw)
		}
	}
	if n := p.raw.sl.raw200.fallback.Load(); n != 1 {
		t.Errorf("%d raw 200s built through sipgo, want 1", n)
	}
	if n := p.raw.sl.raw200.answered.Load(); n != 0 {
		t.Errorf("%d 200s written from bytes, want 0", n)
	}
}

// TestRaw200RawFill: with the fast path's hooks set (Committed and
// RawFill), the raw 200 asks RawFill about the request before the store
// changes, answers from bytes when it vouches, and then hands it the
// very bytes it wrote and the flow; when RawFill cannot vouch, the raw
// path declines (counted as fill) and leaves the store as it was, so
// that sipgo answers and Committed fills.
func TestRaw200RawFill(t *testing.T) {
	s := newRaw200Server(t, time.Now().Truncate(time.Second))
	hookCommitted(s, true)
	var asked, filled [][]byte
	var flows []location.Flow
	vouch := true
	s.SetRawFill(func(req []byte) (func([]byte, location.Flow), bool) {
		asked = append(asked, append([]byte(nil), req...))
		if !vouch {
			return nil, false
		}
		return func(res []byte, fl location.Flow) {
			filled = append(filled, append([]byte(nil), res...))
			flows = append(flows, fl)
		}, true
	})
	base := raw200Template("mia", "10.0.0.5:5060", "<sip:mia@10.0.0.5:5060>", "Expires: 600\r\n")
	data := signed(t, s, renderStep(base, "rf", 1))
	got, ok := viaRaw200(t, s, data)
	if !ok {
		t.Fatal("declined with a RawFill hook that vouches")
	}
	if len(asked) != 1 || string(asked[0]) != string(data) {
		t.Fatalf("RawFill asked %d times, want once with the request", len(asked))
	}
	if len(filled) != 1 || string(filled[0]) != got {
		t.Fatalf("the fill got %q, want the 200 written:\n%s", filled, got)
	}
	if fl := flows[0]; fl.Transport != location.TransportUDP || fl.Remote != rawDevice {
		t.Errorf("the fill got flow %+v, want UDP from %v", fl, rawDevice)
	}

	vouch = false
	before := s.store.Lookup("mia@example.com")
	if got, ok := viaRaw200(t, s, signed(t, s, renderStep(base, "rf", 2))); ok {
		t.Fatalf("answered raw although RawFill cannot vouch:\n%s", got)
	}
	if n := s.sl.raw200.declined[raw200Fill].Load(); n != 1 {
		t.Errorf("%d declined as fill, want 1", n)
	}
	if len(filled) != 1 {
		t.Errorf("a declined REGISTER was filled")
	}
	if after := s.store.Lookup("mia@example.com"); !reflect.DeepEqual(before, after) {
		t.Errorf("a declined REGISTER changed the store:\nbefore %+v\nafter  %+v", before, after)
	}
}

// TestRaw200FallbackCommitted: a 200 the raw path applied but built
// through sipgo after all (a stored Contact sipgo prints otherwise, as in
// TestRaw200Fallback) is told to Committed with sipgo's objects, so that
// the fast path fills its cache from them; the RawFill's fill is not run.
func TestRaw200FallbackCommitted(t *testing.T) {
	p := newRaw200Pair(t)
	// Told from the store's committer.
	var mu sync.Mutex
	var committed []string
	p.raw.SetCommitted(func(req *sip.Request, res *sip.Response, _ location.Flow) {
		mu.Lock()
		defer mu.Unlock()
		committed = append(committed, req.CallID().Value()+" "+strconv.Itoa(res.StatusCode))
	})
	fills := 0
	p.raw.SetRawFill(func([]byte) (func([]byte, location.Flow), bool) {
		return func([]byte, location.Flow) {
			mu.Lock()
			defer mu.Unlock()
			fills++
		}, true
	})
	const v6 = "[2001:db8::5]:5060"
	// The first through sipgo (the raw reading refuses the IPv6 Contact),
	// the second applied raw and answered through sipgo.
	p.send(t, renderStep(raw200Template("liam", "10.0.0.5:5060", "<sip:liam@"+v6+">", "Expires: 600\r\n"), "fb1", 1), "liam@example.com")
	mu.Lock()
	committed = committed[:0]
	mu.Unlock()
	if !p.send(t, renderStep(raw200Template("liam", "10.0.0.6:5060", "<sip:liam@10.0.0.6:5060>", "Expires: 600\r\n"), "fb2", 1), "liam@example.com") {
		t.Fatal("the raw path declined: the case proves nothing")
	}
	if n := p.raw.sl.raw200.fallback.Load(); n != 1 {
		t.Fatalf("%d raw 200s built through sipgo, want 1", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"fb2 200"}; !reflect.DeepEqual(committed, want) {
		t.Errorf("Committed told %q, want %q", committed, want)
	}
	if fills != 0 {
		t.Errorf("the raw fill ran %d times for a 200 built through sipgo", fills)
	}
}

// assertDeclined checks that the raw 200 answers none of cases and that
// none changes alice's bindings from before.
func assertDeclined(t *testing.T, s *Server, before []location.Binding, cases map[string][]byte) {
	t.Helper()
	for name, data := range cases {
		if got, ok := viaRaw200(t, s, data); ok {
			t.Errorf("%s: answered raw:\n%s", name, got)
		}
		if diff := cmp.Diff(before, s.store.Lookup("alice@example.com"), cmpopts.EquateComparable(netip.AddrPort{})); diff != "" {
			t.Fatalf("%s: the bindings changed (-before +after):\n%s", name, diff)
		}
	}
}
