package routesig

import "testing"

// FuzzVerify: no input makes Verify panic, and nothing but the MAC Sign
// wrote for the same parts verifies.
func FuzzVerify(f *testing.F) {
	r := NewStatic([KeySize]byte{1, 2, 3})
	f.Add(r.Sign("call@x", "tag"), "call@x", "tag")
	f.Add("aaaaaaaaaaaaaaaa", "", "")
	f.Add("", "a", "b")
	f.Fuzz(func(t *testing.T, sig, a, b string) {
		// 80 bits are exactly 16 base32 characters: one spelling per MAC.
		if r.Verify(sig, a, b) && r.Sign(a, b) != sig {
			t.Fatalf("Verify(%q, %q, %q) accepted a MAC Sign did not write (%q)", sig, a, b, r.Sign(a, b))
		}
	})
}
