//go:build integration

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/testutil"
)

// midPasswords are the users the main registrar (Kamailio) knows; pinhole
// knows none: authentication stays upstream.
var midPasswords = map[string]string{"alice": "wonderland", "bob": "builder", "carol": "secret"}

// midrig is pinhole as a mid-registrar in front of a Kamailio main registrar.
type midrig struct {
	*server
	K *testutil.Kamailio
	// Port is pinhole's listening port, the address Kamailio trusts.
	Port int
}

// midParams are the mid-registrar settings a test varies.
type midParams struct {
	mode, insertion string
	outgoing        int // outgoing_expires
	margin          int // renewal_margin
	users           map[string]string
}

// startMidrig starts Kamailio and a pinhole relaying to it. edit may be nil.
func startMidrig(t *testing.T, p midParams, edit func(*testutil.Config)) *midrig {
	t.Helper()
	if p.users == nil {
		p.users = midPasswords
	}
	port := testutil.FreePort(t, testutil.Loopback)
	k := testutil.StartKamailio(t, testutil.KamailioConfig{
		Domain:  domain,
		Users:   p.users,
		Trusted: netip.AddrPortFrom(testutil.Loopback, uint16(port)),
	})
	s := startServer(t, p.users, false, func(c *testutil.Config) {
		addr := fmt.Sprintf("%s:%d", testutil.Loopback, port)
		c.Listen = config.Listen{UDP: []string{addr}, TCP: []string{addr}}
		// Short expiries so the rules play out in seconds.
		// Set field by field: the section's other keys keep their defaults.
		c.Registrar.MinExpires, c.Registrar.MaxExpires, c.Registrar.DefaultExpires, c.Registrar.MaxContacts = 1, 3600, 60, 10
		c.Log.Level = "info"
		c.MidRegistrar = config.MidRegistrar{
			Upstreams:       []config.Upstream{{Addr: k.Addr.String(), Transport: "udp"}},
			Mode:            p.mode,
			Insertion:       p.insertion,
			OutgoingExpires: p.outgoing,
			RenewalMargin:   p.margin,
			Timeout:         time.Second,
			RetryAfter:      7,
		}
		if edit != nil {
			edit(c)
		}
	})
	return &midrig{server: s, K: k, Port: port}
}

// kamContacts returns the contacts Kamailio holds for user.
func (r *midrig) kamContacts(t *testing.T, user string) []testutil.KamailioContact {
	t.Helper()
	return r.K.Location()[user]
}

// waitFor polls cond every 100 ms until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestMidregRegisterThroughKamailio: the right password registers the
// device at pinhole and at Kamailio (as pinhole's token contact); a wrong
// one leaves no binding anywhere and the device sees Kamailio's refusal.
func TestMidregRegisterThroughKamailio(t *testing.T) {
	for _, ins := range []string{"contact", "path"} {
		t.Run(ins, func(t *testing.T) {
			r := startMidrig(t, midParams{mode: "contact", insertion: ins, outgoing: 3600, margin: 10}, nil)
			const dev = "sip:alice@127.0.0.1:7301"

			got := r.register(t, "alice", "wonderland", "Contact: <"+dev+">", "Expires: 60")
			if got.Code != "200" {
				t.Fatalf("REGISTER with the right password got %s, want 200", got.Code)
			}
			if diff := cmp.Diff([]string{dev}, got.Contacts); diff != "" {
				t.Errorf("the 200 lists the contact as the device registered it (-want +got):\n%s", diff)
			}
			kc := r.kamContacts(t, "alice")
			if len(kc) != 1 {
				t.Fatalf("Kamailio holds %v for alice, want one contact", kc)
			}
			pinhole := fmt.Sprintf("@127.0.0.1:%d", r.Port)
			switch ins {
			case "contact":
				if !strings.HasPrefix(kc[0].Address, "sip:alice~c") || !strings.HasSuffix(kc[0].Address, pinhole) {
					t.Errorf("Kamailio's contact %q is not pinhole's token contact", kc[0].Address)
				}
			case "path":
				if kc[0].Address != dev || !strings.Contains(kc[0].Path, "alice~p") || !strings.Contains(kc[0].Path, pinhole+";lr") {
					t.Errorf("Kamailio's contact %+v: want the device's contact with pinhole's Path", kc[0])
				}
			}
			// outgoing_expires reached Kamailio, not the device's 60 s.
			if kc[0].Expires < 3500 {
				t.Errorf("Kamailio's expiry %d s: want about outgoing_expires 3600", kc[0].Expires)
			}
			if q := r.query(t, "alice"); !cmp.Equal(q.Contacts, []string{dev}) {
				t.Errorf("pinhole's bindings of alice: %v, want [%s]", q.Contacts, dev)
			}

			bad := r.register(t, "bob", "wrong", "Contact: <sip:bob@127.0.0.1:7302>", "Expires: 60")
			if bad.Code != "401" && bad.Code != "403" {
				t.Errorf("REGISTER with a wrong password got %s, want 401 or 403", bad.Code)
			}
			if kc := r.kamContacts(t, "bob"); len(kc) != 0 {
				t.Errorf("Kamailio holds %v for bob after a wrong password", kc)
			}
			if q := r.query(t, "bob"); q.Code == "200" && len(q.Contacts) != 0 {
				t.Errorf("pinhole holds %v for bob after a wrong password", q.Contacts)
			}
		})
	}
}

// TestMidregLapseDeregistersUpstream: a device that stops refreshing
// leaves Kamailio's location soon after its own expiry, long before the
// outgoing_expires Kamailio granted: pinhole sent the de-registration,
// which Kamailio accepted without credentials from pinhole's address.
func TestMidregLapseDeregistersUpstream(t *testing.T) {
	const expires = 3
	r := startMidrig(t, midParams{mode: "contact", insertion: "contact", outgoing: 3600, margin: 10}, nil)
	got := r.register(t, "carol", "secret", "Contact: <sip:carol@127.0.0.1:7401>", fmt.Sprintf("Expires: %d", expires))
	if got.Code != "200" {
		t.Fatalf("REGISTER got %s, want 200", got.Code)
	}
	registered := time.Now()
	if kc := r.kamContacts(t, "carol"); len(kc) != 1 || kc[0].Expires < 3500 {
		t.Fatalf("Kamailio holds %v for carol, want one contact for about 3600 s", kc)
	}
	before := r.K.Registers()
	// The store's expiry pass runs every second: gone within expires + 2 s,
	// plus a second for the de-registration's round trip.
	if !waitFor(expires*time.Second+5*time.Second, func() bool { return len(r.kamContacts(t, "carol")) == 0 }) {
		t.Fatalf("Kamailio still holds %v for carol %s after a %d s registration lapsed", r.kamContacts(t, "carol"), time.Since(registered).Round(time.Second), expires)
	}
	if took := time.Since(registered); took < (expires-1)*time.Second { // the store keeps whole seconds
		t.Errorf("carol left Kamailio after %s, before her %d s expiry", took, expires)
	}
	if got, want := r.K.Registers()-before, 1; got != want {
		t.Errorf("Kamailio received %d REGISTERs during the lapse, want %d (pinhole's one de-registration)", got, want)
	}
}

// throttle are the parameters of the refresh-counting test, chosen so
// that each decision is at least a second away from the rule's boundary:
// the store keeps whole seconds, so an elapsed time is seen up to a second
// late, and the count must not depend on when in a second a device began.
type throttle struct {
	expires   int // device's Expires, seconds
	period    int // seconds between refreshes
	refreshes int // refreshes after the first registration
	outgoing  int // outgoing_expires
	margin    int // renewal_margin
}

// relays is how many of a device's REGISTERs the rules send upstream:
// the first registration, then each refresh whose expiry plus the margin
// would pass the upstream registration's end, that is whose time since
// the last relay exceeds outgoing - expires - margin. It fails the test
// when a decision sits within a second of that boundary.
func (p throttle) relays(t *testing.T) int {
	t.Helper()
	if p.period > p.expires-1 {
		// The store keeps whole seconds: a binding may end up to a second
		// early, and must not lapse between two refreshes.
		t.Fatalf("refresh period %d s leaves less than a second before the %d s expiry", p.period, p.expires)
	}
	limit := p.outgoing - p.expires - p.margin
	relays, last := 1, 0
	for k := 1; k <= p.refreshes; k++ {
		elapsed := (k - last) * p.period
		relay := elapsed > limit
		if (elapsed+1 > limit) != relay || (elapsed-1 > limit) != relay {
			t.Fatalf("refresh %d: %d s since the last relay is within a second of the %d s boundary; choose other parameters", k, elapsed, limit)
		}
		if relay {
			relays++
			last = k
		}
	}
	return relays
}

// TestMidregThrottlesRefreshes: many devices refreshing much faster than
// outgoing_expires produce exactly the upstream REGISTERs the rules
// predict, counted at Kamailio; every relay is challenged once there.
// PINHOLE_MIDREG_DEVICES changes the number of devices (bench: 10000), and
// PINHOLE_MIDREG_OUTGOING / _REFRESHES the window.
func TestMidregThrottlesRefreshes(t *testing.T) {
	devices := 1000
	if v := os.Getenv("PINHOLE_MIDREG_DEVICES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("PINHOLE_MIDREG_DEVICES=%q", v)
		}
		devices = n
	}
	p := throttle{expires: 5, period: 3, refreshes: 6, outgoing: 13, margin: 1}
	// A longer window for the bench figure (docs/midregistrar.md):
	// PINHOLE_MIDREG_OUTGOING=61 PINHOLE_MIDREG_REFRESHES=38.
	for env, v := range map[string]*int{"PINHOLE_MIDREG_OUTGOING": &p.outgoing, "PINHOLE_MIDREG_REFRESHES": &p.refreshes} {
		if s := os.Getenv(env); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				t.Fatalf("%s=%q", env, s)
			}
			*v = n
		}
	}
	relays := p.relays(t)

	users := map[string]string{}
	var inf []testutil.User
	for i := range devices {
		name, pass := fmt.Sprintf("m%05d", i), fmt.Sprintf("pw%05d", i)
		users[name] = pass
		inf = append(inf, testutil.User{Name: name, Password: pass, Expires: p.expires})
	}
	r := startMidrig(t, midParams{mode: "contact", insertion: "contact", outgoing: p.outgoing, margin: p.margin, users: users}, nil)

	rate := 200.0
	window := time.Duration(float64(devices)/rate*float64(time.Second)) + time.Duration(p.refreshes*p.period)*time.Second
	start := time.Now()
	res := testutil.Sipp{
		Scenario: scenario(t, "midreg_refresh.xml"),
		Remote:   r.Addr,
		LocalIP:  testutil.Loopback,
		Users:    inf,
		Calls:    devices, Rate: rate, Limit: devices,
		AuthURI:        domain,
		Vars:           map[string]string{"domain": domain, "period_ms": strconv.Itoa(p.period * 1000), "refreshes": strconv.Itoa(p.refreshes)},
		Timeout:        window + 30*time.Second,
		NoMessageTrace: devices > 100,
	}.Run(t)
	took := time.Since(start)
	if os.Getenv("MIDREG_DEBUG") != "" {
		t.Log(res.Report())
	}
	if res.ExitCode != testutil.SippExitOK || res.Successful != devices {
		t.Fatalf("devices refreshing through pinhole:\n%s", res.Report())
	}
	// Then every device stops: each lapses at pinhole and is de-registered
	// upstream, one REGISTER each, long before Kamailio's own expiry.
	// (The first devices lapse while the last still refresh, so the
	// count is taken once all have.)
	if !waitFor(time.Duration(p.expires+5)*time.Second, func() bool { return r.K.ContactCount() == 0 }) {
		t.Fatalf("%d contacts still at Kamailio %d s after the devices stopped", r.K.ContactCount(), p.expires+5)
	}
	upstream := r.K.Registers()
	relayed := devices * 2 * relays // each relay challenged once
	if want := relayed + devices; upstream != want {
		t.Errorf("Kamailio received %d REGISTERs from %d devices, want %d: %d relays each (%d refreshes every %d s, expires %d, outgoing_expires %d, margin %d), each challenged once, and one de-registration",
			upstream, devices, want, relays, p.refreshes, p.period, p.expires, p.outgoing, p.margin)
	}
	deviceRegs := devices * (1 + p.refreshes + relays) // each challenge makes the device send once more
	t.Logf("%d devices, %s: %d device REGISTERs, %d upstream while refreshing: ratio %.4f (rules for this window: %.4f; long-run client_expires/outgoing_expires = %.4f)",
		devices, took.Round(time.Millisecond), deviceRegs, upstream-devices, float64(upstream-devices)/float64(deviceRegs),
		float64(2*relays)/float64(1+p.refreshes+relays), float64(p.period)/float64(p.outgoing))
}

// TestMidregCallFromKamailio: a call placed at Kamailio for a user
// registered through pinhole reaches the device through pinhole, whether
// Kamailio holds pinhole's token contact or the device's contact with
// pinhole's Path, and the call is answered and hung up end to end.
func TestMidregCallFromKamailio(t *testing.T) {
	for _, ins := range []string{"contact", "path"} {
		t.Run(ins, func(t *testing.T) {
			r := startMidrig(t, midParams{mode: "contact", insertion: ins, outgoing: 3600, margin: 10}, nil)
			alice := r.startDevice(t, nil, r.Addr, testutil.Loopback, testutil.FreePort(t, testutil.Loopback), "alice", "uas_answer.xml")
			if kc := r.kamContacts(t, "alice"); len(kc) != 1 {
				t.Fatalf("Kamailio holds %v for alice, want one contact", kc)
			}
			c := r.call(t, nil, r.K.Addr.String(), testutil.Loopback, "bob", "alice", "uac_call.xml")
			if c.ExitCode != testutil.SippExitOK || c.Successful != 1 {
				t.Fatalf("call placed at Kamailio failed:\n%s", c.Report())
			}
			alice.WaitLog("hangup:", 5*time.Second)
			answered := c.LogValues("answered")
			if diff := cmp.Diff(answered, alice.logs(t, "answered")); diff != "" || len(answered) != 1 {
				t.Errorf("the device answered other calls than the caller's (-caller +device):\n%s", diff)
			}
		})
	}
}

// TestMidregAORForking: in mode aor Kamailio holds one contact for the
// AOR, pointing at pinhole; a call to it rings both of the user's
// devices, one answers and pinhole CANCELs the other.
func TestMidregAORForking(t *testing.T) {
	r := startMidrig(t, midParams{mode: "aor", insertion: "contact", outgoing: 3600, margin: 10}, nil)
	winner := r.startDevice(t, nil, r.Addr, testutil.Loopback, testutil.FreePort(t, testutil.Loopback), "alice", "uas_answer.xml")
	loser := r.startDevice(t, nil, r.Addr, testutil.Loopback, testutil.FreePort(t, testutil.Loopback), "alice", "uas_ring_then_cancel.xml")
	kc := r.kamContacts(t, "alice")
	if len(kc) != 1 || !strings.HasPrefix(kc[0].Address, "sip:alice~a") {
		t.Fatalf("Kamailio holds %v for alice, want pinhole's one AOR contact", kc)
	}
	if q := r.query(t, "alice"); len(q.Contacts) != 2 {
		t.Fatalf("pinhole holds %v for alice, want both devices", q.Contacts)
	}

	c := r.call(t, nil, r.K.Addr.String(), testutil.Loopback, "bob", "alice", "uac_call.xml")
	if c.ExitCode != testutil.SippExitOK || c.Successful != 1 {
		t.Fatalf("call placed at Kamailio failed:\n%s", c.Report())
	}
	checkForked(t, winner, loser)
}

// TestMidregUpstreamDown: with Kamailio stopped, a registered device keeps
// refreshing successfully (absorbed, its renewal deferred) while a new
// registration gets 503 with Retry-After before its transaction times
// out; once Kamailio is back, the device's next refresh renews upstream.
func TestMidregUpstreamDown(t *testing.T) {
	p := throttle{expires: 5, period: 3, refreshes: 5, outgoing: 13, margin: 1}
	r := startMidrig(t, midParams{mode: "contact", insertion: "contact", outgoing: p.outgoing, margin: p.margin}, nil)
	start := time.Now()
	dev := testutil.Sipp{
		Scenario: scenario(t, "midreg_refresh.xml"),
		Remote:   r.Addr,
		LocalIP:  testutil.Loopback,
		Users:    []testutil.User{{Name: "alice", Password: midPasswords["alice"], Expires: p.expires}},
		AuthURI:  domain,
		Vars:     map[string]string{"domain": domain, "period_ms": strconv.Itoa(p.period * 1000), "refreshes": strconv.Itoa(p.refreshes)},
		Timeout:  time.Duration(p.period*p.refreshes+20) * time.Second,
	}.Start(t)
	if !waitFor(3*time.Second, func() bool { return len(r.kamContacts(t, "alice")) == 1 }) {
		t.Fatalf("alice did not register at Kamailio: %v", r.K.Location())
	}

	r.K.Stop()
	asked := time.Now()
	got := r.register(t, "bob", midPasswords["bob"], "Contact: <sip:bob@127.0.0.1:7501>", "Expires: 60")
	if got.Code != "503" {
		t.Errorf("new registration with Kamailio down got %s, want 503", got.Code)
	}
	// One upstream × 1 s timeout, far inside Timer F (32 s).
	if took := time.Since(asked); took > 5*time.Second {
		t.Errorf("the 503 took %s", took)
	}

	// alice's first renewal falls due at the refresh that is more than
	// outgoing - expires - margin seconds after her registration (9 s): it
	// is deferred while Kamailio is down. Bring Kamailio back after it.
	due := time.Duration(p.outgoing-p.expires-p.margin+p.period) * time.Second
	time.Sleep(time.Until(start.Add(due + 500*time.Millisecond)))
	r.K.Start() // with an empty location: usrloc is in memory

	res := dev.Wait(t)
	if res.ExitCode != testutil.SippExitOK || res.Successful != 1 {
		t.Fatalf("alice's refreshes through the outage:\n%s", res.Report())
	}
	kc := r.kamContacts(t, "alice")
	if len(kc) != 1 || !strings.HasPrefix(kc[0].Address, "sip:alice~c") {
		t.Errorf("after Kamailio came back it holds %v for alice, want her renewed token contact", kc)
	}
}

// TestMidregFastPathTwoPhones: two sipp phones of one user register
// through the mid-registrar (the fast path on, as the embedded default
// has it) in front of Kamailio, and refresh at the same time. Their
// refreshes inside the throttling window are absorbed by the event loops
// (pinhole_fastpath_absorbed_total), every 200 a phone gets after its
// first lists both phones with their expiries, and Kamailio receives
// exactly the REGISTERs the throttling lets through, each challenged
// once: in mode contact each phone's registration and renewal, in mode
// aor the two registrations of the AOR's one upstream contact.
func TestMidregFastPathTwoPhones(t *testing.T) {
	for _, tc := range []struct {
		mode string
		p    throttle
	}{
		// Refresh every 3 s with expiry 8 s, outgoing_expires 16, margin
		// 1: a refresh is relayed once more than 7 s passed since the
		// phone's last relay (the 3rd refresh), and every binding keeps 4 s
		// or more when its phone refreshes, beyond the loop's 2 s guard
		// against lapsing.
		{"contact", throttle{expires: 8, period: 3, refreshes: 4, outgoing: 16, margin: 1}},
		// No renewal: the second phone's registration renews the AOR's
		// upstream contact for both, and the first phone's refreshes stay
		// absorbed.
		{"aor", throttle{expires: 8, period: 3, refreshes: 3, outgoing: 3600, margin: 10}},
	} {
		t.Run(tc.mode, func(t *testing.T) { midregFastPathTwoPhones(t, tc.mode, tc.p) })
	}
}

func midregFastPathTwoPhones(t *testing.T, mode string, p throttle) {
	relays := p.relays(t)
	metricsAddr := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t, testutil.Loopback))
	r := startMidrig(t, midParams{mode: mode, insertion: "contact", outgoing: p.outgoing, margin: p.margin}, func(c *testutil.Config) {
		if !c.FastPath.Enabled {
			t.Fatal("the embedded default has the fast path off")
		}
		c.Metrics.Listen = metricsAddr
	})

	ports := []int{testutil.FreePort(t, testutil.Loopback), testutil.FreePort(t, testutil.Loopback)}
	var phones []*testutil.SippProcess
	for i, port := range ports {
		if i > 0 {
			// Half a period apart, as two phones of one user are: two
			// fills within microseconds can miss each other's
			// registration (ristretto applies a Set a moment later), and
			// both phones' next refreshes would go to the slow path.
			time.Sleep(time.Duration(p.period) * time.Second / 2)
		}
		phones = append(phones, testutil.Sipp{
			Scenario:  scenario(t, "midreg_refresh.xml"),
			Remote:    r.Addr,
			LocalIP:   testutil.Loopback,
			LocalPort: port,
			Users:     []testutil.User{{Name: "alice", Password: midPasswords["alice"], Expires: p.expires}},
			AuthURI:   domain,
			Vars:      map[string]string{"domain": domain, "period_ms": strconv.Itoa(p.period * 1000), "refreshes": strconv.Itoa(p.refreshes)},
			Timeout:   time.Duration(p.period*p.refreshes+15) * time.Second,
		}.Start(t))
	}
	contact := regexp.MustCompile(`(?m)^Contact: <sip:alice@127\.0\.0\.1:(\d+);transport=UDP>;expires=(\d+)\r?$`)
	for i, ph := range phones {
		res := ph.Wait(t)
		if res.ExitCode != testutil.SippExitOK || res.Successful != 1 {
			t.Fatalf("phone %d:\n%s", i, res.Report())
		}
		oks := receivedOKs(t, res.Dir+"/messages.log")
		if len(oks) != 1+p.refreshes {
			t.Fatalf("phone %d got %d 200s, want %d", i, len(oks), 1+p.refreshes)
		}
		// The first phone's first 200 may come before the other phone
		// registered; every later one lists both.
		for k, ok := range oks[1:] {
			got := map[int]int{}
			for _, m := range contact.FindAllStringSubmatch(ok, -1) {
				port, _ := strconv.Atoi(m[1])
				exp, _ := strconv.Atoi(m[2])
				got[port] = exp
			}
			other := ports[1-i]
			if len(got) != 2 || got[ports[i]] != p.expires || got[other] < 1 || got[other] > p.expires {
				t.Errorf("phone %d's 200 to refresh %d lists %v (port: expires), want its own %d: %d and the other's %d: 1 to %d:\n%s",
					i, k+1, got, ports[i], p.expires, other, p.expires, ok)
			}
		}
	}
	// Read before the phones' bindings lapse (8 s after their last
	// refresh), which makes pinhole de-register them upstream.
	if got, want := r.K.Registers(), len(phones)*2*relays; got != want {
		t.Errorf("Kamailio received %d REGISTERs, want %d: %d relays per phone (registration and renewals), each challenged once", got, want, relays)
	}
	// Each phone's refreshes between relays: the loops answer them (one
	// may still race the other phone's relay under load and go to the
	// slow path, which answers it alone all the same).
	inWindow := len(phones) * (p.refreshes + 1 - relays)
	if got := hostMetric(t, metricsAddr, "pinhole_fastpath_absorbed_total"); got < float64(inWindow-1) || got > float64(inWindow) {
		t.Errorf("the loops absorbed %v refreshes, want %d (or one fewer); fast path counters:\n%s", got, inWindow, metricLines(t, metricsAddr, "pinhole_fastpath_"))
	}
	if got := hostMetric(t, metricsAddr, `pinhole_midreg_relayed_total{mode="`+mode+`"}`); got != float64(len(phones)*2*relays) {
		t.Errorf("pinhole relayed %v REGISTERs, want %d", got, len(phones)*2*relays)
	}
}

// receivedOKs returns the 200 responses in a sipp message trace, in the
// order received.
func receivedOKs(t *testing.T, path string) []string {
	t.Helper()
	var out []string
	for _, part := range traceSplit.Split(readFile(t, path), -1) {
		if !strings.Contains(part, "message received") {
			continue
		}
		if i := strings.Index(part, "SIP/2.0 200 "); i >= 0 {
			out = append(out, part[i:])
		}
	}
	return out
}

// metricLines returns the lines of pinhole's metrics at addr whose name
// starts with prefix and whose value is not 0, to say why a count is off.
func metricLines(t *testing.T, addr, prefix string) string {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, prefix) && !strings.HasSuffix(l, " 0") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
