package resolve

import (
	"context"
	"testing"
	"time"
)

// BenchmarkCached is the request path's cost of a named destination: one
// cache read of a fresh answer.
func BenchmarkCached(b *testing.B) {
	z := newZone(b)
	z.set("b.test", "A", `b.test. 3600 IN A 10.4.0.1`)
	r, err := New(Config{Servers: []string{z.addr}, Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	d, _ := ParseURI("sip:b.test:5060")
	if _, err := r.Lookup(context.Background(), d); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r.Cached(d) == nil {
				b.Fatal("no answer")
			}
		}
	})
}
