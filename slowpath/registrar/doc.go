// Package registrar is pinhole's own registrar (RFC 3261 §10.3) for when no
// upstream registrar is configured: it is then the authority for bindings.
//
// It validates a REGISTER, applies it to the location store atomically per
// address-of-record (Call-ID/CSeq ordering, RFC 5626 instance and reg-id
// replacement, expiry bounds, a maximum of contacts) and answers with every
// current contact and its remaining expiry. The flow the request arrived on
// is stored with each binding so that later requests reach the device
// through its NAT.
package registrar
