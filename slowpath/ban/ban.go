// Package ban blocks, for a while, the sources that keep misbehaving, on
// the XDP blocklist: a Tracker bans a source after Failures wrong
// credentials (403) within Window, so its next guesses die in the kernel
// instead of costing a digest computation each; an Overlimit bans a source
// that stays over the kernel's rate limit.
package ban

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Blocker is the kernel blocklist (bpf.Blocklist).
type Blocker interface {
	Add(prefix netip.Prefix, until time.Time) error
}

// Config configures a Tracker.
type Config struct {
	Failures int           // within Window; must be at least 1
	Window   time.Duration // counting window
	Duration time.Duration // how long a ban lasts
	Blocker  Blocker
	// MaxSources bounds the sources tracked; default 100 000. When full,
	// windows that have ended are dropped; if none has, new sources are
	// not tracked until one ends (counted as untracked).
	MaxSources int
	Now        func() time.Time // for tests; default time.Now
}

var (
	bansTotal      = metrics.GetOrCreateCounter(`pinhole_ban_added_total{reason="auth"}`)
	overlimitTotal = metrics.GetOrCreateCounter(`pinhole_ban_added_total{reason="ratelimit"}`)
	banErrorsTotal = metrics.GetOrCreateCounter("pinhole_ban_errors_total")
	untrackedTotal = metrics.GetOrCreateCounter("pinhole_ban_untracked_total")
)

// window counts one source's failures since start.
type window struct {
	start time.Time
	n     int
}

// Tracker counts authentication failures per source address. It is safe
// for concurrent use. Failures are rare next to good traffic, so a mutex is
// cheap here; the good path never touches it.
type Tracker struct {
	cfg Config
	mu  sync.Mutex
	m   map[netip.Addr]*window
}

// New returns a Tracker.
func New(cfg Config) (*Tracker, error) {
	if cfg.Failures < 1 || cfg.Window <= 0 || cfg.Duration <= 0 || cfg.Blocker == nil {
		return nil, fmt.Errorf("ban: need failures >= 1, a window, a duration and a blocklist (got %+v)", cfg)
	}
	if cfg.MaxSources <= 0 {
		cfg.MaxSources = 100_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Tracker{cfg: cfg, m: map[netip.Addr]*window{}}, nil
}

// Failure records one wrong answer from src and bans src when it reaches
// the limit; it reports whether it did.
func (t *Tracker) Failure(src netip.Addr) bool {
	src = src.Unmap().WithZone("")
	if !src.IsValid() {
		return false
	}
	now := t.cfg.Now()
	t.mu.Lock()
	w := t.m[src]
	if w == nil || now.Sub(w.start) >= t.cfg.Window {
		if w == nil && len(t.m) >= t.cfg.MaxSources && !t.pruneLocked(now) {
			t.mu.Unlock()
			untrackedTotal.Inc()
			return false
		}
		w = &window{start: now}
		t.m[src] = w
	}
	w.n++
	hit := w.n >= t.cfg.Failures
	if hit {
		delete(t.m, src)
	}
	t.mu.Unlock()
	if !hit {
		return false
	}
	if err := t.cfg.Blocker.Add(netip.PrefixFrom(src, src.BitLen()), now.Add(t.cfg.Duration)); err != nil {
		banErrorsTotal.Inc()
		return false
	}
	bansTotal.Inc()
	return true
}

// pruneLocked drops ended windows and reports whether any room was made.
func (t *Tracker) pruneLocked(now time.Time) bool {
	n := len(t.m)
	for a, w := range t.m {
		if now.Sub(w.start) >= t.cfg.Window {
			delete(t.m, a)
		}
	}
	return len(t.m) < n
}
