package midreg

import (
	"encoding/hex"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/pinhole-sip/pinhole/internal/location"
)

// A token is the user part pinhole writes in the Contact or Path it
// inserts upstream: the device's user, then '~', a kind letter and eight
// hex digits of a hash naming what the main side's requests must reach:
//
//	alice~c1a2b3c4d  one device contact (contact insertion, modes mirror and contact)
//	alice~p1a2b3c4d  every contact of one REGISTER Call-ID (path insertion)
//	alice~a1a2b3c4d  every contact of the AOR (mode aor)
//
// The token is derived from the binding, never stored: after a restart
// the same binding yields the same token, so the main registrar's copy
// stays valid. '~' is unreserved in a SIP user part (RFC 3261 §25.1) and
// the hash covers the domain, so a user of another domain never matches.
// A token is not a secret: it reaches only what the AOR already reaches.
const (
	tokenSep     = '~'
	kindContact  = 'c'
	kindPath     = 'p'
	kindAOR      = 'a'
	tokenHashLen = 8
)

func tokenHash(parts ...string) string {
	h := fnv.New32a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	var sum [4]byte
	return hex.EncodeToString(h.Sum(sum[:0]))
}

// contactToken names one binding.
func contactToken(b *location.Binding) string {
	user, domain := splitAOR(b.AOR)
	return user + string(tokenSep) + string(kindContact) +
		tokenHash(domain, b.Contact, b.Instance, strconv.FormatUint(uint64(b.RegID), 10))
}

// pathToken names the bindings one REGISTER dialog (Call-ID) holds.
func pathToken(aor, callID string) string {
	user, domain := splitAOR(aor)
	return user + string(tokenSep) + string(kindPath) + tokenHash(domain, callID)
}

// aorToken names the whole AOR.
func aorToken(aor string) string {
	user, domain := splitAOR(aor)
	return user + string(tokenSep) + string(kindAOR) + tokenHash(domain)
}

func splitAOR(aor string) (user, domain string) {
	i := strings.LastIndexByte(aor, '@')
	if i < 0 {
		return aor, ""
	}
	return aor[:i], aor[i+1:]
}

// parsedToken is a token split into its parts.
type parsedToken struct {
	user string
	kind byte
	hash string
}

// parseToken splits a user part that is a token; ok is false for any
// other user part, so ordinary users pass through untouched.
func parseToken(s string) (parsedToken, bool) {
	i := strings.LastIndexByte(s, tokenSep)
	if i <= 0 || len(s)-i != 2+tokenHashLen {
		return parsedToken{}, false
	}
	t := parsedToken{user: s[:i], kind: s[i+1], hash: s[i+2:]}
	switch t.kind {
	case kindContact, kindPath, kindAOR:
	default:
		return parsedToken{}, false
	}
	for j := 0; j < len(t.hash); j++ {
		c := t.hash[j]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return parsedToken{}, false
		}
	}
	return t, true
}

// match keeps the bindings of aor that t names.
func (t parsedToken) match(aor string, bs []location.Binding) []location.Binding {
	_, domain := splitAOR(aor)
	if t.kind == kindAOR {
		if tokenHash(domain) != t.hash {
			return nil
		}
		return bs
	}
	var out []location.Binding
	for i := range bs {
		b := &bs[i]
		var h string
		if t.kind == kindPath {
			h = tokenHash(domain, b.CallID)
		} else {
			h = tokenHash(domain, b.Contact, b.Instance, strconv.FormatUint(uint64(b.RegID), 10))
		}
		if h == t.hash {
			out = append(out, *b)
		}
	}
	return out
}
