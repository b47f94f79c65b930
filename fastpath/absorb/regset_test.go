package absorb

import (
	"bytes"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestRebootedPhoneForgotten: a phone that reboots registers its Contact
// again under a new Call-ID, which replaces its binding in the store. The
// cache must then know the AOR's registrations as the store holds them
// (the new one and the other phone's), not keep the dead registration
// until ristretto evicts it, and go on absorbing both phones' refreshes
// with the slow path's answers.
func TestRebootedPhoneForgotten(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	ref, fast := newPairPath(t, now, false), newPairPath(t, now, true)
	a := &phone{name: "a", q: "0.9", expires: 600, remote: netip.MustParseAddrPort("198.51.100.7:40001")}
	b := &phone{name: "b", q: "0.5", expires: 300, remote: netip.MustParseAddrPort("198.51.100.8:40002")}
	boot := 0 // a's reboots: its Call-ID is "a@pair", then "a-1@pair"...
	request := func(p *phone) []byte {
		p.cseq++
		data := p.register(p.expires)
		if p == a && boot > 0 {
			data = bytes.Replace(data, []byte("Call-ID: a@pair"), []byte("Call-ID: a-"+string(rune('0'+boot))+"@pair"), 1)
		}
		return data
	}
	step := func(name string, p *phone, absorb bool) {
		t.Helper()
		clock.Add(int64(time.Second))
		data := request(p)
		want, _ := ref.send(t, p, data, now())
		got, absorbed := fast.send(t, p, data, now())
		if !strings.HasPrefix(want, "SIP/2.0 200 OK\r\n") {
			t.Fatalf("%s: the slow path answered\n%s", name, want)
		}
		norm := func(s string) []string { return strings.Split(anyTag.ReplaceAllString(s, "${1}TAG\r"), "\r\n") }
		if diff := cmp.Diff(norm(want), norm(got)); diff != "" {
			t.Fatalf("%s: answers differ (-slow path +fast path):\n%s", name, diff)
		}
		if absorbed != absorb {
			t.Fatalf("%s: absorbed %v, want %v", name, absorbed, absorb)
		}
	}
	known := func() []string {
		t.Helper()
		fast.cache.Wait()
		s, ok := fast.cache.regs.Get(fast.cache.key("pair@example.com"))
		if !ok {
			return nil
		}
		var ids []string
		for _, g := range s.regs {
			ids = append(ids, g.callID())
		}
		slices.Sort(ids)
		return ids
	}

	step("a registers", a, false)
	step("b registers", b, false)
	step("a refreshes", a, true)
	step("b refreshes", b, true)
	if diff := cmp.Diff([]string{"a@pair", "b@pair"}, known()); diff != "" {
		t.Fatalf("registrations known before the reboot (-want +got):\n%s", diff)
	}
	for boot = 1; boot <= 3; boot++ {
		a.cseq = 0
		step("a registers after a reboot", a, false)
		want := []string{"a-" + string(rune('0'+boot)) + "@pair", "b@pair"}
		if diff := cmp.Diff(want, known()); diff != "" {
			t.Fatalf("boot %d: registrations known (-want +got):\n%s", boot, diff)
		}
		if n := len(fast.store.Lookup("pair@example.com")); n != 2 {
			t.Fatalf("boot %d: the store holds %d bindings, want 2", boot, n)
		}
		step("b refreshes beside the rebooted a", b, true) // a's fill listed b again
		step("a refreshes", a, true)
		step("b refreshes", b, true)
	}
}
