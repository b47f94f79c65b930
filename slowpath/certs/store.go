package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Pair names one PEM certificate chain and its key.
type Pair struct {
	Cert, Key string
}

// Settings is what a Store loads: the certificate files, or Fallback when
// there are none, and the handshake's rules.
type Settings struct {
	Pairs []Pair
	// Fallback gives the certificate served when Pairs is empty (the
	// self-signed one in data_dir).
	Fallback func() (tls.Certificate, error)
	// MinVersion is a crypto/tls version; Suites crypto/tls IDs, nil for
	// Go's defaults.
	MinVersion uint16
	Suites     []uint16
	// PeerCA is a PEM file of the CAs that sign trusted peers' client
	// certificates; empty: peers are not asked to prove who they are.
	PeerCA string
}

// state is one loaded configuration; a reload builds a new one.
type state struct {
	names   names
	certs   []*tls.Certificate
	files   []string // certificate file per entry of certs, for messages
	cfg     *tls.Config
	peerCAs *x509.CertPool // nil: no peer verification
}

// Store holds the current state. Its zero value is not usable; use New.
type Store struct {
	cur atomic.Pointer[state]
	// isPeer reports whether an address is a trusted peer's.
	isPeer func(netip.Addr) bool
}

// served is the last store loaded in the process, for the expiry gauge
// (one slow path per process; tests that build several see the last).
var served atomic.Pointer[Store]

// registerGauges registers the gauges with the first Store, not at
// start: without TLS listeners an expiry of 0 would fire every alert.
var registerGauges = sync.OnceFunc(func() {
	metrics.NewGauge(`pinhole_tls_certificate_expiry_seconds`, func() float64 {
		s := served.Load()
		if s == nil {
			return 0
		}
		return time.Until(s.cur.Load().soonest()).Seconds()
	})
	metrics.NewGauge(`pinhole_tls_certificates`, func() float64 {
		if s := served.Load(); s != nil {
			return float64(len(s.cur.Load().certs))
		}
		return 0
	})
})

// New loads settings; isPeer names the trusted peers' addresses (nil:
// none). It fails when a file cannot be used.
func New(set Settings, isPeer func(netip.Addr) bool) (*Store, error) {
	if isPeer == nil {
		isPeer = func(netip.Addr) bool { return false }
	}
	s := &Store{isPeer: isPeer}
	if err := s.Load(set); err != nil {
		return nil, err
	}
	served.Store(s)
	registerGauges()
	return s, nil
}

// Load reads the files again and swaps them in for the next handshakes.
// On any error the state in use stays, whole: a half-renewed set of
// certificates is worse than yesterday's complete one.
func (s *Store) Load(set Settings) error {
	st, err := build(set)
	if err != nil {
		reloadsFailed.Inc()
		return err
	}
	reloadsOK.Inc()
	s.cur.Store(st)
	return nil
}

func build(set Settings) (*state, error) {
	st := &state{}
	if len(set.Pairs) == 0 {
		if set.Fallback == nil {
			return nil, errors.New("no TLS certificate configured")
		}
		c, err := set.Fallback()
		if err != nil {
			return nil, err
		}
		if err := withLeaf(&c); err != nil {
			return nil, fmt.Errorf("generated TLS certificate: %w", err)
		}
		st.certs, st.files = []*tls.Certificate{&c}, []string{"(generated)"}
	}
	for _, p := range set.Pairs {
		c, err := tls.LoadX509KeyPair(p.Cert, p.Key)
		if err != nil {
			return nil, fmt.Errorf("load TLS certificate %s: %w", p.Cert, err)
		}
		if err := withLeaf(&c); err != nil {
			return nil, fmt.Errorf("load TLS certificate %s: %w", p.Cert, err)
		}
		st.certs = append(st.certs, &c)
		st.files = append(st.files, p.Cert)
	}
	if set.PeerCA != "" {
		pem, err := os.ReadFile(set.PeerCA)
		if err != nil {
			return nil, fmt.Errorf("tls.verify_peers.ca_file: %w", err)
		}
		st.peerCAs = x509.NewCertPool()
		if !st.peerCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.verify_peers.ca_file %s: no PEM certificate in it", set.PeerCA)
		}
	}
	st.names = index(st.certs)
	st.cfg = &tls.Config{
		MinVersion:   set.MinVersion,
		CipherSuites: set.Suites,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return st.names.pick(hello.ServerName), nil
		},
	}
	if st.peerCAs != nil {
		// Everyone is asked for a certificate, no one is made to send
		// one: phones answer a CertificateRequest with an empty
		// Certificate message, which RequestClientCert accepts. Whether
		// the connection may stay is decided after the handshake, from
		// its source address (Handshake).
		st.cfg.ClientAuth = tls.RequestClientCert
	}
	return st, nil
}

// withLeaf makes sure c.Leaf is parsed (crypto/tls fills it since Go 1.23;
// a certificate built in memory may lack it).
func withLeaf(c *tls.Certificate) error {
	if c.Leaf != nil {
		return nil
	}
	if len(c.Certificate) == 0 {
		return errors.New("no certificate in the chain")
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return err
	}
	c.Leaf = leaf
	return nil
}

func (st *state) soonest() time.Time {
	var t time.Time
	for _, c := range st.certs {
		if t.IsZero() || c.Leaf.NotAfter.Before(t) {
			t = c.Leaf.NotAfter
		}
	}
	return t
}

// Expiries returns each certificate's file and notAfter, default first,
// for the log after a load.
func (s *Store) Expiries() map[string]time.Time {
	st := s.cur.Load()
	out := make(map[string]time.Time, len(st.certs))
	for i, c := range st.certs {
		out[st.files[i]] = c.Leaf.NotAfter
	}
	return out
}

// ServerConfig is the configuration listeners hand to tls.Server. It holds
// nothing itself: each handshake takes the current state's.
func (s *Store) ServerConfig() *tls.Config {
	return &tls.Config{
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.cur.Load().cfg, nil
		},
	}
}

// ClientConfig is for connections pinhole opens (to a farm node or an
// upstream over TLS): the same versions and suites, and the default
// certificate offered when the far end asks for one, so one pinhole can
// be another's verified peer.
func (s *Store) ClientConfig() *tls.Config {
	st := s.cur.Load()
	return &tls.Config{
		MinVersion:   st.cfg.MinVersion,
		CipherSuites: st.cfg.CipherSuites,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return s.cur.Load().names.def, nil
		},
	}
}

// Handshake is told the end of every server-side handshake, from src,
// with its error (nil: it succeeded) and counts it. It returns whether
// the connection may stay: a handshake that failed may not, and with
// verify_peers on neither may a trusted peer's address whose certificate
// does not verify against the peer CAs.
func (s *Store) Handshake(src netip.Addr, cs tls.ConnectionState, err error, timedOut bool) bool {
	switch {
	case timedOut:
		handshakes[resultTimeout].Inc()
		return false
	case err != nil:
		handshakes[resultFailed].Inc()
		failReasons[failReason(err)].Inc()
		return false
	}
	st := s.cur.Load()
	if st.peerCAs == nil || !s.isPeer(src) {
		handshakes[resultOK].Inc()
		return true
	}
	if verifyPeer(st.peerCAs, cs.PeerCertificates) != nil {
		handshakes[resultPeerRefused].Inc()
		return false
	}
	handshakes[resultPeerVerified].Inc()
	return true
}

// verifyPeer checks a presented chain (leaf first) against the peer CAs.
// Any extended key usage passes: the CA file is the operator's own choice
// of anchors, and the public CAs' server certificates that peers often
// reuse are losing the clientAuth usage.
func verifyPeer(roots *x509.CertPool, chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return errors.New("no client certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	return err
}

// Reasons a handshake failed, from crypto/tls's error text (it exports no
// sentinel errors for them; Go 1.26). Only for counting.
const (
	reasonVersion = "version" // no TLS version in common: an old phone below min_version
	reasonCipher  = "cipher"  // no cipher suite in common
	reasonNotTLS  = "not_tls" // the first bytes were not a TLS handshake (plain SIP on the TLS port)
	reasonEOF     = "eof"     // the client closed or reset during the handshake
	reasonOther   = "other"   // certificates refused by the client (alert), bad records, ...
)

func failReason(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "unsupported versions") || strings.Contains(msg, "protocol version"):
		return reasonVersion
	case strings.Contains(msg, "no cipher suite"):
		return reasonCipher
	case strings.Contains(msg, "does not look like a TLS handshake"):
		return reasonNotTLS
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(msg, "connection reset"):
		return reasonEOF
	}
	return reasonOther
}
