package load

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDeviceAddr(t *testing.T) {
	c := Defaults()
	c.IO = IOSocket
	c.Sources = netip.MustParsePrefix("127.77.0.0/16")
	c.PortBase, c.PortsPerAddr = 10000, 3
	got := []string{}
	for i := range 7 {
		got = append(got, c.DeviceAddr(i).String())
	}
	want := []string{"127.77.0.1:10000", "127.77.0.1:10001", "127.77.0.1:10002", "127.77.0.2:10000",
		"127.77.0.2:10001", "127.77.0.2:10002", "127.77.0.3:10000"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("one socket per device (-want +got):\n%s", d)
	}
	c.DevicesPerSocket = 2
	got = got[:0]
	for i := range 7 {
		got = append(got, c.DeviceAddr(i).String())
	}
	want = []string{"127.77.0.1:10000", "127.77.0.1:10000", "127.77.0.1:10001", "127.77.0.1:10001",
		"127.77.0.1:10002", "127.77.0.1:10002", "127.77.0.2:10000"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("two devices per socket (-want +got):\n%s", d)
	}
	c.Devices, c.FloodSources = 7, 2
	if got := c.floodAddr(0).String(); got != "127.77.0.3:10000" {
		t.Errorf("first flood source %s, want the address after the devices'", got)
	}
	if c.User(42) != "u0000042" || Password("u0000042") != "pw-u0000042" {
		t.Errorf("user %q password %q", c.User(42), Password(c.User(42)))
	}
	// A million devices, one socket each, span 51 addresses.
	c = Defaults()
	c.IO = IOSocket
	if got := c.DeviceAddr(999999).String(); got != "127.77.0.50:29999" {
		t.Errorf("device 999999 at %s", got)
	}
}

// TestBatchLayout: in batch io, consecutive devices take the sockets' ports
// in turn and then the next address, and every device still has an address
// and port pair of its own; the flood sources come after.
func TestBatchLayout(t *testing.T) {
	c := Defaults()
	c.Sources = netip.MustParsePrefix("10.77.0.0/16")
	c.PortBase, c.Sockets, c.Devices, c.FloodSources = 20000, 3, 7, 2
	got := []string{}
	for i := range 7 {
		got = append(got, c.DeviceAddr(i).String())
	}
	want := []string{"10.77.0.1:20000", "10.77.0.1:20001", "10.77.0.1:20002", "10.77.0.2:20000",
		"10.77.0.2:20001", "10.77.0.2:20002", "10.77.0.3:20000"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("batch layout (-want +got):\n%s", d)
	}
	if got := c.floodAddr(1).String(); got != "10.77.0.5:20000" {
		t.Errorf("second flood source %s, want 10.77.0.5:20000", got)
	}
	// The transport finds each endpoint back from the address and socket.
	tr := &batchTransport{base: 0x0a4d0000, k: 3, e: 7, devAddrs: c.deviceAddrs(), floods: 2}
	for ep := range int32(9) {
		k, src := tr.source(ep)
		if back := tr.endpointOf(src, k); back != ep {
			t.Errorf("endpoint %d → socket %d, address %#x → endpoint %d", ep, k, src, back)
		}
	}
	if got := tr.endpointOf(0x0a4d0003, 1); got != -1 {
		t.Errorf("address 3 on socket 1 (no device there) → endpoint %d, want -1", got)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string // substring of the error; empty: valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"every scenario", func(c *Config) { c.Scenario = ScenarioMix }, ""},
		{"remote server", func(c *Config) { c.Server = netip.MustParseAddrPort("192.0.2.1:5060") }, "allow-non-loopback"},
		{"remote allowed", func(c *Config) {
			c.Server = netip.MustParseAddrPort("192.0.2.1:5060")
			c.AllowNonLoopback = true
		}, ""},
		{"ipv6", func(c *Config) { c.Server = netip.MustParseAddrPort("[::1]:5060") }, "IPv6"},
		{"no devices", func(c *Config) { c.Devices = 0 }, "devices: 0"},
		{"per socket", func(c *Config) { c.DevicesPerSocket = 0 }, "devices-per-socket"},
		{"prefix too small", func(c *Config) {
			c.Sources = netip.MustParsePrefix("127.77.0.0/30")
			c.Devices = 100000
		}, "fewer than"},
		{"ports overflow", func(c *Config) { c.PortBase, c.IO = 60000, IOSocket }, "ports"},
		{"batch ports overflow", func(c *Config) { c.PortBase = 65530 }, "ports"},
		{"unknown scenario", func(c *Config) { c.Scenario = "ddos" }, "scenario"},
		{"no rate", func(c *Config) { c.Rate = 0 }, "rate"},
		{"idle needs no rate", func(c *Config) { c.Rate, c.Scenario = 0, ScenarioIdle }, ""},
		{"warm-up too long", func(c *Config) { c.Warmup = c.Duration }, "warmup"},
		{"flood without rate", func(c *Config) { c.Scenario, c.FloodRate = ScenarioFlood, 0 }, "flood"},
		{"call alone", func(c *Config) { c.Scenario, c.Devices = ScenarioCalls, 1 }, "at least 2"},
		{"timers", func(c *Config) { c.T2 = time.Millisecond }, "T1"},
		{"unknown io", func(c *Config) { c.IO = "carrier-pigeon" }, "io"},
		{"no sockets", func(c *Config) { c.Sockets = 0 }, "sockets"},
		{"no deadline", func(c *Config) { c.Deadline = 0 }, "deadline"},
		{"avalanche needs no preparation", func(c *Config) {
			c.Scenario, c.PrepareRate, c.Warmup = ScenarioAvalanche, 0, 0
		}, ""},
		{"avalanche without retries", func(c *Config) { c.Scenario, c.RetryAfter = ScenarioAvalanche, 0 }, "retry-after"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Defaults()
			tc.change(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// TestReregisterConfig: the avalanche after a restart prepares first and
// re-registers with a refresh, or with a first contact after a reboot;
// the flags mean nothing elsewhere and are refused there.
func TestReregisterConfig(t *testing.T) {
	c := Defaults()
	c.Scenario = ScenarioAvalanche
	if c.needsPrepare() || c.avalancheAction() != aRegister || c.avalancheMode() != "first" {
		t.Errorf("plain avalanche: prepare %v, action %v, mode %s", c.needsPrepare(), c.avalancheAction(), c.avalancheMode())
	}
	c.Reregister = true
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if !c.needsPrepare() || c.avalancheAction() != aRefresh || c.avalancheMode() != "reregister" {
		t.Errorf("reregister: prepare %v, action %v, mode %s", c.needsPrepare(), c.avalancheAction(), c.avalancheMode())
	}
	c.FreshCallID = true
	if c.avalancheAction() != aRegister || c.avalancheMode() != "reregister-fresh" {
		t.Errorf("fresh Call-ID: action %v, mode %s", c.avalancheAction(), c.avalancheMode())
	}
	c.Scenario = ScenarioRefresh
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "reregister") {
		t.Errorf("reregister with the refresh scenario: %v", err)
	}
	c.Scenario, c.Reregister = ScenarioAvalanche, false
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "fresh-call-id") {
		t.Errorf("fresh-call-id without reregister: %v", err)
	}
}
