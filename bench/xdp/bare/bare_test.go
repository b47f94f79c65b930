package bare

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
)

// XDP actions, from enum xdp_action.
const (
	xdpDrop = 1
	xdpPass = 2
	xdpTX   = 3
)

// udpFrame is an Ethernet/IPv4/UDP frame for the tests.
type udpFrame struct {
	dstMAC, srcMAC [6]byte
	src, dst       netip.AddrPort
	id             uint16
	ttl            uint8
	noUDPSum       bool // UDP checksum 0 (RFC 768: none)
	payload        []byte
	padTo          int // pad the frame with zeros to this length, as a NIC does to 60
}

func sum16(b []byte, s uint32) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func (f udpFrame) bytes() []byte {
	b := append(append([]byte{}, f.dstMAC[:]...), f.srcMAC[:]...)
	b = binary.BigEndian.AppendUint16(b, 0x0800)
	ip := make([]byte, 20)
	ip[0], ip[8], ip[9] = 0x45, f.ttl, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(f.payload)))
	binary.BigEndian.PutUint16(ip[4:], f.id)
	s, d := f.src.Addr().As4(), f.dst.Addr().As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	binary.BigEndian.PutUint16(ip[10:], fold(sum16(ip, 0)))
	udp := make([]byte, 8, 8+len(f.payload))
	binary.BigEndian.PutUint16(udp[0:], f.src.Port())
	binary.BigEndian.PutUint16(udp[2:], f.dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(f.payload)))
	udp = append(udp, f.payload...)
	if !f.noUDPSum {
		pseudo := append(append(append([]byte{}, s[:]...), d[:]...), 0, 17)
		pseudo = binary.BigEndian.AppendUint16(pseudo, uint16(len(udp)))
		c := fold(sum16(udp, sum16(pseudo, 0)))
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(udp[6:], c)
	}
	b = append(append(b, ip...), udp...)
	for len(b) < f.padTo {
		b = append(b, 0)
	}
	return b
}

var (
	devMAC  = [6]byte{0x02, 0, 0, 0, 0, 0x0d}
	edgeMAC = [6]byte{0x02, 0, 0, 0, 0, 0x0e}
	dev     = netip.MustParseAddrPort("10.88.0.2:40123")
	edge    = netip.MustParseAddrPort("10.88.0.1:5060")
)

func load(t *testing.T) *Program {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loading an XDP program needs root")
	}
	p, err := Load()
	if errors.Is(err, ebpf.ErrNotSupported) {
		t.Skipf("kernel: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return p
}

func run(t *testing.T, p *Program, in []byte) (uint32, []byte) {
	t.Helper()
	opts := ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+256), Repeat: 1}
	ret, err := p.Run(&opts)
	if err != nil {
		t.Fatalf("run xdp_bare: %v", err)
	}
	return ret, opts.DataOut
}

// TestKeepaliveAnswered checks the baseline's XDP_TX: the frame that leaves
// is exactly the CRLF answer from the edge back to the device, with valid
// IPv4 checksum, whether or not the request frame was padded.
func TestKeepaliveAnswered(t *testing.T) {
	p := load(t)
	req := udpFrame{dstMAC: edgeMAC, srcMAC: devMAC, src: dev, dst: edge, id: 0x1234, ttl: 63, payload: []byte("\r\n\r\n")}
	want := udpFrame{dstMAC: devMAC, srcMAC: edgeMAC, src: edge, dst: dev, id: 0x1234, ttl: 64, noUDPSum: true, payload: []byte("\r\n")}.bytes()
	for _, pad := range []int{0, 60} {
		req.padTo = pad
		ret, out := run(t, p, req.bytes())
		if ret != xdpTX {
			t.Fatalf("padded to %d: verdict %d, want XDP_TX (%d)", pad, ret, xdpTX)
		}
		if !bytes.Equal(out, want) {
			t.Errorf("padded to %d: answer\n got %x\nwant %x", pad, out, want)
		}
		if c := fold(sum16(out[14:34], 0)); c != 0 {
			t.Errorf("padded to %d: IPv4 header checksum does not verify (%#04x)", pad, c)
		}
	}
}

// TestVerdicts checks what is dropped and what passes untouched.
func TestVerdicts(t *testing.T) {
	p := load(t)
	natPingAnswer := "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.88.0.1:5060;branch=z9hG4bK-ph1\r\n" +
		"From: <sip:pinhole@10.88.0.1>;tag=ph1\r\nTo: <sip:a@localhost>;tag=d1\r\n" +
		"Call-ID: ph-0123456789abcdef\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	other := netip.AddrPortFrom(edge.Addr(), 5070)
	for _, c := range []struct {
		name string
		f    udpFrame
		want uint32
	}{
		{"NAT-ping answer", udpFrame{src: dev, dst: edge, payload: []byte(natPingAnswer)}, xdpDrop},
		{"CRLF CRLF and more", udpFrame{src: dev, dst: edge, payload: []byte("\r\n\r\n\r\n")}, xdpDrop},
		{"one CRLF", udpFrame{src: dev, dst: edge, payload: []byte("\r\n")}, xdpDrop},
		{"keepalive to another port", udpFrame{src: dev, dst: other, payload: []byte("\r\n\r\n")}, xdpPass},
	} {
		c.f.dstMAC, c.f.srcMAC, c.f.ttl = edgeMAC, devMAC, 64
		in := c.f.bytes()
		ret, out := run(t, p, in)
		if ret != c.want {
			t.Errorf("%s: verdict %d, want %d", c.name, ret, c.want)
		}
		if ret == xdpPass && !bytes.Equal(out, in) {
			t.Errorf("%s: passed frame changed\n got %x\nwant %x", c.name, out, in)
		}
	}
	// Not IPv4: an IPv6 frame passes.
	v6 := append(append(append([]byte{}, edgeMAC[:]...), devMAC[:]...), 0x86, 0xdd)
	v6 = append(v6, make([]byte, 40+8+4)...)
	if ret, _ := run(t, p, v6); ret != xdpPass {
		t.Errorf("IPv6: verdict %d, want XDP_PASS", ret)
	}
}
