package location

import (
	"encoding/binary"
	"fmt"
)

// backing is the durable copy of the sets Memory holds: a bbolt file on
// one box (bolt.go) or a Redis Cluster shared by several edges (redis.go).
// Memory stays the view every lookup reads; the backing is written through
// for changes, written behind for refreshes and read once at Open.
//
// Every backing stores the same value per AOR: the format version byte
// then the AOR's records (record.go), so the record decoder is the only
// reader of either.
type backing interface {
	// load calls fn for every stored AOR with its value; v is valid only
	// during the call.
	load(fn func(aor string, v []byte)) error
	// write stores a batch of values (a nil value deletes the AOR) and
	// returns once the batch is as durable as the backing promises. A
	// *partialError names the AORs that failed when others did not (a
	// Redis master down while the others answer); any other error fails
	// them all.
	// through is true for a write-through batch, whose callers have not
	// answered yet; false for a write-behind flush of refreshes.
	write(batch []setWrite, through bool) error
	close() error
}

// setWrite is one AOR's value in a batch.
type setWrite struct {
	aor   string
	value []byte // version byte and records; nil: delete the AOR
	// until is the latest expiry among the records (Unix seconds). No
	// backing reads it since Redis keys carry no TTL (sweep.go).
	until uint32
}

// appendValue appends the stored value of a set (version byte and records)
// to dst and returns it with the set's latest expiry.
func appendValue(dst, blob []byte) ([]byte, uint32) {
	dst = append(dst, formatV2)
	dst = append(dst, blob[setHeader:]...)
	var until uint32
	for rest := blob[setHeader:]; len(rest) > 0; {
		rec, r, err := nextEntry(rest)
		if err != nil {
			break // cannot happen: blobs are built by this package
		}
		rest = r
		until = max(until, binary.LittleEndian.Uint32(rec[offExpires:]))
	}
	return dst, until
}

// partialError is a batch of which only some AORs failed.
type partialError struct {
	aors map[string]error
}

func (e *partialError) Error() string {
	for aor, err := range e.aors {
		return fmt.Sprintf("%d of the batch's AORs failed, %q: %v", len(e.aors), aor, err)
	}
	return "no AOR failed"
}

func (e *partialError) Unwrap() []error {
	out := make([]error, 0, len(e.aors))
	for _, err := range e.aors {
		out = append(out, err)
	}
	return out
}

func (e *partialError) failed(aor string) bool {
	_, ok := e.aors[aor]
	return ok
}
