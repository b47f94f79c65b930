package engine

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pinhole-sip/pinhole/internal/mmsg"
)

// TestEngineBatches: with batching on, every datagram of a burst from
// several peers is answered to its own source or handed to the slow path
// with its source, as without batching; the loop reads in batches once
// datagrams queue up.
func TestEngineBatches(t *testing.T) {
	e := startEchoBatch(t, 1, 64)
	const peers, each = 4, 300
	var cs []*net.UDPConn
	for range peers {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(e.cfg.Addr))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetReadBuffer(1 << 20)
		cs = append(cs, c)
	}
	for i := range each {
		for p, c := range cs {
			msg := fmt.Sprintf("ECHO %d %d", p, i)
			if i%100 == 99 {
				msg = fmt.Sprintf("OPTIONS %d %d", p, i) // declined: to the slow path
			}
			if _, err := c.Write([]byte(msg)); err != nil {
				t.Fatal(err)
			}
		}
	}
	buf := make([]byte, 100)
	for p, c := range cs {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for got := 0; got < each-each/100; got++ {
			n, err := c.Read(buf)
			if err != nil || string(buf[:n]) != "OK" {
				t.Fatalf("peer %d, answer %d: %q (%v)", p, got, buf[:n], err)
			}
		}
	}
	handed := map[string]int{}
	for range peers * (each / 100) {
		n, from, err := e.Conn().ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		handed[from.String()]++
		if string(buf[:7]) != "OPTIONS" {
			t.Errorf("handed off %q", buf[:n])
		}
	}
	for p, c := range cs {
		if n := handed[c.LocalAddr().String()]; n != each/100 {
			t.Errorf("peer %d: %d handed off with its source, want %d", p, n, each/100)
		}
	}
	reads, datagrams, dropped, _ := e.BatchCounts()
	t.Logf("%d datagrams in %d batched reads after gnet's own (%d dropped)", datagrams, reads, dropped)
	if dropped != 0 {
		t.Errorf("%d datagrams dropped", dropped)
	}
}

// A loop whose socket is empty waits there for the next datagram (batch.go):
// datagrams a little apart are answered without gnet waking the loop
// again, each answered at once; and a socket that never empties still
// lets gnet stop the loop promptly (holdMax).
func TestLoopWaitsForTheNextDatagram(t *testing.T) {
	e := startEchoBatch(t, 1, 64)
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(e.cfg.Addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 16)
	const n = 20
	for i := range n {
		sent := time.Now()
		if _, err := c.Write([]byte("ECHO")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if k, err := c.Read(buf); err != nil || string(buf[:k]) != "OK" {
			t.Fatalf("datagram %d: %q (%v)", i, buf[:k], err)
		}
		if d := time.Since(sent); d > idleWait/2 && i > 0 {
			// Not a timing assertion on the loop: a late answer here
			// would mean the reply waited for the wait to end.
			t.Logf("datagram %d answered after %v", i, d)
		}
		time.Sleep(idleWait / 10)
	}
	_, _, _, waits := e.BatchCounts()
	if waits == 0 {
		t.Errorf("no wait of the loop ended with a datagram: %d datagrams %v apart each woke gnet", n, idleWait/10)
	}

	// A stream that never lets the socket empty: Stop still ends the loop.
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				_, _ = c.Write([]byte("ECHO"))
			}
		}
	}()
	defer close(stop)
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	begun := time.Now()
	if err := e.Stop(ctx); err != nil {
		t.Fatalf("Stop under a continuous stream: %v", err)
	}
	t.Logf("stopped in %v under a continuous stream", time.Since(begun))
}

// BenchmarkGnetBurst: bursts of 64 datagrams through the engine, one loop,
// with gnet's one system call per datagram (batch=1) and with the loop's
// batches (batch=64): the cost per datagram of the engine's I/O. The
// client moves its bursts with recvmmsg/sendmmsg itself, so that its own
// share stays small beside the engine's.
func BenchmarkGnetBurst(b *testing.B) {
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			e := startEchoBatch(b, 1, batch)
			c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(e.cfg.Addr))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			_ = c.SetReadBuffer(4 << 20)
			raw, err := c.SyscallConn()
			if err != nil {
				b.Fatal(err)
			}
			var fd int
			_ = raw.Control(func(f uintptr) { fd = int(f) })
			const burst = 64
			tx, rx := mmsg.NewSender(burst, 128, unix.AF_INET), mmsg.NewReceiver(burst, 128)
			msg := []byte("ECHO refresh")
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; done += burst {
				for range burst {
					_ = tx.Add(msg, e.cfg.Addr)
				}
				tx.Flush(fd)
				deadline := time.Now().Add(5 * time.Second)
				for got := 0; got < burst; {
					n, err := rx.Recv(fd)
					if err != nil || time.Now().After(deadline) {
						b.Fatalf("%d of %d answers (%v)", got, burst, err)
					}
					if n == 0 {
						runtime.Gosched() // let the loop run with -cpu 1
					}
					got += n
				}
			}
		})
	}
}
