// Package auth authenticates SIP requests with HTTP Digest (RFC 3261 §22,
// RFC 7616, RFC 8760) for pinhole's standalone registrar and proxy.
//
// An [Authenticator] checks the Authorization (REGISTER, answered with 401)
// or Proxy-Authorization (other requests, answered with 407) header of a
// request against HA1 values from a [Credentials] file, and builds the
// challenges to send back. Nonces are stateless: they carry their issue time
// and an HMAC, so any pinhole worker sharing the secret can verify them.
//
// Check runs once per request in the slow path; it does not log. The operator
// documentation is docs/auth.md.
package auth
