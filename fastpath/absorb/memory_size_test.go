package absorb

import (
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/slowpath/registrar"
)

// The fast path's budget per AOR with one registration of one Contact
// (the common device), on top of the location store's own: live heap
// after a full GC, and objects the collector marks on every cycle.
// Measured on 2026-12-07 (Go 1.26, amd64) at 20 000 AORs: 1 007 B and
// 5.1 objects either way (docs/fastpath.md, "Memory per AOR").
const (
	maxBytesPerAOR   = 1050
	maxObjectsPerAOR = 6
)

// memoryDevice is the REGISTER the measurement fills the cache with, a
// Grandstream phone from fastpath's corpus (one Contact with reg-id and
// +sip.instance, Supported, User-Agent, Expires).
func memoryDevice(tb testing.TB) string {
	tb.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "testdata", "corpus", "grandstream.sip"))
	if err != nil {
		tb.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(raw), "\n")
	return strings.ReplaceAll(rest, "\n", "\r\n")
}

// heapUse is the live heap after a full GC.
type heapUse struct{ bytes, objects int64 }

func liveHeap() heapUse {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC() // the first cycle's finalizers and sweeping settle
	runtime.ReadMemStats(&m)
	return heapUse{int64(m.HeapAlloc), int64(m.HeapObjects)}
}

func (a heapUse) minus(b heapUse) heapUse { return heapUse{a.bytes - b.bytes, a.objects - b.objects} }

// fastPathPerAOR registers n devices (each its own AOR, source and
// Call-ID) through the registrar and fills a cache from each 200, by Fill
// ("sipgo") or PrepareRaw ("bytes"). It returns the live heap the cache
// holds per AOR: the heap with the store and the filled cache, less the
// heap once the cache is dropped (the store's and registrar's share) and
// less an empty cache of the same size (ristretto's counters, fixed
// whatever the number of AORs).
func fastPathPerAOR(tb testing.TB, n int, mode string) (_, slow perAOR, fixed heapUse) {
	tb.Helper()
	tmpl := memoryDevice(tb)
	start := liveHeap()
	store, err := location.Open(location.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	defer store.Close()
	reg, err := registrar.New(registrar.Config{Domains: []string{"example.com"}, MinExpires: 60, MaxExpires: 3600, DefaultExpires: 600, MaxContacts: 5}, store, nil)
	if err != nil {
		tb.Fatal(err)
	}
	opt := Options{Store: store, MaxEntries: int64(2 * n)}

	before := liveHeap()
	empty, err := New(opt)
	if err != nil {
		tb.Fatal(err)
	}
	fixed = liveHeap().minus(before)
	empty.Close()

	c, err := New(opt)
	if err != nil {
		tb.Fatal(err)
	}
	parser := sip.NewParser()
	for i := range n {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 5060)
		data := []byte(strings.NewReplacer("frank", "u"+strconv.Itoa(i), "{{LOCAL}}", src.String(),
			"{{CALLID}}", "mem-"+strconv.Itoa(i), "{{CSEQ}}", "1", "{{BRANCH}}", "b1").Replace(tmpl))
		msg, err := parser.ParseSIP(data)
		if err != nil {
			tb.Fatal(err)
		}
		req := msg.(*sip.Request)
		req.SetSource(src.String())
		req.SetTransport("UDP")
		fl := location.Flow{Transport: location.TransportUDP, Remote: src, Local: local}
		var fill RawFill
		if mode == "bytes" {
			var ok bool
			if fill, ok = c.PrepareRaw(data); !ok {
				tb.Fatal("PrepareRaw does not vouch for the device")
			}
		}
		res := reg.Process(req, fl)
		if res.StatusCode != 200 {
			tb.Fatalf("device %d: %d %s", i, res.StatusCode, res.Reason)
		}
		if mode == "bytes" {
			fill([]byte(res.String()), fl)
		} else {
			c.Fill(req, res, fl)
		}
		c.Wait()
	}
	full := liveHeap()
	if p := os.Getenv("PINHOLE_FASTPATH_HEAPPROFILE"); p != "" {
		// What holds the heap, for go tool pprof -sample_index=inuse_space
		// (with -memprofilerate=64 to see every AOR's objects).
		f, err := os.Create(p + "." + mode)
		if err != nil {
			tb.Fatal(err)
		}
		if err := pprof.WriteHeapProfile(f); err != nil {
			tb.Fatal(err)
		}
		f.Close()
	}
	if got := c.m.fills[fillStored].Load(); got != uint64(n) {
		tb.Fatalf("%d of %d fills stored", got, n)
	}
	for i := range n {
		// Every AOR is held: nothing was evicted or dropped.
		if _, ok := c.rc.Get(c.key("u" + strconv.Itoa(i) + "@example.com")); !ok {
			tb.Fatalf("AOR %d has no entry", i)
		}
	}
	c.Close()
	storeOnly := liveHeap()
	runtime.KeepAlive(store)
	runtime.KeepAlive(reg)
	held := full.minus(storeOnly).minus(fixed)
	return per(held, n), per(storeOnly.minus(start), n), fixed
}

func per(h heapUse, n int) perAOR {
	return perAOR{float64(h.bytes) / float64(n), float64(h.objects) / float64(n)}
}

// perAOR is a heap use divided among the AORs.
type perAOR struct{ bytes, objects float64 }

// TestMemoryPerAOR asserts sizes, not timings: the fast path's live heap
// and objects per AOR, filled either way, stay within the budget.
// PINHOLE_FASTPATH_MILLION=1 adds the figure at a million AORs (three
// minutes, 2 GB of heap).
func TestMemoryPerAOR(t *testing.T) {
	if raceEnabled {
		t.Skip("heap sizes differ under the race detector")
	}
	sizes := []int{20_000}
	if os.Getenv("PINHOLE_FASTPATH_MILLION") != "" {
		sizes = append(sizes, 1_000_000)
	}
	for _, n := range sizes {
		for _, mode := range []string{"sipgo", "bytes"} {
			got, slow, fixed := fastPathPerAOR(t, n, mode)
			t.Logf("%d AORs filled from %s: %.0f bytes and %.1f objects per AOR; the empty cache %d bytes, %d objects; "+
				"the store and registrar alone %.0f bytes and %.1f objects per AOR",
				n, mode, got.bytes, got.objects, fixed.bytes, fixed.objects, slow.bytes, slow.objects)
			if got.bytes > maxBytesPerAOR {
				t.Errorf("%d AORs filled from %s: %.0f bytes per AOR, budget %d", n, mode, got.bytes, maxBytesPerAOR)
			}
			if got.objects > maxObjectsPerAOR {
				t.Errorf("%d AORs filled from %s: %.1f objects per AOR, budget %d", n, mode, got.objects, maxObjectsPerAOR)
			}
		}
	}
}

// maxFixedBytes bounds the empty cache at the default cache_size of a
// million AORs: ristretto's admission counters and its own structures,
// held whatever the number of devices. Measured on 2026-12-07 (Go 1.26,
// amd64): 101 MB at ten counters per AOR, 9.0 MB at one (counters).
const maxFixedBytes = 12 << 20

// TestMemoryOfEmptyCache: an empty cache sized for a million AORs, the
// default cache_size, stays within maxFixedBytes.
func TestMemoryOfEmptyCache(t *testing.T) {
	if raceEnabled {
		t.Skip("heap sizes differ under the race detector")
	}
	store, err := location.Open(location.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	before := liveHeap()
	c, err := New(Options{Store: store, MaxEntries: 1_000_000})
	if err != nil {
		t.Fatal(err)
	}
	got := liveHeap().minus(before)
	c.Close()
	t.Logf("empty cache of 1 000 000 AORs: %d bytes, %d objects", got.bytes, got.objects)
	if got.bytes > maxFixedBytes {
		t.Errorf("empty cache of 1 000 000 AORs: %d bytes, budget %d", got.bytes, maxFixedBytes)
	}
}
