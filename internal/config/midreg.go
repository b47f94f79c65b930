package config

import (
	"net/netip"
	"time"

	"github.com/pinhole-sip/pinhole/internal/resolve"
)

// MidRegistrar configures the relay of REGISTER to a main registrar
// (docs/midregistrar.md). The registrar section's expiry bounds are what
// pinhole grants devices.
type MidRegistrar struct {
	// Upstreams are the main registrars, tried in order: the next one on a
	// timeout, a transport error or a 503. Empty: mid-registrar off.
	Upstreams []Upstream `yaml:"upstreams"`
	// Mode is mirror (relay everything), contact (one upstream binding per
	// device contact, refreshes absorbed) or aor (one upstream contact per
	// AOR pointing at pinhole, which forks calls itself).
	Mode string `yaml:"mode"`
	// Insertion is how pinhole puts itself on the path of calls from the
	// main side: contact (rewrite the Contact) or path (RFC 3327 Path).
	Insertion string `yaml:"insertion"`
	// OutgoingExpires is the expiry asked of the upstream (modes contact, aor).
	OutgoingExpires int `yaml:"outgoing_expires"`
	// RenewalMargin: a refresh is relayed when the device's new expiry plus
	// this many seconds would pass the end of the upstream registration.
	RenewalMargin int `yaml:"renewal_margin"`
	// Timeout bounds one attempt at one upstream.
	Timeout time.Duration `yaml:"timeout"`
	// RetryAfter is the Retry-After of the 503 sent when no upstream answers.
	RetryAfter int `yaml:"retry_after"`
}

// Upstream is one main registrar.
type Upstream struct {
	// Addr is IP:port, or a DNS name: NAME:port (A/AAAA) or NAME alone
	// (SRV for the transport, then A on 5060), resolved by RFC 3263
	// (dns.go, docs/dns.md).
	Addr      string `yaml:"addr"`
	Transport string `yaml:"transport"` // udp or tcp
}

// Enabled reports whether REGISTER is relayed to a main registrar.
func (m MidRegistrar) Enabled() bool { return len(m.Upstreams) > 0 }

// maxRelayTime is what every upstream attempt of one REGISTER may take
// together: a device's UDP transaction gives up after 64*T1 = 32 s (RFC
// 3261 Timer F), and the 503 must reach it before.
const maxRelayTime = 30 * time.Second

func (c *Config) validateMidRegistrar() error {
	m := c.MidRegistrar
	switch m.Mode {
	case "mirror", "contact", "aor":
	default:
		return bad("midregistrar.mode", "%q: must be mirror, contact or aor", m.Mode)
	}
	switch m.Insertion {
	case "contact", "path":
	default:
		return bad("midregistrar.insertion", "%q: must be contact or path", m.Insertion)
	}
	if !m.Enabled() {
		return nil
	}
	if m.Mode == "aor" && m.Insertion != "contact" {
		return bad("midregistrar.insertion", "mode aor registers pinhole itself as the AOR's one contact: insertion must be contact")
	}
	if m.OutgoingExpires < 1 || m.OutgoingExpires > 1<<31-1 {
		return bad("midregistrar.outgoing_expires", "%d: must be at least 1 second", m.OutgoingExpires)
	}
	if m.RenewalMargin < 0 || m.RenewalMargin >= m.OutgoingExpires {
		return bad("midregistrar.renewal_margin", "%d: must be at least 0 and below outgoing_expires %d", m.RenewalMargin, m.OutgoingExpires)
	}
	if m.Timeout < 100*time.Millisecond || time.Duration(len(m.Upstreams))*m.Timeout > maxRelayTime {
		return bad("midregistrar.timeout", "%s: must be at least 100ms, and %d upstreams × timeout at most %s so the 503 reaches a device before its transaction ends", m.Timeout, len(m.Upstreams), maxRelayTime)
	}
	if m.RetryAfter < 1 || m.RetryAfter > 3600 {
		return bad("midregistrar.retry_after", "%d: must be between 1 and 3600 seconds", m.RetryAfter)
	}
	if c.Auth.Enabled() {
		return bad("auth.credentials", "authentication stays with the main registrar when midregistrar has upstreams: leave credentials empty")
	}
	for i, u := range m.Upstreams {
		if ap, err := netip.ParseAddrPort(u.Addr); err == nil {
			if ap.Port() == 0 || ap.Addr().IsUnspecified() {
				return bad("midregistrar.upstreams", "entry %d: addr %q: want a concrete IP:port", i, u.Addr)
			}
		} else if d, err := resolve.ParseHostPort(u.Addr); err != nil || !d.IsName() {
			return bad("midregistrar.upstreams", "entry %d: addr %q is neither IP:port nor a DNS name with an optional port", i, u.Addr)
		}
		var own []string
		switch u.Transport {
		case "udp":
			own = c.Listen.UDP
		case "tcp":
			own = c.Listen.TCP
		default:
			return bad("midregistrar.upstreams", "entry %d: transport %q: must be udp or tcp", i, u.Transport)
		}
		if len(own) == 0 {
			// Relayed REGISTERs and de-registrations leave from a listening
			// socket: that is the address the main registrar trusts.
			return bad("midregistrar.upstreams", "entry %d: pinhole has no %s listener to reach it from", i, u.Transport)
		}
	}
	return nil
}
