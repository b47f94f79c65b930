package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCaptureDefault(t *testing.T) {
	def, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	want := Capture{Enabled: false, Collectors: []string{}, CaptureID: 0, Sample: 100, QueueSize: 4096, Received: true, Sent: true}
	if diff := cmp.Diff(want, def.Capture); diff != "" {
		t.Errorf("default capture (-want +got):\n%s", diff)
	}
	cfg, err := Parse([]byte("capture:\n  enabled: true\n  collectors: [\"udp:127.0.0.1:9060\", \"tcp:homer.lan:9061\", \"udp:[::1]:9060\"]\n  sample: 1.5\n  capture_id: 42\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Capture.SampleRate(); got != 150 {
		t.Errorf("SampleRate = %d, want 150", got)
	}
	wantCols := []CaptureCollector{{"udp", "127.0.0.1:9060"}, {"tcp", "homer.lan:9061"}, {"udp", "[::1]:9060"}}
	if diff := cmp.Diff(wantCols, cfg.Capture.ParseCollectors()); diff != "" {
		t.Errorf("collectors (-want +got):\n%s", diff)
	}
}

func TestCaptureInvalid(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"enabled without collectors", "capture:\n  enabled: true\n", "capture.collectors"},
		{"no scheme", "capture:\n  collectors: [\"127.0.0.1:9060\"]\n", "capture.collectors"},
		{"sctp", "capture:\n  collectors: [\"sctp:127.0.0.1:9060\"]\n", "capture.collectors"},
		{"no port", "capture:\n  collectors: [\"udp:homer\"]\n", "capture.collectors"},
		{"port zero", "capture:\n  collectors: [\"udp:127.0.0.1:0\"]\n", "capture.collectors"},
		{"port letters", "capture:\n  collectors: [\"udp:homer:hep\"]\n", "capture.collectors"},
		{"bare ipv6", "capture:\n  collectors: [\"udp:2001:db8::1:9060\"]\n", "capture.collectors"},
		{"sample over", "capture:\n  sample: 101\n", "capture.sample"},
		{"sample negative", "capture:\n  sample: -1\n", "capture.sample"},
		{"queue", "capture:\n  queue_size: 0\n", "capture.queue_size"},
		{"no direction", "capture:\n  enabled: true\n  collectors: [\"udp:127.0.0.1:9060\"]\n  received: false\n  sent: false\n", "capture.received"},
		{"capture id", "capture:\n  capture_id: -1\n", "line 2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "t.yaml")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %s", err, tc.want)
			}
		})
	}
}
