//go:build integration

package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

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

// TestFastPathAuthRefreshes runs a sipp phone with digest credentials
// (a challenge, then refreshes with the next nc on the one nonce) against
// pinhole with its embedded default — where the fast path is on — and
// again with the fast path off: the phone receives the same answers,
// header for header once what differs from run to run (tags, branches,
// nonces, ports, dates) is masked, and with the fast path on pinhole's
// metrics count the refreshes absorbed by the loops. The configuration is
// testutil.DefaultConfig: the embedded default with its own ports and
// directory, and MD5 alone, the only algorithm sipp 3.6 answers.
func TestFastPathAuthRefreshes(t *testing.T) {
	const user, password, refreshes = "authfp", "s3cret-fp", 8
	run := func(t *testing.T, fastPath bool) []string {
		if !testutil.DefaultConfig(t).FastPath.Enabled {
			t.Fatal("the embedded default has the fast path off")
		}
		metricsAddr, res := authRefreshes(t, fastPath, user, password, refreshes, 200, 30*time.Second)
		if fastPath {
			// The first authenticated REGISTER goes to the slow path and
			// fills the cache; at worst one refresh races that fill.
			if got := hostMetric(t, metricsAddr, "pinhole_fastpath_absorbed_total"); got < refreshes-1 {
				t.Errorf("absorbed %v of %d authenticated refreshes", got, refreshes)
			}
		}
		return receivedAnswers(t, res.Dir+"/messages.log")
	}
	on := run(t, true)
	off := run(t, false)
	if want := refreshes + 2; len(on) != want {
		t.Errorf("fast path on: %d answers, want %d (a 401 and %d 200s)", len(on), want, refreshes+1)
	}
	if diff := cmp.Diff(off, on); diff != "" {
		t.Errorf("answers with the fast path on differ from the slow path's (-off +on):\n%s", diff)
	}
}

// What differs between two runs of one scenario: masked in the answers.
var (
	answerMasks = []struct {
		re   *regexp.Regexp
		with string
	}{
		{regexp.MustCompile(`127\.0\.0\.1:\d+`), "127.0.0.1:PORT"},
		{regexp.MustCompile(`(?m)^Call-ID: .*$`), "Call-ID: ID"},
		{regexp.MustCompile(`(?m)^Date: .*$`), "Date: DATE"},
		{regexp.MustCompile(`tag=[^;>\s]+`), "tag=TAG"},
		{regexp.MustCompile(`branch=[^;>\s]+`), "branch=BRANCH"},
		{regexp.MustCompile(`rport=\d+`), "rport=PORT"},
		{regexp.MustCompile(`nonce="[^"]*"`), `nonce="NONCE"`},
	}
	traceSplit = regexp.MustCompile(`(?m)^-{20,} .*$`)
)

// receivedAnswers reads the responses in a sipp message trace, each with
// its header lines in order and the run's own values masked.
func receivedAnswers(t *testing.T, path string) []string {
	t.Helper()
	var out []string
	for _, part := range traceSplit.Split(readFile(t, path), -1) {
		if !strings.Contains(part, "message received") {
			continue
		}
		i := strings.Index(part, "SIP/2.0 ")
		if i < 0 {
			continue // a request
		}
		msg := strings.TrimSpace(strings.ReplaceAll(part[i:], "\r\n", "\n"))
		for _, m := range answerMasks {
			msg = m.re.ReplaceAllString(msg, m.with)
		}
		out = append(out, msg)
	}
	return out
}
