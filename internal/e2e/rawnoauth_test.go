//go:build integration

package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/testutil"
)

// TestRaw200WithoutAuth runs sipp phones without credentials, each a
// first registration and refreshes of it in one Call-ID, against pinhole
// without authentication (no auth section, the mid-registrar off), with
// the fast path off and on. sipp accepts every 200. With the fast path
// off every REGISTER's 200 is written from its bytes by the workers' raw
// 200 (counted), none through sipgo. With it on, the loops absorb the
// refreshes once the raw 200 filled their cache from bytes (counted), and
// every REGISTER they hand off, the first registrations among them, is
// answered raw. Nothing is declined by the raw path: a REGISTER without
// credentials is its to answer when none are asked for. The byte-for-byte
// equality with the registrar's own 200 is slowpath's
// TestRaw200MatchesRegistrar ("no auth").
func TestRaw200WithoutAuth(t *testing.T) {
	const phones, refreshes = 3, 3
	for _, fast := range []bool{false, true} {
		t.Run(fmt.Sprintf("fastpath=%v", fast), func(t *testing.T) {
			cfg := testutil.DefaultConfig(t)
			if cfg.Auth.Enabled() || cfg.MidRegistrar.Enabled() {
				t.Fatal("the test configuration authenticates or is a mid-registrar")
			}
			cfg.FastPath.Enabled = fast
			metricsAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t, testutil.Loopback))
			cfg.Metrics.Listen = metricsAddr
			cfg.Log.Level = "info"
			testutil.StartPinhole(t, nil, cfg)
			res := testutil.Sipp{
				Scenario: scenario(t, "refresh.xml"),
				Remote:   cfg.Listen.UDP[0],
				LocalIP:  testutil.Loopback,
				Service:  "rawnoauth",
				// One phone after the other: each call a first
				// registration (a new Call-ID) and its refreshes.
				Calls: phones, Limit: 1,
				Vars:    map[string]string{"domain": domain, "expires": "600", "period_ms": "100", "refreshes": fmt.Sprint(refreshes)},
				Timeout: 30 * time.Second,
			}.Run(t)
			if res.ExitCode != testutil.SippExitOK {
				t.Fatalf("registrations and refreshes:\n%s", res.Report())
			}
			metric := func(name string) float64 { return hostMetric(t, metricsAddr, name) }
			const registers = phones * (1 + refreshes)
			raw := metric(`pinhole_registrar_raw_200_total{result="answered"}`)
			absorbed := 0.0
			if fast {
				absorbed = metric("pinhole_fastpath_absorbed_total")
				if absorbed < 1 {
					t.Errorf("no refresh absorbed: the raw fill did not fill the fast path's cache")
				}
				if got := metric("pinhole_fastpath_fills_from_bytes_total"); got < phones {
					t.Errorf("%v fills from bytes, want at least %d (each first registration's)", got, phones)
				}
			}
			if raw+absorbed != registers || raw < phones {
				t.Errorf("%v REGISTERs answered raw and %v absorbed, want %d in all, at least %d raw (the first registrations)",
					raw, absorbed, registers, phones)
			}
			if got := metric(`pinhole_registrar_replies_total{code="200"}`); got != raw {
				t.Errorf("the registrar answered %v 200s, want %v, all raw", got, raw)
			}
			if got := metric(`pinhole_registrar_raw_200_total{result="fallback"}`); got != 0 {
				t.Errorf("%v raw 200s built through sipgo after all, want 0", got)
			}
			for _, why := range []string{"off", "scan", "form", "domain", "auth", "rules", "replay", "unkeyed", "fill"} {
				if got := metric(`pinhole_registrar_raw_200_declined_total{reason="` + why + `"}`); got != 0 {
					t.Errorf("%v REGISTERs declined by the raw 200 as %s, want 0", got, why)
				}
			}
		})
	}
}
