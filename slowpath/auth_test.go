package slowpath

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/config"
)

// digestMD5 is alice's qop=auth response (RFC 2617 §3.2.2.1) with password
// "secret" in realm.
func digestMD5(realm, user, method, uri, nonce, nc, cnonce string) string {
	h := func(s string) string { sum := md5.Sum([]byte(s)); return hex.EncodeToString(sum[:]) }
	ha1 := h(user + ":" + realm + ":secret")
	return h(ha1 + ":" + nonce + ":" + nc + ":" + cnonce + ":auth:" + h(method+":"+uri))
}

// TestReloadKeepsReplayMemory: a REGISTER captured on the wire and sent
// again after a reload of the credentials file is refused. The reload keeps
// the nonce key, so outstanding nonces stay valid; it used to start an
// empty replay memory, which let the captured (nonce, nc) in again.
func TestReloadKeepsReplayMemory(t *testing.T) {
	creds := writeTestCreds(t)
	authYAML := "auth:\n  credentials: " + creds + "\n  algorithms: [MD5]\n"
	s, addr := startServer(t, authYAML)
	c := client(t)
	local := c.LocalAddr().String()
	got := exchange(t, c, addr, register("alice", "rp-1", 1, local), 2*time.Second)
	if !strings.HasPrefix(string(got), "SIP/2.0 401") {
		t.Fatalf("first REGISTER: %q", got)
	}
	nonce := between(string(got), `nonce="`, `"`)
	authz := `Authorization: Digest username="alice", realm="pinhole", nonce="` + nonce +
		`", uri="sip:example.com", algorithm=MD5, qop=auth, nc=00000001, cnonce="c1", response="` +
		digestMD5("pinhole", "alice", "REGISTER", "sip:example.com", nonce, "00000001", "c1") + `"` + "\r\n"
	signed := func(cseq int) []byte {
		// The replayer keeps the digest and changes what it does not
		// cover (branch, CSeq), so no transaction layer absorbs it.
		return []byte(strings.Replace(string(register("alice", "rp-1", cseq, local)), "Content-Length: 0", authz+"Content-Length: 0", 1))
	}
	if got := status(exchange(t, c, addr, signed(2), 2*time.Second)); got != "SIP/2.0 200 OK" {
		t.Fatalf("authenticated REGISTER: %q", got)
	}
	applied, err := s.Reload(reparse(t, s, authYAML))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(applied, "auth.credentials") {
		t.Fatalf("reload applied %v, want auth.credentials", applied)
	}
	got = exchange(t, c, addr, signed(3), 2*time.Second)
	if !strings.HasPrefix(string(got), "SIP/2.0 401") || !strings.Contains(string(got), "stale=true") {
		t.Fatalf("replayed REGISTER after reload: %q, want 401 with stale=true", got)
	}
}

// TestCredentialsPerDomain: with two domains served, alice's password
// (realm pinhole, the first domain's) does not register alice of the other
// domain: its challenge names its own realm, where alice has no HA1. One
// realm for every domain used to let her in.
func TestCredentialsPerDomain(t *testing.T) {
	creds := writeTestCreds(t)
	addr := "127.0.0.1:" + strconv.Itoa(freeUDPPort(t))
	yaml := fmt.Sprintf("listen:\n  udp: [%q]\ndomains: [example.com, other.com]\ndata_dir: %q\nmetrics:\n  listen: \"\"\n"+
		"auth:\n  credentials: %s\n  algorithms: [MD5]\n", addr, t.TempDir(), creds)
	cfg, err := config.Parse([]byte(yaml), "test")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })

	c := client(t)
	local := c.LocalAddr().String()
	in := func(domain string, cseq int, extra string) []byte {
		msg := strings.ReplaceAll(string(register("alice", "pd-"+domain, cseq, local)), "@example.com>", "@"+domain+">")
		return []byte(strings.Replace(msg, "Content-Length: 0", extra+"Content-Length: 0", 1))
	}
	signed := func(domain, nonce string) string {
		return `Authorization: Digest username="alice", realm="pinhole", nonce="` + nonce +
			`", uri="sip:example.com", algorithm=MD5, qop=auth, nc=00000001, cnonce="c1", response="` +
			digestMD5("pinhole", "alice", "REGISTER", "sip:example.com", nonce, "00000001", "c1") + `"` + "\r\n"
	}
	// The first domain keeps the configured realm and its users.
	got := string(exchange(t, c, addr, in("example.com", 1, ""), 2*time.Second))
	if !strings.HasPrefix(got, "SIP/2.0 401") || !strings.Contains(got, `realm="pinhole"`) {
		t.Fatalf("first REGISTER of alice@example.com: %q", got)
	}
	if got := status(exchange(t, c, addr, in("example.com", 2, signed("example.com", between(got, `nonce="`, `"`))), 2*time.Second)); got != "SIP/2.0 200 OK" {
		t.Fatalf("alice@example.com with her password: %q", got)
	}
	// The other domain is challenged in its own realm; alice's credentials
	// for realm pinhole are not even looked at there.
	got = string(exchange(t, c, addr, in("other.com", 1, ""), 2*time.Second))
	if !strings.HasPrefix(got, "SIP/2.0 401") || !strings.Contains(got, `realm="other.com"`) {
		t.Fatalf("first REGISTER of alice@other.com: %q, want a challenge in realm other.com", got)
	}
	got = string(exchange(t, c, addr, in("other.com", 2, signed("other.com", between(got, `nonce="`, `"`))), 2*time.Second))
	if !strings.HasPrefix(got, "SIP/2.0 401") {
		t.Fatalf("alice@other.com with alice@example.com's credentials: %q, want 401", got)
	}
	if n := len(s.Store().Lookup("alice@other.com")); n != 0 {
		t.Fatalf("alice@other.com has %d bindings, want none", n)
	}
}
