package slowpath

import (
	"crypto/md5"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"
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
