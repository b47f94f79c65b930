package testutil

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Dnsmasq is a dnsmasq (Debian's dnsmasq-base) serving only the records a
// test gives it: no upstream, no /etc/hosts, no DHCP. It runs in a network
// namespace of its own, on port 53 of the namespace's end of a veth pair
// whose other end is on the host, so the host's processes (pinhole) reach
// it as a name server on another machine. Records are dnsmasq options
// (--srv-host=…, --host-record=…, --naptr-record=…); SetRecords restarts it
// with others on the same address, since dnsmasq rereads only host files
// on SIGHUP.
type Dnsmasq struct {
	t    testing.TB
	NS   *NetNS
	Addr netip.AddrPort
	TTL  int // seconds, for every record (--local-ttl)
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// StartDnsmasq starts dnsmasq with records and a TTL of ttl seconds.
func StartDnsmasq(t testing.TB, ttl int, records ...string) *Dnsmasq {
	t.Helper()
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		t.Fatal("dnsmasq not found: run scripts/install-deps.sh test")
	}
	ns := NewNetNS(t)
	sub := HostSubnet(t)
	Veth(t, nil, ns, HostAddr(sub, 1), HostAddr(sub, 2))
	d := &Dnsmasq{t: t, NS: ns, Addr: netip.AddrPortFrom(HostAddr(sub, 2).Addr(), 53), TTL: ttl, dir: t.TempDir()}
	d.start(records)
	t.Cleanup(d.Stop)
	return d
}

func (d *Dnsmasq) start(records []string) {
	d.t.Helper()
	args := []string{
		"--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--no-poll",
		"--listen-address=" + d.Addr.Addr().String(), "--bind-interfaces", "--port=" + strconv.Itoa(int(d.Addr.Port())),
		"--pid-file=", "--user=root", "--log-facility=-", "--log-queries",
		"--local-ttl=" + strconv.Itoa(d.TTL),
	}
	args = append(args, records...)
	out, err := os.OpenFile(filepath.Join(d.dir, "dnsmasq.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		d.t.Fatalf("create dnsmasq log: %v", err)
	}
	// `ip netns exec` execs dnsmasq in place: the process signalled is
	// dnsmasq itself.
	cmd := d.NS.CommandContext(context.Background(), "dnsmasq", args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		d.t.Fatalf("start dnsmasq: %v", err)
	}
	d.cmd, d.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); out.Close(); close(d.done) }()
	// Ready when it answers: dnsmasq binds before its first log line, and
	// refusing the query (REFUSED) still proves the socket is up.
	deadline := time.Now().Add(5 * time.Second)
	for !d.answers() {
		if time.Now().After(deadline) {
			d.t.Fatalf("dnsmasq on %s did not answer within 5 s:\n%s", d.Addr, d.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// answers sends a bare DNS query (RFC 1035 §4.1.1 header, one question
// for "." type A) and reports whether any reply came.
func (d *Dnsmasq) answers() bool {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(d.Addr))
	if err != nil {
		return false
	}
	defer c.Close()
	q := []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1}
	_ = c.SetDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := c.Write(q); err != nil {
		return false
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	return err == nil && n >= 12 && buf[0] == 0x12 && buf[1] == 0x34
}

// SetRecords restarts dnsmasq on its port with records instead.
func (d *Dnsmasq) SetRecords(records ...string) {
	d.t.Helper()
	d.Stop()
	d.start(records)
}

// Stop ends dnsmasq; a stopped server does not answer at all, as a name
// server that died.
func (d *Dnsmasq) Stop() {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(3 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

// Log is dnsmasq's output with every query it answered.
func (d *Dnsmasq) Log() string { return readOr(filepath.Join(d.dir, "dnsmasq.log")) }
