package slowpath

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/slowpath/sanity"
)

// rawDevice is the source address the raw and the sipgo paths answer.
var rawDevice = netip.MustParseAddrPort("192.0.2.10:40123")

// newRawServer builds (without starting) a standalone registrar with
// digest authentication, SHA-256 and MD5 offered, for comparing the raw
// 401 with the registrar's.
func newRawServer(tb testing.TB) *Server {
	tb.Helper()
	return newRawServerWith(tb, writeTestCreds(tb), "[SHA-256, MD5]")
}

// newRawServerWith is newRawServer with a credentials file and the
// algorithms offered.
func newRawServerWith(tb testing.TB, creds, algorithms string) *Server {
	tb.Helper()
	return newUnstartedServer(tb, fmt.Sprintf("auth:\n  credentials: %s\n  algorithms: %s\n", creds, algorithms))
}

// newUnstartedServer builds (without starting) a standalone registrar for
// example.com with the configuration lines extra (auth: none when they
// have no auth section).
func newUnstartedServer(tb testing.TB, extra string) *Server {
	tb.Helper()
	yaml := fmt.Sprintf("listen:\n  udp: [\"127.0.0.1:5060\"]\ndomains: [example.com]\ndata_dir: %q\nmetrics:\n  listen: \"\"\n%s", tb.TempDir(), extra)
	cfg, err := config.Parse([]byte(yaml), "test")
	if err != nil {
		tb.Fatal(err)
	}
	s, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	if s.sl == nil {
		tb.Fatal("the standalone registrar has no stateless path")
	}
	tb.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// viaSipgo is the registrar's answer to data from rawDevice, as the
// stateless workers produce it; "" when sipgo cannot parse data.
func viaSipgo(tb testing.TB, s *Server, data []byte) string {
	tb.Helper()
	msg, err := s.sl.parser.ParseSIP(data) // the stateless workers' parser
	if err != nil {
		return ""
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		return ""
	}
	req.SetTransport("UDP")
	req.SetSource(rawDevice.String())
	flow := location.Flow{Transport: location.TransportUDP, Remote: rawDevice, Local: netip.MustParseAddrPort("127.0.0.1:5060")}
	out := make(chan string, 1)
	s.reg.Respond(req, flow, func(res *sip.Response) {
		var b bytes.Buffer
		res.StringWrite(&b)
		out <- b.String()
	})
	return <-out
}

// viaRaw is the raw path's answer to data from rawDevice; ok is false
// when it declines.
func viaRaw(s *Server, data []byte) (string, bool) {
	sc := &rawScratch{}
	b, ok := s.sl.rawChallenge(sc, data, nil, rawDevice)
	return string(b), ok
}

var (
	rawTag   = regexp.MustCompile(`(?m)^(To: .*;tag=)[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\r$`)
	rawNonce = regexp.MustCompile(`nonce="[A-Za-z0-9_-]{43}"`)
)

// comparable401 blanks what is random in a 401 (the To tag and the
// nonce), after checking its form, and splits it into lines.
func comparable401(tb testing.TB, reply string) []string {
	tb.Helper()
	if !rawTag.MatchString(reply) {
		tb.Errorf("no version 4 UUID To tag in\n%s", reply)
	}
	reply = rawTag.ReplaceAllString(reply, "${1}TAG\r")
	reply = rawNonce.ReplaceAllString(reply, `nonce="NONCE"`)
	return strings.Split(reply, "\r\n")
}

// rawCase is one REGISTER template: the fast path's corpus of device
// formats and the raw path's own cases.
type rawCase struct {
	name string
	raw  bool // the raw path must answer it (else it must decline)
	tmpl string
}

func loadRawCases(tb testing.TB) []rawCase {
	tb.Helper()
	var out []rawCase
	// Device formats (fastpath/testdata/corpus): their first line says what
	// the fast path does with a refresh; every one is a REGISTER without
	// credentials here, which the raw path answers unless listed.
	declined := map[string]bool{
		"bare_uri":      true, // a From without angle brackets, with its tag
		"bria":          true, // no space between display name and URI, which sipgo adds
		"comma_contact": true, // two Contacts on one line (scan refuses)
		"folded":        true, // a folded line (scan refuses)
		"multivia":      true, // two Vias
		"polycom":       true, // commas in a Contact parameter (scan refuses)
	}
	files, _ := filepath.Glob(filepath.Join("..", "fastpath", "testdata", "corpus", "*.sip"))
	own, _ := filepath.Glob(filepath.Join("testdata", "rawchallenge", "*.sip"))
	if len(files) == 0 || len(own) == 0 {
		tb.Fatal("no REGISTER corpus")
	}
	for _, f := range append(files, own...) {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		first, rest, _ := strings.Cut(string(b), "\n")
		name := strings.TrimSuffix(filepath.Base(f), ".sip")
		raw := !declined[name]
		if strings.HasPrefix(f, "testdata") {
			raw = strings.HasPrefix(first, "# raw:")
			name = "own/" + name
		}
		out = append(out, rawCase{name: name, raw: raw, tmpl: strings.ReplaceAll(rest, "\n", "\r\n")})
	}
	return out
}

func (c rawCase) render(callID string) []byte {
	return []byte(strings.NewReplacer("{{LOCAL}}", "10.0.0.5:5060", "{{PORT}}", "5060", "{{CALLID}}", callID,
		"{{CSEQ}}", "1", "{{BRANCH}}", "b1").Replace(c.tmpl))
}

// TestRawChallengeMatchesRegistrar feeds device REGISTER formats without
// credentials to the raw path and to the registrar through sipgo: where
// the raw path answers, its 401 is byte for byte the registrar's (the
// random To tag and nonce aside, whose forms are checked), and it answers
// the formats listed as common and declines the others.
func TestRawChallengeMatchesRegistrar(t *testing.T) {
	s := newRawServer(t)
	for i, c := range loadRawCases(t) {
		t.Run(c.name, func(t *testing.T) {
			data := c.render(fmt.Sprintf("raw-%d@device", i))
			got, ok := viaRaw(s, data)
			if ok != c.raw {
				t.Fatalf("raw path answered %v, want %v", ok, c.raw)
			}
			want := viaSipgo(t, s, data)
			if !ok {
				return
			}
			if !strings.HasPrefix(want, "SIP/2.0 401 ") {
				t.Fatalf("raw path answered 401 where the registrar answers\n%s", want)
			}
			if diff := cmp.Diff(comparable401(t, want), comparable401(t, got)); diff != "" {
				t.Errorf("401 differs (-registrar +raw):\n%s", diff)
			}
		})
	}
}

// TestRawChallengeDeclines: the raw path leaves to the registrar what
// needs more than a fresh challenge, and answers nothing while stopping
// or without authentication.
func TestRawChallengeDeclines(t *testing.T) {
	s := newRawServer(t)
	base := string(register("alice", "dec-1", 1, "10.0.0.5:5060"))
	if _, ok := viaRaw(s, []byte(base)); !ok {
		t.Fatal("the plain REGISTER is declined: the cases below would prove nothing")
	}
	cases := map[string]string{
		"credentials":    strings.Replace(base, "Content-Length: 0", `Authorization: Digest username="alice", realm="elsewhere", nonce="x", uri="sip:example.com", response="0"`+"\r\nContent-Length: 0", 1),
		"two vias":       strings.Replace(base, "Max-Forwards", "Via: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKx\r\nMax-Forwards", 1),
		"received":       strings.Replace(base, ";rport", ";rport;received=10.0.0.5", 1),
		"no contact":     regexp.MustCompile(`Contact: [^\r]*\r\n`).ReplaceAllString(base, ""),
		"no user in To":  strings.Replace(base, "To: <sip:alice@example.com>", "To: <sip:example.com>", 1),
		"to other realm": strings.Replace(base, "To: <sip:alice@example.com>", "To: <sip:alice@example.org>", 1),
		"ruri other":     strings.Replace(base, "REGISTER sip:example.com", "REGISTER sip:example.org", 1),
		"proxy-require":  strings.Replace(base, "Max-Forwards", "Proxy-Require: x\r\nMax-Forwards", 1),
		"body":           strings.Replace(base, "Content-Length: 0\r\n\r\n", "Content-Length: 2\r\n\r\nhi", 1),
		"password":       strings.Replace(base, "To: <sip:alice@", "To: <sip:alice:pw@", 1),
		"space in uri":   strings.Replace(base, "To: <sip:alice@example.com>", "To: < sip:alice@example.com>", 1),
		"junk contact":   regexp.MustCompile(`Contact: [^\r]*`).ReplaceAllString(base, "Contact: 0"),
		"content-type":   strings.Replace(base, "Max-Forwards", "c: application/sdp\r\nMax-Forwards", 1),
		"record-route":   strings.Replace(base, "Max-Forwards", "Record-Route: <sip:p.example.com;lr>\r\nMax-Forwards", 1),
	}
	for name, data := range cases {
		if got, ok := viaRaw(s, []byte(data)); ok {
			t.Errorf("%s: answered raw:\n%s", name, got)
		}
	}
	s.ops.draining.Store(true)
	if _, ok := viaRaw(s, []byte(base)); ok {
		t.Error("answered raw while stopping (the worker answers 503)")
	}
	s.ops.draining.Store(false)
	a := s.ops.authn.Swap(nil)
	if _, ok := viaRaw(s, []byte(base)); ok {
		t.Error("answered raw without authentication")
	}
	s.ops.authn.Store(a)
}

// FuzzRawChallengeVsSipgo: whenever the raw path answers a datagram the
// sanity filter passes, sipgo parses it and the registrar answers the
// same 401.
func FuzzRawChallengeVsSipgo(f *testing.F) {
	s := newRawServer(f)
	v := s.ops.authn.Load().Verifier()
	expired := string(v.AppendNonce(nil, v.Now().Add(-time.Hour)))
	for _, c := range loadRawCases(f) {
		data := c.render("fuzz@device")
		f.Add(data)
		// Credentials that earn a new challenge: a nonce pinhole did not
		// issue, and (for alice) the right response to an expired one.
		line := bytes.Index(data, []byte("\r\n")) + 2
		for _, nonce := range []string{"bogus", expired} {
			authz := `Authorization: Digest username="alice", realm="pinhole", nonce="` + nonce +
				`", uri="sip:example.com", algorithm=MD5, qop=auth, nc=00000001, cnonce="c1", response="` +
				digestMD5("pinhole", "alice", "REGISTER", "sip:example.com", nonce, "00000001", "c1") + `"` + "\r\n"
			f.Add(append(append(append([]byte(nil), data[:line]...), authz...), data[line:]...))
		}
	}
	lim := *s.ops.limits.Load()
	f.Fuzz(func(t *testing.T, data []byte) {
		if sanity.Check(nil, data, lim).Action != sanity.Pass {
			return // never reaches the stateless path
		}
		got, ok := viaRaw(s, data)
		if !ok {
			return
		}
		want := viaSipgo(t, s, data)
		if !strings.HasPrefix(want, "SIP/2.0 401 ") {
			t.Fatalf("raw path answered 401 where the registrar answers %q", want)
		}
		if diff := cmp.Diff(comparable401(t, want), comparable401(t, got)); diff != "" {
			t.Fatalf("401 differs (-registrar +raw):\n%s", diff)
		}
	})
}

// TestRawChallengeOverUDP: a first registration over UDP gets its 401
// from the read filter (counted), and the nonce in it completes the
// registration through the registrar.
func TestRawChallengeOverUDP(t *testing.T) {
	creds := writeTestCreds(t)
	s, addr := startStateless(t, "auth:\n  credentials: "+creds+"\n  algorithms: [MD5]\n")
	c := client(t)
	local := c.LocalAddr().String()
	got := exchange(t, c, addr, register("alice", "rawudp-1", 1, local), 2*time.Second)
	if !strings.HasPrefix(string(got), "SIP/2.0 401") {
		t.Fatalf("first REGISTER: %q", got)
	}
	if n := s.sl.rawAnswered.Load(); n != 1 {
		t.Fatalf("%d challenges answered from raw bytes, want 1", n)
	}
	nonce := between(string(got), `nonce="`, `"`)
	authz := `Authorization: Digest username="alice", realm="pinhole", nonce="` + nonce +
		`", uri="sip:example.com", algorithm=MD5, qop=auth, nc=00000001, cnonce="c1", response="` +
		digestMD5("pinhole", "alice", "REGISTER", "sip:example.com", nonce, "00000001", "c1") + `"` + "\r\n"
	signed := []byte(strings.Replace(string(register("alice", "rawudp-1", 2, local)), "Content-Length: 0", authz+"Content-Length: 0", 1))
	if got := status(exchange(t, c, addr, signed, 2*time.Second)); got != "SIP/2.0 200 OK" {
		t.Fatalf("REGISTER with the raw challenge's nonce: %q", got)
	}
	if n := s.sl.rawAnswered.Load(); n != 1 {
		t.Errorf("%d challenges answered from raw bytes after the 200, want 1", n)
	}
}

// TestRawRechallengeMatchesRegistrar: a REGISTER whose credentials earn
// a new challenge is answered from its bytes with the registrar's 401,
// byte for byte (To tag and nonce aside), for every device format the raw
// path answers: credentials for a nonce pinhole did not issue (as every
// device brings after a restart: here a nonce whose MAC does not verify)
// get a fresh challenge, the right response to an expired nonce gets one
// with stale=true, and credentials for an algorithm not offered get a
// fresh challenge even with a nonce pinhole accepts. Wrong passwords
// (403) and credentials that verify (the raw 200's) are not challenged.
func TestRawRechallengeMatchesRegistrar(t *testing.T) {
	cases := loadRawCases(t)
	toUser := regexp.MustCompile(`(?mi)^(?:To|t)[ \t]*:[^\r]*<?sips?:([^@;>:]+)@`)
	var creds strings.Builder
	for _, u := range []string{"alice", "bob", "carol", "dave", "erin", "frank", "gina", "henry", "ivy", "jack", "kate", "liam", "mia", "noah", "olga", "pete"} {
		sum := md5.Sum([]byte(u + ":pinhole:secret"))
		creds.WriteString(u + " pinhole " + hex.EncodeToString(sum[:]) + "\n")
	}
	path := filepath.Join(t.TempDir(), "users.txt")
	if err := os.WriteFile(path, []byte(creds.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newRawServerWith(t, path, "[MD5]")
	v := s.ops.authn.Load().Verifier()
	now := v.Now()
	fresh := string(v.AppendNonce(nil, now))
	expired := string(v.AppendNonce(nil, now.Add(-time.Hour)))
	foreign := fresh[:10] + string(fresh[10]^1) + fresh[11:] // its MAC no longer verifies
	checked := 0
	for i, c := range cases {
		data := c.render(fmt.Sprintf("re-%d@device", i))
		m := toUser.FindSubmatch(data)
		if !c.raw || m == nil {
			continue
		}
		user := string(m[1])
		ruri := string(bytes.Fields(data)[1])
		right := func(nonce string) string {
			return digestMD5("pinhole", user, "REGISTER", ruri, nonce, "00000001", "c1")
		}
		signAlg := func(alg, nonce, resp string) []byte {
			authz := `Authorization: Digest username="` + user + `", realm="pinhole", nonce="` + nonce +
				`", uri="` + ruri + `", algorithm=` + alg + `, qop=auth, nc=00000001, cnonce="c1", response="` + resp + `"` + "\r\n"
			line := bytes.Index(data, []byte("\r\n")) + 2
			return append(append(append([]byte(nil), data[:line]...), authz...), data[line:]...)
		}
		sign := func(nonce, resp string) []byte { return signAlg("MD5", nonce, resp) }
		for _, tc := range []struct {
			name  string
			msg   []byte
			stale bool
		}{
			{"a nonce pinhole did not issue", sign(foreign, right(foreign)), false},
			{"an expired nonce, the right response", sign(expired, right(expired)), true},
			// A nonce still accepted, for an algorithm not offered (only
			// MD5 is): the nonce alone does not decline it (digest.Fresh).
			{"an algorithm not offered, a fresh nonce", signAlg("SHA-256", fresh, right(fresh)+right(fresh)), false},
		} {
			t.Run(c.name+"/"+tc.name, func(t *testing.T) {
				want := viaSipgo(t, s, tc.msg)
				if !strings.HasPrefix(want, "SIP/2.0 401 ") {
					t.Fatalf("the registrar answers\n%s", want)
				}
				got, ok := viaRaw(s, tc.msg)
				if !ok {
					t.Fatal("declined")
				}
				if diff := cmp.Diff(comparable401(t, want), comparable401(t, got)); diff != "" {
					t.Errorf("401 differs (-registrar +raw):\n%s", diff)
				}
				if strings.Contains(got, "stale=true") != tc.stale {
					t.Errorf("stale=true in the answer: %v, want %v", !tc.stale, tc.stale)
				}
			})
		}
		checked++
		for name, msg := range map[string][]byte{
			"a wrong password":          sign(fresh, "0123456789abcdef0123456789abcdef"),
			"credentials that verify":   sign(fresh, right(fresh)),
			"an expired nonce, a guess": sign(expired, "0123456789abcdef0123456789abcdef"),
		} {
			if got, ok := viaRaw(s, msg); ok {
				t.Errorf("%s, %s: answered raw:\n%s", c.name, name, got)
			}
		}
	}
	if checked < 12 {
		t.Fatalf("only %d device formats checked", checked)
	}
}
