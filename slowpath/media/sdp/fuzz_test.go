package sdp

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParse: Parse never panics, and what it accepts prints to a body that
// parses to the same structure.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.sdp")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := Parse(body)
		if err != nil {
			return
		}
		_ = s.Profile()
		out := s.Marshal()
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("%q parsed, but its print %q does not: %v", body, out, err)
		}
		if d := cmp.Diff(s, again); d != "" {
			t.Fatalf("%q round trip (-first +second):\n%s", body, d)
		}
	})
}
