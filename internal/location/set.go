package location

import (
	"encoding/binary"
	"unsafe"
)

// A set is the packed bindings of one AOR as held in memory:
//
//	due u32le | records length u16le | length-prefixed records (record.go)
//
// due is the time of the AOR's authoritative expiry heap entry (expiry.go).
// The shard map holds only a pointer to the first byte, the length being in
// the header: a map slot of 24 bytes instead of 40 for a []byte, about 30
// bytes per binding at a million once the map's load factor is counted.
const (
	setHeader     = 6
	maxSetRecords = 1<<16 - 1 // far beyond any registrar's contacts-per-AOR limit
)

// setBytes returns the set p points to.
func setBytes(p *byte) []byte {
	h := unsafe.Slice(p, setHeader)
	return unsafe.Slice(p, setHeader+int(binary.LittleEndian.Uint16(h[4:])))
}

func setDue(blob []byte) uint32 { return binary.LittleEndian.Uint32(blob) }

func putSetDue(blob []byte, due uint32) { binary.LittleEndian.PutUint32(blob, due) }

// newSet returns an empty set with room for n bytes of records.
func newSet(due uint32, n int) []byte {
	blob := make([]byte, setHeader, setHeader+n)
	putSetDue(blob, due)
	return blob
}

// sealSet writes the records length into the header; the caller has
// checked it fits.
func sealSet(blob []byte) []byte {
	binary.LittleEndian.PutUint16(blob[4:], uint16(len(blob)-setHeader))
	return blob
}

func (s *shard) get(aor string) ([]byte, bool) {
	p, ok := s.sets[aor]
	if !ok {
		return nil, false
	}
	return setBytes(p), true
}

// put stores blob under key, which must be a string this package
// allocated (see shard).
func (s *shard) put(key string, blob []byte) { s.sets[key] = unsafe.SliceData(blob) }

// keepLive returns a new set of the records of blob live at now.
func keepLive(blob []byte, now int64, due uint32) []byte {
	kept := newSet(due, len(blob)-setHeader)
	for rest := blob[setHeader:]; len(rest) > 0; {
		rec, r, err := nextEntry(rest)
		if err != nil {
			break
		}
		if int64(recExpires(rec)) > now {
			kept = append(kept, rest[:len(rest)-len(r)]...)
		}
		rest = r
	}
	return sealSet(kept)
}
