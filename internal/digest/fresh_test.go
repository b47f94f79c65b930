package digest

import (
	"crypto/md5"
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

// freshVerifier offers MD5 only, for alice with password "secret", with
// nonces accepted for 30 s, at a fixed clock.
func freshVerifier(tb testing.TB) (*Verifier, time.Time) {
	tb.Helper()
	sum := md5.Sum([]byte("alice:pinhole:secret"))
	creds, err := ParseCredentials(strings.NewReader("alice pinhole " + hex.EncodeToString(sum[:]) + "\n"))
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	v, err := New(Config{Creds: creds, Algorithms: []Algorithm{MD5}, NonceTTL: 30 * time.Second, Now: func() time.Time { return now }})
	if err != nil {
		tb.Fatal(err)
	}
	return v, now
}

// signed is alice's Authorization value for nonce with the algorithm
// parameter alg ("" for none), right or wrong.
func signed(v *Verifier, nonce, alg string, right bool) string {
	p := Params{Username: "alice", Realm: "pinhole", Nonce: nonce, URI: "sip:example.com", QOP: "auth", NC: "00000001", CNonce: "c1", Algorithm: alg}
	resp := strings.Repeat("0", 32)
	if right {
		ha1, _ := v.creds.HA1("alice", "pinhole", MD5)
		resp = string(AppendResponse(nil, MD5, ha1, "REGISTER", &p))
	}
	s := `Digest username="alice", realm="pinhole", nonce="` + nonce + `", uri="sip:example.com", qop=auth, nc=00000001, cnonce="c1", response="` + resp + `"`
	if alg != "" {
		s += ", algorithm=" + alg
	}
	return s
}

// TestFresh: Fresh holds for an offered algorithm and a nonce within its
// age, whatever the response, and fails for every other case that Verify
// answers with Challenge or Stale; where it holds, Verify answers
// neither.
func TestFresh(t *testing.T) {
	v, now := freshVerifier(t)
	fresh := string(v.AppendNonce(nil, now.Add(-time.Second)))
	expired := string(v.AppendNonce(nil, now.Add(-time.Minute)))
	foreign := fresh[:10] + string(fresh[10]^1) + fresh[11:]
	for _, tc := range []struct {
		name  string
		value string
		fresh bool
		want  Verdict
	}{
		{"right response", signed(v, fresh, "", true), true, Valid},
		{"right response, MD5 named", signed(v, fresh, "md5", true), true, Valid},
		{"wrong response", signed(v, fresh, "", false), true, Forbidden},
		{"algorithm not offered", signed(v, fresh, "SHA-256", true), false, Challenge},
		{"unknown algorithm", signed(v, fresh, "MD6", true), false, Challenge},
		{"nonce not issued", signed(v, foreign, "", true), false, Challenge},
		{"expired, right response", signed(v, expired, "", true), false, Stale},
		{"expired, wrong response", signed(v, expired, "", false), false, Forbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse(tc.value)
			if err != nil {
				t.Fatal(err)
			}
			if got := v.Fresh(&p, now); got != tc.fresh {
				t.Errorf("Fresh = %v, want %v", got, tc.fresh)
			}
			if got, _ := v.Verify(&p, "REGISTER", v.realm, true, "alice", now); got != tc.want {
				t.Errorf("Verify = %v, want %v", got, tc.want)
			}
		})
	}
}

// FuzzFreshNeverHidesAChallenge: whenever Fresh holds, Verify answers
// neither Challenge nor Stale, for any Authorization value.
func FuzzFreshNeverHidesAChallenge(f *testing.F) {
	v, now := freshVerifier(f)
	fresh := string(v.AppendNonce(nil, now))
	expired := string(v.AppendNonce(nil, now.Add(-time.Minute)))
	for _, n := range []string{fresh, expired, "x"} {
		for _, alg := range []string{"", "MD5", "SHA-256", "sha-256"} {
			f.Add(signed(v, n, alg, true), int64(0))
			f.Add(signed(v, n, alg, false), int64(31e9))
		}
	}
	f.Fuzz(func(t *testing.T, value string, shift int64) {
		p, err := Parse(value)
		if err != nil {
			return
		}
		at := now.Add(time.Duration(shift))
		if !v.Fresh(&p, at) {
			return
		}
		for _, uriOK := range []bool{true, false} {
			if got, _ := v.Verify(&p, "REGISTER", v.realm, uriOK, "alice", at); got == Challenge || got == Stale {
				t.Fatalf("Fresh, yet Verify answers %v for %q at %v", got, value, at)
			}
		}
	})
}
