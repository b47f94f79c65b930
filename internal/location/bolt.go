package location

import (
	"errors"
	"fmt"
	"runtime"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucket holds one key per AOR; the value is the format version byte and
// the AOR's records (record.go).
var bucket = []byte("bindings")

// boltBacking keeps the sets in a bbolt file: each batch is one
// transaction, one fsync.
type boltBacking struct {
	db *bolt.DB
}

var _ backing = (*boltBacking)(nil)

func openBolt(path string) (*boltBacking, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		// Fail instead of hanging when another pinhole holds the file.
		Timeout: time.Second,
		// The freelist is rebuilt at open instead of written at every
		// commit: cheaper commits, same durability (etcd does the same).
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("open location store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open location store %s: %w", path, err), db.Close())
	}
	return &boltBacking{db: db}, nil
}

func (b *boltBacking) load(fn func(aor string, v []byte)) error {
	return b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			fn(string(k), v)
			return nil
		})
	})
}

func (b *boltBacking) write(batch []setWrite, _ bool) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucket)
		for i, p := range batch {
			if i%yieldEvery == yieldEvery-1 {
				// A chunk's puts take milliseconds; see yieldEvery.
				runtime.Gosched()
			}
			var err error
			if p.value == nil {
				err = bk.Delete([]byte(p.aor))
			} else {
				// bbolt keeps the value until commit: the batch's arena
				// is not reused before write returns.
				err = bk.Put([]byte(p.aor), p.value)
			}
			if err != nil {
				return fmt.Errorf("write %q: %w", p.aor, err)
			}
		}
		return nil
	})
}

// yieldEvery is how many AORs a write handles between two turns given to
// the scheduler. Why: pinned to one core, pinhole has one P, and a
// write-behind chunk of 1 024 AORs (encode, B+tree insert) held it for
// several milliseconds once a second; an event loop whose socket was
// readable meanwhile waited that long, which was the p99 of absorbed
// refreshes (7–9 ms at 4 000/s, 0.9–2 ms with the flush pushed to 30 s).
const yieldEvery = 64

func (b *boltBacking) close() error { return b.db.Close() }
