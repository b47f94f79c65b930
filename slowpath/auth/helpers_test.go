package auth

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// testSecret keeps nonces verifiable across Authenticators in one test.
var testSecret = []byte("0123456789abcdef0123456789abcdef")

// clock is a settable Config.Now.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock                   { return &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} }

// newAuth returns an Authenticator over testdata/users.conf; edit adjusts the
// config before New.
func newAuth(t testing.TB, clk *clock, edit func(*Config)) *Authenticator {
	t.Helper()
	creds, err := LoadCredentials(filepath.Join("testdata", "users.conf"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Secret: testSecret, Creds: creds, Now: clk.now}
	if edit != nil {
		edit(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// loadRequest parses testdata/name with extra header lines inserted after
// the request line, as a device would send them.
func loadRequest(t testing.TB, name string, extra ...string) *sip.Request {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	if len(extra) > 0 {
		i := strings.Index(text, "\r\n") + 2
		text = text[:i] + strings.Join(extra, "\r\n") + "\r\n" + text[i:]
	}
	msg, err := sip.ParseMessage([]byte(text))
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		t.Fatalf("%s is not a request", name)
	}
	return req
}

// rfcResponse is the request-digest straight from RFC 2617 §3.2.2.1 and
// RFC 7616 §3.4.1, independent of the code under test.
func rfcResponse(alg, user, realm, password, method, uri, nonce, nc, cnonce, qop string) string {
	h := func(s string) string {
		if strings.EqualFold(alg, "SHA-256") {
			sum := sha256.Sum256([]byte(s))
			return hex.EncodeToString(sum[:])
		}
		sum := md5.Sum([]byte(s))
		return hex.EncodeToString(sum[:])
	}
	return rfcResponseHA1(alg, h(user+":"+realm+":"+password), method, uri, nonce, nc, cnonce, qop)
}

// rfcResponseHA1 is rfcResponse from a given HA1.
func rfcResponseHA1(alg, ha1, method, uri, nonce, nc, cnonce, qop string) string {
	h := func(s string) string {
		if strings.EqualFold(alg, "SHA-256") {
			sum := sha256.Sum256([]byte(s))
			return hex.EncodeToString(sum[:])
		}
		sum := md5.Sum([]byte(s))
		return hex.EncodeToString(sum[:])
	}
	ha2 := h(method + ":" + uri)
	if qop == "" {
		return h(ha1 + ":" + nonce + ":" + ha2)
	}
	return h(ha1 + ":" + nonce + ":" + nc + ":" + cnonce + ":" + qop + ":" + ha2)
}

var nonceRE = regexp.MustCompile(`nonce="([^"]*)"`)

// nonceOf returns the nonce of the first challenge in r.
func nonceOf(t testing.TB, r Result) string {
	t.Helper()
	if len(r.Headers) == 0 {
		t.Fatalf("no challenge in %+v", r)
	}
	m := nonceRE.FindStringSubmatch(r.Headers[0].Value())
	if m == nil {
		t.Fatalf("no nonce in %q", r.Headers[0].Value())
	}
	return m[1]
}

// cred describes an Authorization value; empty fields are left out.
type cred struct {
	scheme, user, realm, nonce, uri, alg, qop, nc, cnonce, response, opaque string
	// When response is empty and password is set, the response is
	// computed, over hashMethod and hashNC when set, in upper case if upper.
	password, hashMethod, hashNC string
	upper                        bool
	ha1                          string // used instead of the password when set
}

// value renders c the way a typical phone does.
func (c cred) value(method string) string {
	if c.response == "" && c.password != "" {
		if c.hashMethod != "" {
			method = c.hashMethod
		}
		nc := c.nc
		if c.hashNC != "" {
			nc = c.hashNC
		}
		if c.ha1 != "" {
			c.response = rfcResponseHA1(c.alg, c.ha1, method, c.uri, c.nonce, nc, c.cnonce, c.qop)
		} else {
			c.response = rfcResponse(c.alg, c.user, c.realm, c.password, method, c.uri, c.nonce, nc, c.cnonce, c.qop)
		}
		if c.upper {
			c.response = strings.ToUpper(c.response)
		}
	}
	var parts []string
	add := func(name, v string, quoted bool) {
		if v == "" {
			return
		}
		if quoted {
			v = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
		}
		parts = append(parts, name+"="+v)
	}
	add("username", c.user, true)
	add("realm", c.realm, true)
	add("nonce", c.nonce, true)
	add("uri", c.uri, true)
	add("response", c.response, true)
	add("algorithm", c.alg, false)
	add("cnonce", c.cnonce, true)
	add("opaque", c.opaque, true)
	add("qop", c.qop, false)
	add("nc", c.nc, false)
	scheme := c.scheme
	if scheme == "" {
		scheme = "Digest"
	}
	return scheme + " " + strings.Join(parts, ", ")
}
