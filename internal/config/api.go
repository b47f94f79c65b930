package config

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// API configures the management API (docs/operations.md). It changes
// state (removes bindings, blocks sources), so away from loopback it needs
// a bearer token, and TLS so that the token does not cross the network in
// clear for anyone on the path to copy.
type API struct {
	Listen    string `yaml:"listen"`     // IP:port; empty: no API
	Token     string `yaml:"token"`      // bearer token; prefer token_file
	TokenFile string `yaml:"token_file"` // file holding the token (one line)
	TLSCert   string `yaml:"tls_cert"`   // PEM certificate (chain) for HTTPS; empty: plain HTTP
	TLSKey    string `yaml:"tls_key"`    // its PEM private key
}

// TLS reports whether the API is served over HTTPS.
func (a API) TLS() bool { return a.TLSCert != "" }

// minTokenLen keeps a guessable token off the network: 16 characters of
// a random base64 or hex string are at least 64 bits.
const minTokenLen = 16

// ResolveToken returns the bearer token, read from token_file when that is
// set; "" means the API takes no token (loopback only, see validate).
func (a API) ResolveToken() (string, error) {
	if a.TokenFile == "" {
		return a.Token, nil
	}
	b, err := os.ReadFile(a.TokenFile)
	if err != nil {
		return "", fmt.Errorf("api.token_file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < minTokenLen || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("api.token_file %s: want one line of at least %d characters without spaces", a.TokenFile, minTokenLen)
	}
	return tok, nil
}

// validateAPI checks the api section; it needs metrics.listen, which must
// not share its port.
func (c *Config) validateAPI() error {
	a := c.API
	if a.Token != "" && a.TokenFile != "" {
		return bad("api.token", "give token or token_file, not both")
	}
	if a.Token != "" && (len(a.Token) < minTokenLen || strings.ContainsAny(a.Token, " \t\r\n")) {
		return bad("api.token", "want at least %d characters without spaces (e.g. openssl rand -hex 16)", minTokenLen)
	}
	if (a.TLSCert == "") != (a.TLSKey == "") {
		return bad("api.tls_cert", "give both api.tls_cert and api.tls_key, or neither")
	}
	if a.Listen == "" {
		return nil
	}
	ap, err := netip.ParseAddrPort(a.Listen)
	if err != nil {
		return bad("api.listen", "%q is not an IP:port: %v", a.Listen, err)
	}
	if !ap.Addr().IsLoopback() && a.Token == "" && a.TokenFile == "" {
		// The API removes bindings and blocks sources: off loopback it
		// must not answer whoever reaches the port.
		return bad("api.listen", "%q is not a loopback address: set api.token_file (or api.token) too", a.Listen)
	}
	if !ap.Addr().IsLoopback() && !a.TLS() {
		// A bearer token sent over plain HTTP is anyone's who can see
		// the traffic, and with it the power to remove bindings.
		return bad("api.tls_cert", "api.listen %q is not a loopback address: the bearer token would cross the network in clear; set api.tls_cert and api.tls_key", a.Listen)
	}
	if m, err := netip.ParseAddrPort(c.Metrics.Listen); err == nil && m == ap && ap.Port() != 0 {
		return bad("api.listen", "%q is also metrics.listen: give each its own port", a.Listen)
	}
	return nil
}
