package capture

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"time"
)

// Transport is the IP protocol a SIP message travelled over, as HEP's
// "IP protocol ID" chunk carries it. HEP v3 has no chunk for TLS or
// WebSocket: TLS and WS(S) are TCP to it.
type Transport uint8

// IP protocol numbers (IANA).
const (
	UDP Transport = 17
	TCP Transport = 6
)

// Message is one SIP message as it crossed the wire, and what HEP says
// about it.
type Message struct {
	Src, Dst  netip.AddrPort
	Transport Transport
	Time      time.Time
	CaptureID uint32 // the capture agent, so a collector tells edges apart
	CallID    []byte // the correlation id; empty: no chunk
	Payload   []byte // the SIP message, decrypted
}

// HEP v3 framing (Homer's HEP specification): "HEP3", the packet's total
// length as a 16-bit big-endian number, then chunks, each a 6-byte header
// (vendor id, type id, length including the header, all 16-bit big
// endian) and its value. Vendor 0 is the generic chunk set used here.
const (
	hepHeaderLen   = 6
	chunkHeaderLen = 6
	maxPacket      = 1<<16 - 1
)

// Generic chunk types (vendor 0).
const (
	chunkFamily      = 1  // uint8: 2 IPv4, 10 IPv6
	chunkProtocol    = 2  // uint8: IP protocol number
	chunkSrcIPv4     = 3  // 4 bytes
	chunkDstIPv4     = 4  // 4 bytes
	chunkSrcIPv6     = 5  // 16 bytes
	chunkDstIPv6     = 6  // 16 bytes
	chunkSrcPort     = 7  // uint16
	chunkDstPort     = 8  // uint16
	chunkSeconds     = 9  // uint32, seconds since the epoch
	chunkMicros      = 10 // uint32, microseconds added to the seconds
	chunkProtoType   = 11 // uint8: 1 SIP
	chunkCaptureID   = 12 // uint32
	chunkPayload     = 15 // the captured message
	chunkCorrelation = 17 // string: the Call-ID for SIP
)

// Address families as HEP carries them (the Linux AF_ values).
const (
	familyIPv4 = 2
	familyIPv6 = 10
)

const protoTypeSIP = 1

// ErrTooLarge says a message does not fit in one HEP packet, whose length
// field is 16 bits.
var ErrTooLarge = errors.New("capture: message too large for one HEP packet")

// AppendHEP appends m as one HEP v3 packet to dst. IPv4 addresses (also
// IPv4-mapped ones) go in the IPv4 chunks when both ends are IPv4, else
// both ends go in the IPv6 chunks. It allocates only when dst is too
// small.
func AppendHEP(dst []byte, m *Message) ([]byte, error) {
	src, dstIP := m.Src.Addr().Unmap(), m.Dst.Addr().Unmap()
	v4 := src.Is4() && dstIP.Is4()
	addrLen := 16
	if v4 {
		addrLen = 4
	}
	n := hepHeaderLen +
		2*(chunkHeaderLen+1) + // family, protocol
		2*(chunkHeaderLen+addrLen) +
		2*(chunkHeaderLen+2) + // ports
		2*(chunkHeaderLen+4) + // time
		chunkHeaderLen + 1 + // protocol type
		chunkHeaderLen + 4 + // capture id
		chunkHeaderLen + len(m.Payload)
	if len(m.CallID) > 0 {
		n += chunkHeaderLen + len(m.CallID)
	}
	if n > maxPacket {
		return dst, ErrTooLarge
	}
	b := append(dst, "HEP3"...)
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	if v4 {
		b = appendUint8(b, chunkFamily, familyIPv4)
	} else {
		b = appendUint8(b, chunkFamily, familyIPv6)
	}
	b = appendUint8(b, chunkProtocol, uint8(m.Transport))
	if v4 {
		s, d := src.As4(), dstIP.As4()
		b = appendChunk(b, chunkSrcIPv4, s[:])
		b = appendChunk(b, chunkDstIPv4, d[:])
	} else {
		s, d := src.As16(), dstIP.As16()
		b = appendChunk(b, chunkSrcIPv6, s[:])
		b = appendChunk(b, chunkDstIPv6, d[:])
	}
	b = appendUint16(b, chunkSrcPort, m.Src.Port())
	b = appendUint16(b, chunkDstPort, m.Dst.Port())
	b = appendUint32(b, chunkSeconds, uint32(m.Time.Unix()))
	b = appendUint32(b, chunkMicros, uint32(m.Time.Nanosecond()/1000))
	b = appendUint8(b, chunkProtoType, protoTypeSIP)
	b = appendUint32(b, chunkCaptureID, m.CaptureID)
	b = appendChunk(b, chunkPayload, m.Payload)
	if len(m.CallID) > 0 {
		b = appendChunk(b, chunkCorrelation, m.CallID)
	}
	return b, nil
}

func appendHeader(b []byte, typ uint16, valueLen int) []byte {
	b = binary.BigEndian.AppendUint16(b, 0) // vendor: generic
	b = binary.BigEndian.AppendUint16(b, typ)
	return binary.BigEndian.AppendUint16(b, uint16(chunkHeaderLen+valueLen))
}

func appendChunk(b []byte, typ uint16, v []byte) []byte {
	return append(appendHeader(b, typ, len(v)), v...)
}

func appendUint8(b []byte, typ uint16, v uint8) []byte {
	return append(appendHeader(b, typ, 1), v)
}

func appendUint16(b []byte, typ uint16, v uint16) []byte {
	return binary.BigEndian.AppendUint16(appendHeader(b, typ, 2), v)
}

func appendUint32(b []byte, typ uint16, v uint32) []byte {
	return binary.BigEndian.AppendUint32(appendHeader(b, typ, 4), v)
}
