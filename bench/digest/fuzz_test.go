package digest

import "testing"

func FuzzParseChallenge(f *testing.F) {
	f.Add(`Digest realm="pinhole", nonce="abc", algorithm=MD5, qop="auth"`)
	f.Add(`Digest realm="a\"b",nonce="n",algorithm=SHA-256,stale=true`)
	f.Add(`Digest realm="`)
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseChallenge(s)
		if err == nil && c.Nonce == "" {
			t.Fatalf("accepted a challenge without nonce: %q", s)
		}
	})
}
