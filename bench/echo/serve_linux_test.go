package echo

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestServe: both waits answer every request of a burst larger than a
// batch (the loop's drain reads several recvmmsg batches per wake-up),
// each with its own reply, over loopback.
func TestServe(t *testing.T) {
	for name, wait := range map[string]Wait{"blocking": Blocking, "loop": Loop} {
		t.Run(name, func(t *testing.T) {
			// A free port: bind, note it, release, let Serve bind it.
			probe, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			addr := netip.MustParseAddrPort(probe.LocalAddr().String())
			probe.Close()
			ctx, cancel := context.WithCancel(context.Background())
			var st Stats
			ready := make(chan struct{})
			done := make(chan error, 1)
			go func() { done <- Serve(ctx, addr, wait, &st, ready) }()
			t.Cleanup(func() {
				cancel()
				if err := <-done; err != nil {
					t.Error(err)
				}
			})
			select {
			case <-ready:
			case err := <-done:
				t.Fatal(err)
			}
			c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(addr))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			const n = 3*batch + 5
			for i := range n {
				req := fmt.Sprintf("OPTIONS sip:h SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bK%d\r\nFrom: <sip:u@h>;tag=a\r\nTo: <sip:u@h>\r\nCall-ID: c%d\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", i, i)
				if _, err := c.Write([]byte(req)); err != nil {
					t.Fatal(err)
				}
			}
			seen := make(map[string]bool)
			buf := make([]byte, 2048)
			for len(seen) < n {
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				m, err := c.Read(buf)
				if err != nil {
					t.Fatalf("after %d replies: %v", len(seen), err)
				}
				reply := string(buf[:m])
				i := strings.Index(reply, "Call-ID: ")
				if !strings.HasPrefix(reply, "SIP/2.0 200 OK\r\n") || i < 0 {
					t.Fatalf("reply:\n%s", reply)
				}
				seen[reply[i:i+strings.Index(reply[i:], "\r\n")]] = true
			}
			// The responder counts a batch after sending it: the last
			// replies can arrive before the count.
			got := st.Answered.Load()
			for deadline := time.Now().Add(time.Second); got != n && time.Now().Before(deadline); got = st.Answered.Load() {
				time.Sleep(time.Millisecond)
			}
			if got != n {
				t.Errorf("answered %d, want %d", got, n)
			}
		})
	}
}
