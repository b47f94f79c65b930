package auth

import (
	"encoding/base64"
	"testing"
	"time"
)

func TestNonce(t *testing.T) {
	n := newNoncer(testSecret)
	at := time.Date(2025, 3, 1, 12, 0, 0, 123, time.UTC)
	s := n.mint(at)
	if len(s) != nonceLen {
		t.Fatalf("nonce %q has length %d, want %d", s, len(s), nonceLen)
	}
	if tokenLen(s) != len(s) {
		t.Errorf("nonce %q is not a token", s)
	}
	issued, key, ok := n.verify(s)
	if !ok || !issued.Equal(at) {
		t.Fatalf("verify(mint(%v)) = %v, %v", at, issued, ok)
	}
	if s2 := n.mint(at); s2 == s {
		t.Errorf("two nonces minted at the same instant are equal: %q", s)
	} else if _, key2, _ := n.verify(s2); key2 == key {
		t.Errorf("two nonces share a replay key")
	}

	// Every single-bit change is caught: in the time, the random part or the tag.
	raw, _ := base64.RawURLEncoding.DecodeString(s)
	for i := range raw {
		for bit := 0; bit < 8; bit++ {
			b := append([]byte(nil), raw...)
			b[i] ^= 1 << bit
			if _, _, ok := n.verify(base64.RawURLEncoding.EncodeToString(b)); ok {
				t.Fatalf("nonce with byte %d bit %d flipped verified", i, bit)
			}
		}
	}
	for _, bad := range []string{"", s[:nonceLen-1], s + "A", "!" + s[1:], "dcd98b7102dd2f0e8b11d0f600bfb0c093"} {
		if _, _, ok := n.verify(bad); ok {
			t.Errorf("verify(%q) = ok", bad)
		}
	}
	if _, _, ok := newNoncer([]byte("another secret, 32 bytes long...")).verify(s); ok {
		t.Error("nonce verified under another secret")
	}
	// Workers sharing the secret accept each other's nonces.
	if _, _, ok := newNoncer(testSecret).verify(s); !ok {
		t.Error("nonce not verified by another noncer with the same secret")
	}
}

func TestReplayCache(t *testing.T) {
	const ttl = 30 * time.Second
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	k := func(b byte, nc uint32) replayKey { return replayKey{nonce: nonceKey{b}, nc: nc} }
	type step struct {
		at   time.Duration
		key  replayKey
		want bool
	}
	tests := []struct {
		name  string
		max   int
		steps []step
	}{
		{"first use, replay, next nc, other nonce", 100, []step{
			{0, k(1, 1), false}, {1, k(1, 1), true}, {2, k(1, 2), false}, {3, k(2, 1), false}, {4, k(1, 2), true},
		}},
		// Kept at least one TTL after it was recorded, across a rotation.
		{"remembered for a TTL", 100, []step{
			{0, k(1, 1), false}, {ttl - 1, k(1, 2), false}, {ttl, k(9, 9), false},
			{2*ttl - 2, k(1, 2), true}, {2 * ttl, k(9, 8), false}, {2*ttl + 1, k(1, 1), false},
		}},
		// Full generations rotate early; memory stays bounded.
		{"bounded", 2, []step{
			{0, k(1, 1), false}, {0, k(2, 1), false}, {0, k(3, 1), false}, {0, k(1, 1), true},
			{0, k(4, 1), false}, {0, k(5, 1), false}, {0, k(1, 1), false},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newReplayCache(ttl, tc.max)
			for i, s := range tc.steps {
				if got := r.seen(s.key, t0.Add(s.at)); got != s.want {
					t.Errorf("step %d: seen(%v) at +%v = %v, want %v", i, s.key, s.at, got, s.want)
				}
				if n := len(r.cur) + len(r.prev); n > 2*tc.max {
					t.Fatalf("step %d: %d entries, bound is %d", i, n, 2*tc.max)
				}
			}
		})
	}
}
