//go:build integration

package e2e

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/testutil"
)

// TestFastPathTwoPhones runs two sipp phones of one user, each with its
// own socket, Call-ID and Contact and digest credentials, refreshing at the
// same time through the pinhole binary started from the embedded default
// (fast path on). Both must finish their lives, pinhole's metrics must
// count their refreshes absorbed (all but the few that race the other
// phone's registration), and each phone's last 200 must list both
// bindings: its own with the expiry it asked for, the other's with what is
// left of it. That the loop's answers equal the slow path's header for
// header is proven on one clock in fastpath (TestAuthCorpusTwoPhones,
// TestSeveralRegistrations).
func TestFastPathTwoPhones(t *testing.T) {
	const user, password, refreshes = "pairfp", "s3cret-pair", 8
	cfg := testutil.DefaultConfig(t)
	if !cfg.FastPath.Enabled {
		t.Fatal("the embedded default has the fast path off")
	}
	metricsAddr := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t, testutil.Loopback))
	cfg.Metrics.Listen = metricsAddr
	cfg.Log.Level = "info"
	cfg.Auth.Credentials = testutil.WriteCredentials(t, cfg.Auth.Realm, map[string]string{user: password})
	testutil.StartPinhole(t, nil, cfg)

	type phone struct {
		port    int
		expires int
		p       *testutil.SippProcess
	}
	phones := []*phone{{expires: 600}, {expires: 300}}
	for _, ph := range phones {
		ph.port = testutil.FreePort(t, testutil.Loopback)
		ph.p = testutil.Sipp{
			Scenario:  scenario(t, "auth_refresh.xml"),
			Remote:    cfg.Listen.UDP[0],
			LocalIP:   testutil.Loopback,
			LocalPort: ph.port,
			Service:   user, AuthUser: user, AuthPassword: password,
			AuthURI: domain,
			Vars: map[string]string{"domain": domain, "expires": strconv.Itoa(ph.expires),
				"period_ms": "250", "refreshes": strconv.Itoa(refreshes)},
			Timeout: 30 * time.Second,
		}.Start(t)
	}
	contact := regexp.MustCompile(`(?m)^Contact: <sip:` + user + `@127\.0\.0\.1:(\d+);transport=UDP>;expires=(\d+)\r?$`)
	for i, ph := range phones {
		res := ph.p.Wait(t)
		if res.ExitCode != testutil.SippExitOK {
			t.Fatalf("phone %d:\n%s", i, res.Report())
		}
		last := lastAnswer(t, res.Dir+"/messages.log", "SIP/2.0 200 ")
		got := map[int]int{}
		for _, m := range contact.FindAllStringSubmatch(last, -1) {
			port, _ := strconv.Atoi(m[1])
			exp, _ := strconv.Atoi(m[2])
			got[port] = exp
		}
		other := phones[1-i]
		if len(got) != 2 || got[ph.port] != ph.expires || got[other.port] <= other.expires-15 || got[other.port] > other.expires {
			t.Errorf("phone %d's last 200 lists %v (port: expires), want its own %d: %d and the other's %d: a little under %d:\n%s",
				i, got, ph.port, ph.expires, other.port, other.expires, last)
		}
	}
	// Each phone's first REGISTER and the answer to its challenge go to the
	// slow path; a refresh that races the other phone's registration may
	// too (the entry for both is made by the next fill).
	if got := hostMetric(t, metricsAddr, "pinhole_fastpath_absorbed_total"); got < 2*refreshes-4 {
		t.Errorf("absorbed %v of the two phones' %d refreshes", got, 2*refreshes)
	}
}

// lastAnswer returns the last response starting with prefix that sipp
// logged as received in its message trace.
func lastAnswer(t *testing.T, path, prefix string) string {
	t.Helper()
	last := ""
	for _, part := range traceSplit.Split(readFile(t, path), -1) {
		if !strings.Contains(part, "message received") {
			continue
		}
		if i := strings.Index(part, prefix); i >= 0 {
			last = part[i:]
		}
	}
	if last == "" {
		t.Fatalf("no %q received in %s", prefix, path)
	}
	return last
}
