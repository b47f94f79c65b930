package digest

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Algorithm is a digest algorithm (RFC 7616 §3.3, RFC 8760 §2.1).
//
// The "-sess" variants are not supported: pinhole never offers them, and a
// response that uses one is not accepted (the client is challenged again).
type Algorithm uint8

const (
	// MD5 is the RFC 2617 algorithm; the default when a response names none.
	MD5 Algorithm = iota + 1
	// SHA256 is "SHA-256" (RFC 7616, RFC 8760).
	SHA256
)

// String returns the token used in the algorithm parameter.
func (a Algorithm) String() string {
	switch a {
	case MD5:
		return "MD5"
	case SHA256:
		return "SHA-256"
	}
	return fmt.Sprintf("Algorithm(%d)", uint8(a))
}

// ParseAlgorithm parses an algorithm token case-insensitively ("MD5",
// "SHA-256"). RFC 7616 §3.3 spells them in upper case, but sipgo's client
// itself upper-cases what it receives, so peers are known to vary.
func ParseAlgorithm(s string) (Algorithm, error) {
	switch {
	case strings.EqualFold(s, "MD5"):
		return MD5, nil
	case strings.EqualFold(s, "SHA-256"):
		return SHA256, nil
	}
	return 0, fmt.Errorf("unsupported digest algorithm %q", s)
}

// HexLen is the length of a digest in lowercase hex.
func (a Algorithm) HexLen() int {
	switch a {
	case MD5:
		return 2 * md5.Size
	case SHA256:
		return 2 * sha256.Size
	}
	return 0
}

// AppendSum hashes p and appends the lowercase hex digest to dst.
func (a Algorithm) AppendSum(dst, p []byte) []byte {
	switch a {
	case MD5:
		s := md5.Sum(p)
		return hex.AppendEncode(dst, s[:])
	case SHA256:
		s := sha256.Sum256(p)
		return hex.AppendEncode(dst, s[:])
	}
	panic("digest: AppendSum on invalid algorithm " + a.String())
}

// HA1 returns H(username ":" realm ":" password) in lowercase hex
// (RFC 7616 §3.4.2), the value a credentials file stores.
func HA1(alg Algorithm, user, realm, password string) string {
	buf := make([]byte, 0, len(user)+len(realm)+len(password)+2)
	buf = append(buf, user...)
	buf = append(buf, ':')
	buf = append(buf, realm...)
	buf = append(buf, ':')
	buf = append(buf, password...)
	return string(alg.AppendSum(nil, buf))
}
