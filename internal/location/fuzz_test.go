package location

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// FuzzDecode: any bytes decode or fail with ErrCorrupt, never panic, and
// what decodes re-encodes to the same bytes.
func FuzzDecode(f *testing.F) {
	exp := time.Unix(1_750_000_000, 0)
	f.Add(encodeValue([]Binding{typical(2, exp)}))
	f.Add(encodeValue([]Binding{typical(3, exp), typical(4, exp)}))
	f.Add(encodeValue([]Binding{{Contact: "c", Flow: Flow{Remote: netip.MustParseAddrPort("[fe80::1%z]:1")}}}))
	f.Add([]byte{formatV1})
	f.Fuzz(func(t *testing.T, v []byte) {
		in := append([]byte(nil), v...)
		bs, err := decodeValue("a@x", in)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		again := encodeValue(bs)
		bs2, err := decodeValue("a@x", again)
		if err != nil {
			t.Fatalf("re-encoded value does not decode: %v", err)
		}
		if diff := cmp.Diff(bs, bs2, addrPortEqual); diff != "" {
			t.Fatalf("re-decode differs (-first +second):\n%s", diff)
		}
	})
}
