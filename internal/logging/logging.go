// Package logging builds pinhole's slog loggers: one per component, each
// with its own level (changeable at run time, for reload) and a budget of
// records per second, past which records are dropped and counted rather
// than written. A flood of bad requests must cost pinhole a counter
// increment per record at most, never a formatted line and a write(2)
// each: logging is a known bottleneck of registrars under load
// (docs/architecture.md, "A registrar at operator scale").
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"github.com/pinhole-sip/pinhole/internal/config"
)

// ComponentKey is the attribute that names a logger's component. A logger
// made by With(ComponentKey, name) takes that component's level and budget.
const ComponentKey = "component"

// Logging owns the levels and budgets of every logger it hands out.
type Logging struct {
	st   *state
	root *slog.Logger
}

// state is shared by every handler derived from one Logging.
type state struct {
	next slog.Handler // the writer: text or JSON
	rate atomic.Int64 // records per second per component; 0: no limit

	mu     sync.Mutex
	levels levels
	comps  map[string]*component
}

// levels are the default level and the per-component overrides.
type levels struct {
	def slog.Level
	by  map[string]slog.Level
}

func (l levels) of(comp string) slog.Level {
	if v, ok := l.by[comp]; ok {
		return v
	}
	return l.def
}

// component is the run-time state of one component: its level (read on
// every Enabled call, so an atomic rather than a map look-up under a lock)
// and its budget for the current second.
type component struct {
	name   string
	level  atomic.Int64
	window atomic.Int64 // unix second the count belongs to
	n      atomic.Int64 // records let through in window
	// counter counts drops; reported is its value when they were last
	// reported in a log line.
	counter  *metrics.Counter
	reported atomic.Uint64
}

// New builds the loggers' shared state from the log section, writing to out.
func New(c config.Log, out io.Writer) (*Logging, error) {
	lv, err := parseLevels(c)
	if err != nil {
		return nil, err
	}
	var next slog.Handler
	opts := &slog.HandlerOptions{Level: slog.LevelDebug} // levels are decided here, per component
	switch c.Format {
	case "json":
		next = slog.NewJSONHandler(out, opts)
	case "text", "":
		next = slog.NewTextHandler(out, opts)
	default:
		return nil, fmt.Errorf("log.format %q: must be text or json", c.Format)
	}
	st := &state{next: next, levels: lv, comps: map[string]*component{}}
	st.rate.Store(int64(c.Rate))
	return &Logging{st: st, root: slog.New(&handler{st: st, next: next, c: st.component("main")})}, nil
}

// Logger returns the logger of a component.
func (l *Logging) Logger(component string) *slog.Logger {
	return l.root.With(ComponentKey, component)
}

// Apply changes levels and the rate to those of c (reload). Loggers
// already handed out follow at once.
func (l *Logging) Apply(c config.Log) error {
	lv, err := parseLevels(c)
	if err != nil {
		return err
	}
	l.st.mu.Lock()
	defer l.st.mu.Unlock()
	l.st.levels = lv
	for name, comp := range l.st.comps {
		comp.level.Store(int64(lv.of(name)))
	}
	l.st.rate.Store(int64(c.Rate))
	return nil
}

// parseLevels reads the levels of c. sipgo logs chatty transport details
// at info; unless it is named in components, it runs at warn (or debug
// when everything does), as pinhole did before per-component levels.
func parseLevels(c config.Log) (levels, error) {
	var lv levels
	if err := lv.def.UnmarshalText([]byte(c.Level)); err != nil {
		return lv, fmt.Errorf("log.level: %w", err)
	}
	lv.by = map[string]slog.Level{}
	for name, s := range c.Components {
		var l slog.Level
		if err := l.UnmarshalText([]byte(s)); err != nil {
			return lv, fmt.Errorf("log.components.%s: %w", name, err)
		}
		lv.by[name] = l
	}
	if _, ok := lv.by["sipgo"]; !ok && lv.def > slog.LevelDebug {
		lv.by["sipgo"] = max(lv.def, slog.LevelWarn)
	}
	return lv, nil
}

// component returns the state of name, creating it on first use.
func (s *state) component(name string) *component {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.comps[name]
	if c == nil {
		c = &component{
			name:    name,
			counter: metrics.GetOrCreateCounter(`pinhole_log_dropped_total{component="` + metricLabel(name) + `"}`),
		}
		c.reported.Store(c.counter.Get()) // another Logging (a test) may have counted before
		c.level.Store(int64(s.levels.of(name)))
		s.comps[name] = c
	}
	return c
}

// metricLabel keeps a component name from breaking the label syntax; the
// daemon only uses plain words.
func metricLabel(s string) string {
	b := []byte(s)
	for i, ch := range b {
		if ch == '"' || ch == '\\' || ch == '\n' {
			b[i] = '_'
		}
	}
	return string(b)
}

// allow spends one record of the current second's budget. Over budget it
// counts the drop and returns false; the first record of a new second
// learns how many the previous seconds dropped. The window turns over
// without a lock: goroutines racing at the turn may let a record or two
// more through, which is fine for a budget. A drop costs one shared
// atomic add (the counter); a dropped record costs ~190-250 ns in all,
// most of it slog building the record (runtime.Callers), against ~1.5 µs
// for a written text line before its write(2) (BenchmarkOverBudget,
// BenchmarkWritten; 2 cores, Nov 2026).
func (c *component) allow(rate, now int64) (ok bool, droppedBefore uint64) {
	if rate <= 0 {
		return true, 0
	}
	if w := c.window.Load(); w != now && c.window.CompareAndSwap(w, now) {
		c.n.Store(0)
		total := c.counter.Get()
		droppedBefore = total - c.reported.Swap(total)
	}
	if c.n.Load() < rate && c.n.Add(1) <= rate {
		return true, droppedBefore
	}
	c.counter.Inc()
	return false, droppedBefore
}

// handler routes records by component. The component attribute is held
// here, not in next, so a logger re-tagged by a later With carries one
// component, the last.
type handler struct {
	st   *state
	next slog.Handler // with every attribute but the component
	c    *component
}

func (h *handler) Enabled(_ context.Context, l slog.Level) bool {
	return int64(l) >= h.c.level.Load()
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	ok, dropped := h.c.allow(h.st.rate.Load(), r.Time.Unix())
	if dropped > 0 {
		// One line per second at most says what the budget hid; the exact
		// count is pinhole_log_dropped_total.
		s := slog.NewRecord(r.Time, slog.LevelWarn, "log records dropped over log.rate", 0)
		s.AddAttrs(slog.String(ComponentKey, h.c.name), slog.Uint64("dropped", dropped))
		_ = h.st.next.Handle(ctx, s)
	}
	if !ok {
		return nil
	}
	r = r.Clone()
	r.AddAttrs(slog.String(ComponentKey, h.c.name))
	return h.next.Handle(ctx, r)
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	c := h.c
	rest := make([]slog.Attr, 0, len(as))
	for _, a := range as {
		if a.Key == ComponentKey && a.Value.Kind() == slog.KindString {
			c = h.st.component(a.Value.String())
			continue
		}
		rest = append(rest, a)
	}
	next := h.next
	if len(rest) > 0 {
		next = next.WithAttrs(rest)
	}
	return &handler{st: h.st, next: next, c: c}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{st: h.st, next: h.next.WithGroup(name), c: h.c}
}

// Levels returns the current level of every component in
// config.LogComponents, for the API's stats.
func (l *Logging) Levels() map[string]string {
	l.st.mu.Lock()
	defer l.st.mu.Unlock()
	out := make(map[string]string, len(config.LogComponents))
	for _, name := range config.LogComponents {
		out[name] = l.st.levels.of(name).String()
	}
	return out
}
