//go:build integration

package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/testutil"
)

// tortureClass is what RFC 4475 expects of an element for one message.
type tortureClass int

const (
	// processed: a valid request, answered with a final response that is
	// no refusal of its syntax (400, 505, 513): 403, 404, 416, 483 and so
	// on are the proxy and registrar doing their job.
	processed tortureClass = iota
	// refused: an invalid request: 400 (or the given status), or no answer
	// at all (dropped, or a stream waiting for bytes that never come).
	refused
	// either: the RFC lets an element accept or refuse it.
	either
	// silent: a response with no transaction; nothing comes back.
	silent
)

// torture is the expectation per RFC 4475 message; status, when set, is
// the only refusal accepted on UDP, where the sanity filter answers.
var torture = map[string]struct {
	class  tortureClass
	status int
}{
	"wsinv": {class: processed}, "intmeth": {class: processed}, "esc01": {class: processed},
	"escnull": {class: processed}, "esc02": {class: processed}, "lwsdisp": {class: processed},
	"longreq": {class: processed}, "dblreq": {class: processed}, "semiuri": {class: processed},
	"transports": {class: processed}, "mpart01": {class: processed},
	"unreason": {class: silent}, "noreason": {class: silent},

	"badinv01": {class: either}, "clerr": {class: refused, status: 400}, "scalar02": {class: refused, status: 400},
	"scalarlg": {class: silent}, "quotbal": {class: refused}, "ltgtruri": {class: refused, status: 400},
	"lwsruri": {class: refused, status: 400}, "lwsstart": {class: refused, status: 400},
	"trws": {class: refused, status: 400}, "escruri": {class: refused, status: 400},
	"baddate": {class: either}, "regbadct": {class: refused, status: 400}, "badaspec": {class: either},
	"baddn": {class: refused, status: 400}, "badvers": {class: refused, status: 505},
	"mismatch01": {class: refused, status: 400}, "mismatch02": {class: refused, status: 400},
	"bigcode": {class: silent}, "ncl": {class: refused, status: 400},

	"badbranch": {class: processed},

	"insuf": {class: refused, status: 400}, "unkscm": {class: refused, status: 416}, "novelsc": {class: refused, status: 416},
	"unksm2": {class: processed}, "bext01": {class: refused, status: 420}, "invut": {class: processed},
	"regaut01": {class: processed}, "multi01": {class: refused, status: 400}, "mcl01": {class: refused, status: 400},
	"bcast": {class: silent}, "zeromf": {class: processed}, "cparam01": {class: processed},
	"cparam02": {class: processed}, "regescrt": {class: processed}, "sdp01": {class: processed},

	// RFC 4475 §3.4.1: to be accepted by elements "that want to maintain
	// backwards compatibility" with RFC 2543. pinhole does not for a
	// request without a From tag: sipgo (v1.7) keys an RFC 2543
	// transaction by the From tag, and answers 400 without one.
	"inv2543": {class: either},
}

// tortureWait bounds the wait for an answer; silence after it is "no
// answer". pinhole answers these from memory in milliseconds.
const tortureWait = 3 * time.Second

// TestRFC4475Torture sends every RFC 4475 message over UDP, TCP and TLS to
// a pinhole in a network namespace with nothing but loopback: the messages
// name hosts and addresses an attacker would choose, and a bug that made
// pinhole dial or resolve them must fail here, not leave the machine.
// Valid messages are processed, invalid ones refused with 400 (505, 420)
// or dropped, responses are not answered, and afterwards pinhole still
// answers on every transport: nothing hangs.
func TestRFC4475Torture(t *testing.T) {
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "slowpath", "sanity", "testdata", "rfc4475", "*.sip"))
	if err != nil || len(files) != len(torture) {
		t.Fatalf("%d RFC 4475 messages, want %d (err %v)", len(files), len(torture), err)
	}
	msgs := map[string][]byte{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		msgs[strings.TrimSuffix(filepath.Base(f), ".sip")] = data
	}

	ns := testutil.NewNetNS(t)
	cfg := testutil.DefaultConfig(t)
	tlsAddr := fmt.Sprintf("%s:%d", testutil.Loopback, testutil.FreePort(t, testutil.Loopback))
	cfg.Listen.TLS = []string{tlsAddr}
	cfg.Log.Level = "info"
	testutil.StartPinhole(t, ns, cfg)
	addrs := map[string]string{"UDP": cfg.Listen.UDP[0], "TCP": cfg.Listen.TCP[0], "TLS": tlsAddr}

	for _, tr := range []string{"UDP", "TCP", "TLS"} {
		t.Run(tr, func(t *testing.T) {
			for name, data := range msgs {
				want := torture[name]
				codes, closed := exchangeTorture(t, ns, tr, addrs[tr], data)
				judgeTorture(t, tr, name, want.class, want.status, codes, closed)
			}
			// Still serving after all of them.
			probe := []byte("OPTIONS sip:" + addrs[tr] + " SIP/2.0\r\nVia: SIP/2.0/" + tr + " 127.0.0.1:9;branch=z9hG4bK-probe-" + tr + "\r\n" +
				"Max-Forwards: 70\r\nFrom: <sip:probe@localhost>;tag=p\r\nTo: <sip:" + addrs[tr] + ">\r\nCall-ID: probe-" + tr + "\r\n" +
				"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
			if codes, _ := exchangeTorture(t, ns, tr, addrs[tr], probe); len(codes) == 0 || codes[0] != 200 {
				t.Errorf("after the torture messages an OPTIONS to pinhole got %v, want 200", codes)
			}
		})
	}
}

// TestLongDisplayNameOverUDP sends an OPTIONS whose From display name is
// 20 KB: valid (RFC 4475 §3.1.1.7 makes the same point with longreq), and
// its answer, which echoes the From, must come back although it is far
// over 1300 bytes.
func TestLongDisplayNameOverUDP(t *testing.T) {
	ns := testutil.NewNetNS(t)
	cfg := testutil.DefaultConfig(t)
	testutil.StartPinhole(t, ns, cfg)
	addr := cfg.Listen.UDP[0]
	msg := "OPTIONS sip:" + addr + " SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-longdn\r\n" +
		"Max-Forwards: 70\r\nFrom: \"" + strings.Repeat("Long Name ", 2048) + "\" <sip:dn@localhost>;tag=l\r\n" +
		"To: <sip:" + addr + ">\r\nCall-ID: long-display-name\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	codes, _ := exchangeTorture(t, ns, "UDP", addr, []byte(msg))
	if len(codes) == 0 || codes[0] != 200 {
		t.Fatalf("a %d-byte OPTIONS got %v, want 200", len(msg), codes)
	}
}

// judgeTorture checks the final codes one message got against its class.
func judgeTorture(t *testing.T, tr, name string, class tortureClass, status int, codes []int, closed bool) {
	t.Helper()
	syntax := func(c int) bool { return c == 400 || c == 505 || c == 513 }
	switch class {
	case processed:
		if len(codes) == 0 {
			t.Errorf("%s over %s: valid, got no final response (closed %v)", name, tr, closed)
		} else if syntax(codes[0]) {
			t.Errorf("%s over %s: valid, refused with %d", name, tr, codes[0])
		}
	case refused:
		if len(codes) == 0 {
			return // dropped
		}
		if status != 0 && tr == "UDP" && codes[0] != status {
			t.Errorf("%s over %s: got %d, want %d", name, tr, codes[0], status)
		} else if !syntax(codes[0]) && codes[0] != status {
			t.Errorf("%s over %s: invalid, answered %d", name, tr, codes[0])
		}
	case silent:
		if len(codes) > 0 {
			t.Errorf("%s over %s: a response was answered with %v", name, tr, codes)
		}
	}
}

// exchangeTorture sends msg from a fresh socket or connection inside ns and
// returns the status codes of the final responses that come back within
// tortureWait, and whether a stream was closed by pinhole.
func exchangeTorture(t *testing.T, ns *testutil.NetNS, tr, addr string, msg []byte) (codes []int, closed bool) {
	t.Helper()
	if tr == "UDP" {
		var c net.PacketConn
		if err := ns.Do(func() (err error) { c, err = net.ListenPacket("udp", "127.0.0.1:0"); return }); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Over UDP the answer goes to the top Via's sent-by (RFC 3261
		// §18.2.2), which the RFC's messages make up: a top Via with rport
		// (RFC 3581) brings it back to this socket, the rest untouched.
		if line := bytes.IndexByte(msg, '\n'); line > 0 && statusCode(msg) == 0 {
			via := "Via: SIP/2.0/UDP " + c.LocalAddr().String() + ";rport;branch=z9hG4bK-torture-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "\r\n"
			msg = append(append(append([]byte(nil), msg[:line+1]...), via...), msg[line+1:]...)
		}
		dst, _ := net.ResolveUDPAddr("udp", addr)
		if _, err := c.WriteTo(msg, dst); err != nil {
			t.Fatalf("send over UDP: %v", err)
		}
		buf := make([]byte, 70000)
		deadline := time.Now().Add(tortureWait)
		for {
			c.SetReadDeadline(deadline)
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return codes, false
			}
			if code := statusCode(buf[:n]); code >= 200 {
				codes = append(codes, code)
				deadline = time.Now().Add(300 * time.Millisecond) // a second request's answer (dblreq)
			}
		}
	}
	var c net.Conn
	if err := ns.Do(func() (err error) { c, err = net.DialTimeout("tcp", addr, tortureWait); return }); err != nil {
		t.Fatal(err)
	}
	if tr == "TLS" {
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		tc.SetDeadline(time.Now().Add(tortureWait))
		if err := tc.Handshake(); err != nil {
			c.Close()
			t.Fatalf("TLS handshake: %v", err)
		}
		c = tc
	}
	defer c.Close()
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("send over %s: %v", tr, err)
	}
	r := bufio.NewReader(c)
	deadline := time.Now().Add(tortureWait)
	for {
		c.SetReadDeadline(deadline)
		head, err := readStreamMessage(r)
		if err != nil {
			var ne net.Error
			timeout := errors.As(err, &ne) && ne.Timeout()
			return codes, !timeout
		}
		if code := statusCode(head); code >= 200 {
			codes = append(codes, code)
			deadline = time.Now().Add(300 * time.Millisecond)
		}
	}
}

// readStreamMessage reads one message from a stream, skipping CRLFs
// between messages, and returns it.
func readStreamMessage(r *bufio.Reader) ([]byte, error) {
	var b bytes.Buffer
	length := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		if line == "\r\n" && b.Len() == 0 {
			continue
		}
		b.WriteString(line)
		if name, v, ok := strings.Cut(line, ":"); ok {
			if n := strings.ToLower(strings.TrimSpace(name)); n == "content-length" || n == "l" {
				length, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		if line == "\r\n" {
			break
		}
	}
	if _, err := io.CopyN(&b, r, int64(length)); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// statusCode is the code of a response's status line, 0 for a request.
func statusCode(msg []byte) int {
	if !bytes.HasPrefix(msg, []byte("SIP/2.0 ")) || len(msg) < 11 {
		return 0
	}
	code, err := strconv.Atoi(string(msg[8:11]))
	if err != nil {
		return 0
	}
	return code
}
