package digest

// HA2Memo remembers the last H(method ":" digest-uri) a caller computed
// (RFC 7616 §3.4.3, A2 for qop=auth), so that the next request with the
// same method and uri skips that hash. Every refresh a registrar checks
// has method REGISTER and, for the devices of one domain, the same uri
// ("sip:<domain>"), so one remembered value serves nearly all of them:
// it saved one hash of the two a response costs (one MD5 block of the
// four an authenticated refresh hashed, docs/fastpath.md, "The loop's
// CPU").
//
// A memo is not safe for concurrent use: each event loop keeps its own.
// The zero value is empty and ready.
type HA2Memo struct {
	alg Algorithm
	// method and uri are copies: the caller's may alias a buffer that
	// is reused.
	method    [maxMemoMethod]byte
	methodLen int
	uri       [maxMemoURI]byte
	uriLen    int
	ha2       [64]byte
	ha2Len    int
}

// maxMemoMethod bounds the method a memo keeps ("REGISTER", "SUBSCRIBE").
const maxMemoMethod = 16

// maxMemoURI bounds the uri a memo keeps: a registrar's Request-URI
// ("sip:" and a domain) is far shorter; a longer one is hashed each time.
const maxMemoURI = 128

// lookup returns the remembered H(method ":" uri), if the memo holds it.
// A nil memo holds nothing.
func (m *HA2Memo) lookup(alg Algorithm, method, uri string) ([]byte, bool) {
	if m == nil || m.ha2Len == 0 || m.alg != alg ||
		string(m.method[:m.methodLen]) != method || string(m.uri[:m.uriLen]) != uri {
		return nil, false
	}
	return m.ha2[:m.ha2Len], true
}

// store remembers ha2 = H(method ":" uri); a nil memo or a long uri is
// left alone.
func (m *HA2Memo) store(alg Algorithm, method, uri string, ha2 []byte) {
	if m == nil || len(method) > maxMemoMethod || len(uri) > maxMemoURI || len(ha2) > len(m.ha2) {
		return
	}
	m.alg = alg
	m.methodLen = copy(m.method[:], method)
	m.uriLen = copy(m.uri[:], uri)
	m.ha2Len = copy(m.ha2[:], ha2)
}
