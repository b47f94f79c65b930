// Package absorb answers REGISTER refreshes that change nothing from
// replies the slow path prepared, so that they cost no SIP stack: no
// parse, no transaction, no allocation, no lock of pinhole's own.
//
// The slow path stays the authority (docs/architecture.md, "The cache is
// not the authority"). After its registrar or mid-registrar has sent a 200
// for a REGISTER, [Cache.Fill] checks the location store (after a 200 the
// registrar wrote from the request's bytes, the fill [Cache.PrepareRaw]
// returned, which reads the same registration from those bytes and then
// runs the same code). The request's registration ([Reg]: its identity
// as sipgo printed it — AOR, Call-ID and the top Via's sent-by as text;
// Request-URI, From, To, Contacts, Expires, User-Agent and Supported as
// a keyed 64-bit hash — the flow, each binding's granted expiry and, in
// the mid-registrar, the second its upstream registration must be
// renewed) is kept, with the AOR's other registrations, in a ristretto
// cache keyed by AOR. When the store holds exactly the bindings that
// request left, and every other registration of
// the AOR as the cache holds it (two phones of one user, in the registrar
// and the mid-registrar alike), an [Entry] keyed by the AOR holds the
// registrations and the reply's fixed part (Content-Length, Contacts with
// their expiry, Require, Path) cut from the 200 the slow path sent, its
// Contact lines cut around their expiry when there are several
// registrations.
//
// A [Loop] (one per event loop) then absorbs a REGISTER when it is
// provably the same registration as one of the entry's: same Call-ID,
// transport, source address and port and local socket, a higher CSeq,
// the same identity fields (the same sent-by, the same hash of the rest), every binding live for longer
// than the hand-off to the store takes and, in the mid-registrar, its
// upstream registration not due (now + expiry + renewal margin ≤ upstream
// expiry). The reply is the request's Vias (the top one with
// received/rport, RFC 3581 §4 and RFC 3261 §18.2.1), From, To with a fresh
// tag, Call-ID, CSeq, the fixed part with the other registrations'
// remaining expiries, and a Date. The registration's CSeq and refresh time
// are moved in place (atomics written by the one loop that owns the flow),
// not by a Set per packet, and each refreshed binding is queued in the
// loop's touch ring, which a flusher drains into [location.Store.Touch]
// every 100 ms, and [Cache.Settle] at once before the registrar answers
// from the store.
//
// A retransmission of an absorbed refresh (same CSeq and branch, within
// Timer J) gets that refresh's answer again from its Reg, found through
// the entry or, when the entry is gone, in the AOR's set of registrations:
// the slow path would take it for a new request with a CSeq out of order.
//
// Anything else — a miss, an evicted or refused entry, a change, another
// flow — is declined and goes to the slow path, which answers and fills
// again. Every change the store sees invalidates the AOR's entry
// ([Cache.Invalidate], called from the store's change hook), not its
// registrations, which the next fill checks against the store again; a
// generation counter keeps a fill that raced with a change from installing
// stale state.
//
// # Metrics
//
// Written at scrape time from per-loop counters and ristretto's own:
// pinhole_fastpath_absorbed_total, pinhole_fastpath_retransmissions_total{entry},
// pinhole_fastpath_declined_total{reason},
// pinhole_fastpath_fills_total{result}, pinhole_fastpath_invalidations_total,
// pinhole_fastpath_touches_total{result}, pinhole_fastpath_cache_*
// (hits, misses, keys added, rejected, evicted, sets dropped). See
// docs/fastpath.md.
package absorb
