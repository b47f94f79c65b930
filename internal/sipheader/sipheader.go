// Package sipheader names SIP header fields the way RFC 3261 §7.3.3 asks:
// in any case, by their long or compact form. The fast path, the slow
// path's sanity check and the bench tools read datagrams before (or
// instead of) a full parser, per packet, so nothing here allocates.
package sipheader

// Name is a header field pinhole reads. Any other field is Other.
type Name uint8

const (
	Other Name = iota
	Via
	From
	To
	CallID
	CSeq
	Contact
	ContentLength
	Expires
	MaxForwards
	UserAgent
	Supported
	Require
	ProxyRequire
	Path
	Route
	RecordRoute
	Authorization
	WWWAuthenticate
	ProxyAuthenticate
	numNames
)

// forms holds each Name's long form in lower case and its compact form
// (RFC 3261 §20), 0 where it has none.
//
// Supported has a compact form, "k", that is left out on purpose: sipgo
// (v1.7), which parses what the slow path handles, keeps "k" as a field of
// its own, and a fast path that read it as Supported would answer
// differently from the slow path for the same REGISTER.
var forms = [numNames]struct {
	long    string
	compact byte
}{
	Via:               {"via", 'v'},
	From:              {"from", 'f'},
	To:                {"to", 't'},
	CallID:            {"call-id", 'i'},
	CSeq:              {"cseq", 0},
	Contact:           {"contact", 'm'},
	ContentLength:     {"content-length", 'l'},
	Expires:           {"expires", 0},
	MaxForwards:       {"max-forwards", 0},
	UserAgent:         {"user-agent", 0},
	Supported:         {"supported", 0},
	Require:           {"require", 0},
	ProxyRequire:      {"proxy-require", 0},
	Path:              {"path", 0},
	Route:             {"route", 0},
	RecordRoute:       {"record-route", 0},
	Authorization:     {"authorization", 0},
	WWWAuthenticate:   {"www-authenticate", 0},
	ProxyAuthenticate: {"proxy-authenticate", 0},
}

// byCompact maps a one-byte name, either case, to its Name. byShape maps a
// longer name's length and last byte (its low five bits, which fold case)
// to the one Name it could be, so that Lookup compares a name with one
// long form at most; no two long forms share both.
var (
	byCompact [256]Name
	byShape   [maxLen + 1][32]Name
)

// maxLen is the length of the longest long form.
const maxLen = len("proxy-authenticate")

func init() {
	for n := Name(1); n < numNames; n++ {
		f := forms[n]
		if f.compact != 0 {
			byCompact[f.compact] = n
			byCompact[f.compact-'a'+'A'] = n
		}
		slot := &byShape[len(f.long)][f.long[len(f.long)-1]&31]
		if *slot != Other {
			panic("sipheader: " + f.long + " and " + forms[*slot].long + " share a length and a last letter")
		}
		*slot = n
	}
}

// Lookup names a header field from its name as it stands before the colon
// (without surrounding whitespace).
func Lookup(name []byte) Name {
	switch {
	case len(name) == 1:
		return byCompact[name[0]]
	case len(name) == 0 || len(name) > maxLen:
		return Other
	}
	n := byShape[len(name)][name[len(name)-1]&31]
	if n != Other && EqualFold(name, forms[n].long) {
		return n
	}
	return Other
}

// String returns the long form in lower case, or "" for Other.
func (n Name) String() string {
	if n >= numNames {
		return ""
	}
	return forms[n].long
}

// EqualFold reports whether b is the lower-case ASCII string lower,
// ignoring the case of b. Header names compare this way (RFC 3261 §7.3.1),
// and so do most other SIP tokens: the version, parameter names.
func EqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
