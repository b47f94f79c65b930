package sanity

import "testing"

// benchCases are a typical pass of each kind and the replies and drops a
// flood produces.
var benchCases = []struct {
	name string
	file string
}{
	{"register_pass", "valid_register.sip"},
	{"invite_pass", "valid_invite.sip"},
	{"response_pass", "valid_response_200.sip"},
	{"reply_400_missing_from", "missing_from.sip"},
	{"reply_400_cseq_mismatch", "cseq_mismatch.sip"},
	{"drop_keepalive", "keepalive_double_crlf.bin"},
	{"drop_not_sip", "not_sip_http.txt"},
}

func BenchmarkCheck(b *testing.B) {
	for _, bc := range benchCases {
		data := readTestdata(b, bc.file)
		dst := make([]byte, 0, 1500)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				v := Check(dst[:0], data, testLimits)
				if v.Action == Pass && v.Reason != ReasonOK {
					b.Fatal(v.Reason)
				}
			}
		})
	}
}

// TestCheckDoesNotAllocate holds the promise of the hot path: no allocation
// when a datagram passes or is dropped, nor for a reply that fits in dst.
func TestCheckDoesNotAllocate(t *testing.T) {
	for _, bc := range benchCases {
		t.Run(bc.name, func(t *testing.T) {
			data := readTestdata(t, bc.file)
			dst := make([]byte, 0, 1500)
			if n := testing.AllocsPerRun(100, func() { Check(dst[:0], data, testLimits) }); n != 0 {
				t.Errorf("Check allocates %v times per call", n)
			}
		})
	}
}
