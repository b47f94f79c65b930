package config

import (
	"net/netip"
	"strings"
	"time"
)

// XDP configures the kernel fast path (docs/xdp.md). With no interfaces
// nothing is attached; pinhole then works without it, slower.
type XDP struct {
	// Interfaces to attach xdp_sip to, e.g. ["eth0"].
	Interfaces []string `yaml:"interfaces"`
	// Mode: auto (native, else generic, else none), native, generic, off.
	Mode string `yaml:"mode"`
	// Rate is the requests per second each source address may send; 0 = no
	// limit. Burst is the bucket size in requests.
	Rate  uint64 `yaml:"rate"`
	Burst uint64 `yaml:"burst"`
	// Blocklist are prefixes dropped before anything else.
	Blocklist []string `yaml:"blocklist"`
	// Signatures are User-Agent prefixes of scanners to drop.
	Signatures []string `yaml:"signatures"`
	// Ban puts sources on the blocklist for a while.
	Ban Ban `yaml:"ban"`
}

// Ban adds a source to the kernel blocklist for Duration after
// AuthFailures wrong credentials (403) within Window (0 failures = never),
// or after it has stayed over the rate limit for RateLimitedFor (0 = never).
type Ban struct {
	AuthFailures   int           `yaml:"auth_failures"`
	Window         time.Duration `yaml:"window"`
	Duration       time.Duration `yaml:"duration"`
	RateLimitedFor time.Duration `yaml:"ratelimited_for"`
}

// Limits of the XDP program's maps (bpf package): 16 signatures of 32
// bytes; burst * 1e9 nanotokens must fit the program's arithmetic.
const (
	maxSignatures = 16
	signatureLen  = 32
	maxRate       = 1_000_000_000
)

func (x *XDP) validate() error {
	switch x.Mode {
	case "auto", "native", "generic", "off":
	default:
		return bad("xdp.mode", "%q: must be auto, native, generic or off", x.Mode)
	}
	seen := map[string]bool{}
	for _, name := range x.Interfaces {
		// IFNAMSIZ is 16 with the terminating NUL.
		if name == "" || len(name) > 15 || strings.ContainsAny(name, "/ \t:") {
			return bad("xdp.interfaces", "%q is not an interface name", name)
		}
		if seen[name] {
			return bad("xdp.interfaces", "%q is listed twice", name)
		}
		seen[name] = true
	}
	if x.Rate > maxRate {
		return bad("xdp.rate", "%d: at most %d per second", x.Rate, maxRate)
	}
	if x.Rate > 0 && (x.Burst < 1 || x.Burst > maxRate) {
		return bad("xdp.burst", "%d: must be between 1 and %d when xdp.rate is set", x.Burst, maxRate)
	}
	for _, p := range x.Blocklist {
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			return bad("xdp.blocklist", "%q is not a CIDR prefix (e.g. 192.0.2.0/24): %v", p, err)
		}
		if pfx.Addr().Is4In6() {
			return bad("xdp.blocklist", "%q: write IPv4 prefixes in their IPv4 form", p)
		}
	}
	if len(x.Signatures) > maxSignatures {
		return bad("xdp.signatures", "%d given, at most %d", len(x.Signatures), maxSignatures)
	}
	for _, sig := range x.Signatures {
		if sig == "" || len(sig) > signatureLen {
			return bad("xdp.signatures", "%q: must be 1 to %d bytes", sig, signatureLen)
		}
	}
	b := x.Ban
	if b.AuthFailures < 0 {
		return bad("xdp.ban.auth_failures", "%d: must be 0 (off) or more", b.AuthFailures)
	}
	if b.AuthFailures > 0 && (b.Window < time.Second || b.Window > time.Hour) {
		return bad("xdp.ban.window", "%s: must be between 1s and 1h", b.Window)
	}
	if b.RateLimitedFor != 0 && (b.RateLimitedFor < time.Second || b.RateLimitedFor > time.Hour) {
		return bad("xdp.ban.ratelimited_for", "%s: must be 0 (never) or between 1s and 1h", b.RateLimitedFor)
	}
	if (b.AuthFailures > 0 || b.RateLimitedFor > 0) && (b.Duration < time.Second || b.Duration > 30*24*time.Hour) {
		return bad("xdp.ban.duration", "%s: must be between 1s and 720h", b.Duration)
	}
	return nil
}
