package auth

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// signed answers a fresh challenge of a as alice would, with nc 1.
func signed(t *testing.T, a *Authenticator) *sip.Request {
	t.Helper()
	nonce := nonceOf(t, a.Check(loadRequest(t, "register.sip"), true))
	c := cred{user: "alice", realm: "pinhole", uri: "sip:pinhole.example", alg: "SHA-256", qop: "auth",
		nc: "00000001", cnonce: "0a4f113b", password: "wonderland", nonce: nonce}
	return loadRequest(t, "register.sip", "Authorization: "+c.value("REGISTER"))
}

// An attacker holding valid credentials of its own (or a busy edge) fills
// the replay memory with fresh nonces; a request captured before must still
// be refused while its nonce lives. The two-generation cache forgot it after
// 2 × ReplayEntries accepted requests.
func TestReplayAfterFlood(t *testing.T) {
	clk := newClock()
	a := newAuth(t, clk, func(c *Config) { c.ReplayEntries = 4; c.NonceTTL = time.Hour })
	captured := signed(t, a)
	if r := a.Check(captured, true); !r.OK {
		t.Fatalf("first use: %+v", r)
	}
	for i := range 20 {
		clk.advance(time.Millisecond) // nonces of one instant share a fate
		if r := a.Check(signed(t, a), true); !r.OK {
			t.Fatalf("flood request %d refused: %+v", i, summarize(r))
		}
	}
	if r := a.Check(captured, true); r.OK || r.Status != 401 {
		t.Fatalf("replay after the flood: %+v, want 401 stale", summarize(r))
	}
	if _, evicted := a.ReplayStats(); evicted == 0 {
		t.Error("no eviction counted although the flood overran the bound")
	}
	// Honest devices keep working: a fresh challenge answered at once.
	clk.advance(time.Millisecond)
	if r := a.Check(signed(t, a), true); !r.OK {
		t.Errorf("fresh request after the flood: %+v", summarize(r))
	}
}

// A reload of the credentials file keeps the replay memory: the nonce key
// is kept (outstanding nonces stay valid), so the used (nonce, nc) pairs
// must be kept too.
func TestReplayAfterReload(t *testing.T) {
	clk := newClock()
	a := newAuth(t, clk, nil)
	captured := signed(t, a)
	if r := a.Check(captured, true); !r.OK {
		t.Fatalf("first use: %+v", r)
	}
	creds, err := LoadCredentials(filepath.Join("testdata", "users.conf"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := a.WithCredentials(creds)
	if err != nil {
		t.Fatal(err)
	}
	if r := b.Check(captured, true); r.OK || r.Status != 401 {
		t.Fatalf("replay after reload: %+v, want 401 stale", summarize(r))
	}
	fresh := signed(t, a) // a nonce issued before the reload
	if r := b.Check(fresh, true); !r.OK {
		t.Errorf("nonce issued before the reload, first use after it: %+v", summarize(r))
	}
	if _, err := a.WithCredentials(mustParse(t, "alice pinhole ab7a11474ad9be9b4b284ca7ee853dbc\n")); err == nil {
		t.Error("credentials without the SHA-256 HA1 that is offered were accepted on reload")
	}
}

func mustParse(t *testing.T, text string) *Credentials {
	t.Helper()
	c, err := ParseCredentials(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return c
}
