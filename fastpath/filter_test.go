package fastpath_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/fastpath"
)

// TestReadFilterInLoop: the slow path's read filter runs in the event
// loop (docs/fastpath.md, "Threads and Ps"). A first REGISTER and a CRLF
// keepalive are consumed there — answered without crossing the hand-off
// queue to sipgo's reader — while a request sipgo must parse still crosses
// it and is answered.
func TestReadFilterInLoop(t *testing.T) {
	fast := start(t, "127.0.0.1", true, "", fastpath.Options{})
	d := dial(t, fast.addr)
	var e corpusEntry
	for _, c := range loadCorpus(t) {
		if c.absorb {
			e = c
			break
		}
	}

	if r := d.send(e.render(d, "filter-in-loop@device", 1, "z9hG4bK-filter-1"), 2*time.Second); !strings.HasPrefix(r, "SIP/2.0 200 ") {
		t.Fatalf("first REGISTER (%s): %q", e.name, r)
	}
	// The loop counts what its filter consumed after the filter
	// returns, which may be after the device has its answer: wait.
	if got := eventually(fast.fp.Filtered, 1); got != 1 {
		t.Errorf("after a first REGISTER: %d datagrams consumed by the filter in the loop, want 1", got)
	}
	if r := d.send("\r\n\r\n", 2*time.Second); r != "\r\n" {
		t.Fatalf("keepalive: %q, want a CRLF pong", r)
	}
	if got := eventually(fast.fp.Filtered, 2); got != 2 {
		t.Errorf("after a keepalive: %d consumed by the filter in the loop, want 2", got)
	}

	opts := "OPTIONS sip:nobody@example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + d.local() + ";branch=z9hG4bK-filter-2;rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:probe@example.com>;tag=f1\r\n" +
		"To: <sip:nobody@example.com>\r\n" +
		"Call-ID: filter-options@device\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"Content-Length: 0\r\n\r\n"
	if r := d.send(opts, 2*time.Second); !strings.HasPrefix(r, "SIP/2.0 ") {
		t.Fatalf("OPTIONS for a user, through sipgo: %q", r)
	}
	if got := fast.fp.Filtered(); got != 2 {
		t.Errorf("after an OPTIONS for a user: %d consumed by the filter in the loop, want still 2 (it is sipgo's)", got)
	}
	if handed := eventually(func() uint64 { h, _ := fast.fp.Loops(); return h }, 3); handed != 3 {
		t.Errorf("handed to the slow path: %d, want 3", handed)
	}
}

// eventually returns count() once it is want, or its value after a
// second.
func eventually(count func() uint64, want uint64) uint64 {
	deadline := time.Now().Add(time.Second)
	got := count()
	for got != want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
		got = count()
	}
	return got
}
