// Package rawreply writes the responses to a REGISTER that pinhole sends
// without parsing the request with sipgo: byte for byte what sipgo (v1.7)
// prints for the same request after parsing it, so that a device cannot
// tell which path answered.
//
// Two callers share it. The fast path's event loops (fastpath/absorb)
// answer refreshes they vouch for with a 200 and credential-less refreshes
// with a 401; the slow path's stateless UDP registrar (slowpath) answers a
// first REGISTER without credentials with the same 401 before queueing it
// for the parser (docs/registrar.md, "The challenge from raw bytes").
//
// The writers copy header values from the datagram, so the caller must
// first establish that sipgo would print each of them unchanged: [ParseVia]
// does it for a Via, [ParseAddress] for a From or To. Both accept a
// narrower grammar than RFC 3261 on purpose; a value they refuse costs the
// caller a parse by sipgo, never a wrong byte.
package rawreply
