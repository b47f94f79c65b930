//go:build integration

package location

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/testutil"
)

// The write-through benchmarks compare the two backings on this box
// (docs/cluster.md has the figures and the command). "Serial" is one
// registration at a time: each is its own batch, so ns/op is one batch's
// latency. "Parallel" is 64 registering goroutines, as the slow path's
// workers are: batches form while one is written, and bindings/s is the
// throughput.

// benchRedis opens a store on a cluster of its own.
func benchRedis(b *testing.B, wait int) *Memory {
	b.Helper()
	c := testutil.StartRedisCluster(b, testutil.RedisClusterConfig{})
	m, err := Open(Options{Redis: &RedisOptions{Addresses: c.Addresses(), WaitReplicas: wait}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return m
}

func benchBolt(b *testing.B) *Memory {
	b.Helper()
	m, err := Open(Options{Path: tempDB(b)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return m
}

func benchWriteThrough(b *testing.B, m *Memory, parallel bool) {
	exp := time.Now().Add(time.Hour)
	var next atomicCounter
	register := func() bool {
		bn := typical(next.add(), exp)
		if _, err := m.Update(bn.AOR, func([]Binding) ([]Binding, error) { return []Binding{bn}, nil }); err != nil {
			b.Error(err)
			return false
		}
		return true
	}
	start := m.Stats()
	began := time.Now()
	b.ResetTimer()
	if parallel {
		b.SetParallelism(64)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() && register() {
			}
		})
	} else {
		for range b.N {
			if !register() {
				break
			}
		}
	}
	b.StopTimer()
	st := m.Stats()
	b.ReportMetric(float64(b.N)/time.Since(began).Seconds(), "bindings/s")
	if n := st.Commits - start.Commits; n > 0 {
		b.ReportMetric(float64(st.Writes-start.Writes)/float64(n), "bindings/batch")
	}
}

func BenchmarkWriteThroughBoltSerial(b *testing.B) { benchWriteThrough(b, benchBolt(b), false) }
func BenchmarkWriteThroughBoltParallel(b *testing.B) {
	benchWriteThrough(b, benchBolt(b), true)
}
func BenchmarkWriteThroughRedisSerial(b *testing.B) {
	benchWriteThrough(b, benchRedis(b, 0), false)
}
func BenchmarkWriteThroughRedisParallel(b *testing.B) {
	benchWriteThrough(b, benchRedis(b, 0), true)
}
func BenchmarkWriteThroughRedisWait1Serial(b *testing.B) {
	benchWriteThrough(b, benchRedis(b, 1), false)
}
func BenchmarkWriteThroughRedisWait1Parallel(b *testing.B) {
	benchWriteThrough(b, benchRedis(b, 1), true)
}

// BenchmarkRedisMemory writes redisMemoryBindings typical bindings (one
// per AOR, as most devices register) and reports the growth of the
// masters' used_memory per binding. The budget is 300 B at a
// million; 100 000 is what this box measures in a few seconds, and
// PINHOLE_REDIS_MILLION=1 writes the million (about a minute).
func BenchmarkRedisMemory(b *testing.B) {
	redisMemoryBindings := 100_000
	if os.Getenv("PINHOLE_REDIS_MILLION") != "" {
		redisMemoryBindings = 1_000_000
	}
	c := testutil.StartRedisCluster(b, testutil.RedisClusterConfig{})
	m, err := Open(Options{Redis: &RedisOptions{Addresses: c.Addresses()}})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	usedMemory := func() int {
		total := 0
		for _, n := range c.Nodes {
			if role, _ := n.Cli("role"); !strings.HasPrefix(role, "master") {
				continue
			}
			out, err := n.Cli("info", "memory")
			if err != nil {
				b.Fatal(err)
			}
			for _, line := range strings.Split(out, "\n") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
					x, _ := strconv.Atoi(v)
					total += x
				}
			}
		}
		return total
	}
	before := usedMemory()
	exp := time.Now().Add(time.Hour)
	var next atomicCounter
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.add()
				if i >= redisMemoryBindings {
					return
				}
				bn := typical(i, exp)
				if _, err := m.Update(bn.AOR, func([]Binding) ([]Binding, error) { return []Binding{bn}, nil }); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	after := usedMemory()
	var valueBytes int
	for i := range 100 {
		bn := typical(i, exp)
		_, blob, _ := buildSet(bn.AOR, []Binding{bn}, time.Now())
		valueBytes += len(blob) - setHeader + 1
	}
	// MEMORY USAGE counts a key's own allocations (entry, key, object,
	// value) but not its share of the dictionaries' bucket arrays nor an
	// expires entry: the difference from B/binding is those.
	var usage int
	for i := range 100 {
		key := m.redis.key(typical(i+1, exp).AOR) // the counter starts at 1
		out, err := c.MasterOf(key).Cli("memory", "usage", key)
		if err != nil {
			b.Fatal(err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(out))
		if err != nil {
			b.Fatalf("memory usage %s: %q", key, out)
		}
		usage += n
	}
	b.ReportMetric(float64(after-before)/float64(redisMemoryBindings), "B/binding")
	b.ReportMetric(float64(valueBytes)/100, "value-B")
	b.ReportMetric(float64(usage)/100, "usage-B")
	for range b.N {
	}
}
