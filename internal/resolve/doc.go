// Package resolve turns the SIP destinations pinhole is configured with
// (farm nodes, main registrars, the outbound proxy) into addresses, by the
// procedure of RFC 3263 §4: an IP address is used as it is; a name with a
// port is looked up with A (and AAAA when asked); a name with a transport
// but no port with SRV; a name with neither with NAPTR, then SRV, then A.
//
// Answers are kept in a cache with their DNS TTL (clamped to a configured
// range) and refreshed by one background goroutine before they expire, so
// the request path only reads the cache ([Resolver.Cached]) and never waits
// for DNS. The first look-up of a name ([Resolver.Lookup]) waits, bounded by
// a timeout: pinhole resolves every configured name when it starts or
// reloads, not while a request waits.
//
// When a refresh fails (a timeout, SERVFAIL, REFUSED, a network error) the
// last good answer stays in use and each use of it is counted as stale; the
// refresh is retried with a growing back-off. An authoritative "no such
// name" or "no records" is an answer, not a failure: it replaces the old
// one (the operator removed the name) and is cached for the negative TTL.
//
// [Order] sorts an answer's targets by RFC 2782: lowest priority first,
// weighted random within a priority.
//
// The operator documentation is docs/dns.md.
package resolve
