// Package routesig signs the routing state pinhole writes into messages and
// checks it when the state comes back.
//
// pinhole keeps no per-dialog memory: what it needs to route a dialog's later
// requests travels in the messages themselves — the From tag and the flows of
// both ends in its Record-Route entry, the device's flow in the Path it gives
// a farm, the hidden node behind a rewritten Contact. Anyone can write such
// parameters into a request, so unsigned they would let an outsider choose
// where pinhole sends from its own sockets (an open relay with the edge's
// address and the trust the farm gives it). Every such entry therefore
// carries a MAC, an HMAC-SHA256 over the dialog's Call-ID and every
// parameter pinhole wrote, truncated to 80 bits: a forger has one chance in
// 2^80 per try, and a try costs a datagram. An entry is followed only when
// its MAC verifies.
//
// The keys are per deployment, kept in a key file (generated at first start
// with mode 0600, or shared by edges that must honour each other's entries).
// Rotation adds a new key on top; entries signed with an older key are still
// accepted for a grace period, since dialogs outlive a rotation. See
// docs/security.md.
package routesig

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// KeySize is the size of one key: as long as SHA-256's output, the most an
// HMAC key can usefully hold (RFC 2104 §3).
const KeySize = 32

// macBytes is the truncated MAC: 80 bits is the shortest truncation RFC 2104
// §5 allows (at least half the hash and at least 80 bits).
const macBytes = 10

// encoding is lower-case base32 without padding, so the MAC is a URI
// parameter token (RFC 3261 §25.1) that survives a proxy lower-casing it.
var encoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Len is the length of a MAC as Sign writes it.
var Len = encoding.EncodedLen(macBytes)

// ErrKeyFile is wrapped by errors about a key file that cannot be used.
var ErrKeyFile = errors.New("route signing key file")

// key is one signing key and when it was made current.
type key struct {
	created time.Time
	secret  [KeySize]byte
}

// ring is an immutable set of keys, newest first.
type ring struct {
	keys  []key
	grace time.Duration
}

// Keyring signs with the newest key and verifies with every key still in
// its grace period. It is safe for concurrent use; Reload and Rotate swap
// the whole ring at once.
type Keyring struct {
	path  string
	grace time.Duration
	now   func() time.Time
	cur   atomic.Pointer[ring]
}

// Open reads the key file at path, creating it with one fresh key when it
// does not exist. grace is how long a key stays valid for verification
// after a newer one was added.
func Open(path string, grace time.Duration) (*Keyring, error) {
	r := &Keyring{path: path, grace: grace, now: time.Now}
	if err := r.Reload(); errors.Is(err, os.ErrNotExist) {
		if err := r.write([]key{r.newKey()}); err != nil {
			return nil, err
		}
		err = r.Reload()
		if err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	return r, nil
}

// NewStatic is a Keyring of one key held in memory only, for tests and for
// embedding where no file is wanted.
func NewStatic(secret [KeySize]byte) *Keyring {
	r := &Keyring{now: time.Now}
	r.cur.Store(&ring{keys: []key{{secret: secret}}})
	return r
}

// Reload reads the key file again: a file an operator (or the other edge)
// rotated takes effect without a restart. The ring in use stays when the
// file cannot be read.
func (r *Keyring) Reload() error {
	if r.path == "" {
		return nil
	}
	data, err := os.ReadFile(r.path)
	if err != nil {
		return fmt.Errorf("read %s: %w", r.path, errors.Join(ErrKeyFile, err))
	}
	keys, err := parse(data)
	if err != nil {
		return fmt.Errorf("read %s: %w", r.path, err)
	}
	r.cur.Store(&ring{keys: keys, grace: r.grace})
	return nil
}

// Rotate adds a new key, current at once, and writes the file. Older keys
// stay valid for verification for the grace period; keys past it are
// dropped from the file.
func (r *Keyring) Rotate() error {
	old := r.cur.Load()
	now := r.now()
	keys := []key{r.newKey()}
	for i, k := range old.keys {
		if old.valid(i, now) {
			keys = append(keys, k)
		}
	}
	if r.path != "" {
		if err := r.write(keys); err != nil {
			return err
		}
	}
	r.cur.Store(&ring{keys: keys, grace: old.grace})
	return nil
}

func (r *Keyring) newKey() key {
	k := key{created: r.now().Truncate(time.Second)}
	if _, err := rand.Read(k.secret[:]); err != nil {
		panic(fmt.Sprintf("routesig: read random key: %v", err)) // crypto/rand does not fail on Linux
	}
	return k
}

// write stores keys atomically (temporary file, fsync, rename) with mode
// 0600: the file is a secret.
func (r *Keyring) write(keys []key) error {
	var b bytes.Buffer
	b.WriteString("# pinhole route signing keys: unix-time-made-current hex-key, newest first\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%d %s\n", k.created.Unix(), hex.EncodeToString(k.secret[:]))
	}
	if err := os.MkdirAll(filepath.Dir(r.path), 0o700); err != nil {
		return fmt.Errorf("write %s: %w", r.path, errors.Join(ErrKeyFile, err))
	}
	tmp := r.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", r.path, errors.Join(ErrKeyFile, err))
	}
	_, err = f.Write(b.Bytes())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, r.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", r.path, errors.Join(ErrKeyFile, err))
	}
	return nil
}

// parse reads a key file: one key a line, "unix-time hex", newest first;
// blank lines and lines starting with # are skipped.
func parse(data []byte) ([]key, error) {
	var keys []key
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		ts, hx, ok := strings.Cut(line, " ")
		sec, err := strconv.ParseInt(ts, 10, 64)
		if !ok || err != nil {
			return nil, fmt.Errorf("line %d: want \"unix-time hex-key\": %w", n, ErrKeyFile)
		}
		raw, err := hex.DecodeString(strings.TrimSpace(hx))
		if err != nil || len(raw) != KeySize {
			return nil, fmt.Errorf("line %d: key must be %d bytes in hex: %w", n, KeySize, ErrKeyFile)
		}
		k := key{created: time.Unix(sec, 0)}
		copy(k.secret[:], raw)
		if len(keys) > 0 && k.created.After(keys[len(keys)-1].created) {
			return nil, fmt.Errorf("line %d: keys must be listed newest first: %w", n, ErrKeyFile)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("no key: %w", ErrKeyFile)
	}
	return keys, nil
}

// Keys reports how many keys verify now (the current one included).
func (r *Keyring) Keys() int {
	rg, now := r.cur.Load(), r.now()
	n := 0
	for i := range rg.keys {
		if rg.valid(i, now) {
			n++
		}
	}
	return n
}

// valid reports whether key i verifies at now: the current key always, an
// older one until grace after the key above it was made current.
func (rg *ring) valid(i int, now time.Time) bool {
	return i == 0 || now.Sub(rg.keys[i-1].created) < rg.grace
}

// Sign returns the MAC of parts under the current key. The parts are
// length-prefixed, so ("ab","c") and ("a","bc") sign differently.
func (r *Keyring) Sign(parts ...string) string {
	var mac [sha256.Size]byte
	sum(&r.cur.Load().keys[0].secret, parts, &mac)
	return encoding.EncodeToString(mac[:macBytes])
}

// Verify reports whether sig is the MAC of parts under a key that is still
// valid.
func (r *Keyring) Verify(sig string, parts ...string) bool {
	if len(sig) != Len {
		return false
	}
	var want [macBytes]byte
	if n, err := encoding.Decode(want[:], []byte(sig)); err != nil || n != macBytes {
		return false
	}
	rg, now := r.cur.Load(), r.now()
	var mac [sha256.Size]byte
	for i := range rg.keys {
		if !rg.valid(i, now) {
			break // older keys are older still
		}
		sum(&rg.keys[i].secret, parts, &mac)
		if subtle.ConstantTimeCompare(mac[:macBytes], want[:]) == 1 {
			return true
		}
	}
	return false
}

func sum(secret *[KeySize]byte, parts []string, out *[sha256.Size]byte) {
	h := hmac.New(sha256.New, secret[:])
	var n [binary.MaxVarintLen64]byte
	for _, p := range parts {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(p)))])
		h.Write([]byte(p))
	}
	h.Sum(out[:0])
}
