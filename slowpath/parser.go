package slowpath

import (
	"reflect"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// newParser returns sipgo's parser with pinhole's message size limit and a
// fix for comma-separated Contacts.
//
// sipgo (v1.7.3) splits "Contact: <sip:a@h>, sip:b@h;q=0.5" at the comma and
// hands " sip:b@h;q=0.5" — with its leading space — back to the Contact
// parser, which then fails on the scheme and the whole REGISTER is lost.
// RFC 3261 §7.3.1 allows whitespace after the comma, and devices send it.
// The wrapper trims the space and shifts the comma position sipgo uses to
// continue, so every header value still parses exactly once.
func newParser(maxBytes int) *sip.Parser {
	parsers := map[string]sip.HeaderParser{}
	for name, p := range sip.DefaultHeadersParser() {
		parsers[name] = p
	}
	for _, name := range []string{"contact", "m"} {
		if orig, ok := parsers[name]; ok {
			parsers[name] = trimLeadingSpace(orig)
		}
	}
	p := sip.NewParser(sip.WithHeadersParsers(parsers))
	p.MaxMessageLength = maxBytes
	return p
}

func trimLeadingSpace(orig sip.HeaderParser) sip.HeaderParser {
	return func(name []byte, text string) (sip.Header, error) {
		trimmed := strings.TrimLeft(text, " \t")
		shift := len(text) - len(trimmed)
		h, err := orig(name, trimmed)
		if err == nil || shift == 0 {
			return h, err
		}
		// sipgo signals "another value follows at index i" with an error of
		// an unexported integer type; rebuild it with the index shifted.
		v := reflect.ValueOf(err)
		if v.Kind() != reflect.Int {
			return h, err
		}
		shifted := reflect.New(v.Type()).Elem()
		shifted.SetInt(v.Int() + int64(shift))
		if e, ok := shifted.Interface().(error); ok {
			return h, e
		}
		return h, err
	}
}
