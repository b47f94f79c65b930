package auth

import (
	"testing"

	"github.com/icholy/digest"
)

// TestSipgoClientDigest answers pinhole's challenges with
// github.com/icholy/digest, the library sipgo.Client.DoDigestAuth uses, the
// way sipgo applies it (first challenge, algorithm upper-cased, header value
// from Credentials.String), and checks that pinhole accepts the result.
func TestSipgoClientDigest(t *testing.T) {
	tests := []struct {
		name     string
		file     string
		register bool
		pick     int // which challenge the client answers; sipgo takes the first
		count    int
		want     verdict
	}{
		{name: "REGISTER, first challenge (SHA-256)", file: "register.sip", register: true, pick: 0, want: ok("alice")},
		{name: "REGISTER, MD5 challenge", file: "register.sip", register: true, pick: 1, want: ok("alice")},
		{name: "INVITE via proxy, SHA-256", file: "invite.sip", pick: 0, want: ok("alice")},
		{name: "INVITE via proxy, MD5, nc 7", file: "invite.sip", pick: 1, count: 7, want: ok("alice")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newAuth(t, newClock(), nil)
			first := a.Check(loadRequest(t, tc.file), tc.register)
			if len(first.Headers) <= tc.pick {
				t.Fatalf("want at least %d challenges, got %+v", tc.pick+1, first)
			}
			chal, err := digest.ParseChallenge(first.Headers[tc.pick].Value())
			if err != nil {
				t.Fatalf("icholy/digest cannot parse our challenge %q: %v", first.Headers[tc.pick].Value(), err)
			}
			req := loadRequest(t, tc.file)
			cred, err := digest.Digest(chal, digest.Options{
				Method:   req.Method.String(),
				URI:      req.Recipient.String(),
				Username: "alice",
				Password: "wonderland",
				Count:    tc.count,
			})
			if err != nil {
				t.Fatalf("icholy/digest: %v", err)
			}
			hname := "Proxy-Authorization"
			if tc.register {
				hname = "Authorization"
			}
			line := hname + ": " + cred.String()
			got := a.Check(loadRequest(t, tc.file, line), tc.register)
			if diff := cmpVerdict(tc.want, got); diff != "" {
				t.Errorf("Check of %q (-want +got):\n%s", line, diff)
			}
		})
	}
}
