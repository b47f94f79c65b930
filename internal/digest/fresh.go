package digest

import "time"

// Fresh reports whether credentials p name an algorithm v offers and a
// nonce v issued that is still within its age at now. Verify then
// answers neither Challenge nor Stale, whatever the rest of p: it answers
// Challenge only for an algorithm not offered or a nonce not issued, and
// Stale only past the nonce's age. Fresh costs the nonce's MAC and none
// of the response's digests, so a caller that only needs to know whether
// credentials earn a new challenge (the raw 401 of slowpath and the
// fast path's loop) learns it for credentials that verify, a first
// registration's second REGISTER, without running the digest the read
// filter then runs on the same bytes.
func (v *Verifier) Fresh(p *Params, now time.Time) bool {
	alg := MD5 // RFC 7616 §3.4: absent means MD5, as in Verify
	if p.Algorithm != "" {
		var ok bool
		if alg, ok = parseAlgorithm(p.Algorithm); !ok {
			return false
		}
	}
	if !v.offers(alg) {
		return false
	}
	issued, _, ok := v.nonces.Verify(p.Nonce)
	if !ok {
		return false
	}
	age := now.Sub(issued)
	return age <= v.ttl && age >= -v.ttl
}
