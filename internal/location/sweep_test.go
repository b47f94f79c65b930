//go:build integration

package location

import (
	"context"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/pinhole-sip/pinhole/internal/testutil"
)

// TestRedisSweep: keys carry no TTL, and what no edge removes is removed
// by the sweep once its grace is over, and nothing else is: a key within
// its grace, one with a binding still in its grace, a value this version
// cannot read, a key outside the prefix, and the AORs the view holds all
// stay.
func TestRedisSweep(t *testing.T) {
	c := testutil.StartRedisCluster(t, testutil.RedisClusterConfig{})
	clk := newClock()
	// This box acts for its own bindings only: the "dead" edge's lapse
	// leaves its key in Redis, as when an edge is gone for good.
	m := openRedisTest(t, c, RedisOptions{}, Options{
		Now:     clk.Now,
		ActsFor: func(b Binding) bool { return b.Edge == "" },
	})
	r := m.redis
	now := clk.Now()
	at := func(i int, exp time.Time) Binding {
		b := typical(i, exp)
		b.Updated = now.Add(-3 * time.Hour)
		return b
	}
	raw := map[string][]byte{
		"gone":  encodeValue([]Binding{at(1, now.Add(-redisKeyGrace-time.Minute))}),
		"grace": encodeValue([]Binding{at(2, now.Add(-30*time.Minute))}),
		"mixed": encodeValue([]Binding{at(3, now.Add(-2*redisKeyGrace)), at(4, now.Add(-10*time.Minute))}),
		"newer": {9, 1, 2, 3},
	}
	var batch []setWrite
	for aor, v := range raw {
		batch = append(batch, setWrite{aor: aor + "@example.com", value: v})
	}
	if err := r.write(batch, true); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	outside := "other:{gone@example.com}"
	if err := r.client.Do(ctx, r.client.B().Set().Key(outside).Value(string(raw["gone"])).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	// Registered here: in the view, written through without a TTL.
	live := at(5, now.Add(3*time.Hour))
	live.AOR = "live@example.com"
	put(t, m, live)
	if ttl, err := r.client.Do(ctx, r.client.B().Pttl().Key(r.key(live.AOR)).Build()).AsInt64(); err != nil || ttl != -1 {
		t.Errorf("PTTL of a registered key: %d, %v; want -1 (no TTL)", ttl, err)
	}
	// Registered through the dead edge, lapsing in a minute.
	orphan := at(6, now.Add(time.Minute))
	orphan.AOR, orphan.Edge = "orphan@example.com", "dead"
	put(t, m, orphan)

	exists := func(key string) bool {
		t.Helper()
		n, err := r.client.Do(ctx, r.client.B().Exists().Key(key).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	sweep := func(want int) {
		t.Helper()
		n, err := m.sweep()
		if err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("sweep deleted %d keys, want %d", n, want)
		}
	}

	sweep(1)
	for aor, want := range map[string]bool{"gone": false, "grace": true, "mixed": true, "newer": true, "live": true, "orphan": true} {
		if got := exists(r.key(aor + "@example.com")); got != want {
			t.Errorf("after the first sweep, key of %s exists: %v, want %v", aor, got, want)
		}
	}
	if !exists(outside) {
		t.Errorf("the sweep deleted %s, outside the prefix", outside)
	}

	// The orphan lapses: every view drops it, nobody writes its removal.
	clk.Advance(2 * time.Minute)
	m.expire(clk.Now())
	if got := m.Lookup(orphan.AOR); len(got) != 0 {
		t.Fatalf("the lapsed orphan is still looked up: %v", got)
	}
	sweep(0)
	if !exists(r.key(orphan.AOR)) {
		t.Error("the orphan's key went before its grace ended")
	}
	// An hour on: its grace is over, and so is "grace"'s; "mixed" has a
	// binding 10 minutes into its grace.
	clk.Advance(redisKeyGrace - 15*time.Minute)
	sweep(1)
	if exists(r.key("grace@example.com")) {
		t.Error("a key 75 minutes past its expiry stayed")
	}
	clk.Advance(15 * time.Minute)
	sweep(2)
	for _, aor := range []string{"orphan@example.com", "mixed@example.com"} {
		if exists(r.key(aor)) {
			t.Errorf("key of %s stayed after its grace", aor)
		}
	}
	if !exists(r.key(live.AOR)) || !exists(r.key("newer@example.com")) {
		t.Error("the sweep deleted a live key or one it cannot read")
	}
}

// TestRedisSweepScript: the delete is conditional on the value the
// sweep read, so a registration written after the read keeps its key.
func TestRedisSweepScript(t *testing.T) {
	c := testutil.StartRedisCluster(t, testutil.RedisClusterConfig{})
	m := openRedisTest(t, c, RedisOptions{}, Options{})
	r := m.redis
	ctx := context.Background()
	key := r.key("race@example.com")
	if err := r.client.Do(ctx, r.client.B().Set().Key(key).Value("new").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	del := func(v string) int64 {
		t.Helper()
		res := sweepScript.ExecMulti(ctx, r.client, rueidis.LuaExec{Keys: []string{key}, Args: []string{v}})
		n, err := res[0].AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := del("old"); n != 0 {
		t.Fatalf("the script deleted a key whose value changed (%d)", n)
	}
	if n := del("new"); n != 1 {
		t.Fatalf("the script did not delete the unchanged key (%d)", n)
	}
}
