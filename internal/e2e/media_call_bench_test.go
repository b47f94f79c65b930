//go:build integration

package e2e

import (
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/testutil"
)

// BenchmarkMediaCalls measures calls per second through pinhole with media
// relay control off and on (media.rules.always: every call's offer, answer
// and delete go to rtpengine), the same sipp scenario (INVITE with SDP,
// 200, ACK, BYE, 200: uac_media.xml against uas_media.xml) and the same
// topology for both (docs/media.md, "Measured"):
//
//	go test -tags integration -run '^$' -bench MediaCalls -benchtime 3x ./internal/e2e/
//
// Each iteration is one sipp run of mediaBenchCalls calls, at most
// mediaBenchInFlight at a time; the figure is completed calls over the
// run's wall time. The ng round trips are the added cost. A call refused
// with 503 (rtpengine did not answer within media.timeout, or was marked
// down by such a silence) is reported as "503s", not as a call.
func BenchmarkMediaCalls(b *testing.B) {
	for _, bc := range []struct {
		name  string
		relay bool
	}{{"relay=off", false}, {"relay=on", true}} {
		b.Run(bc.name, func(b *testing.B) {
			n := startRelayedNetWith(b, func(c *testutil.Config) {
				c.Log.Level = "info" // debug lines per message would be measured instead
				m := &c.Media
				m.Enabled = bc.relay
				m.Rules = config.MediaRules{Always: true}
				// A benchmark measures; it must not retransmit because
				// rtpengine is busy.
				m.Timeout, m.Retries = 2*time.Second, 0
			})
			var calls, refused, failed int
			var took time.Duration
			for b.Loop() {
				start := time.Now()
				r := testutil.Sipp{
					Scenario: scenario(b, "uac_media.xml"),
					Remote:   n.sip,
					NS:       n.core,
					LocalIP:  n.nat.UpstreamAddr,
					Service:  "bob",
					Calls:    mediaBenchCalls, Rate: 10000, Limit: mediaBenchInFlight,
					Vars:           map[string]string{"domain": domain, "from_user": "alice", "talk_ms": "0"},
					Timeout:        2 * time.Minute,
					NoMessageTrace: true,
				}.Run(b)
				took += time.Since(start)
				// A 503 (no rtpengine answered within the timeout) ends
				// the scenario as a success; it is not a call.
				no := len(r.LogValues("code"))
				calls += r.Successful - no
				refused += no
				if r.Failed > 0 && failed == 0 {
					b.Logf("failed calls:\n%s", r.Report())
				}
				failed += r.Failed
			}
			b.ReportMetric(float64(calls)/took.Seconds(), "calls/s")
			b.ReportMetric(float64(failed), "failed")
			b.ReportMetric(float64(refused), "503s")
			if bc.relay {
				// The added cost in time: the ng round trips of a call
				// (offer, answer, delete), as pinhole measured them.
				m := testutil.Metrics(b, n.core, relayedMetrics)
				var ngSeconds float64
				for _, c := range []string{"offer", "answer", "delete"} {
					ngSeconds += m[`pinhole_media_ng_rtt_seconds_sum{command="`+c+`"}`]
				}
				if calls > 0 {
					b.ReportMetric(ngSeconds/float64(calls)*1000, "ng-ms/call")
				}
				if got := n.metric(b, `pinhole_media_calls_relayed_total{reason="always"}`); int(got) < calls {
					b.Errorf("pinhole relayed %v calls of the %d that connected", got, calls)
				}
			}
		})
	}
}

const (
	mediaBenchCalls    = 2000
	mediaBenchInFlight = 100
)
