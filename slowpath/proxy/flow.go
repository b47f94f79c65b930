package proxy

import (
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/pinhole-sip/pinhole/internal/location"
)

// ErrFlowParam is returned for a flow parameter that pinhole did not write.
var ErrFlowParam = errors.New("malformed flow parameter")

// flowEncoding is lower-case base32 without padding: only letters and
// digits, so the value is a SIP URI "pvalue" token (RFC 3261 §25.1) and
// survives any proxy that lower-cases parameters.
var flowEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").
	WithPadding(base32.NoPadding)

const (
	flowTransportMask = 0x0f
	flowRemote6       = 1 << 4
	flowLocal6        = 1 << 5
	// maxFlowBytes: flags, two IPv6 addresses and two ports.
	maxFlowBytes = 1 + 2*(16+2)
)

// FlowParam encodes f for the nc= and nr= parameters of pinhole's
// Record-Route URI: one flags byte (transport in the low nibble, bit 4 set
// when the remote address is IPv6, bit 5 when the local one is), then the
// remote address and port, then the local address and port, in network
// byte order, all in lower-case base32 without padding. An IPv4 flow takes
// 21 characters. IPv4-mapped IPv6 addresses are written as IPv4 and zones
// are dropped: neither can name a different socket on the wire.
//
// The value is compact, not secret: anyone on the dialog can decode it.
func FlowParam(f location.Flow) string {
	var buf [maxFlowBytes]byte
	b := appendFlow(buf[:0], f)
	return flowEncoding.EncodeToString(b)
}

func appendFlow(b []byte, f location.Flow) []byte {
	remote, local := f.Remote.Addr().Unmap(), f.Local.Addr().Unmap()
	flags := byte(f.Transport) & flowTransportMask
	if remote.Is6() {
		flags |= flowRemote6
	}
	if local.Is6() {
		flags |= flowLocal6
	}
	b = append(b, flags)
	b = appendAddr(b, remote)
	b = binary.BigEndian.AppendUint16(b, f.Remote.Port())
	b = appendAddr(b, local)
	return binary.BigEndian.AppendUint16(b, f.Local.Port())
}

func appendAddr(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		v := a.As4()
		return append(b, v[:]...)
	}
	v := a.As16()
	return append(b, v[:]...)
}

// ParseFlowParam decodes a value written by FlowParam. It accepts exactly
// the strings FlowParam produces, so a decoded flow encodes back to s.
func ParseFlowParam(s string) (location.Flow, error) {
	if len(s) > flowEncoding.EncodedLen(maxFlowBytes) {
		return location.Flow{}, fmt.Errorf("decode flow %q: too long: %w", s, ErrFlowParam)
	}
	var buf [maxFlowBytes]byte
	n, err := flowEncoding.Decode(buf[:], []byte(s))
	if err != nil {
		return location.Flow{}, fmt.Errorf("decode flow %q: %w", s, errors.Join(ErrFlowParam, err))
	}
	b := buf[:n]
	if len(b) < 1 {
		return location.Flow{}, fmt.Errorf("decode flow %q: empty: %w", s, ErrFlowParam)
	}
	flags := b[0]
	t := location.Transport(flags & flowTransportMask)
	if flags&^(flowTransportMask|flowRemote6|flowLocal6) != 0 || t < location.TransportUDP || t > location.TransportWSS {
		return location.Flow{}, fmt.Errorf("decode flow %q: flags %#x: %w", s, flags, ErrFlowParam)
	}
	b = b[1:]
	remote, b, ok := takeAddrPort(b, flags&flowRemote6 != 0)
	if !ok {
		return location.Flow{}, fmt.Errorf("decode flow %q: remote address: %w", s, ErrFlowParam)
	}
	local, b, ok := takeAddrPort(b, flags&flowLocal6 != 0)
	if !ok || len(b) != 0 {
		return location.Flow{}, fmt.Errorf("decode flow %q: local address: %w", s, ErrFlowParam)
	}
	f := location.Flow{Transport: t, Remote: remote, Local: local}
	// base32 ignores the unused low bits of the last character; insist on
	// zeros there so that every flow has exactly one spelling.
	if FlowParam(f) != s {
		return location.Flow{}, fmt.Errorf("decode flow %q: not canonical: %w", s, ErrFlowParam)
	}
	return f, nil
}

func takeAddrPort(b []byte, v6 bool) (netip.AddrPort, []byte, bool) {
	size := 4
	if v6 {
		size = 16
	}
	if len(b) < size+2 {
		return netip.AddrPort{}, b, false
	}
	a, _ := netip.AddrFromSlice(b[:size])
	if v6 && a.Is4In6() {
		// FlowParam writes these as IPv4; accepting them would give
		// two spellings for one flow.
		return netip.AddrPort{}, b, false
	}
	port := binary.BigEndian.Uint16(b[size:])
	return netip.AddrPortFrom(a, port), b[size+2:], true
}
