package config

import (
	"strings"
	"time"
)

// Auth configures digest authentication in standalone mode.
type Auth struct {
	Realm       string        `yaml:"realm"`
	Credentials string        `yaml:"credentials"` // empty: authentication off
	NonceTTL    time.Duration `yaml:"nonce_ttl"`
	// Algorithms offered in challenges, most preferred first (RFC 8760:
	// one challenge per algorithm). Some devices, sipp among them, answer
	// only the first challenge and only with MD5: list MD5 alone for them.
	Algorithms []string `yaml:"algorithms"`
}

// Enabled reports whether requests must authenticate.
func (a Auth) Enabled() bool { return a.Credentials != "" }

func (a Auth) validate() error {
	if a.Realm == "" || strings.ContainsAny(a.Realm, "\"\\\r\n") {
		return bad("auth.realm", "%q: must be non-empty and contain no quote, backslash or line break", a.Realm)
	}
	if len(a.Algorithms) == 0 {
		return bad("auth.algorithms", "offer at least one of SHA-256, MD5")
	}
	for _, alg := range a.Algorithms {
		if alg != "SHA-256" && alg != "MD5" {
			return bad("auth.algorithms", "%q: must be SHA-256 or MD5", alg)
		}
	}
	if a.NonceTTL < time.Second || a.NonceTTL > time.Hour {
		return bad("auth.nonce_ttl", "%s: must be between 1s and 1h", a.NonceTTL)
	}
	return nil
}
