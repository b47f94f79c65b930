// Package sipsyntax holds the syntax rules that readers of raw SIP bytes
// apply before a full parser runs: the fast path's REGISTER scanner and the
// slow path's sanity filter must refuse exactly the same values, or the
// fast path would answer 200 to what the slow path answers 400. One copy
// here keeps them from drifting apart.
package sipsyntax

import "bytes"

// ValidAddress reports whether a From, To or Contact value (RFC 3261
// §20.10) is one a parser reads as the sender meant it: every quoted
// display name is closed (RFC 4475 §3.1.2.6, quotbal), and a URI holding
// '?' sits inside <> (RFC 4475 §3.1.2.13, regbadct), since outside them
// the '?' would begin URI headers a parser takes for part of the address.
func ValidAddress(v []byte) bool {
	quoted, angle := false, false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case quoted && c == '\\':
			i++ // a quoted-pair: the next byte is taken as it is
		case c == '"':
			quoted = !quoted
		case !quoted && c == '<':
			angle = true
		}
	}
	return !quoted && (angle || bytes.IndexByte(v, '?') < 0)
}

// HeadersInSIPURI reports whether a sip: or sips: URI (the scheme checked
// by the caller) carries URI headers ("?name=value"), which a Request-URI
// may not (RFC 3261 §19.1.1, table; RFC 4475 §3.1.2.11, escruri). A '?'
// in the user part is allowed (user-unreserved), so only what follows the
// last '@' counts.
func HeadersInSIPURI(uri []byte) bool {
	host := uri
	if at := bytes.LastIndexByte(uri, '@'); at >= 0 {
		host = uri[at+1:]
	}
	return bytes.IndexByte(host, '?') >= 0
}

// tokenChars marks the characters of token, RFC 3261 §25.1:
// alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~".
var tokenChars = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "-.!%*_+`'~" {
		t[c] = true
	}
	return t
}()

// IsTokenChar reports whether c may appear in a token (RFC 3261 §25.1).
func IsTokenChar(c byte) bool { return tokenChars[c] }

// IsToken reports whether b is a non-empty token (RFC 3261 §25.1).
func IsToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenChars[c] {
			return false
		}
	}
	return true
}
