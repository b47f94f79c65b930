// Package frame builds and decodes Ethernet/VLAN/IPv4/IPv6/UDP frames with
// correct lengths and checksums, for tests of the XDP program. It checks
// checksums with its own implementation so that a test catches a program
// that gets them wrong.
package frame

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// EtherType values used here.
const (
	TypeIPv4  = 0x0800
	TypeIPv6  = 0x86dd
	TypeVLAN  = 0x8100 // 802.1Q
	TypeQinQ  = 0x88a8 // 802.1ad outer tag
	protoUDP  = 17
	minFrame  = 60 // Ethernet minimum without FCS: shorter frames are padded
	ipv4Hdr   = 20
	ipv6Hdr   = 40
	udpHdr    = 8
	ethHdrLen = 14
)

// Ext is an IPv6 extension header: its Next Header type (0 hop-by-hop, 43
// routing, 44 fragment, 60 destination options) and its body after the
// two-byte type/length, zero-padded to a multiple of 8 with them.
type Ext struct {
	Type uint8
	Data []byte
}

// Frame describes a UDP datagram in an Ethernet frame.
type Frame struct {
	DstMAC, SrcMAC [6]byte
	// VLANs are the tags' VLAN IDs, outermost first; with two, the outer
	// one is 802.1ad (QinQ).
	VLANs []uint16
	Src   netip.AddrPort // IPv4 or IPv6 decides the IP version
	Dst   netip.AddrPort
	TTL   uint8
	// IPv4Options are appended to the IPv4 header (a multiple of 4 bytes).
	IPv4Options []byte
	// IPv6Ext are the IPv6 extension headers before UDP.
	IPv6Ext []Ext
	// Protocol overrides UDP (17) as the IP payload protocol, for frames
	// the program must ignore; the UDP header is still written.
	Protocol uint8
	// FragOffset and MoreFragments mark an IPv4 fragment.
	FragOffset    uint16
	MoreFragments bool
	Payload       []byte
	// Pad pads the frame to the 60-byte Ethernet minimum like a NIC does.
	Pad bool
}

// Bytes encodes f.
func (f Frame) Bytes() []byte {
	b := make([]byte, 0, 128+len(f.Payload))
	b = append(b, f.DstMAC[:]...)
	b = append(b, f.SrcMAC[:]...)
	etype := uint16(TypeIPv6)
	if f.Src.Addr().Is4() {
		etype = TypeIPv4
	}
	for i, id := range f.VLANs {
		tpid := uint16(TypeVLAN)
		if i == 0 && len(f.VLANs) > 1 {
			tpid = TypeQinQ
		}
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, id)
	}
	b = binary.BigEndian.AppendUint16(b, etype)
	proto := f.Protocol
	if proto == 0 {
		proto = protoUDP
	}
	ttl := f.TTL
	if ttl == 0 {
		ttl = 64
	}
	udp := make([]byte, udpHdr, udpHdr+len(f.Payload))
	binary.BigEndian.PutUint16(udp[0:], f.Src.Port())
	binary.BigEndian.PutUint16(udp[2:], f.Dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(udpHdr+len(f.Payload)))
	udp = append(udp, f.Payload...)
	binary.BigEndian.PutUint16(udp[6:], UDPChecksum(f.Src.Addr(), f.Dst.Addr(), udp))

	if etype == TypeIPv4 {
		hl := ipv4Hdr + len(f.IPv4Options)
		ip := make([]byte, hl)
		ip[0] = 0x40 | byte(hl/4)
		binary.BigEndian.PutUint16(ip[2:], uint16(hl+len(udp)))
		binary.BigEndian.PutUint16(ip[4:], 0x1234)
		frag := f.FragOffset
		if f.MoreFragments {
			frag |= 0x2000
		}
		binary.BigEndian.PutUint16(ip[6:], frag)
		ip[8] = ttl
		ip[9] = proto
		s, d := f.Src.Addr().As4(), f.Dst.Addr().As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		copy(ip[20:], f.IPv4Options)
		binary.BigEndian.PutUint16(ip[10:], Checksum(ip, 0))
		b = append(b, ip...)
	} else {
		var ext []byte
		next := proto
		for i := len(f.IPv6Ext) - 1; i >= 0; i-- {
			e := f.IPv6Ext[i]
			n := (2 + len(e.Data) + 7) / 8 * 8
			h := make([]byte, n)
			h[0] = next
			h[1] = byte(n/8 - 1)
			copy(h[2:], e.Data)
			ext = append(h, ext...)
			next = e.Type
		}
		ip := make([]byte, ipv6Hdr)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(len(ext)+len(udp)))
		ip[6] = next
		ip[7] = ttl
		s, d := f.Src.Addr().As16(), f.Dst.Addr().As16()
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
		b = append(b, ip...)
		b = append(b, ext...)
	}
	b = append(b, udp...)
	if f.Pad && len(b) < minFrame {
		b = append(b, make([]byte, minFrame-len(b))...)
	}
	return b
}

// Checksum is the Internet checksum (RFC 1071) of b, starting from sum.
func Checksum(b []byte, sum uint32) uint16 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// UDPChecksum computes the UDP checksum of udp (header and payload, with
// the checksum field zero) over the IPv4 (RFC 768) or IPv6 (RFC 8200 §8.1)
// pseudo-header. A result of 0 is sent as 0xffff.
func UDPChecksum(src, dst netip.Addr, udp []byte) uint16 {
	var pseudo []byte
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		pseudo = append(append(pseudo, s[:]...), d[:]...)
		pseudo = append(pseudo, 0, protoUDP)
		pseudo = binary.BigEndian.AppendUint16(pseudo, uint16(len(udp)))
	} else {
		s, d := src.As16(), dst.As16()
		pseudo = append(append(pseudo, s[:]...), d[:]...)
		pseudo = binary.BigEndian.AppendUint32(pseudo, uint32(len(udp)))
		pseudo = append(pseudo, 0, 0, 0, protoUDP)
	}
	c := make([]byte, len(udp))
	copy(c, udp)
	c[6], c[7] = 0, 0
	var sum uint32
	for i := 0; i+1 < len(pseudo); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(pseudo[i:]))
	}
	cs := Checksum(c, sum)
	if cs == 0 {
		cs = 0xffff
	}
	return cs
}

// Decode parses a frame built like Bytes builds them (no IPv4 options or
// IPv6 extension headers) and verifies its lengths and checksums. The
// result has Pad false and TTL set.
func Decode(b []byte) (Frame, error) {
	var f Frame
	if len(b) < ethHdrLen {
		return f, errors.New("short Ethernet header")
	}
	copy(f.DstMAC[:], b[0:6])
	copy(f.SrcMAC[:], b[6:12])
	etype := binary.BigEndian.Uint16(b[12:])
	b = b[ethHdrLen:]
	for etype == TypeVLAN || etype == TypeQinQ {
		if len(b) < 4 {
			return f, errors.New("short VLAN tag")
		}
		f.VLANs = append(f.VLANs, binary.BigEndian.Uint16(b))
		etype = binary.BigEndian.Uint16(b[2:])
		b = b[4:]
	}
	var udp []byte
	var src, dst netip.Addr
	switch etype {
	case TypeIPv4:
		if len(b) < ipv4Hdr || b[0] != 0x45 {
			return f, errors.New("not a plain IPv4 header")
		}
		if c := Checksum(b[:ipv4Hdr], 0); c != 0 {
			return f, fmt.Errorf("IPv4 header checksum wrong (residue %#04x)", c)
		}
		if b[9] != protoUDP {
			return f, fmt.Errorf("IPv4 protocol %d, want UDP", b[9])
		}
		total := int(binary.BigEndian.Uint16(b[2:]))
		if total != len(b) {
			return f, fmt.Errorf("IPv4 total length %d, frame has %d bytes", total, len(b))
		}
		f.TTL = b[8]
		src, dst = netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
		udp = b[ipv4Hdr:]
	case TypeIPv6:
		if len(b) < ipv6Hdr || b[0]>>4 != 6 || b[6] != protoUDP {
			return f, errors.New("not a plain IPv6/UDP header")
		}
		if pl := int(binary.BigEndian.Uint16(b[4:])); pl != len(b)-ipv6Hdr {
			return f, fmt.Errorf("IPv6 payload length %d, frame has %d bytes", pl, len(b)-ipv6Hdr)
		}
		f.TTL = b[7]
		src, dst = netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
		udp = b[ipv6Hdr:]
	default:
		return f, fmt.Errorf("EtherType %#04x", etype)
	}
	if len(udp) < udpHdr || int(binary.BigEndian.Uint16(udp[4:])) != len(udp) {
		return f, fmt.Errorf("UDP length disagrees with the %d bytes after the IP header", len(udp))
	}
	if got, want := binary.BigEndian.Uint16(udp[6:]), UDPChecksum(src, dst, udp); got != want {
		return f, fmt.Errorf("UDP checksum %#04x, want %#04x", got, want)
	}
	f.Src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(udp[0:]))
	f.Dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(udp[2:]))
	f.Payload = append([]byte(nil), udp[udpHdr:]...)
	return f, nil
}
