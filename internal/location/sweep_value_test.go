package location

import (
	"testing"
	"time"
)

func TestStaleValue(t *testing.T) {
	now := time.Unix(1_750_000_000, 0)
	val := func(exps ...time.Duration) []byte {
		var bs []Binding
		for i, d := range exps {
			bs = append(bs, typical(i, now.Add(d)))
		}
		return encodeValue(bs)
	}
	for _, tc := range []struct {
		name string
		v    []byte
		want bool
	}{
		{"past its grace", val(-redisKeyGrace - time.Second), true},
		{"every binding past its grace", val(-3*redisKeyGrace, -redisKeyGrace-time.Minute), true},
		{"at the end of its grace", val(-redisKeyGrace), false},
		{"within its grace", val(-time.Minute), false},
		{"live", val(time.Hour), false},
		{"one binding within its grace", val(-3*redisKeyGrace, -time.Minute), false},
		{"unknown format version", append([]byte{9}, val(-3 * redisKeyGrace)[1:]...), false},
		{"truncated", val(-3 * redisKeyGrace)[:20], false},
		{"version byte alone", []byte{formatV2}, false},
		{"empty", nil, false},
	} {
		if got := staleValue(tc.v, now); got != tc.want {
			t.Errorf("%s: staleValue = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// FuzzStaleValue: any bytes read from Redis are judged without a panic,
// and only a value that decodes, every binding past its grace, is stale.
func FuzzStaleValue(f *testing.F) {
	now := time.Unix(1_750_000_000, 0)
	f.Add(encodeValue([]Binding{typical(1, now.Add(-2*redisKeyGrace))}))
	f.Add(encodeValue([]Binding{typical(2, now.Add(-2*redisKeyGrace)), typical(3, now)}))
	f.Add([]byte{formatV1})
	f.Fuzz(func(t *testing.T, v []byte) {
		if !staleValue(v, now) {
			return
		}
		bs, err := decodeValue("", v)
		if err != nil {
			t.Fatalf("stale value does not decode: %v", err)
		}
		for _, b := range bs {
			if !b.Expires.Add(redisKeyGrace).Before(now) {
				t.Fatalf("stale value holds a binding expiring %v", b.Expires)
			}
		}
	})
}
