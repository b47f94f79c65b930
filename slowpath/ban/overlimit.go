package ban

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"time"
)

// Dropper lists the sources the kernel rate limiter has refused requests
// from, with how many (bpf.Buckets).
type Dropper interface {
	Dropped(fn func(src netip.Addr, dropped uint64)) error
}

// Overlimit bans the sources that stay over the XDP rate limit: a source
// refused in every sample for For goes on the blocklist for Duration. A
// source that only bursts over its limit now and then is left to the rate
// limiter. Reading every bucket costs a walk of the map (245 batched
// lookups for a million sources), so a sample is taken only when the
// kernel's count of refusals has moved.
type Overlimit struct {
	For      time.Duration // how long a source must keep being refused
	Every    time.Duration // sampling period; default For/6 within [1s, 10s]
	Duration time.Duration // how long the ban lasts
	Blocker  Blocker
	Buckets  Dropper
	// Refused is the kernel's total of refused requests (the
	// ratelimited verdict counter).
	Refused func() (uint64, error)
	Log     *slog.Logger
	Now     func() time.Time // for tests; default time.Now

	streaks map[netip.Addr]*streak
	refused uint64
}

// streak is a source seen refused in consecutive samples.
type streak struct {
	dropped uint64    // its bucket's count at the last sample
	since   time.Time // first sample that saw it refused
	seen    bool      // in the current sample
}

// Run samples until ctx ends.
func (o *Overlimit) Run(ctx context.Context) error {
	if o.For <= 0 || o.Duration <= 0 || o.Blocker == nil || o.Buckets == nil || o.Refused == nil {
		return errors.New("ban: over-limit watch needs a duration, a ban duration, a blocklist, buckets and a refusal count")
	}
	every := o.Every
	if every <= 0 {
		every = min(max(o.For/6, time.Second), 10*time.Second)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if _, err := o.sample(); err != nil {
				banErrorsTotal.Inc()
				o.Log.Warn("ban: read the rate limiter's buckets", "error", err)
			}
		}
	}
}

// sample takes one look at the buckets and bans the sources refused in
// every sample for at least For; it returns how many it banned.
func (o *Overlimit) sample() (int, error) {
	now := time.Now()
	if o.Now != nil {
		now = o.Now()
	}
	if o.streaks == nil {
		o.streaks = map[netip.Addr]*streak{}
	}
	total, err := o.Refused()
	if err != nil {
		return 0, err
	}
	if total == o.refused {
		clear(o.streaks) // nobody was refused since the last sample
		return 0, nil
	}
	o.refused = total
	var ban []netip.Addr
	err = o.Buckets.Dropped(func(src netip.Addr, dropped uint64) {
		s := o.streaks[src]
		switch {
		case s == nil || dropped < s.dropped: // new, or its bucket was evicted and made again
			o.streaks[src] = &streak{dropped: dropped, since: now, seen: true}
		case dropped == s.dropped: // not refused since the last sample: the streak ends
		default:
			s.dropped, s.seen = dropped, true
			if now.Sub(s.since) >= o.For {
				ban = append(ban, src)
			}
		}
	})
	for src, s := range o.streaks {
		if !s.seen {
			delete(o.streaks, src)
		}
		s.seen = false
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, src := range ban {
		delete(o.streaks, src)
		if err := o.Blocker.Add(netip.PrefixFrom(src, src.BitLen()), now.Add(o.Duration)); err != nil {
			banErrorsTotal.Inc()
			continue
		}
		overlimitTotal.Inc()
		n++
	}
	if n > 0 && o.Log != nil {
		o.Log.Info("ban: blocked sources that stayed over the rate limit", "sources", n, "for", o.Duration)
	}
	return n, nil
}
