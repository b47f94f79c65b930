package resolve

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

type testWriter struct{ bytes.Buffer }

func (w *testWriter) contains(s string) bool { return bytes.Contains(w.Bytes(), []byte(s)) }

// TestOrderWeights: over many draws, the first of a priority group is
// drawn in proportion to the weights (RFC 2782), lower priorities never
// come first, and weight 0 comes last in its group.
func TestOrderWeights(t *testing.T) {
	ts := []Target{
		tgt("10.0.0.9:5060", UDP, 1, 100),
		tgt("10.0.0.1:5060", UDP, 0, 90),
		tgt("10.0.0.2:5060", UDP, 0, 10),
		tgt("10.0.0.3:5060", UDP, 0, 0),
	}
	rng := rand.New(rand.NewPCG(1, 2))
	first := map[string]int{}
	const n = 10000
	for range n {
		o := Order(ts, rng.IntN)
		first[o[0].Addr.String()]++
		if o[2].Addr.String() != "10.0.0.3:5060" || o[3].Addr.String() != "10.0.0.9:5060" {
			t.Fatalf("order %v: weight 0 third, the next priority last", o)
		}
	}
	if got := first["10.0.0.1:5060"]; got < n*85/100 || got > n*95/100 {
		t.Errorf("weight 90 of 100 came first %d times in %d", got, n)
	}
}
