package digest

import (
	"strings"
	"testing"
	"unsafe"
)

// TestHA2Memo: a response computed with the memo is the one computed
// without it, whatever changed since the memo was filled: the algorithm,
// the method, the uri, and the caller's uri buffer overwritten in place
// (the event loop's uri aliases a datagram buffer that the next read
// reuses).
func TestHA2Memo(t *testing.T) {
	buf := []byte("sip:example.com")
	aliased := func() string { return unsafe.String(&buf[0], len(buf)) }
	steps := []struct {
		name   string
		alg    Algorithm
		method string
		uri    func() string
		edit   func()
	}{
		{"first", MD5, "REGISTER", aliased, nil},
		{"same again", MD5, "REGISTER", aliased, nil},
		{"other algorithm", SHA256, "REGISTER", aliased, nil},
		{"other method", SHA256, "INVITE", aliased, nil},
		{"buffer overwritten", SHA256, "INVITE", aliased, func() { copy(buf, "sip:examplE.org") }},
		{"long uri", MD5, "REGISTER", func() string { return "sip:" + strings.Repeat("x", maxMemoURI) }, nil},
		{"back to the short one", MD5, "REGISTER", aliased, nil},
	}
	var m HA2Memo
	for _, s := range steps {
		if s.edit != nil {
			s.edit()
		}
		p := Params{Nonce: "n", URI: s.uri(), NC: "00000001", CNonce: "c", QOP: "auth"}
		ha1 := HA1(s.alg, "alice", "pinhole", "pw")
		want := string(AppendResponse(nil, s.alg, ha1, s.method, &p))
		if got := string(appendResponse(nil, s.alg, ha1, s.method, &p, &m)); got != want {
			t.Errorf("%s: with the memo %s, without %s", s.name, got, want)
		}
	}
}
