package certs

import (
	"crypto/tls"
	"strings"
)

// names indexes certificates by the DNS names they hold.
type names struct {
	exact map[string]*tls.Certificate // "sip.example.net"
	wild  map[string]*tls.Certificate // "edge.example.net" for "*.edge.example.net"
	def   *tls.Certificate
}

// index maps each certificate's names to it, the first certificate that
// holds a name winning, so that the order in the file decides overlaps.
// The names are the leaf's DNS SANs or, for a leaf without any, its
// Common Name (old practice that some private CAs still follow).
func index(certs []*tls.Certificate) names {
	n := names{exact: map[string]*tls.Certificate{}, wild: map[string]*tls.Certificate{}}
	if len(certs) > 0 {
		n.def = certs[0]
	}
	for _, c := range certs {
		dns := c.Leaf.DNSNames
		if len(dns) == 0 && c.Leaf.Subject.CommonName != "" {
			dns = []string{c.Leaf.Subject.CommonName}
		}
		for _, name := range dns {
			name = strings.ToLower(strings.TrimSuffix(name, "."))
			if parent, ok := strings.CutPrefix(name, "*."); ok {
				if _, dup := n.wild[parent]; !dup {
					n.wild[parent] = c
				}
				continue
			}
			if _, dup := n.exact[name]; !dup {
				n.exact[name] = c
			}
		}
	}
	return n
}

// pick returns the certificate for an SNI name: an exact name first, then
// a wildcard one label deep ("*.example.net" covers "a.example.net", not
// "a.b.example.net" nor "example.net", RFC 6125 §6.4.3), then the default.
// An empty name (no SNI; Go also leaves it empty for an IP address) gets
// the default.
func (n names) pick(sni string) *tls.Certificate {
	if sni == "" {
		return n.def
	}
	sni = strings.ToLower(strings.TrimSuffix(sni, "."))
	if c, ok := n.exact[sni]; ok {
		return c
	}
	if first, parent, ok := strings.Cut(sni, "."); ok && first != "" && parent != "" {
		if c, ok := n.wild[parent]; ok {
			return c
		}
	}
	return n.def
}
