package certs

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
)

// fakeCert is a certificate with only the names pick looks at.
func fakeCert(dns ...string) *tls.Certificate {
	return &tls.Certificate{Leaf: &x509.Certificate{DNSNames: dns}}
}

// FuzzPick: any SNI a client writes picks one of the certificates, never
// panics, and a name gets a certificate other than the default only if
// that certificate holds it exactly or by a wildcard for its parent.
func FuzzPick(f *testing.F) {
	def := fakeCert("sip.example.net")
	edge := fakeCert("*.edge.example.net")
	san := fakeCert("a.example.org", "B.Example.Org.")
	n := index([]*tls.Certificate{def, edge, san})
	for _, seed := range []string{"", "sip.example.net", "a.edge.example.net", "x.a.edge.example.net", ".edge.example.net", "b.example.org.", "192.0.2.1", "*.edge.example.net", "..", "."} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, sni string) {
		c := n.pick(sni)
		switch c {
		case def:
		case edge:
			name := strings.ToLower(strings.TrimSuffix(sni, "."))
			first, parent, ok := strings.Cut(name, ".")
			if !ok || first == "" || parent != "edge.example.net" {
				t.Errorf("%q got the *.edge.example.net certificate", sni)
			}
		case san:
			name := strings.ToLower(strings.TrimSuffix(sni, "."))
			if name != "a.example.org" && name != "b.example.org" {
				t.Errorf("%q got the SAN certificate", sni)
			}
		default:
			t.Fatalf("%q picked a certificate that is not configured", sni)
		}
	})
}
