package midreg

import (
	"strconv"
	"testing"
	"time"
)

// A flood of fresh Call-IDs, each challenged upstream within one
// challengeTTL, must cost O(1) work per challenge and stay within the
// bound, evicting the oldest first and counting each eviction. The
// mid-registrar used to sweep the whole table on every challenge once it
// held 1 024 entries: 200 000 such challenges were 2·10¹⁰ map steps.
func TestChallengeFloodIsBounded(t *testing.T) {
	const n, max = 200_000, 4096
	evicted := 0
	c := newChallenges(max, func() { evicted++ })
	now := time.Unix(1_750_000_000, 0)
	for i := range n {
		c.remember("flood-"+strconv.Itoa(i), i%3, now)
	}
	if got := c.len(); got != max {
		t.Errorf("%d Call-IDs remembered after %d fresh challenges, want the bound %d", got, n, max)
	}
	if evicted != n-max {
		t.Errorf("%d evictions counted, want %d", evicted, n-max)
	}
	if c.popped > n {
		t.Errorf("%d queue pops for %d challenges: more than one per challenge", c.popped, n)
	}
	if got := c.upstream("flood-"+strconv.Itoa(n-1), now); got != (n-1)%3 {
		t.Errorf("newest challenge: upstream %d, want %d", got, (n-1)%3)
	}
	if got := c.upstream("flood-0", now); got != -1 {
		t.Errorf("oldest challenge still remembered (upstream %d) past the bound", got)
	}
	if len(c.queue)-c.head > max {
		t.Errorf("queue holds %d entries, want at most %d", len(c.queue)-c.head, max)
	}
}

// Expired challenges leave at the next challenge without being counted as
// evictions, and a Call-ID challenged again or answered keeps its own
// latest entry only.
func TestChallengeExpiry(t *testing.T) {
	evicted := 0
	c := newChallenges(8, func() { evicted++ })
	now := time.Unix(1_750_000_000, 0)
	for i := range 5 {
		c.remember("old-"+strconv.Itoa(i), 0, now)
	}
	c.remember("again", 0, now)
	c.remember("answered", 0, now)
	c.forget("answered")
	later := now.Add(challengeTTL + time.Second)
	c.remember("again", 1, later.Add(-challengeTTL)) // still fresh at later
	c.remember("new", 1, later)
	if got := c.len(); got != 2 {
		t.Errorf("%d remembered, want 2 (again, new)", got)
	}
	if evicted != 0 {
		t.Errorf("%d evictions counted for expired or answered challenges, want 0", evicted)
	}
	if got := c.upstream("again", later); got != 1 {
		t.Errorf("re-challenged Call-ID: upstream %d, want its latest, 1", got)
	}
	if got := c.upstream("old-0", later); got != -1 {
		t.Errorf("expired challenge answered upstream %d, want -1", got)
	}
}

// The retry of a device challenged during a flood still reaches the
// upstream that challenged it while the flood stays under the bound.
func TestChallengeRemembersChallengerUnderBound(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxChallenges = 64 })
	now := f.clock.Now()
	f.m.rememberChallenge("device", 1, now)
	for i := range 62 {
		f.m.rememberChallenge("flood-"+strconv.Itoa(i), 0, now)
	}
	if got := f.m.challenger("device", now); got != 1 {
		t.Errorf("challenger %d, want 1", got)
	}
	for i := range 100 {
		f.m.rememberChallenge("flood2-"+strconv.Itoa(i), 0, now)
	}
	if got := f.m.challenger("device", now); got != -1 {
		t.Errorf("challenger %d after the bound evicted it, want -1 (first upstream)", got)
	}
}

// BenchmarkChallengeFlood is one fresh challenge with the table full.
func BenchmarkChallengeFlood(b *testing.B) {
	c := newChallenges(DefaultMaxChallenges, nil)
	now := time.Unix(1_750_000_000, 0)
	ids := make([]string, 1<<17)
	for i := range ids {
		ids[i] = "flood-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		c.remember(ids[i&(len(ids)-1)], 0, now)
	}
}
