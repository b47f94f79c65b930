package bencode

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzUnmarshal: the decoder never panics, and whatever it accepts encodes
// and decodes back to the same value.
func FuzzUnmarshal(f *testing.F) {
	for _, s := range []string{"d7:command4:pinge", "d6:result4:ponge", "li1e3:abce", "i-12e", "d1:bi1e1:ai2ee"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Unmarshal(data)
		if err != nil {
			return
		}
		enc, err := Marshal(v)
		if err != nil {
			t.Fatalf("decoded %q to %#v, which does not encode: %v", data, v, err)
		}
		again, err := Unmarshal(enc)
		if err != nil {
			t.Fatalf("re-encoded %q as %q, which does not decode: %v", data, enc, err)
		}
		if d := cmp.Diff(v, again); d != "" {
			t.Fatalf("%q round trip (-first +second):\n%s", data, d)
		}
	})
}
