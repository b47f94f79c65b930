package digest

import (
	"errors"
	"fmt"
	"strings"
)

// Params is one parsed Digest credentials value (RFC 7616 §3.4,
// RFC 3261 §25.1 "digest-response"). Empty means absent.
type Params struct {
	Username  string
	Realm     string
	Nonce     string
	URI       string
	Response  string
	Algorithm string
	CNonce    string
	Opaque    string
	QOP       string
	NC        string
}

// ErrNotDigest is Parse's answer to another scheme (Basic, Bearer…):
// credentials for someone else, to be skipped.
var ErrNotDigest = errors.New("not a Digest credentials value")

// Parse parses an Authorization or Proxy-Authorization value.
//
// It returns ErrNotDigest for another scheme (Basic, Bearer…), which the
// caller ignores. The grammar is RFC 3261 §25.1: the scheme is
// case-insensitive (RFC 7235 §2.1), parameters come in any order with
// case-insensitive names, values are tokens or quoted strings with
// backslash escapes, and whitespace may surround '=' and ',' (EQUAL and
// COMMA allow SWS). A parameter given twice is an error (RFC 7235 §2.1:
// each name occurs once), so two readers of the header can never disagree.
// Unknown parameters (auth-param) are skipped.
//
// Unescaped values are substrings of s, so the common case does not allocate.
func Parse(s string) (Params, error) {
	var d Params
	s = trimSWS(s)
	const scheme = "Digest"
	if len(s) < len(scheme) || !strings.EqualFold(s[:len(scheme)], scheme) {
		return d, ErrNotDigest
	}
	rest := s[len(scheme):]
	if rest == "" {
		return d, errors.New("no parameters after Digest")
	}
	if rest[0] != ' ' && rest[0] != '\t' {
		// "DigestX ..." is another scheme.
		return d, ErrNotDigest
	}
	var seen uint16
	p := rest
	for {
		p = trimLeftSWS(p)
		// Empty list elements are allowed (RFC 7230 §7 #rule).
		for len(p) > 0 && p[0] == ',' {
			p = trimLeftSWS(p[1:])
		}
		if p == "" {
			break
		}
		n := tokenLen(p)
		if n == 0 {
			return d, fmt.Errorf("expected parameter name at %q", clip(p))
		}
		name := p[:n]
		p = trimLeftSWS(p[n:])
		if p == "" || p[0] != '=' {
			return d, fmt.Errorf("parameter %q has no value", name)
		}
		p = trimLeftSWS(p[1:])
		var val string
		var err error
		if p != "" && p[0] == '"' {
			val, p, err = quotedString(p)
			if err != nil {
				return d, fmt.Errorf("parameter %q: %w", name, err)
			}
		} else {
			n := tokenLen(p)
			if n == 0 {
				return d, fmt.Errorf("parameter %q has no value", name)
			}
			val, p = p[:n], p[n:]
		}
		if bit, dst := d.field(name); dst != nil {
			if seen&bit != 0 {
				return d, fmt.Errorf("parameter %q given twice", name)
			}
			seen |= bit
			*dst = val
		}
		p = trimLeftSWS(p)
		if p == "" {
			break
		}
		if p[0] != ',' {
			return d, fmt.Errorf("expected ',' after parameter %q at %q", name, clip(p))
		}
	}
	if seen == 0 {
		return d, errors.New("no known Digest parameters")
	}
	return d, nil
}

// field maps a parameter name to its slot and a bit for duplicate detection.
func (d *Params) field(name string) (uint16, *string) {
	// ToLower does not allocate for the lower-case names clients send.
	switch strings.ToLower(name) {
	case "username":
		return 1 << 0, &d.Username
	case "realm":
		return 1 << 1, &d.Realm
	case "nonce":
		return 1 << 2, &d.Nonce
	case "uri":
		return 1 << 3, &d.URI
	case "response":
		return 1 << 4, &d.Response
	case "algorithm":
		return 1 << 5, &d.Algorithm
	case "cnonce":
		return 1 << 6, &d.CNonce
	case "opaque":
		return 1 << 7, &d.Opaque
	case "qop":
		return 1 << 8, &d.QOP
	case "nc":
		return 1 << 9, &d.NC
	}
	return 0, nil
}

// quotedString reads a quoted-string (RFC 3261 §25.1) at the start of s and
// returns its unescaped content and the rest of s.
func quotedString(s string) (val, rest string, err error) {
	// s[0] == '"'
	escaped := false
	for i := 1; i < len(s); i++ {
		if !qdSpecial[s[i]] {
			continue // plain qdtext, most of every value
		}
		switch c := s[i]; {
		case c == '"':
			if !escaped {
				return s[1:i], s[i+1:], nil
			}
			return unescape(s[1:i]), s[i+1:], nil
		case c == '\\':
			// quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
			if i+1 >= len(s) {
				return "", "", errors.New("unterminated quoted string")
			}
			if n := s[i+1]; n == '\r' || n == '\n' || n >= 0x80 {
				return "", "", errors.New("invalid escape in quoted string")
			}
			escaped = true
			i++
		case c < 0x20 && c != '\t' || c == 0x7f:
			// qdtext excludes controls; folded LWS was unfolded by the parser.
			return "", "", fmt.Errorf("control character %#x in quoted string", c)
		}
	}
	return "", "", errors.New("unterminated quoted string")
}

// qdSpecial marks the bytes quotedString must look at: the closing quote,
// the escape and the controls qdtext excludes. One table look-up per byte
// instead of four comparisons: values are most of a Digest header.
var qdSpecial = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = c != '\t'
	}
	t['"'], t['\\'], t[0x7f] = true, true, true
	return t
}()

func unescape(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// tokenLen returns the length of the RFC 3261 §25.1 token at the start of s.
func tokenLen(s string) int {
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return i
		}
	}
	return len(s)
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '!', '%', '*', '_', '+', '`', '\'', '~':
		return true
	}
	return false
}

func isSWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func trimLeftSWS(s string) string {
	for len(s) > 0 && isSWS(s[0]) {
		s = s[1:]
	}
	return s
}

func trimSWS(s string) string {
	s = trimLeftSWS(s)
	for len(s) > 0 && isSWS(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

// clip shortens input quoted in an error message.
func clip(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}

// quote returns s as a quoted-string, escaping '"' and '\'.
func Quote(s string) string {
	if !strings.ContainsAny(s, `"\`) {
		return `"` + s + `"`
	}
	var b strings.Builder
	b.Grow(len(s) + 4)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}
