package testutil

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"gopkg.in/yaml.v3"

	"github.com/pinhole-sip/pinhole/internal/config"
)

// TestWrittenConfigParses checks that the file StartPinhole writes is one
// pinhole accepts and reads back as the configuration the test built,
// without starting the daemon.
func TestWrittenConfigParses(t *testing.T) {
	cfg := DefaultConfig(t)
	cfg.Auth.Credentials = WriteCredentials(t, cfg.Auth.Realm, map[string]string{"alice": "secret"})
	cfg.Auth.NonceTTL = 300 * time.Second
	cfg.NATPing = config.NATPing{Interval: time.Second, Method: "options", MaxMissed: 3}
	cfg.FastPath.Enabled, cfg.FastPath.Loops = true, 2
	cfg.XDP.Ban.AuthFailures, cfg.XDP.Ban.RateLimitedFor, cfg.XDP.Ban.Duration = 0, time.Second, time.Minute
	cfg.Dispatch.Sets = []config.DispatchSet{{Name: "fs", Algorithm: "round_robin", Destinations: []config.DispatchDestination{{URI: "sip:127.0.0.1:9"}}}}
	cfg.Dispatch.Rules = []config.DispatchRule{{Set: "fs", Methods: []string{"INVITE"}}}
	cfg.Dispatch.Probe.Interval = 0
	base := EnableAPI(t, &cfg, "0123456789abcdef")
	if base != "http://"+cfg.API.Listen {
		t.Errorf("EnableAPI = %q, listen %q", base, cfg.API.Listen)
	}

	data, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := config.Parse(data, "pinhole.yaml")
	if err != nil {
		t.Fatalf("pinhole refuses the written configuration: %v\n%s", err, data)
	}
	if diff := cmp.Diff(&cfg, got, cmpopts.IgnoreFields(config.Config{}, "Source"), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("pinhole reads another configuration than written (-written +read):\n%s\n%s", diff, data)
	}
	if n := len(got.Listen.Listeners()); n != 2 {
		t.Errorf("%d listeners, want UDP and TCP only: the default's fixed TLS and WS ports must not be inherited", n)
	}
	if got.API.Listen == "127.0.0.1:9061" {
		t.Error("the API serves the default's fixed port")
	}
}

// TestDefaultConfigHasNoAPI: parallel tests must not share the default's
// fixed management port.
func TestDefaultConfigHasNoAPI(t *testing.T) {
	cfg := DefaultConfig(t)
	data, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := config.Parse(data, "pinhole.yaml")
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if got.API.Listen != "" || got.Auth.Enabled() || got.Log.Level != "debug" {
		t.Errorf("api.listen %q, auth %v, log.level %q: want off, off, debug", got.API.Listen, got.Auth.Enabled(), got.Log.Level)
	}
}
