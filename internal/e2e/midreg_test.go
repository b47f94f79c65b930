//go:build integration

package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

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
		c.Listen = testutil.Listen{UDP: []string{addr}, TCP: []string{addr}}
		// Short expiries so the rules play out in seconds.
		c.Registrar = testutil.RegistrarConfig{MinExpires: 1, MaxExpires: 3600, DefaultExpires: 60, MaxContacts: 10}
		c.Log.Level = "info"
		c.MidRegistrar = &testutil.MidRegistrarConfig{
			Upstreams:       []testutil.UpstreamConfig{{Addr: k.Addr.String(), Transport: "udp"}},
			Mode:            p.mode,
			Insertion:       p.insertion,
			OutgoingExpires: p.outgoing,
			RenewalMargin:   p.margin,
			Timeout:         "1s",
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
