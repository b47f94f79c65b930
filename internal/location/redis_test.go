//go:build integration

package location

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/internal/testutil"
)

func openRedisTest(t *testing.T, c *testutil.RedisCluster, ro RedisOptions, opts Options) *Memory {
	t.Helper()
	ro.Addresses = c.Addresses()
	opts.Redis = &ro
	if opts.FlushInterval == 0 {
		opts.FlushInterval = 50 * time.Millisecond
	}
	m, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestRedisReopen: bindings written through, refreshes flushed behind and
// removals all come back from the cluster in a new store.
func TestRedisReopen(t *testing.T) {
	c := testutil.StartRedisCluster(t, testutil.RedisClusterConfig{})
	m := openRedisTest(t, c, RedisOptions{}, Options{})
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	const n = 300
	var want []Binding
	for i := range n {
		b := typical(i, exp)
		put(t, m, b)
		switch {
		case i%3 == 1: // refreshed: written behind, by Close at the latest
			b.CSeq++
			b.Expires = exp.Add(time.Minute)
			if !m.Touch(refresh(b, b.CSeq, b.Expires)) {
				t.Fatalf("Touch refused %s", b.AOR)
			}
		case i%3 == 2: // removed
			if _, err := m.Update(b.AOR, func([]Binding) ([]Binding, error) { return nil, nil }); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want = append(want, b)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	m2 := openRedisTest(t, c, RedisOptions{}, Options{})
	if aors, _ := m2.Len(); aors != len(want) {
		t.Errorf("reopened store holds %d AORs, want %d", aors, len(want))
	}
	for _, w := range want {
		got := m2.Lookup(w.AOR)
		if len(got) != 1 {
			t.Fatalf("Lookup(%s) after reopen: %d bindings", w.AOR, len(got))
		}
		// Updated is stamped by Touch; compare what the device sent.
		got[0].Updated = w.Updated
		if d := cmp.Diff(w, got[0], addrPortEqual); d != "" {
			t.Fatalf("binding %s after reopen (-want +got):\n%s", w.AOR, d)
		}
	}
	if st := m2.Stats(); st.SkippedAtLoad != 0 {
		t.Errorf("%d records skipped at load", st.SkippedAtLoad)
	}
}

// TestRedisTwoEdges: two stores on one cluster, as two edges: what one
// registers, refreshes or removes, the other's lookups show within a
// bound, and the other's OnChange names the AOR (the fast path's cache
// forgets it).
func TestRedisTwoEdges(t *testing.T) {
	c := testutil.StartRedisCluster(t, testutil.RedisClusterConfig{})
	a := openRedisTest(t, c, RedisOptions{}, Options{})
	var mu sync.Mutex
	changed := map[string]int{}
	b := openRedisTest(t, c, RedisOptions{}, Options{OnChange: func(aor string) {
		mu.Lock()
		changed[aor]++
		mu.Unlock()
	}})
	const bound = 2 * time.Second
	eventually := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(bound)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not seen by the other edge within %s", what, bound)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	x := typical(1, exp)

	start := time.Now()
	put(t, a, x)
	eventually("registration on A", func() bool { return len(b.Lookup(x.AOR)) == 1 })
	t.Logf("a registration on A was seen on B after %v", time.Since(start))
	mu.Lock()
	n := changed[x.AOR]
	mu.Unlock()
	if n == 0 {
		t.Error("B learnt A's registration without calling OnChange")
	}

	// A second contact added on B reaches A.
	y := x
	y.Contact = "sip:second@192.0.2.9:5060"
	if _, err := b.Update(x.AOR, func(cur []Binding) ([]Binding, error) { return append(cur, y), nil }); err != nil {
		t.Fatal(err)
	}
	eventually("second contact on B", func() bool { return len(a.Lookup(x.AOR)) == 2 })

	// A refresh absorbed on A (written behind) moves the expiry on B.
	later := exp.Add(10 * time.Minute)
	if !a.Touch(refresh(x, x.CSeq+1, later)) {
		t.Fatal("Touch refused")
	}
	eventually("refresh on A", func() bool {
		for _, got := range b.Lookup(x.AOR) {
			if got.Contact == x.Contact && got.Expires.Equal(later) {
				return true
			}
		}
		return false
	})

	// Removal on A empties the AOR on B.
	if _, err := a.Update(x.AOR, func([]Binding) ([]Binding, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	eventually("removal on A", func() bool { return len(b.Lookup(x.AOR)) == 0 })
	if aors, _ := b.Len(); aors != 0 {
		t.Errorf("B still holds %d AORs", aors)
	}
	if st := b.Stats(); st.Followed == 0 || st.FollowErrors != 0 {
		t.Errorf("B's stats: followed %d, follow errors %d", st.Followed, st.FollowErrors)
	}
}

// TestRedisWaitReplicas: with wait_replicas 1 a write-through succeeds
// while the AOR's master has its replica, and fails (the REGISTER would
// get its error, not a 200) once that replica is gone.
func TestRedisWaitReplicas(t *testing.T) {
	c := testutil.StartRedisCluster(t, testutil.RedisClusterConfig{NodeTimeout: 5 * time.Second})
	// A second for WAIT: under -race on a loaded two-core runner a
	// replica's answer to GETACK has taken more than 200 ms.
	m := openRedisTest(t, c, RedisOptions{WaitReplicas: 1, WaitTimeout: time.Second}, Options{})
	exp := time.Now().Add(time.Hour)
	x := typical(7, exp)
	put(t, m, x)

	master := c.MasterOf("ph:b:{" + x.AOR + "}")
	for _, n := range c.Nodes {
		if n == master || !n.Alive() {
			continue
		}
		if role, _ := n.Cli("role"); containsLine(role, "slave") && containsLine(role, "127.0.0.1") {
			if out, _ := n.Cli("info", "replication"); containsLine(out, "master_port:"+itoa(master.Port)) {
				n.Kill()
			}
		}
	}
	y := typical(7, exp)
	y.Contact = "sip:other@192.0.2.1"
	_, err := m.Update(x.AOR, func(cur []Binding) ([]Binding, error) { return append(cur, y), nil })
	if !errors.Is(err, ErrReplicas) {
		t.Fatalf("write-through with the replica gone: %v, want ErrReplicas", err)
	}
	if st := m.Stats(); st.WriteErrors == 0 {
		t.Error("a failed write-through was not counted")
	}
}

func containsLine(s, sub string) bool { return strings.Contains(s, sub) }

func itoa(i int) string { return strconv.Itoa(i) }
