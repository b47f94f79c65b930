//go:build integration

package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/testutil"
)

// domain is the AOR domain every test uses; it is in DefaultConfig's domains.
const domain = "localhost"

// noHeader stands in for a header line a REGISTER leaves out: sipp cannot
// drop a line, and an empty one would end the header section.
const noHeader = "X-No-Header: 1"

// registerWait bounds a device's registration.
const registerWait = 10 * time.Second

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.CleanupBinaries()
	removeSiploadBinary()
	os.Exit(code)
}

// scenario is the absolute path of a sipp scenario in testdata/sipp.
func scenario(t testing.TB, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", "sipp", name))
	if err != nil {
		t.Fatalf("find scenario %s: %v", name, err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("scenario %s: %v", name, err)
	}
	return p
}

// server is a pinhole under test with the users it knows.
type server struct {
	*testutil.Pinhole
	// Addr is host:port of the loopback listener, for peers on the host.
	Addr      string
	Passwords map[string]string
}

// startServer starts pinhole, after letting edit change DefaultConfig (edit
// may be nil). With auth, it asks for digest authentication with passwords;
// without, the passwords are still sent if challenged, but pinhole is told
// to challenge no one.
//
// Authentication is off in the tests that are not about it because sipp
// 3.6 answers only MD5 challenges and only the first WWW-Authenticate,
// while pinhole offers SHA-256 first (RFC 8760) and has no setting to offer
// MD5 alone.
func startServer(t *testing.T, passwords map[string]string, auth bool, edit func(*testutil.Config)) *server {
	t.Helper()
	cfg := testutil.DefaultConfig(t)
	if auth {
		cfg.Auth.Credentials = testutil.WriteCredentials(t, cfg.Auth.Realm, passwords)
	}
	if edit != nil {
		edit(&cfg)
	}
	return &server{
		Pinhole:   testutil.StartPinhole(t, nil, cfg),
		Addr:      cfg.Listen.UDP[0],
		Passwords: passwords,
	}
}

// registration is what register_expect.xml logged of one REGISTER.
type registration struct {
	Code       string
	Contacts   []string // URIs inside <>, sorted
	MinExpires string
}

var contactURI = regexp.MustCompile(`<([^>]*)>`)

// register sends one REGISTER for user from a fresh loopback port with the
// given header lines (noHeader to leave one out) and returns the final
// response, after answering a challenge with password.
func (s *server) register(t *testing.T, user, password, contactLine, expiresLine string) registration {
	t.Helper()
	r := testutil.Sipp{
		Scenario: scenario(t, "register_expect.xml"),
		Remote:   s.Addr,
		LocalIP:  testutil.Loopback,
		Service:  user, AuthUser: user, AuthPassword: password,
		AuthURI: domain,
		Vars:    map[string]string{"domain": domain, "contact_line": contactLine, "expires_line": expiresLine},
		Timeout: 15 * time.Second,
	}.Run(t)
	if r.ExitCode != testutil.SippExitOK {
		t.Fatalf("REGISTER for %s (%s, %s) got no final response the scenario knows:\n%s", user, contactLine, expiresLine, r.Report())
	}
	reg := registration{Code: last(r.LogValues("code")), MinExpires: last(r.LogValues("min-expires"))}
	if v, ok := cutHeader(reg.MinExpires, "Min-Expires:"); ok {
		reg.MinExpires = v
	}
	for _, m := range contactURI.FindAllStringSubmatch(last(r.LogValues("contact")), -1) {
		reg.Contacts = append(reg.Contacts, m[1])
	}
	slices.Sort(reg.Contacts)
	return reg
}

// query returns the bindings of user: a REGISTER without Contact lists them
// all in its 200 (RFC 3261 section 10.3 step 8).
func (s *server) query(t *testing.T, user string) registration {
	t.Helper()
	return s.register(t, user, s.Passwords[user], noHeader, noHeader)
}

// device is one sipp process playing a phone: it registers user from
// ip:port (inside ns, nil for the host) to the server at remote and answers
// calls on the same socket with the out-of-call scenario uas.
type device struct {
	*testutil.SippProcess
	User string
	Addr netip.AddrPort
}

func (s *server) startDevice(t *testing.T, ns *testutil.NetNS, remote string, ip netip.Addr, port int, user, uas string) *device {
	t.Helper()
	p := testutil.Sipp{
		Scenario:  scenario(t, "device_register.xml"),
		OutOfCall: scenario(t, uas),
		Remote:    remote,
		NS:        ns,
		LocalIP:   ip, LocalPort: port,
		Service: user, AuthUser: user, AuthPassword: s.Passwords[user],
		AuthURI: domain,
		Vars:    map[string]string{"domain": domain, "expires": "600", "hold_ms": "60000"},
		Timeout: 90 * time.Second,
	}.Start(t)
	if !p.WaitLog("registered: "+user, registerWait) {
		t.Fatalf("device %s at %s:%d did not register within %s", user, ip, port, registerWait)
	}
	return &device{SippProcess: p, User: user, Addr: netip.AddrPortFrom(ip, uint16(port))}
}

// call runs one call from the loopback (or from ns at ip) to callee with
// scenario (uac_call.xml, uac_cancel.xml, uac_invite_expect.xml).
func (s *server) call(t *testing.T, ns *testutil.NetNS, remote string, ip netip.Addr, caller, callee, scen string) *testutil.SippResult {
	t.Helper()
	return testutil.Sipp{
		Scenario: scenario(t, scen),
		Remote:   remote,
		NS:       ns,
		LocalIP:  ip,
		Service:  callee, AuthUser: caller, AuthPassword: s.Passwords[caller],
		AuthURI: fmt.Sprintf("%s@%s", callee, domain),
		Vars:    map[string]string{"domain": domain, "from_user": caller},
		Timeout: 20 * time.Second,
	}.Run(t)
}

// deviceLogs stops a device and returns its <log> values for key.
func (d *device) logs(t *testing.T, key string) []string {
	t.Helper()
	d.Stop()
	return d.Wait(t).LogValues(key)
}

func last(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// cutHeader strips a "Name:" prefix that sipp's [last_Name:] keeps.
func cutHeader(v, name string) (string, bool) {
	if len(v) >= len(name) && strings.EqualFold(v[:len(name)], name) {
		return strings.TrimSpace(v[len(name):]), true
	}
	return v, false
}

// checkForked checks a parallel fork to two devices: winner answered the
// one call, loser was invited once and then got exactly one CANCEL.
func checkForked(t *testing.T, winner, loser *device) {
	t.Helper()
	winner.WaitLog("hangup:", 5*time.Second)
	loser.WaitLog("cancelled:", 5*time.Second)
	if got := winner.logs(t, "answered"); len(got) != 1 {
		t.Errorf("answering device logged answered %v, want one call", got)
	}
	if got := loser.logs(t, "invited"); len(got) != 1 {
		t.Errorf("second device was invited %d times, want 1: the fork must reach both", len(got))
	}
	if got := loser.Wait(t).LogValues("cancelled"); len(got) != 1 {
		t.Errorf("second device logged cancelled %v, want one CANCEL", got)
	}
}
