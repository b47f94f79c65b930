package slowpath

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// exchange sends msg from c to addr and returns the next datagram back, or
// nil after wait.
func exchange(t testing.TB, c *net.UDPConn, addr string, msg []byte, wait time.Duration) []byte {
	t.Helper()
	to, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteToUDP(msg, to); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 4096)
	n, _, err := c.ReadFromUDP(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

func client(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestCRLFPongInUserspace: without XDP the slow path answers a double-CRLF
// ping with one CRLF from the listening socket (RFC 5626 §4.4.1), and a
// lone CRLF (a pong) with nothing.
func TestCRLFPongInUserspace(t *testing.T) {
	_, addr := startServer(t, "")
	c := client(t)
	if got := exchange(t, c, addr, []byte("\r\n\r\n"), 2*time.Second); string(got) != "\r\n" {
		t.Fatalf("answer to double-CRLF = %q, want %q", got, "\r\n")
	}
	if got := exchange(t, c, addr, []byte("\r\n"), 300*time.Millisecond); got != nil {
		t.Fatalf("a single CRLF was answered with %q", got)
	}
}

// TestIntercept: what the hook claims never reaches sipgo; what it
// declines is served as usual. The hook sees unmapped addresses.
func TestIntercept(t *testing.T) {
	s, addr := startServer(t, "")
	c := client(t)
	var mu sync.Mutex
	var seen []netip.AddrPort
	s.SetIntercept(func(local, remote netip.AddrPort, msg []byte) bool {
		mu.Lock()
		seen = append(seen, local, remote)
		mu.Unlock()
		return bytes.HasPrefix(msg, []byte("SIP/2.0 200 OK\r\nCall-ID: ph-"))
	})
	if got := exchange(t, c, addr, []byte("SIP/2.0 200 OK\r\nCall-ID: ph-0000000000000001\r\n\r\n"), 300*time.Millisecond); got != nil {
		t.Fatalf("claimed datagram was answered: %q", got)
	}
	got := exchange(t, c, addr, register("alice", "ic-1", 1, c.LocalAddr().String()), 2*time.Second)
	if !strings.HasPrefix(string(got), "SIP/2.0 200 OK") {
		t.Fatalf("REGISTER the hook declined: %q", got)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []netip.AddrPort{netip.MustParseAddrPort(addr), c.LocalAddr().(*net.UDPAddr).AddrPort()}
	if len(seen) < 2 || seen[0] != want[0] || seen[1] != want[1] {
		t.Errorf("hook saw %v, want local %v and remote %v", seen, want[0], want[1])
	}
}

// TestUDPSocket: the pinger gets the listener a device registered to, and
// an error for an address pinhole does not listen on.
func TestUDPSocket(t *testing.T) {
	s, addr := startServer(t, "")
	if _, err := s.UDPSocket(netip.MustParseAddrPort(addr)); err != nil {
		t.Fatalf("UDPSocket(%s): %v", addr, err)
	}
	if _, err := s.UDPSocket(netip.MustParseAddrPort("127.0.0.1:1")); err == nil {
		t.Fatal("UDPSocket for an address without a listener succeeded")
	}
}

// TestAuthFailureFeed: a REGISTER with a wrong password reaches the hook
// with its source address; a challenge (no credentials) does not.
func TestAuthFailureFeed(t *testing.T) {
	creds := writeTestCreds(t)
	s, addr := startServer(t, "auth:\n  credentials: "+creds+"\n  algorithms: [MD5]\n")
	var mu sync.Mutex
	var failed []netip.Addr
	s.SetAuthFailure(func(src netip.Addr) {
		mu.Lock()
		failed = append(failed, src)
		mu.Unlock()
	})
	c := client(t)
	local := c.LocalAddr().String()
	got := exchange(t, c, addr, register("alice", "af-1", 1, local), 2*time.Second)
	if !strings.HasPrefix(string(got), "SIP/2.0 401") {
		t.Fatalf("first REGISTER: %q", got)
	}
	nonce := between(string(got), `nonce="`, `"`)
	wrong := strings.Replace(string(register("alice", "af-1", 2, local)), "Content-Length: 0",
		`Authorization: Digest username="alice", realm="pinhole", nonce="`+nonce+`", uri="sip:example.com", response="00000000000000000000000000000000", algorithm=MD5`+"\r\nContent-Length: 0", 1)
	got = exchange(t, c, addr, []byte(wrong), 2*time.Second)
	if !strings.HasPrefix(string(got), "SIP/2.0 403") {
		t.Fatalf("REGISTER with a wrong password: %q", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failed) != 1 || failed[0] != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("auth failures reported: %v, want one from 127.0.0.1", failed)
	}
}

// TestProxyAuthFailureFeed: wrong Proxy-Authorization credentials on a
// MESSAGE reach the same hook as a REGISTER's (403), so a password guesser
// that calls instead of registering is banned too; the 407 challenge that
// starts every honest call does not.
func TestProxyAuthFailureFeed(t *testing.T) {
	creds := writeTestCreds(t)
	s, addr := startServer(t, "auth:\n  credentials: "+creds+"\n  algorithms: [MD5]\n")
	var mu sync.Mutex
	var failed []netip.Addr
	s.SetAuthFailure(func(src netip.Addr) {
		mu.Lock()
		failed = append(failed, src)
		mu.Unlock()
	})
	c := client(t)
	local := c.LocalAddr().String()
	message := func(cseq int, extra string) []byte {
		return []byte("MESSAGE sip:bob@example.com SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-pa-" + strconv.Itoa(cseq) + ";rport\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=pa\r\nTo: <sip:bob@example.com>\r\n" +
			"Call-ID: pa-1\r\nCSeq: " + strconv.Itoa(cseq) + " MESSAGE\r\n" + extra + "Content-Length: 0\r\n\r\n")
	}
	got := exchange(t, c, addr, message(1, ""), 2*time.Second)
	if !strings.HasPrefix(string(got), "SIP/2.0 407") {
		t.Fatalf("first MESSAGE: %q", got)
	}
	mu.Lock()
	if len(failed) != 0 {
		t.Errorf("a 407 challenge was reported as an auth failure: %v", failed)
	}
	mu.Unlock()
	nonce := between(string(got), `nonce="`, `"`)
	wrong := `Proxy-Authorization: Digest username="alice", realm="pinhole", nonce="` + nonce +
		`", uri="sip:bob@example.com", response="00000000000000000000000000000000", algorithm=MD5` + "\r\n"
	got = exchange(t, c, addr, message(2, wrong), 2*time.Second)
	if !strings.HasPrefix(string(got), "SIP/2.0 403") {
		t.Fatalf("MESSAGE with a wrong password: %q", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failed) != 1 || failed[0] != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("auth failures reported: %v, want one from 127.0.0.1", failed)
	}
}

func between(s, from, to string) string {
	_, rest, _ := strings.Cut(s, from)
	v, _, _ := strings.Cut(rest, to)
	return v
}

// writeTestCreds writes a credentials file with alice/secret in realm
// pinhole (docs/auth.md: user realm md5-ha1 sha256-ha1).
func writeTestCreds(t testing.TB) string {
	t.Helper()
	md := md5.Sum([]byte("alice:pinhole:secret"))
	sh := sha256.Sum256([]byte("alice:pinhole:secret"))
	path := filepath.Join(t.TempDir(), "users.txt")
	line := "alice pinhole " + hex.EncodeToString(md[:]) + " " + hex.EncodeToString(sh[:]) + "\n"
	if err := os.WriteFile(path, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
