package retrans

import (
	"bytes"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTest(arena, entries uint64) (*Cache, *clock) {
	c := NewSized(arena, entries)
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	c.now = clk.Now
	return c, clk
}

func TestBeginFinishAnswer(t *testing.T) {
	c, _ := newTest(1<<16, 64)
	k := c.Key([]byte("z9hG4bK-1|10.0.0.1:5060|1 REGISTER|10.0.0.1:5060"))
	if _, st := c.Begin(k, nil); st != Fresh {
		t.Fatalf("first Begin: %v, want Fresh", st)
	}
	// A retransmission while the first is processed is dropped.
	if _, st := c.Begin(k, nil); st != Pending {
		t.Fatalf("Begin while processing: %v, want Pending", st)
	}
	res := []byte("SIP/2.0 200 OK\r\nCSeq: 1 REGISTER\r\n\r\n")
	c.Finish(k, res)
	res[0] = 'X' // Finish copied it
	got, st := c.Begin(k, []byte("prefix:"))
	if st != Answered || string(got) != "prefix:SIP/2.0 200 OK\r\nCSeq: 1 REGISTER\r\n\r\n" {
		t.Fatalf("retransmission: %v %q", st, got)
	}
	// Another transaction is unknown.
	if _, st := c.Begin(c.Key([]byte("other")), nil); st != Fresh {
		t.Fatalf("other key: %v", st)
	}
	st2 := c.Stats()
	if st2.Answered != 1 || st2.Pending != 1 || st2.Stored != 1 {
		t.Fatalf("stats %+v", st2)
	}
}

// TestPeek: Peek finds what Begin finds but marks nothing, so a key that
// was only peeked at is Fresh for Begin.
func TestPeek(t *testing.T) {
	c, _ := newTest(1<<16, 64)
	k := c.Key([]byte("peeked"))
	if _, st := c.Peek(k, nil); st != Fresh {
		t.Fatalf("Peek of an unknown key: %v", st)
	}
	if _, st := c.Begin(k, nil); st != Fresh {
		t.Fatalf("Begin after a Peek: %v, want Fresh (Peek left a mark)", st)
	}
	if _, st := c.Peek(k, nil); st != Pending {
		t.Fatalf("Peek while processing: %v, want Pending", st)
	}
	c.Finish(k, []byte("SIP/2.0 200 OK\r\n\r\n"))
	if got, st := c.Peek(k, nil); st != Answered || string(got) != "SIP/2.0 200 OK\r\n\r\n" {
		t.Fatalf("Peek after Finish: %v %q", st, got)
	}
}

func TestForget(t *testing.T) {
	c, _ := newTest(1<<16, 64)
	k := c.Key([]byte("a"))
	c.Begin(k, nil)
	c.Forget(k)
	if _, st := c.Begin(k, nil); st != Fresh {
		t.Fatalf("after Forget: %v, want Fresh", st)
	}
}

// A pending mark left behind (a request never finished) stops holding
// retransmissions back after Timer J.
func TestPendingLapses(t *testing.T) {
	c, clk := newTest(1<<16, 64)
	k := c.Key([]byte("a"))
	c.Begin(k, nil)
	clk.add(TimerJ)
	if _, st := c.Begin(k, nil); st != Fresh {
		t.Fatalf("after Timer J: %v, want Fresh", st)
	}
}

// The arena overwrites oldest first, counts what it evicts, and an
// evicted key is unknown again (processed afresh, never answered with
// another request's bytes).
func TestEvictionOldestFirst(t *testing.T) {
	const arena = 8192
	c, clk := newTest(arena, 1024)
	body := func(i int) []byte {
		return []byte(fmt.Sprintf("SIP/2.0 200 OK\r\nCall-ID: %06d\r\n%s\r\n", i, bytes.Repeat([]byte("x"), 100+i%50)))
	}
	keys := make([]uint64, 400)
	for i := range keys {
		keys[i] = c.Key([]byte(fmt.Sprint("k", i)))
		c.Begin(keys[i], nil)
		c.Finish(keys[i], body(i))
		clk.add(10 * time.Millisecond)
	}
	st := c.Stats()
	if st.Bytes > arena || st.Evicted == 0 || st.Stored != 400 {
		t.Fatalf("stats %+v", st)
	}
	if st.EvictedEarly != st.Evicted {
		t.Errorf("all evictions were younger than Timer J: %+v", st)
	}
	// The newest are answered with their own bytes, the oldest not at all.
	for i := len(keys) - 1; i >= 0; i-- {
		got, s := c.Begin(keys[i], nil)
		if s == Answered {
			if !bytes.Equal(got, body(i)) {
				t.Fatalf("key %d answered with %q", i, got)
			}
			continue
		}
		if s != Fresh {
			t.Fatalf("key %d: %v", i, s)
		}
		if i > len(keys)-10 {
			t.Fatalf("key %d of the newest was evicted", i)
		}
		// Every older one is gone too: eviction is oldest first.
		for j := i - 1; j >= 0; j-- {
			if _, s := c.Begin(keys[j], nil); s == Answered {
				t.Fatalf("key %d answered though the newer %d was evicted", j, i)
			}
		}
		break
	}
}

// Responses larger than a quarter of the arena are not kept.
func TestTooBig(t *testing.T) {
	c, _ := newTest(4096, 16)
	k := c.Key([]byte("big"))
	c.Begin(k, nil)
	c.Finish(k, make([]byte, 2000))
	if _, st := c.Begin(k, nil); st != Fresh || c.Stats().TooBig != 1 {
		t.Fatalf("big response kept: %v %+v", st, c.Stats())
	}
}

// Wrapping many times over arenas of awkward sizes never corrupts a
// record: every answer is exactly what was stored under its key.
func TestWrapIntegrity(t *testing.T) {
	for _, arena := range []uint64{4096, 4099, 5000, 65537} {
		c, _ := newTest(arena, 256)
		stored := map[uint64][]byte{}
		for i := range 5000 {
			k := c.Key([]byte(fmt.Sprint(arena, "/", i)))
			c.Begin(k, nil)
			r := bytes.Repeat([]byte{byte(i)}, 1+(i*37)%900)
			c.Finish(k, r)
			stored[k] = r
			if i%7 == 0 {
				for k2, want := range stored {
					if got, s := c.Begin(k2, nil); s == Answered && !bytes.Equal(got, want) {
						t.Fatalf("arena %d: wrong bytes for a key", arena)
					} else if s != Answered {
						delete(stored, k2)
					}
					break
				}
			}
		}
		if st := c.Stats(); st.Bytes > arena {
			t.Fatalf("arena %d holds %d bytes", arena, st.Bytes)
		}
	}
}

// The cache is two allocations whatever it holds.
func TestNoAllocationPerResponse(t *testing.T) {
	c, _ := newTest(1<<20, 2048)
	res := bytes.Repeat([]byte("r"), 500)
	keys := make([]uint64, 1000)
	for i := range keys {
		keys[i] = c.Key([]byte(fmt.Sprint(i)))
	}
	dst := make([]byte, 0, 1024)
	allocs := testing.AllocsPerRun(5, func() {
		for _, k := range keys {
			c.Forget(k)
			c.Begin(k, nil)
			c.Finish(k, res)
			dst, _ = c.Begin(k, dst[:0])
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per 1000 responses", allocs)
	}
	runtime.KeepAlive(dst)
}

// TestConcurrent: answers remembered from several goroutines are found by
// each. The cache holds twice what the test writes (New(1000): 32 000
// responses, 16 000 written), so that eviction
// never takes an answer between its Finish and its Begin here (TestEvictionOldestFirst covers eviction); New(100)
// held 3 200 and, with the goroutines descheduled under load, did.
func TestConcurrent(t *testing.T) {
	c := New(1000)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				k := c.Key([]byte(fmt.Sprint(g, "/", i)))
				if _, st := c.Begin(k, nil); st != Fresh {
					t.Errorf("fresh key: %v", st)
					return
				}
				r := []byte(fmt.Sprint("res ", g, "/", i))
				c.Finish(k, r)
				if got, st := c.Begin(k, nil); st != Answered || !bytes.Equal(got, r) {
					t.Errorf("%v %q want %q", st, got, r)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkBeginFinish(b *testing.B) {
	c := New(4000)
	res := bytes.Repeat([]byte("r"), 480)
	id := []byte("z9hG4bK-000000000000|203.0.113.7:5060|1 REGISTER|203.0.113.7:5060")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		id[8] = byte(i)
		id[9] = byte(i >> 8)
		id[10] = byte(i >> 16)
		k := c.Key(id)
		c.Begin(k, nil)
		c.Finish(k, res)
	}
}
