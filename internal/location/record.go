package location

import (
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"time"
	"unsafe"
)

// A record is one binding packed into bytes. The same bytes are held in
// memory and written to disk, so a flush copies instead of encoding:
//
//	expires u32le | updated u32le | cseq u32le | flags u8
//	q uvarint | reg-id uvarint | remote addr | local addr
//	contact | instance | call-id | path | user-agent   (each uvarint length + bytes)
//	[edge]                                               (uvarint length + bytes, when flagEdge)
//	[up-expires uvarint | upstream uvarint]              (format 2, mid-registrar only)
//
// Times are unix seconds (0 = zero time.Time; u32 lasts until 2106). The
// three fixed words come first so Touch can rewrite them in place and the
// expiry scan can read them without decoding the rest. An addr is a kind
// byte (0 none, 4 IPv4, 6 IPv6, 7 IPv6 with zone) then 4 or 16 address
// bytes, a u16le port and, for kind 7, the zone as a string: 7 bytes for an
// IPv4 flow where netip.AddrPort takes 32.
//
// The records of one AOR follow each other, each prefixed by its uvarint
// length. In memory the run is preceded by a u32le "due" word (see
// expiry.go); on disk by the format version byte.
//
// Format 2 added the optional tail: the mid-registrar's upstream expiry
// (unix seconds) and upstream index, written only when either is set, so a
// binding without an upstream registration costs no byte more and every
// format 1 record is also a valid format 2 record (Open loads both).
//
// The owning edge (docs/cluster.md) came later without a new version: a
// record with an owner sets flagEdge and carries the edge id after the
// User-Agent. Records written before have the bit clear and decode with
// Edge "" (owned by whoever holds them), and a box with no cluster.edge_id
// writes exactly the bytes it wrote before. A pinhole older than the bit
// refuses such a record as corrupt (unknown flag): an edge must not act on
// a binding whose owner it cannot see.
const (
	offExpires = 0
	offUpdated = 4
	offCSeq    = 8
	offFlags   = 12
	fixedLen   = 13

	flagTransport = 0x07 // low bits: Transport
	flagNAT       = 0x08
	flagEdge      = 0x10 // the edge id follows the User-Agent

	addrNone   = 0
	addr4      = 4
	addr6      = 6
	addr6Zone  = 7
	formatV1   = 1 // on-disk version byte before the upstream tail
	formatV2   = 2 // on-disk version byte written now
	maxUnixU32 = math.MaxUint32
)

// unixSeconds converts t to the stored form, clamping to what a u32 holds.
func unixSeconds(t time.Time) uint32 {
	if t.IsZero() {
		return 0
	}
	s := t.Unix()
	switch {
	case s <= 0:
		return 0
	case s > maxUnixU32:
		return maxUnixU32
	}
	return uint32(s)
}

func fromUnixSeconds(s uint32) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(int64(s), 0)
}

func stringSize(s string) int { return uvarintLen(uint64(len(s))) + len(s) }

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func addrSize(ap netip.AddrPort) int {
	a := ap.Addr()
	switch {
	case !ap.IsValid():
		return 1
	case a.Is4():
		return 1 + 4 + 2
	case a.Zone() != "":
		return 1 + 16 + 2 + stringSize(a.Zone())
	}
	return 1 + 16 + 2
}

// recordSize is the exact length appendRecord adds for b.
func recordSize(b *Binding) int {
	return fixedLen + uvarintLen(uint64(b.Q)) + uvarintLen(uint64(b.RegID)) +
		addrSize(b.Flow.Remote) + addrSize(b.Flow.Local) +
		stringSize(b.Contact) + stringSize(b.Instance) + stringSize(b.CallID) +
		stringSize(b.Path) + stringSize(b.UserAgent) + edgeSize(b) + upstreamSize(b)
}

func edgeSize(b *Binding) int {
	if b.Edge == "" {
		return 0
	}
	return stringSize(b.Edge)
}

// hasUpstream reports whether b carries the format 2 tail.
func hasUpstream(b *Binding) bool { return !b.UpExpires.IsZero() || b.Upstream != 0 }

func upstreamSize(b *Binding) int {
	if !hasUpstream(b) {
		return 0
	}
	return uvarintLen(uint64(unixSeconds(b.UpExpires))) + uvarintLen(uint64(b.Upstream))
}

// appendEntry appends b as a length-prefixed record.
func appendEntry(dst []byte, b *Binding) []byte {
	dst = binary.AppendUvarint(dst, uint64(recordSize(b)))
	dst = binary.LittleEndian.AppendUint32(dst, unixSeconds(b.Expires))
	dst = binary.LittleEndian.AppendUint32(dst, unixSeconds(b.Updated))
	dst = binary.LittleEndian.AppendUint32(dst, b.CSeq)
	flags := byte(b.Flow.Transport) & flagTransport
	if b.NAT {
		flags |= flagNAT
	}
	if b.Edge != "" {
		flags |= flagEdge
	}
	dst = append(dst, flags)
	dst = binary.AppendUvarint(dst, uint64(b.Q))
	dst = binary.AppendUvarint(dst, uint64(b.RegID))
	dst = appendAddr(dst, b.Flow.Remote)
	dst = appendAddr(dst, b.Flow.Local)
	for _, s := range [...]string{b.Contact, b.Instance, b.CallID, b.Path, b.UserAgent} {
		dst = appendString(dst, s)
	}
	if b.Edge != "" {
		dst = appendString(dst, b.Edge)
	}
	if hasUpstream(b) {
		dst = binary.AppendUvarint(dst, uint64(unixSeconds(b.UpExpires)))
		dst = binary.AppendUvarint(dst, uint64(b.Upstream))
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendAddr(dst []byte, ap netip.AddrPort) []byte {
	a := ap.Addr()
	switch {
	case !ap.IsValid():
		return append(dst, addrNone)
	case a.Is4():
		b := a.As4()
		dst = append(dst, addr4)
		dst = append(dst, b[:]...)
	default:
		b := a.As16()
		if a.Zone() != "" {
			dst = append(dst, addr6Zone)
		} else {
			dst = append(dst, addr6)
		}
		dst = append(dst, b[:]...)
	}
	dst = binary.LittleEndian.AppendUint16(dst, ap.Port())
	if a.Zone() != "" {
		dst = appendString(dst, a.Zone())
	}
	return dst
}

// nextEntry splits the first length-prefixed record off b.
func nextEntry(b []byte) (rec, rest []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) || n < fixedLen {
		return nil, nil, fmt.Errorf("record length: %w", ErrCorrupt)
	}
	end := k + int(n)
	return b[k:end], b[end:], nil
}

func recExpires(rec []byte) uint32 { return binary.LittleEndian.Uint32(rec[offExpires:]) }

// reader decodes the variable part of a record. The strings it returns
// alias the record's bytes: that is safe because nothing ever writes to the
// variable part of a record once built (Touch rewrites only the fixed
// words), and it saves Lookup an allocation per string.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) uvarint(max uint64) uint64 {
	v, k := binary.Uvarint(r.b)
	if k <= 0 || v > max {
		r.bad = true
		r.b = nil
		return 0
	}
	r.b = r.b[k:]
	return v
}

func (r *reader) bytes(n int) []byte {
	if r.bad || n > len(r.b) {
		r.bad = true
		r.b = nil
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) string() string {
	n := r.uvarint(uint64(len(r.b)))
	return aliasString(r.bytes(int(n)))
}

func (r *reader) addr() netip.AddrPort {
	kind := r.bytes(1)
	if r.bad {
		return netip.AddrPort{}
	}
	var a netip.Addr
	switch kind[0] {
	case addrNone:
		return netip.AddrPort{}
	case addr4:
		b := r.bytes(4)
		if r.bad {
			return netip.AddrPort{}
		}
		a = netip.AddrFrom4([4]byte(b))
	case addr6, addr6Zone:
		b := r.bytes(16)
		if r.bad {
			return netip.AddrPort{}
		}
		a = netip.AddrFrom16([16]byte(b))
	default:
		r.bad = true
		return netip.AddrPort{}
	}
	port := r.bytes(2)
	if r.bad {
		return netip.AddrPort{}
	}
	if kind[0] == addr6Zone {
		zone := r.string()
		if zone == "" {
			r.bad = true // an empty zone is written as kind 6
		}
		a = a.WithZone(zone)
	}
	return netip.AddrPortFrom(a, binary.LittleEndian.Uint16(port))
}

func aliasString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// recRefreshes reports whether the valid record rec is the binding r
// refreshes: same Contact, Call-ID and flow. It does not allocate.
func recRefreshes(rec []byte, r *Refresh) bool {
	if Transport(rec[offFlags]&flagTransport) != r.Flow.Transport {
		return false
	}
	rd := reader{b: rec[fixedLen:]}
	rd.uvarint(math.MaxUint16)
	rd.uvarint(math.MaxUint32)
	if rd.addr() != r.Flow.Remote || rd.addr() != r.Flow.Local || rd.string() != r.Contact {
		return false
	}
	rd.string() // instance
	return rd.string() == r.CallID && !rd.bad
}

// decodeRecord decodes one record of aor. The strings alias rec (see reader).
func decodeRecord(aor string, rec []byte) (Binding, error) {
	if len(rec) < fixedLen {
		return Binding{}, fmt.Errorf("record of %d bytes: %w", len(rec), ErrCorrupt)
	}
	flags := rec[offFlags]
	b := Binding{
		AOR:     aor,
		Expires: fromUnixSeconds(recExpires(rec)),
		Updated: fromUnixSeconds(binary.LittleEndian.Uint32(rec[offUpdated:])),
		CSeq:    binary.LittleEndian.Uint32(rec[offCSeq:]),
		NAT:     flags&flagNAT != 0,
	}
	b.Flow.Transport = Transport(flags & flagTransport)
	if flags&^(flagTransport|flagNAT|flagEdge) != 0 || b.Flow.Transport > TransportWSS {
		return Binding{}, fmt.Errorf("record flags %#x: %w", flags, ErrCorrupt)
	}
	r := reader{b: rec[fixedLen:]}
	b.Q = uint16(r.uvarint(math.MaxUint16))
	b.RegID = uint32(r.uvarint(math.MaxUint32))
	b.Flow.Remote = r.addr()
	b.Flow.Local = r.addr()
	b.Contact = r.string()
	b.Instance = r.string()
	b.CallID = r.string()
	b.Path = r.string()
	b.UserAgent = r.string()
	if flags&flagEdge != 0 {
		b.Edge = r.string()
		if b.Edge == "" {
			r.bad = true // no owner is written as a clear bit
		}
	}
	if len(r.b) > 0 && !r.bad {
		b.UpExpires = fromUnixSeconds(uint32(r.uvarint(math.MaxUint32)))
		b.Upstream = uint8(r.uvarint(math.MaxUint8))
		if !hasUpstream(&b) {
			r.bad = true // a zero tail is never written: one encoding per binding
		}
	}
	if r.bad || len(r.b) != 0 {
		return Binding{}, fmt.Errorf("record fields: %w", ErrCorrupt)
	}
	return b, nil
}

// encodeValue is the on-disk form of bs: version byte and records.
func encodeValue(bs []Binding) []byte {
	n := 1
	for i := range bs {
		s := recordSize(&bs[i])
		n += uvarintLen(uint64(s)) + s
	}
	v := make([]byte, 1, n)
	v[0] = formatV2
	for i := range bs {
		v = appendEntry(v, &bs[i])
	}
	return v
}

// decodeValue decodes a value read from disk. The strings alias v, so v
// must not change afterwards (bbolt's own buffers must be copied first).
func decodeValue(aor string, v []byte) ([]Binding, error) {
	if len(v) == 0 {
		return nil, fmt.Errorf("empty value: %w", ErrCorrupt)
	}
	if v[0] != formatV1 && v[0] != formatV2 {
		return nil, fmt.Errorf("format version %d: %w", v[0], ErrCorrupt)
	}
	var out []Binding
	for rest := v[1:]; len(rest) > 0; {
		rec, r, err := nextEntry(rest)
		if err != nil {
			return nil, err
		}
		rest = r
		b, err := decodeRecord(aor, rec)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no records: %w", ErrCorrupt)
	}
	return out, nil
}
