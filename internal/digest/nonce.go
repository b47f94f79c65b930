package digest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"hash"
	"sync"
	"time"
)

// A nonce is base64url(issued || random || tag) where issued is the issue time
// in Unix nanoseconds (8 bytes, big endian), random is 8 bytes from
// crypto/rand, and tag is HMAC-SHA256(secret, issued || random) truncated to
// 16 bytes. Any worker holding the secret verifies it without shared state,
// and RFC 7616 §5.4's advice that nonces be opaque and unforgeable holds.
const (
	nonceTimeLen = 8
	nonceRandLen = 8
	nonceTagLen  = 16 // 128 bits: forging needs 2^128 tries online.
	nonceRawLen  = nonceTimeLen + nonceRandLen + nonceTagLen
)

var nonceEncoding = base64.RawURLEncoding

// NonceLen is the length of an encoded nonce: 43 characters, all of them
// token characters, so the nonce never needs escaping.
const NonceLen = (nonceRawLen*8 + 5) / 6

// NonceKey identifies a nonce in the replay cache: its tag is unique per
// nonce with overwhelming probability and costs no allocation.
type NonceKey [nonceTagLen]byte

// Nonces mints and verifies the stateless nonces of one secret. It is
// safe for concurrent use and allocates nothing but Mint's string.
type Nonces struct {
	pool sync.Pool // of *nonceScratch
}

// nonceScratch is per-call state kept in a pool so that verifying a nonce
// does not allocate: an HMAC keyed with the secret and its buffers.
type nonceScratch struct {
	mac hash.Hash
	sum [sha256.Size]byte
	msg [nonceTimeLen + nonceRandLen]byte
	enc [64]byte // >= NonceLen
}

// NewNonces returns the nonces of secret.
func NewNonces(secret []byte) *Nonces {
	key := append([]byte(nil), secret...)
	n := &Nonces{}
	n.pool.New = func() any { return &nonceScratch{mac: hmac.New(sha256.New, key)} }
	return n
}

// tag writes the truncated HMAC of msg to dst.
func (n *Nonces) tag(dst, msg []byte) {
	sc := n.pool.Get().(*nonceScratch)
	sc.mac.Reset()
	// Hashing from the pooled buffer keeps the caller's array on its stack:
	// a slice passed to the hash.Hash interface would escape.
	sc.mac.Write(sc.msg[:copy(sc.msg[:], msg)])
	copy(dst, sc.mac.Sum(sc.sum[:0]))
	n.pool.Put(sc)
}

// Mint returns a fresh nonce issued at now.
func (n *Nonces) Mint(now time.Time) string {
	var b [NonceLen]byte
	return string(n.Append(b[:0], now))
}

// Append appends a fresh nonce issued at now to dst; the event loops
// challenge with it without allocating.
func (n *Nonces) Append(dst []byte, now time.Time) []byte {
	var raw [nonceRawLen]byte
	binary.BigEndian.PutUint64(raw[:nonceTimeLen], uint64(now.UnixNano()))
	// crypto/rand.Read never returns an error since Go 1.24.
	rand.Read(raw[nonceTimeLen : nonceTimeLen+nonceRandLen])
	n.tag(raw[nonceTimeLen+nonceRandLen:], raw[:nonceTimeLen+nonceRandLen])
	return nonceEncoding.AppendEncode(dst, raw[:])
}

// Verify reports whether s is a nonce this secret issued, and when; key
// names it in the replay memory.
func (n *Nonces) Verify(s string) (issued time.Time, key NonceKey, ok bool) {
	if len(s) != NonceLen {
		return time.Time{}, key, false
	}
	var raw [nonceRawLen]byte
	sc := n.pool.Get().(*nonceScratch)
	_, err := nonceEncoding.Decode(raw[:], sc.enc[:copy(sc.enc[:], s)])
	n.pool.Put(sc)
	if err != nil {
		return time.Time{}, key, false
	}
	var want [nonceTagLen]byte
	n.tag(want[:], raw[:nonceTimeLen+nonceRandLen])
	got := raw[nonceTimeLen+nonceRandLen:]
	if !hmac.Equal(want[:], got) {
		return time.Time{}, key, false
	}
	copy(key[:], got)
	issued = time.Unix(0, int64(binary.BigEndian.Uint64(raw[:nonceTimeLen])))
	return issued, key, true
}
