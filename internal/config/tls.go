package config

import (
	"crypto/tls"
	"errors"
	"slices"
)

// TLS configures SIP over TLS and WSS (docs/tls.md): the certificates
// served, chosen by the name a client asks for (SNI); the oldest protocol
// version and the cipher suites accepted; and whether trusted peers must
// prove who they are with a client certificate. No certificate at all: a
// self-signed one is generated into data_dir at first start.
type TLS struct {
	// Cert and Key name one certificate, as before tls.certificates
	// existed; they are the same as a one-entry certificates list.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// Certificates are served by SNI; the first is the default, for
	// clients that send no name, an IP address, or a name no entry has.
	Certificates []Certificate `yaml:"certificates"`
	// MinVersion is the oldest TLS version accepted: "1.2" or "1.3"
	// ("1.0" and "1.1" only with allow_insecure).
	MinVersion string `yaml:"min_version"`
	// CipherSuites are Go's names of the TLS 1.0-1.2 suites offered
	// (TLS 1.3's are not configurable); empty: Go's secure defaults.
	CipherSuites []string `yaml:"cipher_suites"`
	// AllowInsecure admits TLS 1.0/1.1 and the suites Go calls insecure
	// (RSA key exchange, CBC with SHA-256, 3DES, RC4), for old phones
	// that know nothing else. It must be written out so that a downgrade
	// is a decision someone can find in the file, not a typo.
	AllowInsecure bool `yaml:"allow_insecure"`
	// VerifyPeers makes trusted peers present a client certificate.
	VerifyPeers VerifyPeers `yaml:"verify_peers"`
}

// Certificate is one PEM certificate chain (leaf first, then the
// intermediates: phones do not fetch missing ones) and its private key.
type Certificate struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// VerifyPeers turns on client-certificate checks for the peers pinhole
// trusts by address (trust.peers, farm destinations, mid-registrar
// upstreams): a TLS connection from such an address must present a chain
// that verifies against CAFile, or it is closed. Empty CAFile: off.
type VerifyPeers struct {
	CAFile string `yaml:"ca_file"`
}

// Enabled reports whether peers' client certificates are checked.
func (v VerifyPeers) Enabled() bool { return v.CAFile != "" }

// Pairs returns the configured certificates, the default first: tls.cert
// and tls.key as a one-entry list, or tls.certificates. None: generate.
func (t TLS) Pairs() []Certificate {
	if t.Cert != "" {
		return []Certificate{{Cert: t.Cert, Key: t.Key}}
	}
	return t.Certificates
}

// TLSVersions maps tls.min_version's values to crypto/tls's constants.
var TLSVersions = map[string]uint16{
	"1.0": tls.VersionTLS10,
	"1.1": tls.VersionTLS11,
	"1.2": tls.VersionTLS12,
	"1.3": tls.VersionTLS13,
}

// Version returns min_version as a crypto/tls constant (valid after Load).
func (t TLS) Version() uint16 { return TLSVersions[t.MinVersion] }

// Suites returns cipher_suites as crypto/tls IDs, nil for Go's defaults
// (valid after Load).
func (t TLS) Suites() []uint16 {
	var ids []uint16
	for _, name := range t.CipherSuites {
		if s := suiteByName(name); s != nil {
			ids = append(ids, s.ID)
		}
	}
	return ids
}

// suiteByName finds a suite among Go's secure and insecure ones.
func suiteByName(name string) *tls.CipherSuite {
	for _, s := range tls.CipherSuites() {
		if s.Name == name {
			return s
		}
	}
	for _, s := range tls.InsecureCipherSuites() {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func isInsecureSuite(name string) bool {
	return slices.ContainsFunc(tls.InsecureCipherSuites(), func(s *tls.CipherSuite) bool { return s.Name == name })
}

// validate reports every mistake of the section, not only the first.
func (t TLS) validate() error {
	var errs []error
	if (t.Cert == "") != (t.Key == "") {
		errs = append(errs, bad("tls.cert", "give both tls.cert and tls.key, or neither"))
	}
	if t.Cert != "" && len(t.Certificates) > 0 {
		errs = append(errs, bad("tls.certificates", "give tls.cert and tls.key or tls.certificates, not both"))
	}
	for i, c := range t.Certificates {
		if c.Cert == "" || c.Key == "" {
			errs = append(errs, bad("tls.certificates", "entry %d needs both cert and key", i))
		}
	}
	v, ok := TLSVersions[t.MinVersion]
	switch {
	case !ok:
		errs = append(errs, bad("tls.min_version", "%q: want 1.2 or 1.3 (1.0 and 1.1 only with allow_insecure)", t.MinVersion))
	case v < tls.VersionTLS12 && !t.AllowInsecure:
		errs = append(errs, bad("tls.min_version", "%q admits TLS versions with known weaknesses: set tls.allow_insecure: true if old phones need it", t.MinVersion))
	}
	for _, name := range t.CipherSuites {
		s := suiteByName(name)
		switch {
		case s == nil:
			errs = append(errs, bad("tls.cipher_suites", "%q is not a cipher suite Go knows (names as in crypto/tls, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)", name))
		case isInsecureSuite(name) && !t.AllowInsecure:
			errs = append(errs, bad("tls.cipher_suites", "%q is insecure: set tls.allow_insecure: true if old phones need it", name))
		case !slices.Contains(s.SupportedVersions, tls.VersionTLS12) && !slices.Contains(s.SupportedVersions, tls.VersionTLS10):
			// TLS 1.3's suites are always on and cannot be chosen.
			errs = append(errs, bad("tls.cipher_suites", "%q is a TLS 1.3 suite, which Go always enables; list TLS 1.0-1.2 suites only", name))
		}
	}
	if len(t.CipherSuites) > 0 && ok && v == tls.VersionTLS13 {
		errs = append(errs, bad("tls.cipher_suites", "min_version 1.3 uses no configurable suite: leave cipher_suites empty"))
	}
	return errors.Join(errs...)
}
