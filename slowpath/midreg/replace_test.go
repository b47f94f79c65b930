package midreg

import (
	"strings"
	"testing"
	"time"
)

// A device that registers a new Contact under the same +sip.instance and
// reg-id replaces its binding (RFC 5626 §6). In mode contact the relayed
// REGISTER names only the new upstream contact, so pinhole de-registers the
// old one itself; it used to stay at the main registrar until
// outgoing_expires, where calls went to a contact that no longer answers.
func TestReplacedBindingDeregistered(t *testing.T) {
	const instance = `;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000a95a0e128>";reg-id=1`
	moved := "sip:alice@192.168.7.9:5062"
	for _, tt := range []struct {
		name string
		ins  Insertion
		mode Mode
		want int // de-registrations
	}{
		{"contact/contact", InsertContact, ModeContact, 1},
		{"contact/path", InsertPath, ModeContact, 1},
		{"mirror", InsertContact, ModeMirror, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(c *Config) { c.Mode, c.Insertion = tt.mode, tt.ins })
			expectStatus(t, f.register("c1", 1, deviceFlow, contactLine(dev)+instance, "Expires: 600"), 200)
			old := f.store.Lookup("alice@example.com")
			if len(old) != 1 {
				t.Fatalf("stored %v, want one binding", old)
			}
			expectStatus(t, f.register("c1", 2, deviceFlow, contactLine(moved)+instance, "Expires: 600"), 200)
			// The de-registration is pinhole's own request (its own
			// Call-ID), sent by the lapse worker: it may already be there.
			if bs := f.store.Lookup("alice@example.com"); len(bs) != 1 || bs[0].Contact != moved {
				t.Fatalf("stored %v, want the moved contact alone", bs)
			}
			if tt.want == 0 {
				time.Sleep(100 * time.Millisecond)
				if _, own := f.up.split("c1"); own != 0 {
					t.Fatalf("%d requests of pinhole's own upstream after the replacement, want none", own)
				}
				return
			}
			waitFor(t, "the old contact's de-registration", func() bool { _, own := f.up.split("c1"); return own == tt.want })
			out := f.up.last(t)
			want := "<sip:" + contactToken(&old[0]) + "@"
			if tt.ins == InsertPath {
				want = "<" + dev + ">"
			}
			c := headerValues(out, "Contact")
			if len(c) != 1 || !strings.HasPrefix(c[0], want) || !strings.HasSuffix(c[0], ";expires=0") {
				t.Errorf("de-registration Contact %v, want %s...;expires=0", c, want)
			}
			if got := headerValues(out, "Expires"); len(got) != 1 || got[0] != "0" {
				t.Errorf("de-registration Expires %v, want [0]", got)
			}
			if got := out.Destination(); got != up1.String() {
				t.Errorf("de-registration sent to %s, want %s which holds the old contact", got, up1)
			}
			// A refresh of the new contact replaces nothing.
			before := f.up.count()
			expectStatus(t, f.register("c1", 3, deviceFlow, contactLine(moved)+instance, "Expires: 600"), 200)
			time.Sleep(100 * time.Millisecond)
			if got := f.up.count() - before; got != 0 {
				t.Errorf("%d requests upstream after a refresh, want none", got)
			}
		})
	}
}
