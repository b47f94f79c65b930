package digest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"unsafe"
)

// Credentials holds HA1 values per user and realm, loaded from a file with
// one line per user:
//
//	username realm md5-ha1 [sha256-ha1]
//
// Fields are separated by spaces or tabs; '#' starts a comment; blank lines
// are ignored. HA1 = H(username ":" realm ":" password) in hex (see [HA1]).
// A Credentials is read-only once parsed and safe for concurrent use.
//
// A carrier's file names millions of users, and every one of them stays in
// memory for pinhole's whole life. So the users sit back to back in one
// byte arena, found through an open-addressing table of offsets: about 130
// bytes a user with both HA1s, where a map of strings cost some 430, and
// neither slice holds a pointer, so the garbage collector never scans them
// and they add nothing to its work (docs/auth.md, "Memory").
type Credentials struct {
	// arena holds one record per user (see appendRecord); HA1 returns
	// strings that point into it, which is safe because nothing writes to
	// it once parsing is done.
	arena []byte
	// slots holds 1 + the arena offset of a record, 0 for an empty slot;
	// its length is a power of two at least twice the users, keyed by a
	// hash of realm NUL user so that the event loops look a user up from
	// the request's bytes without allocating.
	slots []uint32
	users int
	seed  maphash.Seed
}

// A record is: key length (2 bytes), the key (realm NUL user), the line it
// came from (4 bytes, for the duplicate's error), the MD5 HA1 (32 hex
// digits), a flag byte (1: a SHA-256 HA1 follows), and the SHA-256 HA1 (64
// hex digits) when flagged. Lengths are little-endian.
const (
	recMD5Len    = 32
	recSHA256Len = 64
	// maxArena keeps offsets (+1) inside a uint32.
	maxArena = 1<<32 - 2
)

// credKey appends the lookup key of user in realm to dst.
func credKey(dst []byte, user, realm string) []byte {
	dst = append(dst, realm...)
	dst = append(dst, 0)
	return append(dst, user...)
}

// record is a view of one record in the arena.
type record struct {
	key    []byte
	line   int
	md5    []byte
	sha256 []byte // nil when the line had no SHA-256 column
}

func (c *Credentials) record(off uint32) record {
	a := c.arena[off:]
	kl := int(binary.LittleEndian.Uint16(a))
	a = a[2:]
	r := record{key: a[:kl:kl]}
	a = a[kl:]
	r.line = int(binary.LittleEndian.Uint32(a))
	a = a[4:]
	r.md5 = a[:recMD5Len:recMD5Len]
	a = a[recMD5Len:]
	if a[0] == 1 {
		r.sha256 = a[1 : 1+recSHA256Len : 1+recSHA256Len]
	}
	return r
}

// find returns the slot of key: the one holding it, or the empty slot
// where it belongs (found false).
func (c *Credentials) find(key []byte) (slot int, found bool) {
	mask := len(c.slots) - 1
	for i := int(maphash.Bytes(c.seed, key)) & mask; ; i = (i + 1) & mask {
		v := c.slots[i]
		if v == 0 {
			return i, false
		}
		if bytes.Equal(c.record(v-1).key, key) {
			return i, true
		}
	}
}

// grow doubles the table once it is half full, so probes stay short.
func (c *Credentials) grow() {
	if len(c.slots) != 0 && 2*(c.users+1) <= len(c.slots) {
		return
	}
	old := c.slots
	c.slots = make([]uint32, max(2*len(old), 1024))
	for _, v := range old {
		if v != 0 {
			i, _ := c.find(c.record(v - 1).key)
			c.slots[i] = v
		}
	}
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
	c := &Credentials{seed: maphash.MakeSeed()}
	sc := bufio.NewScanner(r)
	line := 0
	var key []byte
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
		key = credKey(key[:0], fields[0], fields[1])
		if len(key) > math.MaxUint16 {
			return nil, fmt.Errorf("line %d: user and realm longer than %d bytes", line, math.MaxUint16)
		}
		md5, err := parseHA1(fields[2], MD5)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		var sha string
		if len(fields) == 4 {
			if sha, err = parseHA1(fields[3], SHA256); err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
		}
		c.grow()
		slot, dup := c.find(key)
		if dup {
			return nil, fmt.Errorf("line %d: user %q in realm %q already defined on line %d", line, fields[0], fields[1], c.record(c.slots[slot]-1).line)
		}
		off := len(c.arena)
		c.arena = appendRecord(c.arena, key, line, md5, sha)
		if len(c.arena) > maxArena {
			return nil, fmt.Errorf("line %d: credentials file too large", line)
		}
		c.slots[slot] = uint32(off) + 1
		c.users++
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read credentials after line %d: %w", line, err)
	}
	// The arena grew by doubling; a copy of the exact size gives the
	// slack back (a third of it on average).
	c.arena = slices.Clip(append([]byte(nil), c.arena...))
	return c, nil
}

func appendRecord(dst, key []byte, line int, md5, sha256 string) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(key)))
	dst = append(dst, key...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(min(line, math.MaxUint32)))
	dst = append(dst, md5...)
	if sha256 == "" {
		return append(dst, 0)
	}
	dst = append(dst, 1)
	return append(dst, sha256...)
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
// user is unknown or has no HA1 for that algorithm. It does not allocate.
func (c *Credentials) HA1(user, realm string, alg Algorithm) (ha1 string, ok bool) {
	if c == nil || c.users == 0 {
		return "", false
	}
	var buf [256]byte
	slot, found := c.find(credKey(buf[:0], user, realm))
	if !found {
		return "", false
	}
	r := c.record(c.slots[slot] - 1)
	var h []byte
	switch alg {
	case MD5:
		h = r.md5
	case SHA256:
		h = r.sha256
	}
	if len(h) == 0 {
		return "", false
	}
	return unsafe.String(&h[0], len(h)), true
}

// Missing returns the first user (in byte order, so errors are stable) of
// realm that has no HA1 for alg.
func (c *Credentials) Missing(realm string, alg Algorithm) (user string, found bool) {
	if c == nil {
		return "", false
	}
	for off := 0; off < len(c.arena); {
		r := c.record(uint32(off))
		off += 2 + len(r.key) + 4 + recMD5Len + 1 + len(r.sha256)
		rlm, u, _ := bytes.Cut(r.key, []byte{0})
		if string(rlm) != realm {
			continue
		}
		if _, ok := c.HA1(string(u), realm, alg); !ok && (!found || string(u) < user) {
			user, found = string(u), true
		}
	}
	return user, found
}
