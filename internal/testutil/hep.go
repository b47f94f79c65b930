package testutil

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// HEPCollector is a Homer-style HEP collector for a test: Kamailio's
// sipcapture module (Debian's kamailio package), an implementation of HEP
// independent of pinhole's, decoding every HEP v3 packet it receives on
// one UDP address and logging its chunks, which Packets reads back.
type HEPCollector struct {
	Addr    netip.AddrPort
	logPath string
	t       testing.TB
}

// HEPPacket is one HEP packet as the collector decoded it.
type HEPPacket struct {
	Version   int
	Family    int // 2 IPv4, 10 IPv6
	Protocol  int // IP protocol: 17 UDP, 6 TCP
	Src, Dst  netip.AddrPort
	Seconds   int64
	ProtoType int // 1 SIP
	CaptureID uint32
	CallID    string // the correlation id chunk
	Payload   string
}

// hepMark starts each line the collector's script logs.
const hepMark = "HEP-DECODED"

// hepCollectorConfig logs every HEP packet from the event route
// sipcapture runs for messages that are not SIP (nonsip_hook), with the
// chunks read by their type ids ($hep(0x...)); the correlation id and the
// payload in base64, so a line is a line. db_text is only there because
// sipcapture (Kamailio 5.6) needs a database URL to start.
const hepCollectorConfig = `#!KAMAILIO
debug=2
log_stderror=yes
children=1
disable_tcp=yes
listen=udp:%s
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "db_text.so"
loadmodule "sipcapture.so"
modparam("sipcapture", "db_url", "text://%s")
modparam("sipcapture", "hep_capture_on", 0)
modparam("sipcapture", "nonsip_hook", 1)
event_route[sipcapture:request] {
	xlog("L_ALERT", "` + hepMark + ` v=$hep(version) family=$hep(0x001) proto=$hep(0x002) src=$hep(0x003) sport=$hep(0x007) dst=$hep(0x004) dport=$hep(0x008) sec=$hep(0x009) type=$hep(0x00b) id=$hep(0x00c) cid=$(hep(0x011){s.encode.base64}) payload=$(hep(0x00f){s.encode.base64}) end\n");
	drop;
}
request_route {
	drop;
}
`

// StartHEPCollector runs the collector in ns on addr (IPv4) until the
// test ends.
func StartHEPCollector(t testing.TB, ns *NetNS, addr netip.AddrPort) *HEPCollector {
	t.Helper()
	dir := t.TempDir()
	dbDir, runDir := filepath.Join(dir, "db"), filepath.Join(dir, "run")
	for _, d := range []string{dbDir, runDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(dir, "collector.cfg")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(hepCollectorConfig, addr, dbDir)), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &HEPCollector{Addr: addr, logPath: filepath.Join(dir, "collector.log"), t: t}
	out, err := os.Create(c.logPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := ns.CommandContext(ctx, kamailioBin, "-DD", "-E", "-f", cfgPath, "-Y", runDir)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Start(); err != nil {
		cancel()
		out.Close()
		t.Fatalf("start the HEP collector (kamailio): %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); out.Close(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cancel()
			<-done
		}
	})
	// Ready once its socket is bound: binding the address fails then.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		select {
		case <-done:
			t.Fatalf("the HEP collector exited; log:\n%s", tail(readOr(c.logPath), 30))
		default:
		}
		err := ns.Do(func() error {
			pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
			if err == nil {
				pc.Close()
			}
			return err
		})
		if errors.Is(err, syscall.EADDRINUSE) {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("the HEP collector did not bind %v: %v; log:\n%s", addr, err, tail(readOr(c.logPath), 30))
		}
	}
}

// Packets returns what the collector decoded so far, in arrival order.
func (c *HEPCollector) Packets() []HEPPacket {
	c.t.Helper()
	var out []HEPPacket
	for _, line := range strings.Split(readOr(c.logPath), "\n") {
		_, rest, ok := strings.Cut(line, hepMark+" ")
		if !ok {
			continue
		}
		f := map[string]string{}
		for _, kv := range strings.Fields(rest) {
			k, v, _ := strings.Cut(kv, "=")
			f[k] = v
		}
		if _, ok := f["end"]; !ok {
			c.t.Fatalf("collector log line cut short: %q", line)
		}
		num := func(k string) int64 {
			n, err := strconv.ParseInt(f[k], 10, 64)
			if err != nil {
				c.t.Fatalf("collector field %s=%q: %v", k, f[k], err)
			}
			return n
		}
		text := func(k string) string {
			if f[k] == "" || f[k] == "<null>" {
				return ""
			}
			b, err := base64.StdEncoding.DecodeString(f[k])
			if err != nil {
				c.t.Fatalf("collector field %s=%q: %v", k, f[k], err)
			}
			return string(b)
		}
		addr := func(ip, port string) netip.AddrPort {
			a, err := netip.ParseAddr(f[ip])
			if err != nil {
				return netip.AddrPort{}
			}
			return netip.AddrPortFrom(a, uint16(num(port)))
		}
		out = append(out, HEPPacket{
			Version: int(num("v")), Family: int(num("family")), Protocol: int(num("proto")),
			Src: addr("src", "sport"), Dst: addr("dst", "dport"), Seconds: num("sec"),
			ProtoType: int(num("type")), CaptureID: uint32(num("id")), CallID: text("cid"), Payload: text("payload"),
		})
	}
	return out
}

// Log is the collector's output, for failure messages.
func (c *HEPCollector) Log() string { return tail(readOr(c.logPath), 40) }

// Tshark captures packets in a namespace with Debian's tshark and decodes
// them afterwards: the test's view of what crossed the wire.
type Tshark struct {
	pcap   string
	cmd    *exec.Cmd
	done   chan struct{}
	ns     *NetNS
	stderr string
}

// StartTshark captures on iface in ns with the capture filter until Stop.
// It returns once tshark says it is capturing.
func StartTshark(t testing.TB, ns *NetNS, iface, filter string) *Tshark {
	t.Helper()
	dir := t.TempDir()
	ts := &Tshark{pcap: filepath.Join(dir, "wire.pcapng"), ns: ns, stderr: filepath.Join(dir, "tshark.err"), done: make(chan struct{})}
	errf, err := os.Create(ts.stderr)
	if err != nil {
		t.Fatal(err)
	}
	ts.cmd = ns.CommandContext(context.Background(), "tshark", "-n", "-i", iface, "-f", filter, "-w", ts.pcap)
	ts.cmd.Stdout, ts.cmd.Stderr = errf, errf
	// Its own group: Stop interrupts dumpcap (tshark's capturing child)
	// too, which then writes out what it still holds.
	ts.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := ts.cmd.Start(); err != nil {
		errf.Close()
		t.Fatalf("start tshark: %v", err)
	}
	go func() { _ = ts.cmd.Wait(); errf.Close(); close(ts.done) }()
	t.Cleanup(func() { ts.stop() })
	for deadline := time.Now().Add(15 * time.Second); !strings.Contains(readOr(ts.stderr), "Capturing on"); time.Sleep(50 * time.Millisecond) {
		select {
		case <-ts.done:
			t.Fatalf("tshark exited: %s", readOr(ts.stderr))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("tshark not capturing after 15s: %s", readOr(ts.stderr))
		}
	}
	return ts
}

func (ts *Tshark) stop() {
	select {
	case <-ts.done:
		return
	default:
	}
	// The last packets may still be on their way through the capture
	// buffer: give them a moment before interrupting.
	time.Sleep(500 * time.Millisecond)
	_ = syscall.Kill(-ts.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-ts.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-ts.cmd.Process.Pid, syscall.SIGKILL)
		<-ts.done
	}
}

// Fields stops the capture and decodes it: one row per packet matching
// the display filter, with the fields asked for (tshark -T fields).
func (ts *Tshark) Fields(t testing.TB, display string, fields ...string) [][]string {
	t.Helper()
	ts.stop()
	args := []string{"-n", "-r", ts.pcap, "-Y", display, "-T", "fields", "-E", "separator=/t"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command("tshark", args...).Output()
	if err != nil {
		t.Fatalf("tshark -r: %v (%s)", err, readOr(ts.stderr))
	}
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if line != "" {
			rows = append(rows, strings.Split(line, "\t"))
		}
	}
	return rows
}
