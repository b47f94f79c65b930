package slowpath

import (
	"reflect"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// newParser returns sipgo's parser with pinhole's message size limit and
// two fixes: comma-separated Contacts, and whitespace around the
// parameters of From, To, Via and Contact (trimParamSpace).
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
	for _, name := range []string{"from", "f", "to", "t", "via", "v", "contact", "m"} {
		if orig, ok := parsers[name]; ok {
			parsers[name] = trimParamSpace(orig)
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

// trimParamSpace removes the whitespace sipgo (v1.7.3) keeps around the
// names and values of header parameters. RFC 3261 §25.1 lets it stand
// around ";" and "=" (SEMI and EQUAL are SWS ";" SWS, SWS "=" SWS), so
// "From: <sip:a@h> ;\r\n tag = 98asjd8" (RFC 4475 §3.1.1.1) is a From tag
// "98asjd8". sipgo reads a parameter " tag " instead, finds no tag, and
// cannot key the transaction: the request got a stateless 400. A
// parameter left with no name (the space between ";" and a folded line)
// is dropped. What is sent on is the same value, written without the
// whitespace.
func trimParamSpace(orig sip.HeaderParser) sip.HeaderParser {
	return func(name []byte, text string) (sip.Header, error) {
		h, err := orig(name, text)
		switch h := h.(type) {
		case *sip.FromHeader:
			h.Params = trimmedParams(h.Params)
		case *sip.ToHeader:
			h.Params = trimmedParams(h.Params)
		case *sip.ViaHeader:
			h.Params = trimmedParams(h.Params)
		case *sip.ContactHeader:
			h.Params = trimmedParams(h.Params)
		}
		return h, err
	}
}

// trimmedParams trims params in place; it allocates nothing when there is
// nothing to trim, which is every message from a device that writes no
// whitespace there.
func trimmedParams(params sip.HeaderParams) sip.HeaderParams {
	out := params[:0]
	for _, kv := range params {
		kv.K, kv.V = strings.Trim(kv.K, " \t"), strings.Trim(kv.V, " \t")
		if kv.K == "" {
			continue
		}
		out = append(out, kv)
	}
	return out
}
