package testutil

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// rtpengineBin is where Debian's rtpengine-daemon package installs the daemon.
const rtpengineBin = "/usr/bin/rtpengine"

// rtpengineReady bounds the wait for a started rtpengine to answer a ping;
// it generates a DTLS certificate first, which takes tens of milliseconds.
const rtpengineReady = 10 * time.Second

// RTPEngine is an rtpengine daemon run by a test in a namespace, forwarding
// media in userspace (no kernel module: --table=-1).
type RTPEngine struct {
	t  testing.TB
	NS *NetNS
	// NG is its control socket, on loopback inside NS.
	NG netip.AddrPort
	// Interface is the address it allocates media ports on.
	Interface netip.Addr
	logPath   string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// StartRTPEngine starts rtpengine inside ns with its media on iface (an
// address ns has) and its ng control socket on 127.0.0.1 there, waits until
// it answers a ping, and stops it when the test ends.
func StartRTPEngine(t testing.TB, ns *NetNS, iface netip.Addr) *RTPEngine {
	t.Helper()
	if ns == nil {
		t.Fatal("rtpengine runs in a namespace of the test, never on the host")
	}
	if _, err := os.Stat(rtpengineBin); err != nil {
		t.Fatalf("rtpengine is not installed (make test installs rtpengine-daemon): %v", err)
	}
	r := &RTPEngine{
		t: t, NS: ns, Interface: iface,
		NG:      netip.AddrPortFrom(Loopback, 2223),
		logPath: filepath.Join(t.TempDir(), "rtpengine.log"),
	}
	stopAtCleanup(t, "rtpengine", r.logPath, r.Kill)
	r.Start()
	return r
}

// Start starts rtpengine (again, after Kill) and waits until it answers.
func (r *RTPEngine) Start() {
	r.t.Helper()
	out := openDaemonLog(r.t, "rtpengine", r.logPath)
	// --config-file=none: Debian's /etc/rtpengine/rtpengine.conf would add
	// HTTP and CLI listeners and the kernel table. --table=-1: userspace
	// forwarding, no kernel module needed. Ports from a small range of
	// the namespace's own.
	cmd := r.NS.CommandContext(r.t.Context(), rtpengineBin,
		"--config-file=none", "--foreground", "--log-stderr", "--log-level=6",
		"--table=-1", "--interface="+r.Interface.String(),
		"--listen-ng="+r.NG.String(), "--port-min=30000", "--port-max=30999",
		"--delete-delay=0")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		r.t.Fatalf("start rtpengine: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); out.Close(); close(done) }()
	r.mu.Lock()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()
	deadline := time.Now().Add(rtpengineReady)
	for !r.answersPing() {
		select {
		case <-done:
			r.t.Fatalf("rtpengine exited before it was ready; log:\n%s", tail(readOr(r.logPath), 40))
		default:
		}
		if time.Now().After(deadline) {
			r.Kill()
			r.t.Fatalf("rtpengine not answering ng ping on %s in %s after %s; log:\n%s", r.NG, r.NS, rtpengineReady, tail(readOr(r.logPath), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill ends rtpengine with SIGKILL, as a crash would, and waits for it.
// Killing a stopped rtpengine is a no-op.
func (r *RTPEngine) Kill() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// Log returns what rtpengine wrote so far.
func (r *RTPEngine) Log() string { return readOr(r.logPath) }

// answersPing sends one bencoded ping from inside the namespace, written
// by hand so the harness does not test the client with itself.
func (r *RTPEngine) answersPing() bool {
	var ok bool
	_ = r.NS.Do(func() error {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(r.NG))
		if err != nil {
			return err
		}
		defer c.Close()
		cookie := "ready" + strconv.FormatInt(time.Now().UnixNano(), 36)
		if _, err := c.Write([]byte(cookie + " d7:command4:pinge")); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		ok = err == nil && string(buf[:n]) == cookie+" d6:result4:ponge"
		return nil
	})
	return ok
}
