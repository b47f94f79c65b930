// Package digest is pinhole's one implementation of SIP digest
// authentication (RFC 3261 §22, RFC 7616, RFC 8760 for SHA-256): the
// stateless HMAC nonces, the replay memory (the highest nc per nonce and a
// window below it), the HA1 values per user and realm, the parser of
// Digest credentials and the response check for MD5 and SHA-256.
//
// It sits in the bottom layer because both paths run it on the same
// instances: slowpath/auth on requests sipgo parsed, the fast path's event
// loops (fastpath/absorb) on datagram bytes, without allocating. A nonce
// and nc accepted by one path is therefore a replay for the other, and a
// reload of the credentials keeps the secret and the memory for both. The
// operator documentation is docs/auth.md.
package digest
