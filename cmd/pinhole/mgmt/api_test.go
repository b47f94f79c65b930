package mgmt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/bpf"
	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/slowpath/dispatch"
)

const token = "0123456789abcdef-test"

var now = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// fakeBlocklist is bpf.Blocklist's behaviour in a map.
type fakeBlocklist struct {
	mu sync.Mutex
	m  map[netip.Prefix]time.Time
}

func (f *fakeBlocklist) Add(p netip.Prefix, until time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[p.Masked()] = until
	return nil
}

func (f *fakeBlocklist) Remove(p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, p.Masked())
	return nil
}

func (f *fakeBlocklist) List() ([]bpf.BlockEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []bpf.BlockEntry
	for p, u := range f.m {
		out = append(out, bpf.BlockEntry{Prefix: p, Until: u})
	}
	return out, nil
}

type fixture struct {
	api       *API
	store     *location.Memory
	farm      *dispatch.Dispatcher
	blocks    *fakeBlocklist
	reloads   int
	rotations int
}

// newFixture is an API over a memory store with bindings for alice (2),
// bob (1) and carol (1), a dispatcher with one set of two nodes, and a
// blocklist holding one prefix.
func newFixture(t *testing.T, tok string) *fixture {
	t.Helper()
	st, err := location.Open(location.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	add := func(aor, contact, remote string) {
		if _, err := st.Update(aor, func(cur []location.Binding) ([]location.Binding, error) {
			return append(cur, location.Binding{
				Contact: contact, CallID: "c-" + contact, CSeq: 1, Q: 1000, Expires: now.Add(600 * time.Second),
				Updated: now, NAT: true,
				Flow: location.Flow{Transport: location.TransportUDP, Remote: netip.MustParseAddrPort(remote), Local: netip.MustParseAddrPort("127.0.0.1:5060")},
			}), nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	add("alice@example.com", "sip:alice@10.0.0.1:5060", "192.0.2.1:40001")
	add("alice@example.com", "sip:alice@10.0.0.2:5060", "192.0.2.2:40002")
	add("bob@example.com", "sip:bob@10.0.0.3:5060", "192.0.2.3:40003")
	add("carol@example.org", "sip:carol@10.0.0.4:5060", "192.0.2.4:40004")

	farm, err := dispatch.New(dispatch.Config{
		Sets: []dispatch.SetConfig{{Name: "fs", Algorithm: dispatch.RoundRobin, Destinations: []dispatch.DestinationConfig{
			{URI: "sip:10.1.0.1:5080"}, {URI: "sip:10.1.0.2:5080", Weight: 2, Attrs: map[string]string{"dc": "b"}},
		}}},
		Probe: dispatch.ProbeConfig{DownAfter: 3, UpAfter: 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(farm.Close)
	f := &fixture{store: st, farm: farm, blocks: &fakeBlocklist{m: map[netip.Prefix]time.Time{
		netip.MustParsePrefix("198.51.100.0/24"): {},
	}}}
	f.api = New(Config{
		Token: tok,
		Store: st,
		Remove: func(aor, contact string) ([]location.Binding, error) {
			var removed []location.Binding
			_, err := st.Update(aor, func(cur []location.Binding) ([]location.Binding, error) {
				var keep []location.Binding
				for _, b := range cur {
					if contact == "" || b.Contact == contact {
						removed = append(removed, b)
					} else {
						keep = append(keep, b)
					}
				}
				if len(removed) == 0 {
					return nil, ErrNotFound
				}
				return keep, nil
			})
			return removed, err
		},
		Dispatcher: func() Dispatcher { return farm },
		Blocklist:  f.blocks,
		Reload: func() (ReloadResult, error) {
			f.reloads++
			if f.reloads > 1 {
				return ReloadResult{}, fmt.Errorf("t.yaml: line 3: %w: registrar.max_expires: 50 is below min_expires 100", config.ErrInvalid)
			}
			return ReloadResult{Applied: []string{"dispatch"}, Restart: []string{"domains"}}, nil
		},
		RotateKey: func() error {
			f.rotations++
			return nil
		},
		Now: func() time.Time { return now },
	})
	return f
}

// call serves one request and returns the status and body.
func (f *fixture) call(t *testing.T, method, target, body, tok string) (int, string) {
	t.Helper()
	var req *http.Request
	if body != "" {
		req = httptest.NewRequest(method, target, strings.NewReader(body))
	} else {
		req = httptest.NewRequest(method, target, nil)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	w := httptest.NewRecorder()
	f.api.ServeHTTP(w, req)
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, target, ct)
	}
	return w.Code, w.Body.String()
}

// TestCalls runs every call with good and bad input. Each row says the
// status and a fragment the body must hold.
func TestCalls(t *testing.T) {
	tests := []struct {
		name, method, target, body string
		tok                        string
		status                     int
		want                       string
	}{
		{"no token", "GET", "/api/v1/bindings", "", "", 401, "bearer token"},
		{"wrong token", "GET", "/api/v1/bindings", "", "0123456789abcdef-tesT", 401, "bearer token"},
		{"wrong token on a change", "DELETE", "/api/v1/bindings/alice@example.com", "", "nope", 401, "bearer token"},

		{"list", "GET", "/api/v1/bindings", "", token, 200, `"total": 4`},
		{"list limit zero", "GET", "/api/v1/bindings?limit=0", "", token, 400, "limit"},
		{"list limit word", "GET", "/api/v1/bindings?limit=ten", "", token, 400, "from 1 to 1000"},
		{"list limit too big", "GET", "/api/v1/bindings?limit=1001", "", token, 400, "limit"},
		{"lookup", "GET", "/api/v1/bindings/bob@example.com", "", token, 200, `"remote": "192.0.2.3:40003"`},
		{"lookup unknown", "GET", "/api/v1/bindings/zoe@example.com", "", token, 404, "no bindings for zoe@example.com"},
		{"lookup not an aor", "GET", "/api/v1/bindings/alice", "", token, 400, "user@domain"},
		{"delete unknown", "DELETE", "/api/v1/bindings/zoe@example.com", "", token, 404, "no bindings for zoe@example.com"},
		{"delete unknown contact", "DELETE", "/api/v1/bindings/alice@example.com?contact=sip:x@192.0.2.9", "", token, 404, "with contact sip:x@192.0.2.9"},
		{"delete not an aor", "DELETE", "/api/v1/bindings/@example.com", "", token, 400, "user@domain"},
		{"delete one contact", "DELETE", "/api/v1/bindings/alice@example.com?contact=sip:alice@10.0.0.1:5060", "", token, 200, `"contact": "sip:alice@10.0.0.1:5060"`},
		{"delete all", "DELETE", "/api/v1/bindings/bob@example.com", "", token, 200, `"removed"`},
		{"deleted is gone", "GET", "/api/v1/bindings/bob@example.com", "", token, 404, "no bindings"},

		{"destinations", "GET", "/api/v1/dispatch", "", token, 200, `"uri": "sip:10.1.0.2:5080"`},
		{"disable", "POST", "/api/v1/dispatch/state", `{"set":"fs","uri":"sip:10.1.0.2:5080","state":"disabled"}`, token, 200, `"state": "disabled"`},
		{"enable", "POST", "/api/v1/dispatch/state", `{"set":"fs","uri":"sip:10.1.0.2:5080","state":"up"}`, token, 200, `"state": "up"`},
		{"state unknown node", "POST", "/api/v1/dispatch/state", `{"set":"fs","uri":"sip:10.9.9.9:5080","state":"up"}`, token, 404, "no destination sip:10.9.9.9:5080"},
		{"state unknown set", "POST", "/api/v1/dispatch/state", `{"set":"pbx","uri":"sip:10.1.0.1:5080","state":"up"}`, token, 404, "in set pbx"},
		{"state bad", "POST", "/api/v1/dispatch/state", `{"set":"fs","uri":"sip:10.1.0.1:5080","state":"down"}`, token, 400, "want up, probing or disabled"},
		{"state no set", "POST", "/api/v1/dispatch/state", `{"uri":"sip:10.1.0.1:5080","state":"up"}`, token, 400, "set and uri are required"},
		{"state bad json", "POST", "/api/v1/dispatch/state", `{"set":`, token, 400, "request body"},
		{"state unknown field", "POST", "/api/v1/dispatch/state", `{"set":"fs","uri":"sip:10.1.0.1:5080","state":"up","force":true}`, token, 400, "unknown field"},
		{"state two objects", "POST", "/api/v1/dispatch/state", `{"set":"fs","uri":"sip:10.1.0.1:5080","state":"up"}{}`, token, 400, "one JSON object"},

		{"blocklist", "GET", "/api/v1/blocklist", "", token, 200, `"prefix": "198.51.100.0/24"`},
		{"block", "POST", "/api/v1/blocklist", `{"prefix":"203.0.113.7","duration":"10m"}`, token, 201, `"expires_in": 600`},
		{"block forever", "POST", "/api/v1/blocklist", `{"prefix":"2001:db8::/32"}`, token, 201, `"prefix": "2001:db8::/32"`},
		{"block bad prefix", "POST", "/api/v1/blocklist", `{"prefix":"203.0.113.0/33"}`, token, 400, "CIDR"},
		{"block no prefix", "POST", "/api/v1/blocklist", `{}`, token, 400, "prefix is required"},
		{"block bad duration", "POST", "/api/v1/blocklist", `{"prefix":"203.0.113.8","duration":"forever"}`, token, 400, "duration"},
		{"block short duration", "POST", "/api/v1/blocklist", `{"prefix":"203.0.113.8","duration":"10ms"}`, token, 400, "from 1s"},
		{"block mapped", "POST", "/api/v1/blocklist", `{"prefix":"::ffff:203.0.113.8"}`, token, 400, "IPv4 form"},
		{"unblock", "DELETE", "/api/v1/blocklist?prefix=203.0.113.7/32", "", token, 200, `"prefix": "203.0.113.7/32"`},
		{"unblock not listed", "DELETE", "/api/v1/blocklist?prefix=203.0.113.7", "", token, 404, "not on the blocklist"},
		{"unblock bad", "DELETE", "/api/v1/blocklist?prefix=nope", "", token, 400, "CIDR"},
		{"unblock missing", "DELETE", "/api/v1/blocklist", "", token, 400, "prefix is required"},

		{"stats", "GET", "/api/v1/stats?prefix=pinhole_api_", "", token, 200, `"pinhole_api_requests_total"`},
		{"reload", "POST", "/api/v1/reload", "", token, 200, `"restart_needed": [`},
		{"rotate key", "POST", "/api/v1/keys/rotate", "", token, 200, `"rotated": true`},
		{"rotate key without token", "POST", "/api/v1/keys/rotate", "", "", 401, ""},
		{"reload invalid file", "POST", "/api/v1/reload", "", token, 400, "reload refused, nothing changed: t.yaml: line 3"},
		{"unknown call", "GET", "/api/v1/registrations", "", token, 404, "no such call"},
		{"wrong method", "PUT", "/api/v1/reload", "", token, 405, "PUT is not a call on /api/v1/reload"},
		{"wrong method on an aor", "POST", "/api/v1/bindings/alice@example.com", "", token, 405, "POST is not a call"},
	}
	f := newFixture(t, token)
	for _, tt := range tests {
		status, body := f.call(t, tt.method, tt.target, tt.body, tt.tok)
		if status != tt.status || !strings.Contains(body, tt.want) {
			t.Errorf("%s: %s %s = %d\n%s\nwant %d with %q", tt.name, tt.method, tt.target, status, body, tt.status, tt.want)
		}
		if status >= 400 {
			var e Error
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
				t.Errorf("%s: error body %q is not {\"error\": ...}", tt.name, body)
			}
		}
	}
	if got := f.farm.Destinations()[1].State; got != dispatch.Up {
		t.Errorf("destination 2 ends %s, want up", got)
	}
}

// TestNotRunning: without XDP or dispatch the calls say so with 409.
func TestNotRunning(t *testing.T) {
	f := newFixture(t, "")
	f.api = New(Config{Store: f.store, Dispatcher: func() Dispatcher { return nil }})
	for _, c := range []struct{ method, target, body, want string }{
		{"GET", "/api/v1/blocklist", "", "XDP program is not running"},
		{"POST", "/api/v1/blocklist", `{"prefix":"192.0.2.1"}`, "XDP program is not running"},
		{"DELETE", "/api/v1/blocklist?prefix=192.0.2.1", "", "XDP program is not running"},
		{"GET", "/api/v1/dispatch", "", "dispatch is not configured"},
		{"POST", "/api/v1/dispatch/state", `{"set":"fs","uri":"sip:10.1.0.1:5080","state":"up"}`, "dispatch is not configured"},
		{"POST", "/api/v1/reload", "", "not available"},
		{"POST", "/api/v1/keys/rotate", "", "not available"},
	} {
		status, body := f.call(t, c.method, c.target, c.body, "")
		if status != http.StatusConflict || !strings.Contains(body, c.want) {
			t.Errorf("%s %s = %d %s, want 409 with %q", c.method, c.target, status, body, c.want)
		}
	}
}

// TestPaging walks the list two AORs at a time and gets every binding
// exactly once, in AOR order.
func TestPaging(t *testing.T) {
	f := newFixture(t, "")
	var got []string
	after := ""
	for range 10 {
		status, body := f.call(t, "GET", "/api/v1/bindings?limit=2&after="+after, "", "")
		if status != 200 {
			t.Fatalf("page after %q: %d %s", after, status, body)
		}
		var p BindingPage
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			t.Fatal(err)
		}
		for _, b := range p.Bindings {
			got = append(got, b.AOR+" "+b.Contact)
		}
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	want := []string{
		"alice@example.com sip:alice@10.0.0.1:5060", "alice@example.com sip:alice@10.0.0.2:5060",
		"bob@example.com sip:bob@10.0.0.3:5060", "carol@example.org sip:carol@10.0.0.4:5060",
	}
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("bindings over all pages (-want +got):\n%s", diff)
	}
	_, body := f.call(t, "GET", "/api/v1/bindings?prefix=carol", "", "")
	if !strings.Contains(body, "carol@example.org") || strings.Contains(body, "alice") {
		t.Errorf("prefix carol: %s", body)
	}
}

// TestPageAORs checks the sorted window against a full sort.
func TestPageAORs(t *testing.T) {
	st, err := location.Open(location.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var all []string
	for i := range 500 {
		aor := fmt.Sprintf("u%03d@example.com", (i*7919)%500)
		all = append(all, aor)
		if _, err := st.Update(aor, func([]location.Binding) ([]location.Binding, error) {
			return []location.Binding{{Contact: "sip:" + aor, Expires: time.Now().Add(time.Hour)}}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(all)
	for _, tc := range []struct {
		after string
		limit int
	}{{"", 10}, {"u100@example.com", 7}, {"u495@example.com", 10}, {"", 1000}} {
		got := pageAORs(st, tc.after, "", tc.limit)
		i, _ := slices.BinarySearch(all, tc.after)
		if tc.after != "" {
			i++
		}
		want := all[i:min(len(all), i+tc.limit+1)]
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("after %q limit %d (-want +got):\n%s", tc.after, tc.limit, diff)
		}
	}
}

// TestClient drives the client against the API over real HTTP.
func TestClient(t *testing.T) {
	f := newFixture(t, token)
	srv := httptest.NewServer(f.api)
	defer srv.Close()
	ctx := context.Background()
	c := &Client{Base: srv.URL, Token: token}
	page, err := c.Bindings(ctx, "", "", DefaultPage)
	if err != nil || page.Total != 4 || len(page.Bindings) != 4 {
		t.Fatalf("Bindings = %+v, %v", page, err)
	}
	bs, err := c.Lookup(ctx, "alice@example.com")
	if err != nil || len(bs) != 2 || bs[0].ExpiresIn != 600 || !bs[0].NAT || bs[0].Transport != "UDP" {
		t.Errorf("Lookup = %+v, %v", bs, err)
	}
	if _, err := c.Remove(ctx, "zoe@example.com", ""); !isStatus(err, 404) {
		t.Errorf("Remove unknown: %v, want a 404", err)
	}
	if d, err := c.SetState(ctx, "fs", "sip:10.1.0.1:5080", "probing"); err != nil || d.State != "probing" {
		t.Errorf("SetState = %+v, %v", d, err)
	}
	if _, err := c.Block(ctx, "192.0.2.0/24", "1h"); err != nil {
		t.Errorf("Block: %v", err)
	}
	if err := c.Unblock(ctx, "192.0.2.0/24"); err != nil {
		t.Errorf("Unblock: %v", err)
	}
	if r, err := c.Reload(ctx); err != nil || r.Applied[0] != "dispatch" {
		t.Errorf("Reload = %+v, %v", r, err)
	}
	bad := &Client{Base: srv.URL, Token: "wrong-token-0123456"}
	if _, err := bad.Stats(ctx, ""); !isStatus(err, 401) {
		t.Errorf("wrong token: %v, want a 401", err)
	}
}

func isStatus(err error, status int) bool {
	var e *APIError
	return errors.As(err, &e) && e.Status == status
}
