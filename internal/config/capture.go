package config

import (
	"math"
	"net/netip"
	"strings"
)

// Capture copies SIP messages to HEP v3 collectors such as Homer
// (docs/capture.md). Every key waits for a restart.
type Capture struct {
	// Enabled turns capture on; off (the default), the SIP paths skip it
	// at the cost of one comparison.
	Enabled bool `yaml:"enabled"`
	// Collectors are "udp:host:port" or "tcp:host:port"; each gets every
	// captured message.
	Collectors []string `yaml:"collectors"`
	// CaptureID is HEP's capture agent id: which edge saw the message.
	CaptureID uint32 `yaml:"capture_id"`
	// Sample is the percentage of calls (by Call-ID) captured, 0–100 in
	// steps of 0.01.
	Sample float64 `yaml:"sample"`
	// QueueSize is how many packets may wait for each collector.
	QueueSize int `yaml:"queue_size"`
	// Received and Sent choose the directions captured.
	Received bool `yaml:"received"`
	Sent     bool `yaml:"sent"`
}

// CaptureCollector is one parsed entry of capture.collectors.
type CaptureCollector struct {
	Network string // udp or tcp
	Addr    string // host:port
}

// ParseCollectors reads capture.collectors (validated: no error).
func (c *Capture) ParseCollectors() []CaptureCollector {
	out := make([]CaptureCollector, 0, len(c.Collectors))
	for _, s := range c.Collectors {
		col, _ := parseCollector(s)
		out = append(out, col)
	}
	return out
}

// SampleRate is Sample in hundredths of a percent (0–10000).
func (c *Capture) SampleRate() uint32 { return uint32(math.Round(c.Sample * 100)) }

func parseCollector(s string) (CaptureCollector, bool) {
	network, addr, ok := strings.Cut(s, ":")
	if !ok || (network != "udp" && network != "tcp") {
		return CaptureCollector{}, false
	}
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return CaptureCollector{Network: network, Addr: addr}, ap.Port() != 0
	}
	host, port, found := strings.Cut(addr, ":")
	if !found || host == "" || port == "" || port == "0" || strings.ContainsAny(port, ":[]") || strings.ContainsAny(host, "[]/ ") {
		return CaptureCollector{}, false
	}
	for _, c := range port {
		if c < '0' || c > '9' {
			return CaptureCollector{}, false
		}
	}
	return CaptureCollector{Network: network, Addr: addr}, len(port) <= 5
}

func (c *Capture) validate() error {
	if c.Sample < 0 || c.Sample > 100 || math.IsNaN(c.Sample) {
		return bad("capture.sample", "%v: must be a percentage between 0 and 100", c.Sample)
	}
	if c.QueueSize < 1 || c.QueueSize > 1<<20 {
		return bad("capture.queue_size", "%d: must be between 1 and 1048576", c.QueueSize)
	}
	for i, s := range c.Collectors {
		if _, ok := parseCollector(s); !ok {
			return bad("capture.collectors", "entry %d (%q): must be udp:host:port or tcp:host:port", i, s)
		}
	}
	if !c.Enabled {
		return nil
	}
	if len(c.Collectors) == 0 {
		return bad("capture.collectors", "capture is enabled but names no collector")
	}
	if !c.Received && !c.Sent {
		return bad("capture.received", "capture is enabled but captures neither received nor sent messages")
	}
	return nil
}
