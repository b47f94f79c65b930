//go:build integration

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/testutil"
)

// Load of TestBindingsSurviveKill9: bounded in count and in time.
const (
	killUsers     = 300 // distinct users in all
	killAcked     = 150 // registered and acknowledged before the crash
	killRate      = 100 // REGISTERs per second
	flushInterval = time.Second
)

// TestBindingsSurviveKill9 is the store's promise under a crash: every
// binding acknowledged more than flush_interval before a SIGKILL is there
// after the restart. The first half of the users register and are
// acknowledged; after a flush interval (plus margin) the second half starts
// and pinhole is killed in the middle of it. Then each of the first half is
// queried.
func TestBindingsSurviveKill9(t *testing.T) {
	passwords := make(map[string]string, killUsers)
	users := make([]testutil.User, killUsers)
	for i := range users {
		users[i] = testutil.User{Name: fmt.Sprintf("u%04d", i), Password: fmt.Sprintf("pw%04d", i), Expires: 3600}
		passwords[users[i].Name] = users[i].Password
	}
	s := startServer(t, passwords, true, func(c *testutil.Config) {
		c.Location.FlushInterval = flushInterval
		c.Log.Level = "info" // debug per request would dominate the run
	})
	acked, rest := users[:killAcked], users[killAcked:]

	first := testutil.Sipp{
		Scenario: scenario(t, "register.xml"), Remote: s.Addr, LocalIP: testutil.Loopback,
		Users: acked, Calls: len(acked), Rate: killRate, Limit: 50,
		AuthURI: domain, Vars: map[string]string{"domain": domain},
		Timeout: 60 * time.Second, NoMessageTrace: true,
	}.Run(t)
	if first.ExitCode != testutil.SippExitOK || first.Successful != len(acked) {
		t.Fatalf("first registrations: want all %d acknowledged:\n%s", len(acked), first.Report())
	}
	time.Sleep(flushInterval + 500*time.Millisecond)

	second := testutil.Sipp{
		Scenario: scenario(t, "register.xml"), Remote: s.Addr, LocalIP: testutil.Loopback,
		Users: rest, Calls: len(rest), Rate: killRate / 2, Limit: 50,
		AuthURI: domain, Vars: map[string]string{"domain": domain},
		// The kill makes the unanswered calls time out: keep that short.
		Timeout: 30 * time.Second, RecvTimeout: 5 * time.Second, NoMessageTrace: true,
	}.Start(t)
	// Kill once some of the second load is through, so the crash lands
	// while the store is taking writes.
	if !second.WaitLog("registered: ", 10*time.Second) {
		t.Fatal("second load registered nobody within 10s; pinhole stalled before the kill")
	}
	time.Sleep(300 * time.Millisecond)
	s.Kill()
	second.Stop()
	t.Logf("second load before the kill: %d registered", len(second.Wait(t).LogValues("registered")))

	s.Restart()

	q := testutil.Sipp{
		Scenario: scenario(t, "register_query.xml"), Remote: s.Addr, LocalIP: testutil.Loopback,
		Users: acked, Calls: len(acked), Rate: killRate, Limit: 50,
		AuthURI: domain, Vars: map[string]string{"domain": domain},
		Timeout: 60 * time.Second, NoMessageTrace: true,
	}.Run(t)
	bound := map[string]bool{}
	for _, v := range q.LogValues("bound") {
		bound[strings.Fields(v)[0]] = true
	}
	var lost []string
	for _, u := range acked {
		if !bound[u.Name] {
			lost = append(lost, u.Name)
		}
	}
	if len(lost) > 0 || q.Successful != len(acked) {
		t.Errorf("after kill -9 and restart, %d of %d acknowledged users lost their binding: %v\n%s",
			len(lost), len(acked), lost, q.Report())
	}
}
