// Package kamailiocfg writes the configuration of the Kamailio registrar
// pinhole is measured against (bench/compare.sh, bench/fastpath/run.sh,
// through bench/cmd/kamailio-cfg) and relays to as a mid-registrar in the
// integration tests (internal/testutil), so that the peer is configured one
// way wherever it appears and differs only where a field says so.
package kamailiocfg

import (
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"text/template"
)

// Auth is how the registrar authenticates REGISTER (and, for Derived,
// INVITE).
type Auth string

const (
	// None saves every REGISTER: the fast-path benchmark's peers run
	// without digest authentication, as pinhole's fast path absorbs only
	// without it.
	None Auth = "none"
	// Derived challenges with qop=auth and takes pw-<user> as the
	// password, the credentials bench/cmd/sipload's devices use.
	Derived Auth = "derived"
	// Subscribers checks against db_text's subscriber table in DB (see
	// WriteSubscribers) and lets Trusted's own de-registrations through.
	Subscribers Auth = "subscribers"
)

// Registrar describes one Kamailio registrar listening on UDP.
type Registrar struct {
	Listen   netip.AddrPort
	Domain   string // alias and realm; "" adds no alias
	Modules  string // module directory: ModulesDir finds it
	Children int
	Debug    int
	// Ctl is the unix socket kamcmd talks to; "" leaves the ctl module out.
	Ctl                    string
	MinExpires, MaxExpires int
	// HashSize is usrloc's hash_size (2^HashSize slots); 0 keeps
	// Kamailio's default.
	HashSize int
	Auth     Auth
	// DB is the db_text directory (Subscribers only).
	DB string
	// Trusted is the address, a mid-registrar's listener, whose own
	// de-registrations are accepted without a challenge: from that source,
	// with a single Via (originated there, not relayed for a device) and
	// Expires 0 (Subscribers only). docs/midregistrar.md explains the rule.
	Trusted netip.AddrPort
}

//go:embed registrar.cfg.tmpl
var registrarText string

var registrarTmpl = template.Must(template.New("registrar.cfg").Parse(registrarText))

// Write writes the configuration.
func (r Registrar) Write(w io.Writer) error {
	switch r.Auth {
	case None, Derived:
	case Subscribers:
		if r.DB == "" || !r.Trusted.IsValid() {
			return errors.New("kamailiocfg: subscribers authentication needs DB and Trusted")
		}
	default:
		return fmt.Errorf("kamailiocfg: unknown authentication %q", r.Auth)
	}
	if !r.Listen.IsValid() || r.Modules == "" || r.Children < 1 {
		return errors.New("kamailiocfg: Listen, Modules and Children are required")
	}
	return registrarTmpl.Execute(w, r)
}

// Binary returns the kamailio executable: the one on PATH, else where
// Debian installs it (/usr/sbin is not on every user's PATH).
func Binary() string {
	if p, err := exec.LookPath("kamailio"); err == nil {
		return p
	}
	return "/usr/sbin/kamailio"
}

// ModulesDir finds the directory holding Kamailio's modules on this
// machine. It asks the binary for its compiled-in default (kamailio -I,
// "Default paths to modules"), which is right for any architecture and
// distribution, and falls back on the usual install places; a directory
// counts only if registrar.so is in it.
func ModulesDir(bin string) (string, error) {
	var candidates []string
	if out, err := exec.Command(bin, "-I").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if _, v, ok := strings.Cut(line, "Default paths to modules:"); ok {
				candidates = append(candidates, strings.Split(strings.TrimSpace(v), ":")...)
			}
		}
	}
	for _, pattern := range []string{"/usr/lib/*/kamailio/modules", "/usr/lib*/kamailio/modules", "/usr/local/lib*/kamailio/modules"} {
		m, _ := filepath.Glob(pattern)
		candidates = append(candidates, m...)
	}
	for _, dir := range candidates {
		if dir == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "registrar.so")); err == nil {
			return dir, nil
		}
	}
	return "", fmt.Errorf("kamailiocfg: no Kamailio module directory with registrar.so (looked at %s)", strings.Join(candidates, ", "))
}

// WriteSubscribers writes db_text's subscriber table into dir for
// Subscribers authentication; auth_db computes each HA1 from the plain
// password (calculate_ha1). db_text escapes ':' as '\:': passwords must not
// hold one.
func WriteSubscribers(dir, domain string, users map[string]string) error {
	var b strings.Builder
	b.WriteString("id(int,auto) username(string) domain(string) password(string) ha1(string) ha1b(string)\n")
	names := make([]string, 0, len(users))
	for u := range users {
		names = append(names, u)
	}
	sort.Strings(names)
	for i, u := range names {
		if strings.Contains(users[u], ":") {
			return fmt.Errorf("kamailiocfg: password of %s holds a ':'", u)
		}
		fmt.Fprintf(&b, "%d:%s:%s:%s:-:-\n", i+1, u, domain, users[u])
	}
	if err := os.WriteFile(filepath.Join(dir, "subscriber"), []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("kamailiocfg: write subscriber table: %w", err)
	}
	return nil
}
