package auth

import (
	"fmt"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// BenchmarkCheck measures one Check: an accepted REGISTER per algorithm, the
// first challenge, and a wrong password. Requests are parsed up front; the
// replay cache is emptied outside the timer so accepted requests stay new.
func BenchmarkCheck(b *testing.B) {
	for _, alg := range []string{"SHA-256", "MD5"} {
		b.Run("ok/"+alg, func(b *testing.B) {
			clk := newClock()
			a := newAuth(b, clk, nil)
			nonce := nonceOf(b, a.Check(loadRequest(b, "register.sip"), true))
			const n = 1024
			reqs := make([]*sip.Request, n)
			for i := range reqs {
				c := cred{user: "alice", realm: "pinhole", uri: "sip:pinhole.example", alg: alg, qop: "auth",
					nc: fmt.Sprintf("%08x", i+1), cnonce: "0a4f113b", password: "wonderland", nonce: nonce}
				reqs[i] = loadRequest(b, "register.sip", "Authorization: "+c.value("REGISTER"))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%n == 0 && i > 0 {
					b.StopTimer()
					a = newAuth(b, clk, nil) // same secret, empty replay memory
					b.StartTimer()
				}
				if r := a.Check(reqs[i%n], true); !r.OK {
					b.Fatalf("Check = %+v", r)
				}
			}
		})
	}
	b.Run("challenge", func(b *testing.B) {
		a := newAuth(b, newClock(), nil)
		req := loadRequest(b, "register.sip")
		b.ReportAllocs()
		for b.Loop() {
			if r := a.Check(req, true); r.Status != 401 {
				b.Fatalf("Check = %+v", r)
			}
		}
	})
	b.Run("forbidden", func(b *testing.B) {
		a := newAuth(b, newClock(), nil)
		nonce := nonceOf(b, a.Check(loadRequest(b, "register.sip"), true))
		c := cred{user: "alice", realm: "pinhole", uri: "sip:pinhole.example", alg: "SHA-256", qop: "auth",
			nc: "00000001", cnonce: "0a4f113b", password: "wrong", nonce: nonce}
		req := loadRequest(b, "register.sip", "Authorization: "+c.value("REGISTER"))
		b.ReportAllocs()
		for b.Loop() {
			if r := a.Check(req, true); r.Status != 403 {
				b.Fatalf("Check = %+v", r)
			}
		}
	})
}
