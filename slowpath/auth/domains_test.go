package auth

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// ha1Line is a credentials line for user in realm with password.
func ha1Line(user, realm, password string) string {
	m := md5.Sum([]byte(user + ":" + realm + ":" + password))
	s := sha256.Sum256([]byte(user + ":" + realm + ":" + password))
	return user + " " + realm + " " + hex.EncodeToString(m[:]) + " " + hex.EncodeToString(s[:]) + "\n"
}

// as rewrites the claimed identity of a test request: alice's From (and To
// for REGISTER) in domain.
func as(t *testing.T, file, domain string, lines ...string) *sip.Request {
	t.Helper()
	req := loadRequest(t, file, lines...)
	text := strings.ReplaceAll(req.String(), "<sip:alice@pinhole.example>", "<sip:alice@"+domain+">")
	msg, err := sip.ParseMessage([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return msg.(*sip.Request)
}

// With several domains served, each is its own namespace: alice of
// pinhole.example must not register or call as alice of other.example with
// her own password, which one realm for every domain allowed.
func TestRealmPerDomain(t *testing.T) {
	creds := mustParse(t, ha1Line("alice", "pinhole", "wonderland")+
		ha1Line("alice", "other.example", "looking-glass")+
		ha1Line("carol", "pinhole", "singer"))
	a := newAuth(t, newClock(), func(c *Config) {
		c.Creds = creds
		c.Domains = []string{"pinhole.example", "other.example"}
	})
	answer := func(file, domain, realm, password string) *sip.Request {
		register := strings.HasPrefix(file, "register")
		first := a.Check(as(t, file, domain), register)
		method, hname, uri := "INVITE", "Proxy-Authorization", "sip:bob@pinhole.example;user=phone"
		if register {
			method, hname, uri = "REGISTER", "Authorization", "sip:pinhole.example"
		}
		c := cred{user: "alice", realm: realm, uri: uri, alg: "SHA-256", qop: "auth",
			nc: "00000001", cnonce: "0a4f113b", password: password, nonce: nonceOf(t, first)}
		return as(t, file, domain, hname+": "+c.value(method))
	}
	for _, tt := range []struct {
		name                          string
		file, domain, realm, password string
		want                          int // 0: accepted
	}{
		{"first domain, configured realm", "register.sip", "pinhole.example", "pinhole", "wonderland", 0},
		{"other domain, its own realm", "register.sip", "other.example", "other.example", "looking-glass", 0},
		{"other domain, the first domain's credentials", "register.sip", "other.example", "pinhole", "wonderland", 401},
		{"other domain, the first domain's password", "register.sip", "other.example", "other.example", "wonderland", 403},
		{"INVITE from the other domain, its own realm", "invite.sip", "other.example", "other.example", "looking-glass", 0},
		{"INVITE from the other domain, the first domain's credentials", "invite.sip", "other.example", "pinhole", "wonderland", 407},
	} {
		t.Run(tt.name, func(t *testing.T) {
			register := strings.HasPrefix(tt.file, "register")
			got := a.Check(answer(tt.file, tt.domain, tt.realm, tt.password), register)
			if tt.want == 0 {
				if !got.OK {
					t.Fatalf("refused: %+v", summarize(got))
				}
				return
			}
			if got.OK || got.Status != tt.want {
				t.Fatalf("got %+v, want %d", summarize(got), tt.want)
			}
		})
	}
	// A domain not served is not asked for credentials at all.
	if r := a.Check(as(t, "invite.sip", "elsewhere.example"), false); r.OK || r.Status != 403 {
		t.Errorf("INVITE from a domain not served: %+v, want 403", summarize(r))
	}
	// Challenges name the realm of the claimed domain.
	for domain, realm := range map[string]string{"pinhole.example": "pinhole", "other.example": "other.example", "OTHER.example": "other.example"} {
		r := a.Check(as(t, "register.sip", domain), true)
		if len(r.Headers) == 0 || !strings.Contains(r.Headers[0].Value(), `realm="`+realm+`"`) {
			t.Errorf("challenge for %s: %v, want realm %q", domain, r.Headers, realm)
		}
	}
	for aor, want := range map[string]bool{
		"alice@pinhole.example": true, "alice@other.example": true,
		"carol@pinhole.example": true, "carol@other.example": false, "carol@elsewhere.example": false,
	} {
		if got := a.Knows(aor); got != want {
			t.Errorf("Knows(%s) = %v, want %v", aor, got, want)
		}
	}
}

// One domain: the configured realm serves every request, as before.
func TestRealmOneDomain(t *testing.T) {
	a := newAuth(t, newClock(), func(c *Config) { c.Domains = []string{"pinhole.example"} })
	r := a.Check(as(t, "register.sip", "anything.example"), true)
	if len(r.Headers) == 0 || !strings.Contains(r.Headers[0].Value(), `realm="pinhole"`) {
		t.Errorf("challenge: %v, want realm pinhole", r.Headers)
	}
}

// A configured realm equal to another served domain would make that
// domain's users and the first domain's one namespace again.
func TestRealmCollidesWithDomain(t *testing.T) {
	creds := mustParse(t, ha1Line("alice", "other.example", "x"))
	_, err := New(Config{Realm: "other.example", Creds: creds, Secret: testSecret, Domains: []string{"pinhole.example", "other.example"}})
	if err == nil || !strings.Contains(err.Error(), `realm "other.example"`) {
		t.Fatalf("New: %v, want an error naming the realm", err)
	}
}
