package dispatch

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/internal/config"
)

func TestFromConfig(t *testing.T) {
	cfg, err := config.Parse([]byte(`dispatch:
  sets:
    - {name: fs, algorithm: least_calls, destinations: [{uri: "sip:10.0.0.1:5080", weight: 3, attrs: {zone: a}}]}
  rules: [{set: fs, methods: [INVITE], sources: ["192.0.2.7/24"]}]
  register: fs
  oversize: {mtu: 1400, headroom: 100}
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := FromConfig(cfg.Dispatch)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Sets: []SetConfig{{Name: "fs", Algorithm: LeastCalls, Destinations: []DestinationConfig{
			{URI: "sip:10.0.0.1:5080", Weight: 3, Attrs: map[string]string{"zone": "a"}},
		}}},
		Rules:    []Rule{{Set: "fs", Methods: []string{"INVITE"}, Sources: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}},
		Register: "fs",
		Probe:    ProbeConfig{Interval: 10 * time.Second, Timeout: 2 * time.Second, DownAfter: 3, UpAfter: 2},
		Failover: FailoverConfig{Codes: []int{408, 502, 503, 504}, DownOn503: true, Timeout: 2 * time.Second},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("FromConfig (-want +got):\n%s", diff)
	}
	d, err := New(got)
	if err != nil {
		t.Fatalf("the default section's values must pass New: %v", err)
	}
	d.Close()
	if l := Limit(cfg.Dispatch.Oversize); l != 1300 {
		t.Errorf("Limit = %d, want 1300", l)
	}
}
