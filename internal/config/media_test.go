package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestMediaDefaultOff(t *testing.T) {
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	want := Media{Enabled: false, Instances: []MediaInstance{}, Timeout: 500 * time.Millisecond, Retries: 2, PingInterval: 5 * time.Second, OnDown: "503",
		Rules: MediaRules{NAT: true, WebRTC: true, PrivateSDP: true}}
	if d := cmp.Diff(want, cfg.Media); d != "" {
		t.Errorf("default media section (-want +got):\n%s", d)
	}
}

func TestMedia(t *testing.T) {
	cfg, err := Parse([]byte("media:\n  enabled: true\n  instances:\n    - {address: \"127.0.0.1:2223\", weight: 3}\n    - {address: \"[::1]:2223\"}\n  on_down: proceed\n  rules: {always: true}\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []MediaInstance{{Address: "127.0.0.1:2223", Weight: 3}, {Address: "[::1]:2223", Weight: 1}}
	if d := cmp.Diff(want, cfg.Media.Instances); d != "" {
		t.Errorf("instances (-want +got):\n%s", d)
	}
	// Rules the file leaves out keep the default's values, as every key does.
	if cfg.Media.OnDown != "proceed" || !cfg.Media.Rules.Always || !cfg.Media.Rules.NAT {
		t.Errorf("media = %+v", cfg.Media)
	}
}

func TestMediaInvalid(t *testing.T) {
	one := "  instances: [{address: \"127.0.0.1:2223\"}]\n"
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"enabled without instances", "media:\n  enabled: true\n", []string{"media.instances", "at least one"}},
		{"host name", "media:\n  instances: [{address: \"rtpengine:2223\"}]\n", []string{"line 2", "media.instances", "rtpengine:2223"}},
		{"no port", "media:\n  instances: [{address: \"127.0.0.1\"}]\n", []string{"media.instances", "IP:port"}},
		{"port 0", "media:\n  instances: [{address: \"127.0.0.1:0\"}]\n", []string{"media.instances"}},
		{"twice", "media:\n  instances: [{address: \"127.0.0.1:2223\"}, {address: \"127.0.0.1:2223\"}]\n", []string{"media.instances", "twice"}},
		{"weight", "media:\n  instances: [{address: \"127.0.0.1:2223\", weight: 1001}]\n", []string{"media.instances", "weight 1001"}},
		{"negative weight", "media:\n  instances: [{address: \"127.0.0.1:2223\", weight: -1}]\n", []string{"media.instances", "weight -1"}},
		{"timeout short", "media:\n" + one + "  timeout: 1ms\n", []string{"line 3", "media.timeout"}},
		{"timeout long", "media:\n" + one + "  timeout: 1m\n", []string{"media.timeout"}},
		{"retries", "media:\n" + one + "  retries: 11\n", []string{"line 3", "media.retries"}},
		{"ping", "media:\n  ping_interval: 10ms\n", []string{"line 2", "media.ping_interval"}},
		{"on_down", "media:\n  on_down: drop\n", []string{"line 2", "media.on_down", "drop"}},
		{"unknown rule", "media:\n  rules: {ipv6: true}\n", []string{"line 2", "ipv6"}},
	} {
		_, err := Parse([]byte(tc.yaml), "t.yaml")
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Parse = %v, want ErrInvalid", tc.name, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not contain %q", tc.name, err, w)
			}
		}
	}
}
