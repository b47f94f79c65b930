//go:build integration

package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/internal/testutil"
)

// phonePort is the port a phone binds; behind the NAT it must not survive.
const phonePort = 5060

// TestCallsWithDeviceBehindNAT is the field case: alice sits behind a
// masquerading router, bob on the loopback. Both register, call each other
// in both directions, and each side hangs up once.
//
// alice's Contact holds her private 192.168.x address, which the host has
// no route to: a call that reaches her proves pinhole sent it to the
// translated address and port her REGISTER came from
// (docs/architecture.md, "One address, one port").
func TestCallsWithDeviceBehindNAT(t *testing.T) {
	nat := testutil.NATDevice(t, nil)
	port := testutil.FreePort(t, testutil.Loopback)
	natSide := fmt.Sprintf("%s:%d", nat.UpstreamAddr, port)
	s := startServer(t, alicePasswords, true, func(c *testutil.Config) {
		loop := fmt.Sprintf("%s:%d", testutil.Loopback, port)
		c.Listen.UDP = []string{loop, natSide}
		c.Listen.TCP = []string{loop, natSide}
	})
	bobPort := testutil.FreePort(t, testutil.Loopback)

	cases := []struct {
		name         string
		caller       string
		callerUAS    string // the caller's device is up too, ready to answer
		calleeUAS    string
		wantCallerBy string // "hangup:" logged by the caller
		wantCalleeBy string // "hangup:" logged by the callee's device
	}{
		{"bob calls alice, bob hangs up", "bob", "uas_answer.xml", "uas_answer.xml", "local", "remote"},
		{"bob calls alice, alice hangs up", "bob", "uas_answer.xml", "uas_answer_bye.xml", "remote", "local"},
		{"alice calls bob, alice hangs up", "alice", "uas_answer.xml", "uas_answer.xml", "local", "remote"},
		{"alice calls bob, bob hangs up", "alice", "uas_answer.xml", "uas_answer_bye.xml", "remote", "local"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			aliceUAS, bobUAS := c.calleeUAS, c.callerUAS
			if c.caller == "alice" {
				aliceUAS, bobUAS = c.callerUAS, c.calleeUAS
			}
			// Each case starts its devices afresh (same sockets, new
			// REGISTER) because a sipp process answers with one scenario.
			alice := s.startDevice(t, nat.Device, natSide, nat.DeviceAddr, phonePort, "alice", aliceUAS)
			bob := s.startDevice(t, nil, s.Addr, testutil.Loopback, bobPort, "bob", bobUAS)

			var r *testutil.SippResult
			callee := alice
			if c.caller == "bob" {
				r = s.call(t, nil, s.Addr, testutil.Loopback, "bob", "alice", "uac_call.xml")
			} else {
				callee = bob
				// From another port of alice's phone: the call has its own
				// NAT mapping, as a second socket on a real phone would.
				r = s.call(t, nat.Device, natSide, nat.DeviceAddr, "alice", "bob", "uac_call.xml")
			}
			if r.ExitCode != testutil.SippExitOK || r.Successful != 1 {
				t.Fatalf("call failed:\n%s", r.Report())
			}
			if diff := cmp.Diff([]string{c.wantCallerBy}, r.LogValues("hangup")); diff != "" {
				t.Errorf("caller's hang-up (-want +got):\n%s", diff)
			}
			// The callee logs its hang-up after the caller is done.
			callee.WaitLog("hangup:", 5*time.Second)
			answered := r.LogValues("answered")
			if diff := cmp.Diff(answered, callee.logs(t, "answered")); diff != "" || len(answered) != 1 {
				t.Errorf("calls the callee answered vs. the caller saw (-caller +callee):\n%s", diff)
			}
			if diff := cmp.Diff([]string{c.wantCalleeBy}, callee.Wait(t).LogValues("hangup")); diff != "" {
				t.Errorf("callee's hang-up (-want +got):\n%s", diff)
			}
			alice.Stop()
			bob.Stop()
		})
	}
}

// TestCancelBeforeAnswer: the caller gives up while the callee rings; the
// CANCEL reaches the callee, which ends the INVITE with 487.
func TestCancelBeforeAnswer(t *testing.T) {
	s := startServer(t, alicePasswords, true, nil)
	bob := s.startDevice(t, nil, s.Addr, testutil.Loopback, testutil.FreePort(t, testutil.Loopback), "bob", "uas_ring_then_cancel.xml")

	r := s.call(t, nil, s.Addr, testutil.Loopback, "alice", "bob", "uac_cancel.xml")
	if r.ExitCode != testutil.SippExitOK || r.Successful != 1 {
		t.Fatalf("caller's CANCEL flow failed:\n%s", r.Report())
	}
	bob.WaitLog("cancelled:", 5*time.Second)
	if got := bob.logs(t, "cancelled"); len(got) != 1 {
		t.Errorf("callee saw %d cancelled calls, want 1 (logs %v)", len(got), got)
	}
}

// TestParallelForking: bob has two phones; the first answers, the other
// rings on and must get a CANCEL (RFC 3261 section 16.7 step 10).
func TestParallelForking(t *testing.T) {
	s := startServer(t, alicePasswords, true, nil)
	winner := s.startDevice(t, nil, s.Addr, testutil.Loopback, testutil.FreePort(t, testutil.Loopback), "bob", "uas_answer.xml")
	loser := s.startDevice(t, nil, s.Addr, testutil.Loopback, testutil.FreePort(t, testutil.Loopback), "bob", "uas_ring_then_cancel.xml")
	if q := s.query(t, "bob"); len(q.Contacts) != 2 {
		t.Fatalf("bob has bindings %v, want both phones", q.Contacts)
	}

	r := s.call(t, nil, s.Addr, testutil.Loopback, "alice", "bob", "uac_call.xml")
	if r.ExitCode != testutil.SippExitOK || r.Successful != 1 {
		t.Fatalf("forked call failed:\n%s", r.Report())
	}
	checkForked(t, winner, loser)
}

// TestCallToUserWithoutBinding: a user pinhole does not know is 404; a
// known user with no binding left is 480 (RFC 3261 section 21.4.18).
func TestCallToUserWithoutBinding(t *testing.T) {
	s := startServer(t, map[string]string{"alice": "wonderland", "carol": "cheshire"}, true, nil)

	// carol registers, then removes every binding again.
	if got := s.register(t, "carol", "cheshire", "Contact: <sip:carol@127.0.0.1:7401>", "Expires: 600"); got.Code != "200" {
		t.Fatalf("carol's REGISTER got %s, want 200", got.Code)
	}
	u := testutil.Sipp{
		Scenario: scenario(t, "unregister_all.xml"), Remote: s.Addr, LocalIP: testutil.Loopback,
		Service: "carol", AuthUser: "carol", AuthPassword: "cheshire", AuthURI: domain,
		Vars: map[string]string{"domain": domain},
	}.Run(t)
	if u.ExitCode != testutil.SippExitOK {
		t.Fatalf("unregister carol:\n%s", u.Report())
	}

	for _, c := range []struct{ callee, want string }{
		{"nobody", "404"},
		{"carol", "480"},
	} {
		r := s.call(t, nil, s.Addr, testutil.Loopback, "alice", c.callee, "uac_invite_expect.xml")
		if r.ExitCode != testutil.SippExitOK {
			t.Fatalf("INVITE to %s got no final response the scenario knows:\n%s", c.callee, r.Report())
		}
		if got := last(r.LogValues("code")); got != c.want {
			t.Errorf("INVITE to %s got %s, want %s", c.callee, got, c.want)
		}
	}
}
