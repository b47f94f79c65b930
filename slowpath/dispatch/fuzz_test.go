package dispatch

import "testing"

func FuzzParseURI(f *testing.F) {
	for _, s := range []string{"sip:10.0.0.1", "sip:10.0.0.1:5080;transport=tcp", "sip:[::1]:5060;lr", "sips:x", "sip:a@b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := ParseURI(s)
		if err != nil {
			return
		}
		again, err := ParseURI(tg.String())
		if err != nil || again != tg {
			t.Fatalf("ParseURI(%q) = %v, but its String %q reads back as %v, %v", s, tg, tg.String(), again, err)
		}
	})
}
