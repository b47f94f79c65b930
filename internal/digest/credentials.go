package digest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
)

// Credentials holds HA1 values per user and realm, loaded from a file with
// one line per user:
//
//	username realm md5-ha1 [sha256-ha1]
//
// Fields are separated by spaces or tabs; '#' starts a comment; blank lines
// are ignored. HA1 = H(username ":" realm ":" password) in hex (see [HA1]).
// A Credentials is read-only once parsed and safe for concurrent use.
type Credentials struct {
	// users is keyed by realm NUL user, so that the event loops look a
	// user up from the request's bytes without allocating.
	users map[string]ha1Pair
}

type ha1Pair struct{ user, realm, md5, sha256 string }

// credKey appends the map key of user in realm to dst.
func credKey(dst []byte, user, realm string) []byte {
	dst = append(dst, realm...)
	dst = append(dst, 0)
	return append(dst, user...)
}

// LoadCredentials reads a credentials file.
func LoadCredentials(path string) (*Credentials, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load credentials: %w", err)
	}
	defer f.Close()
	c, err := ParseCredentials(f)
	if err != nil {
		return nil, fmt.Errorf("load credentials %s: %w", path, err)
	}
	return c, nil
}

// ParseCredentials parses the credentials format described on [Credentials].
// Errors name the line number.
func ParseCredentials(r io.Reader) (*Credentials, error) {
	c := &Credentials{users: make(map[string]ha1Pair)}
	seen := make(map[string]int)
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		if len(fields) < 3 || len(fields) > 4 {
			return nil, fmt.Errorf("line %d: want `username realm md5-ha1 [sha256-ha1]`, got %d fields", line, len(fields))
		}
		if strings.IndexByte(text, 0) >= 0 {
			return nil, fmt.Errorf("line %d: NUL byte", line)
		}
		key := string(credKey(nil, fields[0], fields[1]))
		if prev, dup := seen[key]; dup {
			return nil, fmt.Errorf("line %d: user %q in realm %q already defined on line %d", line, fields[0], fields[1], prev)
		}
		p := ha1Pair{user: fields[0], realm: fields[1]}
		var err error
		if p.md5, err = parseHA1(fields[2], MD5); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if len(fields) == 4 {
			if p.sha256, err = parseHA1(fields[3], SHA256); err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
		}
		seen[key] = line
		c.users[key] = p
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read credentials after line %d: %w", line, err)
	}
	return c, nil
}

// parseHA1 checks an HA1 column and returns it in lowercase: the response is
// compared as lowercase hex (RFC 7616 §3.4.1 "LHEX").
func parseHA1(s string, alg Algorithm) (string, error) {
	if len(s) != alg.HexLen() {
		return "", fmt.Errorf("%s HA1 %q: want %d hex digits, got %d", alg, s, alg.HexLen(), len(s))
	}
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return "", fmt.Errorf("%s HA1 %q: not hex at position %d", alg, s, i+1)
		}
	}
	return strings.ToLower(s), nil
}

func isHex(b byte) bool {
	return '0' <= b && b <= '9' || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F'
}

// HA1 returns the stored HA1 for user in realm with alg; ok is false when the
// user is unknown or has no HA1 for that algorithm.
func (c *Credentials) HA1(user, realm string, alg Algorithm) (ha1 string, ok bool) {
	if c == nil {
		return "", false
	}
	var buf [256]byte
	p, ok := c.users[string(credKey(buf[:0], user, realm))]
	if !ok {
		return "", false
	}
	switch alg {
	case MD5:
		ha1 = p.md5
	case SHA256:
		ha1 = p.sha256
	}
	return ha1, ha1 != ""
}

// Missing returns the first user (in byte order, so errors are stable) of
// realm that has no HA1 for alg.
func (c *Credentials) Missing(realm string, alg Algorithm) (user string, found bool) {
	for _, k := range c.users {
		if k.realm != realm {
			continue
		}
		if _, ok := c.HA1(k.user, realm, alg); !ok && (!found || k.user < user) {
			user, found = k.user, true
		}
	}
	return user, found
}
