package proxy

import (
	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/location"
)

// Locator is the part of the location store the proxy reads.
type Locator interface {
	// Lookup returns the live bindings of aor, highest q first.
	Lookup(aor string) []location.Binding
	// Known reports whether aor is a user of ours at all, registered or
	// not; it tells 404 (no such user) from 480 (no contact now). It is
	// asked only when Lookup found nothing.
	Known(aor string) bool
}

// Verdict is an Authorizer's answer. Its fields are those of auth.Result,
// so an *auth.Authenticator is adapted with a conversion:
//
//	proxy.AuthorizerFunc(func(r *sip.Request) proxy.Verdict {
//		return proxy.Verdict(authn.Check(r, false))
//	})
type Verdict struct {
	// OK is true when the request carries valid credentials.
	OK bool
	// User is the authenticated user when OK.
	User string
	// Status and Reason are the response to send when !OK (407, 403, 400).
	Status int
	Reason string
	// Headers are added to that response (Proxy-Authenticate challenges).
	Headers []sip.Header
}

// Authorizer checks Proxy-Authorization (RFC 3261 §22.3) of initial
// requests from users of our domains.
type Authorizer interface {
	Authorize(req *sip.Request) Verdict
}

// AuthorizerFunc adapts a function to Authorizer.
type AuthorizerFunc func(req *sip.Request) Verdict

// Authorize calls f.
func (f AuthorizerFunc) Authorize(req *sip.Request) Verdict { return f(req) }
