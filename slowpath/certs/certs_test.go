package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// ca is a test certificate authority.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T, name string) *ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &ca{cert: c, key: key}
}

// issue writes a leaf for dns names, valid for life, into dir and returns
// its files.
func (c *ca) issue(t *testing.T, dir, file string, life time.Duration, dns ...string) Pair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: file},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(life),
		DNSNames: dns, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	p := Pair{Cert: filepath.Join(dir, file+".crt"), Key: filepath.Join(dir, file+".key")}
	write(t, p.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	write(t, p.Key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
	return p
}

func (c *ca) file(t *testing.T, dir string) string {
	p := filepath.Join(dir, "ca.crt")
	write(t, p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw}))
	return p
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestPickBySNI(t *testing.T) {
	dir := t.TempDir()
	c := newCA(t, "test CA")
	set := Settings{MinVersion: tls.VersionTLS12, Pairs: []Pair{
		c.issue(t, dir, "default", time.Hour, "sip.example.net"),
		c.issue(t, dir, "edge", time.Hour, "*.edge.example.net"),
		c.issue(t, dir, "san", time.Hour, "a.example.org", "b.example.org", "sip.example.net"),
	}}
	s, err := New(set, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ sni, want string }{
		{"", "default"},                     // no SNI
		{"sip.example.net", "default"},      // exact, the first certificate holding it wins
		{"SIP.Example.NET.", "default"},     // case and a trailing dot do not matter
		{"a.edge.example.net", "edge"},      // wildcard
		{"x.a.edge.example.net", "default"}, // a wildcard covers one label only
		{"edge.example.net", "default"},     // nor its own parent
		{"b.example.org", "san"},            // any SAN
		{"unknown.example.com", "default"},
	} {
		got := s.cur.Load().names.pick(tt.sni).Leaf.Subject.CommonName
		if got != tt.want {
			t.Errorf("SNI %q served %s, want %s", tt.sni, got, tt.want)
		}
	}
}

// TestLoadKeepsOldOnError: a reload that finds a broken file keeps every
// certificate in use and counts the failure.
func TestLoadKeepsOldOnError(t *testing.T) {
	dir := t.TempDir()
	c := newCA(t, "test CA")
	good := c.issue(t, dir, "good", time.Hour, "sip.example.net")
	s, err := New(Settings{Pairs: []Pair{good}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	before := s.cur.Load()
	failed := reloadsFailed.Get()
	bad := Pair{Cert: filepath.Join(dir, "bad.crt"), Key: good.Key}
	write(t, bad.Cert, []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"))
	if err := s.Load(Settings{Pairs: []Pair{good, bad}}); err == nil {
		t.Fatal("a broken certificate file loaded")
	}
	if s.cur.Load() != before {
		t.Error("a failed load replaced the certificates in use")
	}
	if reloadsFailed.Get() != failed+1 {
		t.Error("a failed load was not counted")
	}
	renewed := c.issue(t, dir, "good", 48*time.Hour, "sip.example.net") // same files, new content
	if err := s.Load(Settings{Pairs: []Pair{renewed}}); err != nil {
		t.Fatal(err)
	}
	if got := s.cur.Load().names.def.Leaf.NotAfter; !got.After(time.Now().Add(24 * time.Hour)) {
		t.Errorf("after reload the default certificate expires %s, want the renewed one", got)
	}
}

// TestPeerVerification drives real handshakes through ServerConfig: a
// trusted address with a certificate from the peer CA stays, without one
// or with another CA's it is refused, and a phone's address needs none.
func TestPeerVerification(t *testing.T) {
	dir := t.TempDir()
	srvCA, peerCA, otherCA := newCA(t, "server CA"), newCA(t, "peer CA"), newCA(t, "other CA")
	peer := netip.MustParseAddr("127.0.0.1")
	s, err := New(Settings{
		MinVersion: tls.VersionTLS12,
		Pairs:      []Pair{srvCA.issue(t, dir, "srv", time.Hour, "sip.example.net")},
		PeerCA:     peerCA.file(t, dir),
	}, func(a netip.Addr) bool { return a == peer })
	if err != nil {
		t.Fatal(err)
	}
	load := func(p Pair) []tls.Certificate {
		c, err := tls.LoadX509KeyPair(p.Cert, p.Key)
		if err != nil {
			t.Fatal(err)
		}
		return []tls.Certificate{c}
	}
	good := load(peerCA.issue(t, dir, "peer", time.Hour, "farm1.example.net"))
	other := load(otherCA.issue(t, dir, "other", time.Hour, "farm1.example.net"))
	for _, tt := range []struct {
		name  string
		src   netip.Addr
		certs []tls.Certificate
		want  bool
	}{
		{"peer with a certificate from the CA", peer, good, true},
		{"peer without a certificate", peer, nil, false},
		{"peer with another CA's certificate", peer, other, false},
		{"phone without a certificate", netip.MustParseAddr("192.0.2.7"), nil, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			go func() {
				cl := tls.Client(a, &tls.Config{InsecureSkipVerify: true, Certificates: tt.certs})
				_ = cl.Handshake()
			}()
			sc := tls.Server(b, s.ServerConfig())
			err := sc.Handshake()
			if got := s.Handshake(tt.src, sc.ConnectionState(), err, false); got != tt.want {
				t.Errorf("kept = %v, want %v (handshake error %v)", got, tt.want, err)
			}
		})
	}
}

func TestFailReason(t *testing.T) {
	dir := t.TempDir()
	c := newCA(t, "test CA")
	s, err := New(Settings{MinVersion: tls.VersionTLS13, Pairs: []Pair{c.issue(t, dir, "srv", time.Hour, "sip.example.net")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		_ = tls.Client(a, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}).Handshake()
		a.Close()
	}()
	err = tls.Server(b, s.ServerConfig()).Handshake()
	if err == nil {
		t.Fatal("a TLS 1.2 client got through min_version 1.3")
	}
	if got := failReason(err); got != reasonVersion {
		t.Errorf("failReason(%v) = %s, want %s", err, got, reasonVersion)
	}
}
