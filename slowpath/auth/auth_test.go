package auth

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/google/go-cmp/cmp"
)

// verdict is the comparable part of a Result; nonces become "N".
type verdict struct {
	OK         bool
	User       string
	Status     int
	Reason     string
	Challenges []string
}

func summarize(r Result) verdict {
	v := verdict{OK: r.OK, User: r.User, Status: r.Status, Reason: r.Reason}
	for _, h := range r.Headers {
		v.Challenges = append(v.Challenges, h.Name()+": "+nonceRE.ReplaceAllString(h.Value(), `nonce="N"`))
	}
	return v
}

func cmpVerdict(want verdict, got Result) string { return cmp.Diff(want, summarize(got)) }

func challenged(register, stale bool, algs ...string) verdict {
	v := verdict{Status: 407, Reason: "Proxy Authentication Required"}
	name := "Proxy-Authenticate"
	if register {
		v = verdict{Status: 401, Reason: "Unauthorized"}
		name = "WWW-Authenticate"
	}
	if len(algs) == 0 {
		algs = []string{"SHA-256", "MD5"}
	}
	for _, alg := range algs {
		h := name + `: Digest realm="pinhole", nonce="N", algorithm=` + alg + `, qop="auth"`
		if stale {
			h += ", stale=true"
		}
		v.Challenges = append(v.Challenges, h)
	}
	return v
}

var (
	ok           = func(user string) verdict { return verdict{OK: true, User: user} }
	forbidden403 = verdict{Status: 403, Reason: "Forbidden"}
	bad400       = func(reason string) verdict { return verdict{Status: 400, Reason: reason} }
)

// Special nonce values in test creds.
const (
	fresh   = ""         // the nonce of the first challenge
	noNonce = "(none)"   // leave the parameter out
	tamper  = "(tamper)" // the fresh nonce with one character changed
)

func TestCheck(t *testing.T) {
	const regURI = "sip:pinhole.example"
	const invURI = "sip:bob@pinhole.example;user=phone"
	alice := func(alg string) cred {
		return cred{user: "alice", realm: "pinhole", uri: regURI, alg: alg, qop: "auth",
			nc: "00000001", cnonce: "0a4f113b", password: "wonderland"}
	}
	with := func(c cred, edit func(*cred)) cred { edit(&c); return c }
	invite := func(alg string) cred { c := alice(alg); c.uri = invURI; return c }

	tests := []struct {
		name   string
		file   string // REGISTER files are checked with register=true
		edit   func(*Config)
		creds  []cred   // each one header; nonce filled in per the constants above
		raw    []string // literal header lines
		wait   time.Duration
		twice  bool // check the same request again and report the second verdict
		header string
		want   verdict
	}{
		{name: "no credentials REGISTER", file: "register.sip", want: challenged(true, false)},
		{name: "no credentials INVITE", file: "invite.sip", want: challenged(false, false)},
		{name: "SHA-256", file: "register.sip", creds: []cred{alice("SHA-256")}, want: ok("alice")},
		{name: "MD5", file: "register.sip", creds: []cred{alice("MD5")}, want: ok("alice")},
		{name: "algorithm absent means MD5", file: "register.sip", creds: []cred{alice("")}, want: ok("alice")},
		{name: "lower-case algorithm token", file: "register.sip", creds: []cred{alice("sha-256")}, want: ok("alice")},
		{name: "RFC 2069 no qop", file: "register.sip",
			creds: []cred{with(alice("MD5"), func(c *cred) { c.qop, c.nc, c.cnonce = "", "", "" })}, want: ok("alice")},
		{name: "upper-case hex response", file: "register.sip",
			creds: []cred{with(alice("SHA-256"), func(c *cred) { c.upper = true })}, want: ok("alice")},
		{name: "proxy INVITE SHA-256", file: "invite.sip", creds: []cred{invite("SHA-256")}, want: ok("alice")},
		{name: "proxy INVITE MD5", file: "invite.sip", creds: []cred{invite("MD5")}, want: ok("alice")},
		{name: "digest uri without the Request-URI's parameters", file: "invite.sip",
			creds: []cred{with(invite("MD5"), func(c *cred) { c.uri = "sip:bob@PINHOLE.example" })}, want: ok("alice")},
		{name: "credentials for another realm first", file: "register.sip",
			creds: []cred{with(alice("MD5"), func(c *cred) { c.realm, c.user, c.password = "other", "carol", "singer" }), alice("SHA-256")},
			want:  ok("alice")},
		{name: "only another realm", file: "register.sip",
			creds: []cred{with(alice("MD5"), func(c *cred) { c.realm = "other" })}, want: challenged(true, false)},
		{name: "realm differs in case", file: "register.sip",
			creds: []cred{with(alice("MD5"), func(c *cred) { c.realm = "Pinhole" })}, want: challenged(true, false)},
		{name: "Basic scheme ignored", file: "register.sip", raw: []string{"Authorization: Basic YWxpY2U6d29uZGVybGFuZA=="}, want: challenged(true, false)},
		{name: "Proxy-Authorization on REGISTER ignored", file: "register.sip", header: "Proxy-Authorization",
			creds: []cred{alice("SHA-256")}, want: challenged(true, false)},
		{name: "wrong password", file: "register.sip",
			creds: []cred{with(alice("SHA-256"), func(c *cred) { c.password = "wonderlanD" })}, want: forbidden403},
		{name: "wrong password MD5 proxy", file: "invite.sip",
			creds: []cred{with(invite("MD5"), func(c *cred) { c.password = "x" })}, want: forbidden403},
		{name: "unknown user", file: "register.sip",
			creds: []cred{with(alice("SHA-256"), func(c *cred) { c.user = "mallory" })}, want: forbidden403},
		// Unknown users are checked against a dummy HA1 for even timing;
		// knowing it must not help.
		{name: "unknown user, response from the dummy HA1", file: "register.sip",
			creds: []cred{with(alice("SHA-256"), func(c *cred) { c.user, c.ha1 = "mallory", strings.Repeat("0", 64) })},
			edit:  func(c *Config) { c.AllowIdentityMismatch = true }, want: forbidden403},
		{name: "user of another realm", file: "register.sip",
			creds: []cred{with(alice("MD5"), func(c *cred) { c.user, c.password = "carol", "singer" })}, want: forbidden403},
		{name: "response hashed over another method", file: "register.sip",
			creds: []cred{with(alice("SHA-256"), func(c *cred) { c.hashMethod = "INVITE" })}, want: forbidden403},
		{name: "response hashed with another nc", file: "register.sip",
			creds: []cred{with(alice("MD5"), func(c *cred) { c.hashNC = "00000002" })}, want: forbidden403},
		{name: "expired nonce, right password", file: "register.sip", creds: []cred{alice("SHA-256")},
			wait: 31 * time.Second, want: challenged(true, true)},
		{name: "nonce just inside its TTL", file: "register.sip", creds: []cred{alice("SHA-256")},
			wait: 30 * time.Second, want: ok("alice")},
		{name: "expired nonce, wrong password", file: "register.sip",
			creds: []cred{with(alice("SHA-256"), func(c *cred) { c.password = "no" })},
			wait:  time.Minute, want: forbidden403},
		{name: "expired nonce on proxy", file: "invite.sip", creds: []cred{invite("MD5")},
			wait: time.Hour, want: challenged(false, true)},
		{name: "custom TTL", file: "register.sip", creds: []cred{alice("SHA-256")},
			edit: func(c *Config) { c.NonceTTL = 5 * time.Second }, wait: 6 * time.Second, want: challenged(true, true)},
		{name: "tampered nonce", file: "register.sip",
			creds: []cred{with(alice("SHA-256"), func(c *cred) { c.nonce = tamper })}, want: challenged(true, false)},
		{name: "foreign nonce", file: "register.sip",
			creds: []cred{with(alice("SHA-256"), func(c *cred) { c.nonce = "dcd98b7102dd2f0e8b11d0f600bfb0c093" })}, want: challenged(true, false)},
		{name: "replayed nc", file: "register.sip", creds: []cred{alice("SHA-256")}, twice: true, want: challenged(true, true)},
		{name: "replayed RFC 2069 nonce", file: "register.sip",
			creds: []cred{with(alice("MD5"), func(c *cred) { c.qop, c.nc, c.cnonce = "", "", "" })}, twice: true, want: challenged(true, true)},
		{name: "MD5-sess not accepted", file: "register.sip", creds: []cred{alice("MD5-sess")}, want: challenged(true, false)},
		{name: "MD5 when only SHA-256 offered", file: "register.sip", creds: []cred{alice("MD5")},
			edit: func(c *Config) { c.Algorithms = []Algorithm{SHA256} }, want: challenged(true, false, "SHA-256")},
		{name: "absent algorithm when only SHA-256 offered", file: "register.sip", creds: []cred{alice("")},
			edit: func(c *Config) { c.Algorithms = []Algorithm{SHA256} }, want: challenged(true, false, "SHA-256")},
		{name: "MD5 preferred", file: "invite.sip", edit: func(c *Config) { c.Algorithms = []Algorithm{MD5, SHA256} },
			want: challenged(false, false, "MD5", "SHA-256")},
		{name: "REGISTER for another AOR", file: "register-other-aor.sip", creds: []cred{alice("SHA-256")}, want: forbidden403},
		{name: "REGISTER for another AOR allowed", file: "register-other-aor.sip", creds: []cred{alice("SHA-256")},
			edit: func(c *Config) { c.AllowIdentityMismatch = true }, want: ok("alice")},
		{name: "REGISTER as its own AOR", file: "register-other-aor.sip",
			creds: []cred{with(alice("SHA-256"), func(c *cred) { c.user, c.password = "bob", "builder" })}, want: ok("bob")},
		{name: "INVITE with another From", file: "invite.sip",
			creds: []cred{with(invite("SHA-256"), func(c *cred) { c.user, c.password = "bob", "builder" })}, want: forbidden403},
		{name: "missing response", file: "register.sip",
			creds: []cred{with(alice("SHA-256"), func(c *cred) { c.response, c.password = "", "" })}, want: bad400("Incomplete Authorization Header")},
		{name: "missing nonce", file: "register.sip",
			creds: []cred{with(alice("SHA-256"), func(c *cred) { c.nonce = noNonce })}, want: bad400("Incomplete Authorization Header")},
		{name: "missing uri", file: "register.sip",
			creds: []cred{with(alice("SHA-256"), func(c *cred) { c.uri = "" })}, want: bad400("Incomplete Authorization Header")},
		{name: "missing username", file: "invite.sip",
			creds: []cred{with(invite("SHA-256"), func(c *cred) { c.user = "" })}, want: bad400("Incomplete Proxy-Authorization Header")},
		{name: "qop without nc", file: "register.sip",
			creds: []cred{with(alice("SHA-256"), func(c *cred) { c.nc = "" })}, want: bad400("Bad Authorization Nonce Count")},
		{name: "qop without cnonce", file: "register.sip",
			creds: []cred{with(alice("SHA-256"), func(c *cred) { c.cnonce = "" })}, want: bad400("Bad Authorization Nonce Count")},
		{name: "nc zero", file: "register.sip",
			creds: []cred{with(alice("SHA-256"), func(c *cred) { c.nc = "00000000" })}, want: bad400("Bad Authorization Nonce Count")},
		{name: "nc not 8 digits", file: "register.sip",
			creds: []cred{with(alice("SHA-256"), func(c *cred) { c.nc = "1" })}, want: bad400("Bad Authorization Nonce Count")},
		{name: "qop auth-int", file: "register.sip",
			creds: []cred{with(alice("SHA-256"), func(c *cred) { c.qop = "auth-int" })}, want: bad400("Unsupported Authorization qop")},
		{name: "response of the wrong length", file: "register.sip",
			creds: []cred{with(alice("SHA-256"), func(c *cred) { c.response = "6629fae49393a05397450978507c4ef1" })}, want: bad400("Bad Authorization Response")},
		{name: "uri for another resource", file: "register.sip",
			creds: []cred{with(alice("SHA-256"), func(c *cred) { c.uri = "sip:other.example" })}, want: bad400("Authorization URI Mismatch")},
		{name: "uri with another user", file: "invite.sip",
			creds: []cred{with(invite("SHA-256"), func(c *cred) { c.uri = "sip:carol@pinhole.example;user=phone" })}, want: bad400("Proxy-Authorization URI Mismatch")},
		{name: "uri not a URI", file: "register.sip",
			creds: []cred{with(alice("SHA-256"), func(c *cred) { c.uri = "/dir/index.html" })}, want: bad400("Authorization URI Mismatch")},
		{name: "unterminated quote", file: "register.sip",
			raw: []string{`Authorization: Digest username="alice, realm="pinhole"`}, want: bad400("Bad Authorization Header")},
		{name: "duplicate parameter", file: "register.sip",
			raw: []string{`Authorization: Digest username="alice", username="bob", realm="pinhole"`}, want: bad400("Bad Authorization Header")},
		{name: "malformed but a good one follows", file: "register.sip",
			raw: []string{`Authorization: Digest realm=`}, creds: []cred{alice("SHA-256")}, want: ok("alice")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			a := newAuth(t, clk, tc.edit)
			register := strings.HasPrefix(tc.file, "register")
			method, hname := "INVITE", "Proxy-Authorization"
			if register {
				method, hname = "REGISTER", "Authorization"
			}
			if tc.header != "" {
				hname = tc.header
			}
			first := a.Check(loadRequest(t, tc.file), register)
			nonce := nonceOf(t, first)
			lines := append([]string(nil), tc.raw...)
			for _, c := range tc.creds {
				switch c.nonce {
				case fresh:
					c.nonce = nonce
				case tamper:
					c.nonce = nonce[:10] + string(nonce[10]^1) + nonce[11:]
				case noNonce:
					c.nonce = ""
				}
				lines = append(lines, hname+": "+c.value(method))
			}
			clk.advance(tc.wait)
			got := a.Check(loadRequest(t, tc.file, lines...), register)
			if tc.twice {
				got = a.Check(loadRequest(t, tc.file, lines...), register)
			}
			if diff := cmp.Diff(tc.want, summarize(got)); diff != "" {
				t.Errorf("Check (-want +got):\n%s\nheaders: %q", diff, lines)
			}
		})
	}
}

// TestCheckConcurrent runs Check from many goroutines, as sipgo does (one
// goroutine per message); run with -race. Each (nonce, nc) is accepted once.
func TestCheckConcurrent(t *testing.T) {
	a := newAuth(t, newClock(), nil)
	nonce := nonceOf(t, a.Check(loadRequest(t, "register.sip"), true))
	const workers, per = 8, 50
	var reqs [workers][]*sip.Request
	for w := range reqs {
		for i := 0; i < per; i++ {
			c := cred{user: "alice", realm: "pinhole", uri: "sip:pinhole.example", alg: "SHA-256", qop: "auth",
				nc: fmt.Sprintf("%08x", i+1), cnonce: fmt.Sprintf("c%d", w), password: "wonderland", nonce: nonce}
			reqs[w] = append(reqs[w], loadRequest(t, "register.sip", "Authorization: "+c.value("REGISTER")))
		}
	}
	var accepted, replayed atomic.Int32
	var wg sync.WaitGroup
	for w := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, req := range reqs[w] {
				// Each request twice: the second is a replay.
				for range 2 {
					switch r := a.Check(req, true); {
					case r.OK:
						accepted.Add(1)
					case r.Status == 401:
						replayed.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	// Workers share nc values but not cnonces; the replay key is
	// (nonce, nc), so only the first of each nc across workers is accepted.
	if got := accepted.Load(); got != per {
		t.Errorf("accepted %d, want %d (one per nc)", got, per)
	}
	if got := replayed.Load(); got != 2*workers*per-per {
		t.Errorf("stale answers %d, want %d", got, 2*workers*per-per)
	}
}
