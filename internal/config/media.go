package config

import (
	"net/netip"
	"time"
)

// Media configures relaying calls' media through rtpengine (docs/media.md).
// Off by default: pinhole then never touches an SDP body.
type Media struct {
	Enabled bool `yaml:"enabled"`
	// Instances are the rtpengine daemons' ng control sockets.
	Instances []MediaInstance `yaml:"instances"`
	// Timeout is one try of an ng command; a command is sent again with the
	// same cookie after each, Retries times.
	Timeout time.Duration `yaml:"timeout"`
	Retries int           `yaml:"retries"`
	// PingInterval between health pings of each instance.
	PingInterval time.Duration `yaml:"ping_interval"`
	// OnDown: what a call gets when no rtpengine can take it: "503" refuses
	// it, "proceed" lets it through with its media unrelayed.
	OnDown string     `yaml:"on_down"`
	Rules  MediaRules `yaml:"rules"`
}

// MediaInstance is one rtpengine and its share of new calls.
type MediaInstance struct {
	Address string `yaml:"address"` // IP:port of its --listen-ng
	Weight  int    `yaml:"weight"`  // 1 when absent
}

// MediaRules say which calls are relayed; a call is relayed when any rule
// that is on applies to either side.
type MediaRules struct {
	NAT        bool `yaml:"nat"`         // a side judged behind NAT by its signalling
	WebRTC     bool `yaml:"webrtc"`      // a side on WS/WSS or with WebRTC SDP (SAVPF, DTLS, ICE)
	PrivateSDP bool `yaml:"private_sdp"` // a side's SDP names a private address
	Always     bool `yaml:"always"`      // every call with SDP
}

func (m *Media) validate() error {
	if m.Enabled && len(m.Instances) == 0 {
		return bad("media.instances", "media.enabled needs at least one rtpengine instance")
	}
	seen := map[netip.AddrPort]bool{}
	for i, in := range m.Instances {
		ap, err := netip.ParseAddrPort(in.Address)
		if err != nil || ap.Port() == 0 {
			return bad("media.instances", "entry %d: address %q is not IP:port (rtpengine's --listen-ng)", i, in.Address)
		}
		if seen[ap] {
			return bad("media.instances", "entry %d: address %s is listed twice", i, ap)
		}
		seen[ap] = true
		if in.Weight == 0 {
			// A list entry takes no default from default.yaml: absent is 1.
			m.Instances[i].Weight = 1
			continue
		}
		if in.Weight < 1 || in.Weight > 1000 {
			return bad("media.instances", "entry %d: weight %d must be between 1 and 1000", i, in.Weight)
		}
	}
	// A try shorter than 10 ms would resend before a loaded rtpengine on
	// the same LAN answers; longer than 5 s holds the INVITE past the
	// caller's own retransmission timers.
	if m.Timeout < 10*time.Millisecond || m.Timeout > 5*time.Second {
		return bad("media.timeout", "%s: must be between 10ms and 5s", m.Timeout)
	}
	if m.Retries < 0 || m.Retries > 10 {
		return bad("media.retries", "%d: must be between 0 and 10", m.Retries)
	}
	if m.PingInterval != 0 && (m.PingInterval < 100*time.Millisecond || m.PingInterval > 10*time.Minute) {
		return bad("media.ping_interval", "%s: must be 0 (no pings) or between 100ms and 10m", m.PingInterval)
	}
	switch m.OnDown {
	case "503", "proceed":
	default:
		return bad("media.on_down", "%q: must be 503 or proceed", m.OnDown)
	}
	return nil
}
