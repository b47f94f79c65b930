package testutil

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/pinhole-sip/pinhole/internal/promtext"
)

// AttachXDPPass attaches a program that passes every frame to ifname in ns,
// in native mode, until the test ends. Native XDP_TX on a veth delivers to
// the peer only when the peer has an XDP program too (veth_xdp_xmit needs
// the peer's NAPI), so a test attaches this to the device's end of the
// link whose other end runs pinhole's program.
func AttachXDPPass(t testing.TB, ns *NetNS, ifname string) {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "xdp_pass", Type: ebpf.XDP, License: "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2 /* XDP_PASS */), asm.Return()},
	})
	if err != nil {
		t.Fatalf("load pass-through XDP program: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	var l link.Link
	err = ns.Do(func() error {
		iface, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: iface.Index, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		t.Fatalf("attach pass-through XDP to %s in %s: %v", ifname, ns, err)
	}
	t.Cleanup(func() { l.Close() })
}

// XDPAttached reports whether an XDP program is attached to ifname in ns.
func XDPAttached(t testing.TB, ns *NetNS, ifname string) bool {
	t.Helper()
	out := ns.MustRun(t, "ip", "-d", "link", "show", "dev", ifname)
	return strings.Contains(out, "prog/xdp")
}

// UDPInDatagrams is the namespace's count of UDP datagrams delivered to
// sockets (Udp InDatagrams in /proc/net/snmp): with only pinhole's sockets
// in ns, what pinhole's userspace received.
func UDPInDatagrams(t testing.TB, ns *NetNS) uint64 {
	t.Helper()
	out := ns.MustRun(t, "cat", "/proc/net/snmp")
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "Udp: ") {
			continue
		}
		f := strings.Fields(line)[1:]
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "InDatagrams" && i < len(f) {
				v, err := strconv.ParseUint(f[i], 10, 64)
				if err != nil {
					t.Fatalf("parse Udp InDatagrams %q: %v", f[i], err)
				}
				return v
			}
		}
	}
	t.Fatalf("no Udp InDatagrams in /proc/net/snmp of %s", ns)
	return 0
}

// Metrics scrapes http://addr/metrics from inside ns and returns the
// samples by name with labels, e.g. `pinhole_xdp_verdicts_total{verdict="pass"}`.
func Metrics(t testing.TB, ns *NetNS, addr string) map[string]float64 {
	t.Helper()
	// The socket is made inside ns (a socket keeps its namespace); an
	// http.Transport would dial from another goroutine, on the host.
	var conn net.Conn
	if err := ns.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("connect to metrics at %s in %s: %v", addr, ns, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET /metrics HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", addr)
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("scrape metrics at %s in %s: %v", addr, ns, err)
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("scrape metrics at %s in %s: status %d, %v", addr, ns, res.StatusCode, err)
	}
	return promtext.Parse(string(b))
}

// Verdict is the name of pinhole's XDP counter for verdict v.
func Verdict(v string) string { return fmt.Sprintf("pinhole_xdp_verdicts_total{verdict=%q}", v) }
