package echo

import "testing"

func FuzzAnswer(f *testing.F) {
	f.Add([]byte("REGISTER sip:h SIP/2.0\r\nVia: v\r\nFrom: f\r\nTo: t\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n\r\n"))
	f.Add([]byte("\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, ok := Answer(nil, b)
		if ok && len(out) == 0 {
			t.Fatal("an empty answer")
		}
	})
}
