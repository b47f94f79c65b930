//go:build integration

package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/testutil"
)

// TestFastPathAbsorbsAndHandsOffExpiries runs the pinhole binary with the
// fast path on: a device's refreshes after the first REGISTER are answered
// by the gnet loops (the metric counts them), each with the device's
// binding, and what they moved reaches the location store: after a
// graceful restart (empty cache) the last absorbed CSeq is in the store,
// so sending it again is refused as out of order, and the next one is
// accepted.
func TestFastPathAbsorbsAndHandsOffExpiries(t *testing.T) {
	cfg := testutil.DefaultConfig(t)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t, testutil.Loopback))
	cfg.Metrics.Listen = metricsAddr
	cfg.FastPath.Enabled, cfg.FastPath.Loops = true, 2
	cfg.Log.Level = "info"
	p := testutil.StartPinhole(t, nil, cfg)

	dev, err := net.Dial("udp", cfg.Listen.UDP[0])
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	local := dev.LocalAddr().String()
	register := func(cseq int) string {
		t.Helper()
		msg := "REGISTER sip:localhost SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-fp-" + strconv.Itoa(cseq) + ";rport\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:fp@localhost>;tag=fp1\r\nTo: <sip:fp@localhost>\r\n" +
			"Call-ID: fastpath-e2e\r\nCSeq: " + strconv.Itoa(cseq) + " REGISTER\r\n" +
			"Contact: <sip:fp@" + local + ">\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
		if _, err := dev.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		_ = dev.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 4096)
		n, err := dev.Read(buf)
		if err != nil {
			t.Fatalf("CSeq %d: no answer: %v", cseq, err)
		}
		return string(buf[:n])
	}
	const refreshes = 10
	for cseq := 1; cseq <= refreshes; cseq++ {
		r := register(cseq)
		if !strings.HasPrefix(r, "SIP/2.0 200 OK\r\n") || !strings.Contains(r, "\r\nContact: <sip:fp@"+local+">;expires=600\r\n") {
			t.Fatalf("CSeq %d: answer\n%s", cseq, r)
		}
		time.Sleep(20 * time.Millisecond) // the fill after the first 200 is asynchronous
	}
	// The first REGISTER and, at worst, one refresh racing its fill go to
	// the slow path; the rest are absorbed.
	if got := hostMetric(t, metricsAddr, "pinhole_fastpath_absorbed_total"); got < refreshes-2 {
		t.Fatalf("absorbed %v of %d refreshes", got, refreshes-1)
	}

	p.Restart()
	if r := register(refreshes); !strings.HasPrefix(r, "SIP/2.0 400 ") {
		t.Fatalf("the last absorbed CSeq again after a restart: want 400 (the store has it), got\n%s", r)
	}
	if r := register(refreshes + 1); !strings.HasPrefix(r, "SIP/2.0 200 OK\r\n") {
		t.Fatalf("next refresh after the restart:\n%s", r)
	}
}

// hostMetric reads one sample from pinhole's /metrics on the host.
func hostMetric(t *testing.T, addr, name string) float64 {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no %s in the metrics", name)
	return 0
}
