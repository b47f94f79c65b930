package location

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
)

// The mid-registrar's upstream tail (format 2) round-trips, costs nothing
// when unset, and format 1 values written before it still load.
func TestRecordUpstreamTail(t *testing.T) {
	exp := time.Unix(1_750_000_000, 0)
	plain := typical(3, exp)
	withUp := plain
	withUp.UpExpires = exp.Add(time.Hour)
	withUp.Upstream = 2
	indexOnly := plain
	indexOnly.Upstream = 1

	if got, want := recordSize(&withUp), recordSize(&plain)+5+1; got != want {
		t.Errorf("recordSize with upstream = %d, want %d (5-byte seconds, 1-byte index)", got, want)
	}
	for _, b := range []Binding{plain, withUp, indexOnly} {
		v := encodeValue([]Binding{b})
		if v[0] != formatV2 {
			t.Fatalf("version byte %d, want %d", v[0], formatV2)
		}
		got, err := decodeValue(b.AOR, v)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]Binding{b}, got, addrPortEqual); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}

	// A format 1 value is the same bytes as format 2 without the tail.
	v1 := encodeValue([]Binding{plain})
	v1[0] = formatV1
	got, err := decodeValue(plain.AOR, v1)
	if err != nil {
		t.Fatalf("format 1 value: %v", err)
	}
	if diff := cmp.Diff([]Binding{plain}, got, addrPortEqual); diff != "" {
		t.Errorf("format 1 (-want +got):\n%s", diff)
	}

	// A zero tail is never written, so it is refused: one encoding each.
	zero := append(encodeValue([]Binding{plain}), 0, 0)
	zero[1] += 2 // the record's length prefix (one byte for this size)
	if _, err := decodeValue(plain.AOR, zero); !errors.Is(err, ErrCorrupt) {
		t.Errorf("zero tail: err = %v, want ErrCorrupt", err)
	}
}

// A store written with format 1 opens and keeps its bindings.
func TestOpenLoadsFormat1(t *testing.T) {
	path := t.TempDir() + "/b.db"
	m, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	b := typical(5, time.Now().Add(time.Hour).Truncate(time.Second))
	b.Updated = time.Now().Truncate(time.Second)
	if _, err := m.Update(b.AOR, func([]Binding) ([]Binding, error) { return []Binding{b}, nil }); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	rewriteVersion(t, path, b.AOR, formatV1)
	m, err = Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if diff := cmp.Diff([]Binding{b}, m.Lookup(b.AOR), addrPortEqual); diff != "" {
		t.Errorf("after reopening a format 1 store (-want +got):\n%s", diff)
	}
}

// rewriteVersion sets the version byte of aor's value on disk.
func rewriteVersion(t *testing.T, path, aor string, version byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		v := append([]byte(nil), b.Get([]byte(aor))...)
		if len(v) == 0 {
			return errors.New("no value")
		}
		v[0] = version
		return b.Put([]byte(aor), v)
	}); err != nil {
		t.Fatalf("rewrite version: %v", err)
	}
}
