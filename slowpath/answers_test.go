package slowpath

import (
	"bytes"
	"fmt"
	"net"
	"testing"
	"time"
)

// TestAnswerBatch: answers to the slow path's own listener wait in the
// worker's batch until it is flushed or full, and leave in the order they
// were written, an answer too long for a slot included; a nil batch (a
// stateless path built without one, in tests) and another kind of socket
// write at once.
func TestAnswerBatch(t *testing.T) {
	// 0.0.0.0 is a dual-stack IPv6 socket: destinations written v4-mapped.
	for _, listen := range []string{"127.0.0.1:0", "0.0.0.0:0"} {
		t.Run(listen, func(t *testing.T) { testAnswerBatch(t, listen) })
	}
}

func testAnswerBatch(t *testing.T, listen string) {
	pc, err := listenUDP(listen)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	to := peer.LocalAddr()
	buf := make([]byte, maxDatagram)
	expect := func(want ...string) {
		t.Helper()
		for _, w := range want {
			_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _, err := peer.ReadFrom(buf)
			if err != nil || string(buf[:n]) != w {
				t.Fatalf("got %.20q (%d bytes), %v; want %.20q", buf[:n], n, err, w)
			}
		}
	}
	nothing := func() {
		t.Helper()
		_ = peer.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, _, err := peer.ReadFrom(buf); err == nil {
			t.Fatalf("got %q before the flush", buf[:n])
		}
	}

	o := newAnswerBatch()
	o.write(pc, []byte("a"), to)
	o.write(pc, []byte("b"), to)
	nothing()
	o.flush()
	expect("a", "b")

	big := string(bytes.Repeat([]byte("x"), answerSlot+1))
	o.write(pc, []byte("c"), to)
	o.write(pc, []byte(big), to) // alone, after what was batched
	expect("c", big)

	var want []string
	for i := range answerBatchSize + 1 {
		want = append(want, fmt.Sprintf("answer %d", i))
		o.write(pc, []byte(want[i]), to)
	}
	expect(want[:answerBatchSize]...) // a full batch left when the next came
	nothing()
	o.flush()
	expect(want[answerBatchSize])

	var none *answerBatch
	none.write(pc, []byte("direct"), to)
	expect("direct")

	plain, err := net.ListenPacket("udp4", "127.0.0.1:0") // not a batchedUDP
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { plain.Close() })
	o.write(pc, []byte("d"), to)
	o.write(plain, []byte("e"), to)
	expect("d", "e")

	pc.Close()
	o.write(pc, []byte("f"), to)
	o.flush() // on a closed socket: dropped, not kept
	if o.tx.Len() != 0 {
		t.Errorf("%d answers kept after a flush on a closed socket", o.tx.Len())
	}
}
