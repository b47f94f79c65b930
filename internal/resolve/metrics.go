package resolve

import (
	"github.com/VictoriaMetrics/metrics"
)

// Counters of every resolver in the process, listed in docs/dns.md and
// docs/metrics.md. They move once per DNS query or cache read: the cache
// is read once per request that goes to a named destination.
var (
	mHits          = metrics.NewCounter(`pinhole_dns_cache_hits_total`)
	mMisses        = metrics.NewCounter(`pinhole_dns_cache_misses_total`)
	mStale         = metrics.NewCounter(`pinhole_dns_stale_total`)
	mRefreshOK     = metrics.NewCounter(`pinhole_dns_refreshes_total{result="ok"}`)
	mRefreshFailed = metrics.NewCounter(`pinhole_dns_refreshes_total{result="failed"}`)
	mFull          = metrics.NewCounter(`pinhole_dns_cache_full_total`)
)

// lookupCounter counts queries sent by record type and result: ok,
// nxdomain, nodata, timeout or error.
func lookupCounter(typ, result string) *metrics.Counter {
	return metrics.GetOrCreateCounter(`pinhole_dns_lookups_total{type="` + typ + `",result="` + result + `"}`)
}

// newMetrics registers the cache's gauges in a set of their own, so that
// a resolver built again (a test) replaces them.
func (r *Resolver) newMetrics() *metrics.Set {
	s := metrics.NewSet()
	s.NewGauge(`pinhole_dns_cache_entries`, func() float64 { return float64(r.Entries()) })
	s.NewGauge(`pinhole_dns_cache_stale_entries`, func() float64 { return float64(r.staleEntries()) })
	metrics.RegisterSet(s)
	return s
}

func (r *Resolver) staleEntries() int {
	n, now := 0, r.now()
	for _, e := range *r.entries.Load() {
		if e.isStale(now) {
			n++
		}
	}
	return n
}
