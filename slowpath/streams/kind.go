package streams

import "strings"

// Kind is the transport a listener serves, in sipgo's names.
type Kind uint8

const (
	TCP Kind = iota
	TLS
	WS
	WSS
	numKinds
)

// ParseKind maps "TCP", "TLS", "WS", "WSS" (any case) to a Kind.
func ParseKind(s string) (Kind, bool) {
	for k := range numKinds {
		if strings.EqualFold(s, k.String()) {
			return k, true
		}
	}
	return 0, false
}

func (k Kind) String() string { return [...]string{"TCP", "TLS", "WS", "WSS"}[k] }

func (k Kind) secure() bool { return k == TLS || k == WSS }

func (k Kind) websocket() bool { return k == WS || k == WSS }

func sprintf(format, s string) string { return strings.Replace(format, "%s", s, 1) }
