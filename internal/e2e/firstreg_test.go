//go:build integration

package e2e

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/testutil"
)

// TestFirstRegistrationRawChallenge runs a sipp phone with digest
// credentials through a first registration (REGISTER, 401, REGISTER with
// credentials, 200, then one refresh) against pinhole with the fast path
// off: the 401 comes from the read filter's raw path (counted), sipp
// accepts it and answers its nonce, and the registrar accepts that
// answer; both 200s (the first registration's and the refresh's) are
// written from the REGISTERs' bytes by the workers' raw 200 (counted),
// and sipp accepts them. The byte-for-byte equality with the registrar's
// own 401 and 200 is slowpath's TestRawChallengeMatchesRegistrar and
// TestRaw200MatchesRegistrar.
func TestFirstRegistrationRawChallenge(t *testing.T) {
	metricsAddr, _ := authRefreshes(t, false, "rawch", "s3cret-rc", 1, 100, 20*time.Second)
	if got := hostMetric(t, metricsAddr, `pinhole_registrar_raw_challenges_total{result="answered"}`); got != 1 {
		t.Errorf("%v challenges answered from raw bytes, want 1 (the first REGISTER)", got)
	}
	if got := hostMetric(t, metricsAddr, `pinhole_registrar_replies_total{code="200"}`); got != 2 {
		t.Errorf("%v REGISTERs answered 200, want 2 (the authenticated one and the refresh)", got)
	}
	if got := hostMetric(t, metricsAddr, `pinhole_registrar_raw_200_total{result="answered"}`); got != 2 {
		t.Errorf("%v 200s written from raw bytes, want 2 (the authenticated REGISTER and the refresh)", got)
	}
	if got := hostMetric(t, metricsAddr, `pinhole_registrar_raw_200_total{result="fallback"}`); got != 0 {
		t.Errorf("%v raw 200s built through sipgo after all, want 0", got)
	}
}

// TestFirstRegistrationRawFill is the same first registration with the
// fast path on (the embedded default) and refreshes after it: the 200 to
// the REGISTER with credentials is written from its bytes by the workers'
// raw 200 (counted, never declined for the fast path's hooks), the fast
// path's cache is filled from the request's and the 200's bytes (counted)
// and the loops absorb the refreshes that follow, which sipp accepts.
// Any refresh that raced the fill goes to the slow path, and gets a raw
// 200 too.
func TestFirstRegistrationRawFill(t *testing.T) {
	const refreshes = 4
	if !testutil.DefaultConfig(t).FastPath.Enabled {
		t.Fatal("the embedded default has the fast path off")
	}
	metricsAddr, _ := authRefreshes(t, true, "rawfill", "s3cret-rf", refreshes, 200, 20*time.Second)
	absorbed := hostMetric(t, metricsAddr, "pinhole_fastpath_absorbed_total")
	if absorbed < refreshes-1 {
		t.Errorf("absorbed %v of %d refreshes", absorbed, refreshes)
	}
	if got, want := hostMetric(t, metricsAddr, `pinhole_registrar_raw_200_total{result="answered"}`), 1+refreshes-absorbed; got != want {
		t.Errorf("%v 200s written from raw bytes, want %v (the authenticated REGISTER and the refreshes not absorbed)", got, want)
	}
	if got := hostMetric(t, metricsAddr, "pinhole_fastpath_fills_from_bytes_total"); got < 1 {
		t.Errorf("%v fills from bytes, want at least 1 (the authenticated REGISTER's)", got)
	}
	for _, why := range []string{"off", "fill"} {
		if got := hostMetric(t, metricsAddr, `pinhole_registrar_raw_200_declined_total{reason="`+why+`"}`); got != 0 {
			t.Errorf("%v raw 200s declined as %s, want 0", got, why)
		}
	}
}

// authRefreshes starts pinhole (the embedded default, its fast path on or
// off, metrics on loopback) knowing user's password, and runs sipp's
// auth_refresh.xml for user: a REGISTER challenged and sent again with
// credentials, then refreshes every periodMs. It fails the test unless
// sipp succeeds, and returns the metrics address and sipp's result.
func authRefreshes(t *testing.T, fastPath bool, user, password string, refreshes, periodMs int, timeout time.Duration) (string, *testutil.SippResult) {
	t.Helper()
	cfg := testutil.DefaultConfig(t)
	cfg.FastPath.Enabled = fastPath
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t, testutil.Loopback))
	cfg.Metrics.Listen = metricsAddr
	cfg.Log.Level = "info"
	cfg.Auth.Credentials = testutil.WriteCredentials(t, cfg.Auth.Realm, map[string]string{user: password})
	testutil.StartPinhole(t, nil, cfg)
	res := testutil.Sipp{
		Scenario: scenario(t, "auth_refresh.xml"),
		Remote:   cfg.Listen.UDP[0],
		LocalIP:  testutil.Loopback,
		Service:  user, AuthUser: user, AuthPassword: password,
		AuthURI: domain,
		Vars:    map[string]string{"domain": domain, "expires": "600", "period_ms": strconv.Itoa(periodMs), "refreshes": strconv.Itoa(refreshes)},
		Timeout: timeout,
	}.Run(t)
	if res.ExitCode != testutil.SippExitOK {
		t.Fatalf("first registration and %d refreshes (fast path %v):\n%s", refreshes, fastPath, res.Report())
	}
	return metricsAddr, res
}
