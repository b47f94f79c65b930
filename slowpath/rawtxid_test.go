package slowpath

import (
	"bytes"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/slowpath/retrans"
)

// rawIDSeeds are REGISTERs in the forms devices send, and near misses.
var rawIDSeeds = []string{
	"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.7:5060;rport;branch=z9hG4bK-abc.1\r\nMax-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: c1\r\nCSeq: 7 REGISTER\r\nContact: <sip:a@10.0.0.7>\r\nContent-Length: 0\r\n\r\n",
	"REGISTER sip:example.com SIP/2.0\r\nv: SIP/2.0/UDP Phone.Example.COM;branch=z9hG4bKx\r\ni: c2\r\nf: <sip:a@example.com>;tag=1\r\nt: <sip:a@example.com>\r\ncseq: 0009 REGISTER\r\nl: 0\r\n\r\n",
	"REGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK77\nCSeq: 1 REGISTER\nCall-ID: c3\nFrom: <sip:a@example.com>;tag=1\nTo: <sip:a@example.com>\n\n",
	"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK77, SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK78\r\nCSeq: 1 REGISTER\r\nCall-ID: c3\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\n\r\n",
	"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1 ;branch=z9hG4bK77\r\nCSeq: 1 REGISTER\r\n\r\n",
	"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK77\r\nCSeq: 1 REGISTER\r\n\r\n",
	"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK77\r\n ;rport\r\nCSeq: 1 REGISTER\r\n\r\n",
	"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=390skdjuw\r\nCSeq: 1 REGISTER\r\n\r\n",
	"REGISTER sip:example.com SIP/2.0\r\nCSeq: 2\r\n REGISTER\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK77\r\n\r\n",
}

// TestRawTransactionID: the raw key equals the parsed one for the plain
// forms, and declines the rest.
func TestRawTransactionID(t *testing.T) {
	wantOK := []bool{true, true, false, true, false, false, false, false, false}
	for i, m := range rawIDSeeds {
		raw, ok := rawTransactionID(nil, []byte(m), []byte("198.51.100.1:5060"))
		if ok != wantOK[i] {
			t.Errorf("seed %d: ok = %v, want %v (%q)", i, ok, wantOK[i], raw)
			continue
		}
		if ok {
			checkRawID(t, []byte(m), raw)
		}
	}
}

func checkRawID(t *testing.T, msg, raw []byte) {
	t.Helper()
	parsed, err := newParser(65535).ParseSIP(msg)
	if err != nil {
		return // the worker drops it; a cached answer under raw is still a retransmission's
	}
	req, ok := parsed.(*sip.Request)
	if !ok {
		t.Fatalf("raw key for a response: %q", msg)
	}
	req.SetSource("198.51.100.1:5060")
	want, ok := transactionID(nil, req)
	if !ok || !bytes.Equal(raw, want) {
		t.Fatalf("raw key %q, parsed key %q (ok %v) for\n%q", raw, want, ok, msg)
	}
}

// FuzzRawTransactionID: whenever the raw key is made, it is the key of the
// parsed request; a key that differed could answer one request with the
// response to another.
func FuzzRawTransactionID(f *testing.F) {
	for _, s := range rawIDSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		if raw, ok := rawTransactionID(nil, msg, []byte("198.51.100.1:5060")); ok {
			checkRawID(t, msg, raw)
		}
	})
}

func BenchmarkRawTransactionID(b *testing.B) {
	msg, src := []byte(rawIDSeeds[0]), []byte("198.51.100.1:5060")
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = rawTransactionID(buf[:0], msg, src)
	}
}

// BenchmarkRetransmissionLookup compares what recognising a retransmitted
// REGISTER costs before parsing (the read filter's raw key) and after it
// (the worker's parsed key): the response cache look-up is the same.
func BenchmarkRetransmissionLookup(b *testing.B) {
	msg, src := []byte(rawIDSeeds[0]), []byte("198.51.100.1:5060")
	c := retrans.New(100)
	id, _ := rawTransactionID(nil, msg, src)
	c.Begin(c.Key(id), nil)
	c.Finish(c.Key(id), []byte("SIP/2.0 200 OK\r\n\r\n"))
	out := make([]byte, 0, 1024)
	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			id, _ = rawTransactionID(id[:0], msg, src)
			if _, st := c.Peek(c.Key(id), out[:0]); st != retrans.Answered {
				b.Fatal(st)
			}
		}
	})
	b.Run("parsed", func(b *testing.B) {
		p := newParser(65535)
		b.ReportAllocs()
		for b.Loop() {
			m, err := p.ParseSIP(msg)
			if err != nil {
				b.Fatal(err)
			}
			req := m.(*sip.Request)
			req.SetSource(string(src))
			id, _ = transactionID(id[:0], req)
			if _, st := c.Begin(c.Key(id), out[:0]); st != retrans.Answered {
				b.Fatal(st)
			}
		}
	})
}
