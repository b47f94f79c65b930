package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// decoded is a HEP v3 packet read back by decodeHEP, a reader written for
// the tests only (pinhole never reads HEP): the e2e tests use tshark as
// the independent decoder.
type decoded struct {
	Family, Protocol, ProtoType uint8
	Src, Dst                    netip.AddrPort
	Seconds, Micros, CaptureID  uint32
	Payload, CallID             []byte
	Chunks                      []uint16 // chunk types in order
}

func decodeHEP(b []byte) (decoded, error) {
	var d decoded
	if len(b) < hepHeaderLen || string(b[:4]) != "HEP3" {
		return d, errors.New("no HEP3 header")
	}
	if n := int(binary.BigEndian.Uint16(b[4:6])); n != len(b) {
		return d, fmt.Errorf("length field %d, packet %d", n, len(b))
	}
	var srcIP, dstIP netip.Addr
	var srcPort, dstPort uint16
	for rest := b[hepHeaderLen:]; len(rest) > 0; {
		if len(rest) < chunkHeaderLen {
			return d, errors.New("short chunk header")
		}
		vendor, typ := binary.BigEndian.Uint16(rest), binary.BigEndian.Uint16(rest[2:])
		n := int(binary.BigEndian.Uint16(rest[4:]))
		if n < chunkHeaderLen || n > len(rest) || vendor != 0 {
			return d, fmt.Errorf("chunk %d: length %d vendor %d", typ, n, vendor)
		}
		v := rest[chunkHeaderLen:n]
		rest = rest[n:]
		d.Chunks = append(d.Chunks, typ)
		size := map[uint16]int{chunkFamily: 1, chunkProtocol: 1, chunkSrcIPv4: 4, chunkDstIPv4: 4, chunkSrcIPv6: 16, chunkDstIPv6: 16,
			chunkSrcPort: 2, chunkDstPort: 2, chunkSeconds: 4, chunkMicros: 4, chunkProtoType: 1, chunkCaptureID: 4}[typ]
		if size > 0 && len(v) != size {
			return d, fmt.Errorf("chunk %d: %d bytes, want %d", typ, len(v), size)
		}
		switch typ {
		case chunkFamily:
			d.Family = v[0]
		case chunkProtocol:
			d.Protocol = v[0]
		case chunkSrcIPv4, chunkSrcIPv6:
			srcIP, _ = netip.AddrFromSlice(v)
		case chunkDstIPv4, chunkDstIPv6:
			dstIP, _ = netip.AddrFromSlice(v)
		case chunkSrcPort:
			srcPort = binary.BigEndian.Uint16(v)
		case chunkDstPort:
			dstPort = binary.BigEndian.Uint16(v)
		case chunkSeconds:
			d.Seconds = binary.BigEndian.Uint32(v)
		case chunkMicros:
			d.Micros = binary.BigEndian.Uint32(v)
		case chunkProtoType:
			d.ProtoType = v[0]
		case chunkCaptureID:
			d.CaptureID = binary.BigEndian.Uint32(v)
		case chunkPayload:
			d.Payload = v
		case chunkCorrelation:
			d.CallID = v
		default:
			return d, fmt.Errorf("unexpected chunk %d", typ)
		}
	}
	d.Src, d.Dst = netip.AddrPortFrom(srcIP, srcPort), netip.AddrPortFrom(dstIP, dstPort)
	return d, nil
}

func (d decoded) time() time.Time {
	return time.Unix(int64(d.Seconds), int64(d.Micros)*1000)
}
