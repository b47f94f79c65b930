//go:build integration

package e2e

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var alicePasswords = map[string]string{"alice": "wonderland", "bob": "builder"}

// TestReRegisterAddsAndRemovesContacts walks one AOR through additions and
// removals and checks the 200 lists exactly the bindings that remain
// (RFC 3261 section 10.3 step 8: the 200 carries all current bindings).
func TestReRegisterAddsAndRemovesContacts(t *testing.T) {
	s := startServer(t, alicePasswords, true, nil)
	const (
		a = "sip:alice@127.0.0.1:7001"
		b = "sip:alice@127.0.0.1:7002"
		c = "sip:alice@127.0.0.1:7003"
	)
	steps := []struct {
		name        string
		contactLine string
		expiresLine string
		want        []string
	}{
		{"first contact", "Contact: <" + a + ">", "Expires: 600", []string{a}},
		{"add a second", "Contact: <" + b + ">", "Expires: 600", []string{a, b}},
		{"add and remove in one request", "Contact: <" + c + ">, <" + a + ">;expires=0", "Expires: 600", []string{b, c}},
		{"refresh leaves the set alone", "Contact: <" + b + ">", "Expires: 300", []string{b, c}},
		{"remove with Expires header", "Contact: <" + c + ">", "Expires: 0", []string{b}},
		{"query", noHeader, noHeader, []string{b}},
	}
	for _, st := range steps {
		got := s.register(t, "alice", "wonderland", st.contactLine, st.expiresLine)
		if got.Code != "200" {
			t.Fatalf("%s: REGISTER got %s, want 200", st.name, got.Code)
		}
		if diff := cmp.Diff(st.want, got.Contacts, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: Contact list of the 200 (-want +got):\n%s", st.name, diff)
		}
	}
}

// TestContactStar covers the wildcard of RFC 3261 section 10.2.2: it removes
// every binding with Expires 0 and is a 400 with any other expiry.
func TestContactStar(t *testing.T) {
	s := startServer(t, alicePasswords, true, nil)
	for _, port := range []int{7101, 7102} {
		got := s.register(t, "alice", "wonderland", fmt.Sprintf("Contact: <sip:alice@127.0.0.1:%d>", port), "Expires: 600")
		if got.Code != "200" {
			t.Fatalf("REGISTER contact %d got %s, want 200", port, got.Code)
		}
	}
	if got := s.query(t, "alice"); len(got.Contacts) != 2 {
		t.Fatalf("before the wildcard: bindings %v, want 2", got.Contacts)
	}

	// Section 10.3 step 6: "*" with an expiry other than 0 is a 400, and
	// must leave the bindings alone.
	if got := s.register(t, "alice", "wonderland", "Contact: *", "Expires: 60"); got.Code != "400" {
		t.Errorf("Contact: * with Expires: 60 got %s, want 400", got.Code)
	}
	if got := s.query(t, "alice"); len(got.Contacts) != 2 {
		t.Errorf("after a rejected wildcard: bindings %v, want the 2 still there", got.Contacts)
	}

	got := s.register(t, "alice", "wonderland", "Contact: *", "Expires: 0")
	if got.Code != "200" {
		t.Fatalf("Contact: * with Expires: 0 got %s, want 200", got.Code)
	}
	if len(got.Contacts) != 0 {
		t.Errorf("200 to the wildcard lists %v, want no bindings", got.Contacts)
	}
	if q := s.query(t, "alice"); len(q.Contacts) != 0 {
		t.Errorf("query after the wildcard lists %v, want none", q.Contacts)
	}
}

// TestIntervalTooBrief checks RFC 3261 section 10.3 step 7: an expiry below
// min_expires is a 423 that names the minimum, and binds nothing.
func TestIntervalTooBrief(t *testing.T) {
	s := startServer(t, alicePasswords, true, nil) // min_expires: 60
	cases := []struct {
		name, contactLine, expiresLine string
	}{
		{"Expires header", "Contact: <sip:alice@127.0.0.1:7201>", "Expires: 10"},
		{"expires parameter", "Contact: <sip:alice@127.0.0.1:7201>;expires=59", noHeader},
	}
	for _, c := range cases {
		got := s.register(t, "alice", "wonderland", c.contactLine, c.expiresLine)
		want := registration{Code: "423", MinExpires: "60"}
		if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: response (-want +got):\n%s", c.name, diff)
		}
	}
	if q := s.query(t, "alice"); len(q.Contacts) != 0 {
		t.Errorf("a 423 left bindings %v", q.Contacts)
	}
}

// TestWrongPassword checks a bad digest is refused with 403 and binds
// nothing, as the query with the right password then shows.
func TestWrongPassword(t *testing.T) {
	s := startServer(t, alicePasswords, true, nil)
	got := s.register(t, "alice", "not-the-password", "Contact: <sip:alice@127.0.0.1:7301>", "Expires: 600")
	if got.Code != "403" {
		t.Errorf("REGISTER with a wrong password got %s, want 403", got.Code)
	}
	if q := s.query(t, "alice"); q.Code != "200" || len(q.Contacts) != 0 {
		t.Errorf("query after the refused REGISTER: %s with %v, want 200 and no bindings", q.Code, q.Contacts)
	}
}
