// Package certs serves pinhole's TLS side for SIP over TLS and WSS: the
// certificate chosen by the name the client asks for (SNI), the protocol
// versions and cipher suites allowed, and the client-certificate check of
// trusted peers. Everything lives behind one atomic pointer that every
// handshake reads at its start, so a reload (SIGHUP) swaps certificates
// and settings for new connections while those already open keep theirs.
//
// Phones differ in what they send: many send no SNI, or an IP address
// (RFC 6066 §3 forbids that, some do it anyway); they get the default,
// the first configured certificate. docs/tls.md has the details per
// phone family.
package certs
