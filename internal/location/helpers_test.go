package location

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// addrPortEqual lets cmp compare netip values, whose fields are unexported.
var addrPortEqual = cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })

// clock is a settable time source for Options.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Unix(1_750_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

// openTest opens a store closed at the end of the test.
func openTest(t testing.TB, opts Options) *Memory {
	t.Helper()
	m, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func tempDB(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "bindings.db")
}

// typical returns the i-th binding of the size the issue calls typical.
// refresh is the Refresh of b's own registration with cseq and expires.
func refresh(b Binding, cseq uint32, expires time.Time) Refresh {
	return Refresh{AOR: b.AOR, Contact: b.Contact, CallID: b.CallID, Flow: b.Flow, CSeq: cseq, Expires: expires}
}

func typical(i int, expires time.Time) Binding {
	b := Binding{
		AOR:     fmt.Sprintf("user%06d@example.com", i),
		Contact: fmt.Sprintf("sip:user%06d@192.168.%d.%d:5060;transport=udp;ob", i, i>>8&0xff, i&0xff),
		CallID:  fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", i, i&0xffff, i&0xfff, i&0xfff, i),
		CSeq:    uint32(i%1000 + 1),
		Q:       1000,
		Expires: expires,
		Updated: expires.Add(-time.Hour),
		Flow: Flow{
			Transport: TransportUDP,
			Remote:    netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)}), uint16(1024+i%60000)),
			Local:     netip.MustParseAddrPort("198.51.100.1:5060"),
		},
		NAT: true,
	}
	if i%2 == 0 {
		b.Instance = fmt.Sprintf("urn:uuid:%08x-0000-4000-8000-%012x", i, i)
		b.RegID = 1
	}
	return b
}

// put stores bs as the whole set of their AOR.
func put(t testing.TB, s Store, bs ...Binding) []Binding {
	t.Helper()
	got, err := s.Update(bs[0].AOR, func([]Binding) ([]Binding, error) { return bs, nil })
	if err != nil {
		t.Fatalf("Update(%q): %v", bs[0].AOR, err)
	}
	return got
}

type atomicCounter struct {
	mu sync.Mutex
	n  int
}

func (c *atomicCounter) add() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return c.n
}
