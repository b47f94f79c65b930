package load

import (
	"os"
	"path/filepath"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, name := range []string{"401.sip", "invite.sip"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m message
		if parse(b, &m) != nil {
			return
		}
		// Whatever was accepted is usable by the engine without panics.
		_ = param(m.to, "tag")
		_ = uriOf(m.contact)
		for _, v := range m.rr[:m.nRR] {
			_ = splitComma(nil, v)
		}
		if m.request == (m.status != 0) {
			t.Fatalf("request %v with status %d", m.request, m.status)
		}
	})
}
