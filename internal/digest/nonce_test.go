package digest

import (
	"encoding/base64"
	"fmt"
	"testing"
	"time"
)

func TestNonce(t *testing.T) {
	n := NewNonces(testSecret)
	at := time.Date(2025, 3, 1, 12, 0, 0, 123, time.UTC)
	s := n.Mint(at)
	if len(s) != NonceLen {
		t.Fatalf("nonce %q has length %d, want %d", s, len(s), NonceLen)
	}
	if tokenLen(s) != len(s) {
		t.Errorf("nonce %q is not a token", s)
	}
	issued, key, ok := n.Verify(s)
	if !ok || !issued.Equal(at) {
		t.Fatalf("verify(mint(%v)) = %v, %v", at, issued, ok)
	}
	if s2 := n.Mint(at); s2 == s {
		t.Errorf("two nonces minted at the same instant are equal: %q", s)
	} else if _, key2, _ := n.Verify(s2); key2 == key {
		t.Errorf("two nonces share a replay key")
	}

	// Every single-bit change is caught: in the time, the random part or the tag.
	raw, _ := base64.RawURLEncoding.DecodeString(s)
	for i := range raw {
		for bit := 0; bit < 8; bit++ {
			b := append([]byte(nil), raw...)
			b[i] ^= 1 << bit
			if _, _, ok := n.Verify(base64.RawURLEncoding.EncodeToString(b)); ok {
				t.Fatalf("nonce with byte %d bit %d flipped verified", i, bit)
			}
		}
	}
	for _, bad := range []string{"", s[:NonceLen-1], s + "A", "!" + s[1:], "dcd98b7102dd2f0e8b11d0f600bfb0c093"} {
		if _, _, ok := n.Verify(bad); ok {
			t.Errorf("verify(%q) = ok", bad)
		}
	}
	if _, _, ok := NewNonces([]byte("another secret, 32 bytes long...")).Verify(s); ok {
		t.Error("nonce verified under another secret")
	}
	// Workers sharing the secret accept each other's nonces.
	if _, _, ok := NewNonces(testSecret).Verify(s); !ok {
		t.Error("nonce not verified by another noncer with the same secret")
	}
}

func TestReplayCache(t *testing.T) {
	const ttl = 30 * time.Second
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	type step struct {
		at     time.Duration // now, after t0
		nonce  byte
		issued time.Duration // the nonce's issue time, after t0
		nc     uint32
		want   bool
	}
	tests := []struct {
		name  string
		max   int
		steps []step
	}{
		{"first use, replay, next nc, other nonce", 100, []step{
			{0, 1, 0, 1, false}, {1, 1, 0, 1, true}, {2, 1, 0, 2, false}, {3, 2, 0, 1, false}, {4, 1, 0, 2, true},
		}},
		{"out of order within the window", 100, []step{
			{0, 1, 0, 3, false}, {0, 1, 0, 1, false}, {0, 1, 0, 2, false}, {0, 1, 0, 1, true}, {0, 1, 0, 3, true},
			// 5 was never used but is 64 or more below the highest.
			{0, 1, 0, 10 + ReplayWindow, false}, {0, 1, 0, 5, true}, {0, 1, 0, 11, false}, {0, 1, 0, 11, true},
		}},
		{"RFC 2069: no nc, one use", 100, []step{
			{0, 1, 0, 0, false}, {1, 1, 0, 0, true},
		}},
		// Kept as long as its nonce is valid, then dropped with it.
		{"remembered for the nonce's life", 100, []step{
			{0, 1, 0, 1, false}, {ttl, 1, 0, 1, true}, {ttl + 1, 9, ttl, 1, false}, {ttl + 1, 1, 0, 1, false},
		}},
		// Full: the oldest nonce goes, and every nonce issued no later
		// than it is refused from then on, so it can never be replayed.
		{"bounded, never forgetting", 2, []step{
			{0, 1, 1, 1, false}, {0, 2, 2, 1, false}, {0, 3, 3, 1, false}, {0, 1, 1, 1, true}, {0, 1, 1, 2, true},
			{0, 4, 4, 1, false}, {0, 2, 2, 1, true}, {0, 5, 0, 1, true}, {0, 6, 6, 1, false},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReplay(ttl, tc.max)
			for i, s := range tc.steps {
				if got := r.Seen(NonceKey{s.nonce}, s.nc, t0.Add(s.issued), t0.Add(s.at)); got != s.want {
					t.Errorf("step %d: seen(nonce %d issued +%v, nc %d) at +%v = %v, want %v", i, s.nonce, s.issued, s.nc, s.at, got, s.want)
				}
				if n, _ := r.Stats(); n > tc.max || len(r.oldest) != n {
					t.Fatalf("step %d: %d entries (heap %d), bound is %d", i, n, len(r.oldest), tc.max)
				}
			}
		})
	}
}

// testSecret keeps nonces verifiable across Nonces in one test.
var testSecret = []byte("0123456789abcdef0123456789abcdef")

// BenchmarkReplayFlood is one accepted nonce with the replay memory full.
func BenchmarkReplayFlood(b *testing.B) {
	r := NewReplay(time.Hour, DefaultReplayEntries)
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		var k NonceKey
		copy(k[:], fmt.Sprintf("%016x", i))
		at := t0.Add(time.Duration(i))
		r.Seen(k, 1, at, at)
	}
}
