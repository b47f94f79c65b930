package slowpath

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/slowpath/certs"
	"github.com/pinhole-sip/pinhole/slowpath/trust"
)

// loadOrCreateCert returns the configured certificate, or the self-signed
// one in dataDir, generating it at first start so TLS and WSS work out of
// the box. A generated pair is kept so devices that pinned it keep working.
func loadOrCreateCert(certFile, keyFile, dataDir string, hosts []string) (tls.Certificate, bool, error) {
	if certFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return tls.Certificate{}, false, fmt.Errorf("load TLS certificate %s: %w", certFile, err)
		}
		return c, false, nil
	}
	certFile = filepath.Join(dataDir, "tls-selfsigned.crt")
	keyFile = filepath.Join(dataDir, "tls-selfsigned.key")
	if c, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil {
		return c, false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return tls.Certificate{}, false, fmt.Errorf("load generated TLS certificate %s: %w", certFile, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, false, fmt.Errorf("generate TLS key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, false, fmt.Errorf("generate TLS serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "pinhole", Organization: []string{"pinhole self-signed"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, false, fmt.Errorf("create self-signed certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, false, fmt.Errorf("encode TLS key: %w", err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return tls.Certificate{}, false, fmt.Errorf("write TLS key: %w", err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return tls.Certificate{}, false, fmt.Errorf("write TLS certificate: %w", err)
	}
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	return c, true, err
}

// tlsSettings turns the tls section into what package certs loads; without
// configured certificates it serves the generated self-signed pair.
func (s *Server) tlsSettings(cfg *config.Config) certs.Settings {
	set := certs.Settings{
		MinVersion: cfg.TLS.Version(),
		Suites:     cfg.TLS.Suites(),
		PeerCA:     cfg.TLS.VerifyPeers.CAFile,
		Fallback: func() (tls.Certificate, error) {
			c, generated, err := loadOrCreateCert("", "", cfg.DataDir, s.certHosts())
			if generated {
				s.log.Warn("generated a self-signed TLS certificate; configure tls.certificates for production", "dir", cfg.DataDir)
			}
			return c, err
		},
	}
	for _, p := range cfg.TLS.Pairs() {
		set.Pairs = append(set.Pairs, certs.Pair{Cert: p.Cert, Key: p.Key})
	}
	return set
}

// isTLSPeer is who must present a verified client certificate when
// tls.verify_peers is on: the trust list (with mid-registrar upstreams)
// and the current farm's destinations.
func (s *Server) isTLSPeer(trusted *trust.List) func(netip.Addr) bool {
	return func(a netip.Addr) bool {
		if trusted.Contains(a) {
			return true
		}
		farm := s.ops.farm.Load()
		return farm != nil && farm.IsFarm(a)
	}
}

// logCertificates says what is served and until when; an expired one is
// a warning, since phones will refuse it.
func (s *Server) logCertificates() {
	for file, notAfter := range s.certs.Expiries() {
		if time.Now().After(notAfter) {
			s.log.Warn("TLS certificate has expired; phones will refuse it", "file", file, "not_after", notAfter)
			continue
		}
		s.log.Info("TLS certificate", "file", file, "not_after", notAfter)
	}
}

// reloadCertificates reads the TLS files again (even with unchanged
// names: renewing them is the usual reason to reload). A failure keeps
// the certificates in use.
func (s *Server) reloadCertificates(next *config.Config) error {
	if s.certs == nil {
		return nil
	}
	if err := s.certs.Load(s.tlsSettings(next)); err != nil {
		return fmt.Errorf("reload TLS certificates (the previous ones stay): %w", err)
	}
	s.logCertificates()
	return nil
}
