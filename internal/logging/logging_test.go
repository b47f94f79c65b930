package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/internal/config"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Split(strings.TrimSpace(s.b.String()), "\n")
}

func newJSON(t *testing.T, c config.Log) (*Logging, *syncBuffer) {
	t.Helper()
	c.Format = "json"
	out := &syncBuffer{}
	l, err := New(c, out)
	if err != nil {
		t.Fatal(err)
	}
	return l, out
}

// records decodes the JSON lines into (component, level, msg) triples.
func records(t *testing.T, out *syncBuffer) []string {
	t.Helper()
	var got []string
	for _, line := range out.lines() {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		got = append(got, m["component"].(string)+" "+m["level"].(string)+" "+m["msg"].(string))
	}
	return got
}

func TestLevelsPerComponent(t *testing.T) {
	l, out := newJSON(t, config.Log{Level: "info", Components: map[string]string{"proxy": "debug", "xdp": "error"}})
	for _, comp := range []string{"main", "proxy", "xdp", "sipgo"} {
		log := l.Logger(comp)
		log.Debug("d")
		log.Info("i")
		log.Warn("w")
		log.Error("e")
	}
	want := []string{
		"main INFO i", "main WARN w", "main ERROR e",
		"proxy DEBUG d", "proxy INFO i", "proxy WARN w", "proxy ERROR e",
		"xdp ERROR e",
		// sipgo runs at warn unless named or everything is at debug.
		"sipgo WARN w", "sipgo ERROR e",
	}
	if diff := cmp.Diff(want, records(t, out)); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
}

// TestComponentRetagged: a logger re-tagged by With carries one component,
// the last, and takes its level.
func TestComponentRetagged(t *testing.T) {
	l, out := newJSON(t, config.Log{Level: "warn", Components: map[string]string{"sipgo": "debug"}})
	l.Logger("slowpath").With("k", "v").With(ComponentKey, "sipgo").Debug("hello")
	lines := out.lines()
	if len(lines) != 1 {
		t.Fatalf("got %d lines, want 1: %q", len(lines), lines)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]any{"level": "DEBUG", "msg": "hello", "k": "v", "component": "sipgo"}, m, cmpIgnoreTime); diff != "" {
		t.Errorf("record (-want +got):\n%s", diff)
	}
	if strings.Count(lines[0], `"component"`) != 1 {
		t.Errorf("component written more than once: %s", lines[0])
	}
}

var cmpIgnoreTime = cmp.FilterPath(func(p cmp.Path) bool {
	mi, ok := p.Last().(cmp.MapIndex)
	return ok && mi.Key().String() == "time"
}, cmp.Ignore())

func TestApplyChangesLevels(t *testing.T) {
	l, out := newJSON(t, config.Log{Level: "info"})
	log := l.Logger("proxy")
	log.Debug("before")
	if err := l.Apply(config.Log{Level: "info", Components: map[string]string{"proxy": "debug"}}); err != nil {
		t.Fatal(err)
	}
	log.Debug("after")
	if diff := cmp.Diff([]string{"proxy DEBUG after"}, records(t, out)); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	if got := l.Levels()["proxy"]; got != "DEBUG" {
		t.Errorf("Levels()[proxy] = %s, want DEBUG", got)
	}
	if err := l.Apply(config.Log{Level: "loud"}); err == nil {
		t.Error("Apply accepted level loud")
	}
}

// TestRateLimit: past log.rate records in one second a component's records
// are dropped and counted exactly; other components keep their budget; the
// next second starts with one line saying how many were dropped.
func TestRateLimit(t *testing.T) {
	l, out := newJSON(t, config.Log{Level: "info", Rate: 5})
	drops := metrics.GetOrCreateCounter(`pinhole_log_dropped_total{component="natping"}`)
	before := drops.Get()
	flood, other := l.Logger("natping"), l.Logger("ban")
	sec := time.Unix(1_700_000_000, 0)
	emit := func(log *slog.Logger, at time.Time, n int) {
		for range n {
			r := slog.NewRecord(at, slog.LevelInfo, "x", 0)
			_ = log.Handler().Handle(t.Context(), r)
		}
	}
	emit(flood, sec, 12)
	emit(other, sec, 3)
	emit(flood, sec.Add(time.Second), 1)
	want := []string{
		"natping INFO x", "natping INFO x", "natping INFO x", "natping INFO x", "natping INFO x",
		"ban INFO x", "ban INFO x", "ban INFO x",
		"natping WARN log records dropped over log.rate",
		"natping INFO x",
	}
	if diff := cmp.Diff(want, records(t, out)); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	if got := drops.Get() - before; got != 7 {
		t.Errorf("pinhole_log_dropped_total{component=natping} grew by %d, want 7", got)
	}
	if !strings.Contains(out.lines()[8], `"dropped":7`) {
		t.Errorf("summary line %s does not say 7 were dropped", out.lines()[8])
	}
}

func TestNoLimit(t *testing.T) {
	l, out := newJSON(t, config.Log{Level: "info", Rate: 0})
	for range 1000 {
		l.Logger("main").Info("x")
	}
	if n := len(out.lines()); n != 1000 {
		t.Errorf("%d lines, want 1000 with rate 0", n)
	}
}

// BenchmarkDisabled is the cost of a debug call that is off: what a
// debug line in a hot function costs in production.
func BenchmarkDisabled(b *testing.B) {
	l, _ := New(config.Log{Level: "info", Format: "text"}, &bytes.Buffer{})
	log := l.Logger("proxy")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			log.Debug("never", "n", 1)
		}
	})
}

// BenchmarkOverBudget is the cost of a record dropped by the rate limit:
// what a flood of logged errors costs once the budget is spent.
func BenchmarkOverBudget(b *testing.B) {
	l, _ := New(config.Log{Level: "info", Format: "text", Rate: 1}, &bytes.Buffer{})
	log := l.Logger("sipgo")
	log.Warn("spend the budget")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			log.Warn("dropped", "n", 1)
		}
	})
}

// BenchmarkWritten is the cost of a record actually written (text, to
// memory), for comparison.
func BenchmarkWritten(b *testing.B) {
	l, _ := New(config.Log{Level: "info", Format: "text"}, &syncBuffer{})
	log := l.Logger("main")
	b.ReportAllocs()
	for b.Loop() {
		log.Info("written", "n", 1)
	}
}

// BenchmarkOverBudgetSerial is BenchmarkOverBudget on one goroutine: the
// difference is contention on the drop counter.
func BenchmarkOverBudgetSerial(b *testing.B) {
	l, _ := New(config.Log{Level: "info", Format: "text", Rate: 1}, &bytes.Buffer{})
	log := l.Logger("sipgo")
	log.Warn("spend the budget")
	b.ReportAllocs()
	for b.Loop() {
		log.Warn("dropped", "n", 1)
	}
}
