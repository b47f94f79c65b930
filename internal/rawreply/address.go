package rawreply

import "bytes"

// URI is a SIP URI that sipgo (v1.7) prints back unchanged after parsing
// it; the slices alias the value it was read from.
type URI struct {
	User []byte // empty when the URI has no user part
	Host []byte
}

// Address is a From or To value that sipgo prints back unchanged, or,
// when Bare, inside angle brackets.
type Address struct {
	URI  URI
	Tag  bool // a tag parameter is present (in any case)
	Bare bool // a URI alone, without parameters (addr-spec): sipgo adds "<" and ">"
}

// ParseURI checks u against this grammar, narrower than RFC 3261 §25.1 on
// purpose, and describes it in out:
//
//	("sip:" / "sips:") [user "@"] host [":" port] *(";" name ["=" value])
//
// The scheme in lower case; user of letters, digits and -_.!~*'+ (no
// password, no escapes); host a name or an IPv4 address of letters,
// digits, '.' and '-' (sipgo brackets an IPv6 address itself); port
// 1-65535 without leading zeros; parameter names and values of token
// characters, no name twice, no empty value after '='. No URI headers.
func ParseURI(u []byte, out *URI) bool {
	*out = URI{}
	i := 0
	switch {
	case hasPrefix(u, "sip:"):
		i = len("sip:")
	case hasPrefix(u, "sips:"):
		i = len("sips:")
	default:
		return false
	}
	start := i
	for i < len(u) && userChar(u[i]) {
		i++
	}
	if i < len(u) && u[i] == '@' {
		if i == start {
			return false
		}
		out.User = u[start:i]
		i++
		start = i
	} else {
		i = start // no user part: read it again as the host
	}
	for i < len(u) && (alnum(u[i]) || u[i] == '.' || u[i] == '-') {
		i++
	}
	if i == start {
		return false
	}
	out.Host = u[start:i]
	if i < len(u) && u[i] == ':' {
		n, ok := port(u, i+1)
		if !ok {
			return false
		}
		i = n
	}
	_, ok := params(u, i, nil)
	return ok
}

// ParseAddress checks a From or To value against
//
//	[DQUOTE display DQUOTE SP] "<" uri ">" *(";" name ["=" value])  /  uri
//
// with uri as in ParseURI, display of letters, digits, single spaces and
// -_.!~*'+ (not starting or ending with a space), and the parameters as
// the URI's. sipgo prints the first form back byte for byte. The second
// (a bare URI, RFC 3261 §20.10 addr-spec, as Linphone writes To) only
// without any parameter, whose place would be ambiguous; sipgo prints it
// inside angle brackets (out.Bare).
func ParseAddress(v []byte, out *Address) bool {
	if len(v) > 0 && v[0] != '"' && v[0] != '<' {
		*out = Address{Bare: true}
		return ParseURI(v, &out.URI) && bytes.IndexByte(v, ';') < 0
	}
	*out = Address{}
	i := 0
	if len(v) > 0 && v[0] == '"' {
		i = 1
		for i < len(v) && (displayChar(v[i]) || v[i] == ' ' && v[i-1] != ' ' && v[i-1] != '"') {
			i++
		}
		if i == 1 || i+1 >= len(v) || v[i] != '"' || v[i-1] == ' ' || v[i+1] != ' ' {
			return false
		}
		i += 2
	}
	if i >= len(v) || v[i] != '<' {
		return false
	}
	i++
	gt := i
	for gt < len(v) && v[gt] != '>' {
		gt++
	}
	if gt == len(v) || !ParseURI(v[i:gt], &out.URI) {
		return false
	}
	tag, ok := params(v, gt+1, []byte("tag"))
	out.Tag = tag
	return ok
}

// params checks the parameters of v from index i to its end and reports
// whether one is named want (in any case).
func params(v []byte, i int, want []byte) (found, ok bool) {
	var names [12][]byte
	n := 0
	for i < len(v) {
		if v[i] != ';' {
			return false, false
		}
		i++
		ns := i
		for i < len(v) && tokenChar(v[i]) {
			i++
		}
		if i == ns || n == len(names) {
			return false, false
		}
		name := v[ns:i]
		if i < len(v) && v[i] == '=' {
			i++
			vs := i
			for i < len(v) && tokenChar(v[i]) {
				i++
			}
			if i == vs {
				return false, false // "name=" prints as "name" in sipgo
			}
		}
		for _, seen := range names[:n] {
			if equalFold(seen, name) {
				return false, false // sipgo keeps one of them
			}
		}
		names[n] = name
		n++
		if want != nil && equalFold(name, want) {
			found = true
		}
	}
	return found, true
}

// port reads a port number at u[i:], up to the next ';' or the end.
func port(u []byte, i int) (int, bool) {
	ps := i
	for i < len(u) && u[i] >= '0' && u[i] <= '9' {
		i++
	}
	if i == ps || i-ps > 5 || u[ps] == '0' {
		return 0, false
	}
	n := 0
	for _, c := range u[ps:i] {
		n = n*10 + int(c-'0')
	}
	return i, n <= 65535
}

func userChar(c byte) bool {
	if alnum(c) {
		return true
	}
	switch c {
	case '-', '_', '.', '!', '~', '*', '\'', '+':
		return true
	}
	return false
}

func displayChar(c byte) bool { return userChar(c) }

func hasPrefix(b []byte, s string) bool { return len(b) > len(s) && string(b[:len(s)]) == s }

func equalFold(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// ParsableContact reports whether sipgo's parser (v1.7) certainly accepts
// v, a Contact value that a reply does not copy: "*", or
//
//	[DQUOTE display DQUOTE [SP]] "<" uri ">" *(";" name ["=" value])
//
// with uri as in ParseURI and display as in ParseAddress, and each
// value a token or a quoted string without escapes ("+sip.instance" holds
// a URN in angle brackets). sipgo refuses a whole request over one
// Contact it cannot parse, so a caller answering without it must not
// answer one of those.
func ParsableContact(v []byte) bool {
	if len(v) == 1 && v[0] == '*' {
		return true
	}
	i := 0
	if len(v) > 0 && v[0] == '"' {
		i = 1
		for i < len(v) && (displayChar(v[i]) || v[i] == ' ' && v[i-1] != ' ' && v[i-1] != '"') {
			i++
		}
		if i == 1 || i >= len(v) || v[i] != '"' || v[i-1] == ' ' {
			return false
		}
		i++
		if i < len(v) && v[i] == ' ' {
			i++
		}
	}
	if i >= len(v) || v[i] != '<' {
		return false
	}
	i++
	gt := i
	for gt < len(v) && v[gt] != '>' {
		gt++
	}
	var u URI
	if gt == len(v) || !ParseURI(v[i:gt], &u) {
		return false
	}
	for i = gt + 1; i < len(v); {
		if v[i] != ';' {
			return false
		}
		i++
		ns := i
		for i < len(v) && tokenChar(v[i]) {
			i++
		}
		if i == ns {
			return false
		}
		if i == len(v) || v[i] != '=' {
			continue
		}
		i++
		if i < len(v) && v[i] == '"' {
			i++
			for i < len(v) && v[i] != '"' && v[i] != '\\' && v[i] >= ' ' && v[i] < 0x7f {
				i++
			}
			if i == len(v) || v[i] != '"' {
				return false
			}
			i++
			continue
		}
		vs := i
		for i < len(v) && tokenChar(v[i]) {
			i++
		}
		if i == vs {
			return false
		}
	}
	return true
}
