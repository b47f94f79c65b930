package dispatch

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/pinhole-sip/pinhole/internal/resolve"
)

// Algorithm is how a set picks its first destination.
type Algorithm uint8

const (
	// RoundRobin takes the usable destinations in turn.
	RoundRobin Algorithm = iota + 1
	// Weighted is smooth weighted round robin: over any window of
	// sum(weights) requests each destination gets its weight's share, evenly
	// interleaved rather than in bursts.
	Weighted
	// HashUser hashes the request-URI user: every call to one conference
	// room, queue or parking slot reaches the same node.
	HashUser
	// HashDomain hashes the To domain (the request-URI host when To has
	// none): one tenant per node, spares at a lower priority.
	HashDomain
	// HashCallID hashes the Call-ID: every request of a dialog reaches the
	// same node even when it is not record-routed.
	HashCallID
	// LeastCalls takes the node with the fewest answered calls in progress,
	// as pinhole counts them.
	LeastCalls
)

var algorithmNames = map[Algorithm]string{
	RoundRobin: "round_robin",
	Weighted:   "weighted",
	HashUser:   "hash_user",
	HashDomain: "hash_domain",
	HashCallID: "hash_callid",
	LeastCalls: "least_calls",
}

func (a Algorithm) String() string {
	if s, ok := algorithmNames[a]; ok {
		return s
	}
	return "unknown"
}

// ParseAlgorithm reads an algorithm's configuration name.
func ParseAlgorithm(s string) (Algorithm, error) {
	for a, name := range algorithmNames {
		if name == s {
			return a, nil
		}
	}
	return 0, fmt.Errorf("algorithm %q: want round_robin, weighted, hash_user, hash_domain, hash_callid or least_calls", s)
}

// DestinationConfig is one node of a set.
type DestinationConfig struct {
	// URI is where requests go: sip:IP:PORT, with ;transport=tcp for TCP,
	// or sip:NAME[:PORT][;transport=udp|tcp], resolved by RFC 3263
	// (Config.DNS): the node set follows the name's DNS answer, read from
	// the resolver's cache, so the per-call path never waits for DNS.
	URI string
	// Weight counts for the weighted algorithm; zero means 1.
	Weight int
	// Priority orders groups: the lowest number is used first, higher
	// numbers are spares tried only when every node before them is out.
	Priority int
	// Attrs are free-form, shown by the management API.
	Attrs map[string]string
}

// SetConfig is a named set of destinations.
type SetConfig struct {
	Name         string
	Algorithm    Algorithm
	Destinations []DestinationConfig
}

// Rule picks a set for requests that match every condition it has; an
// empty condition matches anything. Rules are tried in order.
type Rule struct {
	Set string
	// Methods, e.g. INVITE, MESSAGE; REGISTER is never matched by a rule
	// (Config.Register sends it).
	Methods []string
	// Domains are request-URI hosts, compared without case.
	Domains []string
	// Prefix is a request-URI user prefix, e.g. "+4930" or "conf-".
	Prefix string
	// Sources are prefixes the request's source address must be in.
	Sources []netip.Prefix
}

// ProbeConfig says how destinations are probed with OPTIONS.
type ProbeConfig struct {
	// Interval between two probes of one destination; zero turns probing
	// off (nodes are then taken out only by failed calls or by hand).
	Interval time.Duration
	// Timeout of one probe.
	Timeout time.Duration
	// DownAfter failures in a row take a node out; UpAfter successes in a
	// row put it back.
	DownAfter, UpAfter int
}

// FailoverConfig says when a request moves to the next destination.
type FailoverConfig struct {
	// Codes are the final responses that move on (besides a timeout or a
	// transport error, which always do).
	Codes []int
	// DownOn503 takes a node out at once when it answers 503 to a request.
	DownOn503 bool
	// Timeout is how long a destination may stay silent (no response at
	// all, not even 100 Trying) before the next one is tried; a node that
	// is down does not answer, and UDP's timer B (32 s) is longer than a
	// caller waits.
	Timeout time.Duration
	// MaxTries bounds the destinations one request tries; zero: all.
	MaxTries int
}

// Config configures a Dispatcher.
type Config struct {
	Sets  []SetConfig
	Rules []Rule
	// Register names the set REGISTER is relayed to (edge-only mode:
	// the farm is the registrar); empty: pinhole keeps registrations.
	Register string
	Probe    ProbeConfig
	Failover FailoverConfig
	// CallTTL bounds how long an answered call counts against its node
	// when its BYE never passes pinhole. Zero means DefaultCallTTL.
	CallTTL time.Duration
	// ChallengeTTL is how long the node that challenged a request is
	// remembered for its authenticated retry. Zero: DefaultChallengeTTL.
	ChallengeTTL time.Duration
	// DNS resolves destinations given by name; nil refuses names.
	DNS Resolver
}

// Defaults.
const (
	// DefaultCallTTL: longer than nearly every call; a leaked count only
	// skews least_calls until then.
	DefaultCallTTL = 4 * time.Hour
	// DefaultChallengeTTL: a device answers a challenge within a
	// transaction's lifetime (64*T1 = 32 s, RFC 3261 §17.1.1.2).
	DefaultChallengeTTL = 32 * time.Second
)

// DefaultFailoverCodes move a request on: the node could not serve it,
// another one may (RFC 3261 §21.5). 500 is left out: it is often the
// answer of a dial plan, which another node would give too.
var DefaultFailoverCodes = []int{408, 502, 503, 504}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("invalid dispatch configuration")

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
}

// Target is a parsed destination URI.
type Target struct {
	Addr      netip.AddrPort
	Transport string // "UDP" or "TCP", as sipgo names networks
}

// ParseURI reads a destination URI: sip:IP[:PORT][;transport=udp|tcp].
// The port defaults to 5060.
func ParseURI(s string) (Target, error) {
	rest, ok := strings.CutPrefix(s, "sip:")
	if !ok {
		return Target{}, fmt.Errorf("destination %q: want sip:IP:PORT", s)
	}
	hostport, params, _ := strings.Cut(rest, ";")
	if strings.Contains(hostport, "@") {
		return Target{}, fmt.Errorf("destination %q: no user part, the request-URI keeps its own", s)
	}
	t := Target{Transport: "UDP"}
	for p := range strings.SplitSeq(params, ";") {
		if p == "" {
			continue
		}
		k, v, _ := strings.Cut(p, "=")
		switch strings.ToLower(k) {
		case "transport":
			switch strings.ToLower(v) {
			case "udp":
				t.Transport = "UDP"
			case "tcp":
				t.Transport = "TCP"
			default:
				return Target{}, fmt.Errorf("destination %q: transport %q: want udp or tcp", s, v)
			}
		case "lr":
		default:
			return Target{}, fmt.Errorf("destination %q: unknown parameter %q", s, k)
		}
	}
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		t.Addr = ap
	} else if a, err2 := netip.ParseAddr(strings.Trim(hostport, "[]")); err2 == nil {
		t.Addr = netip.AddrPortFrom(a, 5060)
	} else {
		return Target{}, fmt.Errorf("destination %q: %q is not an IP address with an optional port", s, hostport)
	}
	if t.Addr.Port() == 0 || t.Addr.Addr().IsUnspecified() {
		return Target{}, fmt.Errorf("destination %q: needs a concrete address and port", s)
	}
	t.Addr = netip.AddrPortFrom(t.Addr.Addr().Unmap(), t.Addr.Port())
	return t, nil
}

// String is the canonical URI of t.
func (t Target) String() string {
	s := "sip:" + t.Addr.String()
	if t.Transport == "TCP" {
		s += ";transport=tcp"
	}
	return s
}

// destinationKey checks a destination URI, an address or a name, and
// returns its canonical form.
func (cfg *Config) destinationKey(uri string) (string, error) {
	if t, err := ParseURI(uri); err == nil {
		return t.String(), nil
	}
	d, err := resolve.ParseURI(uri)
	if err != nil {
		return "", err
	}
	if d.Secure || d.Transport == resolve.TLS {
		return "", fmt.Errorf("destination %q: pinhole relays to a farm over udp or tcp only", uri)
	}
	if !d.IsName() {
		// An address ParseURI refused (e.g. unspecified): its error is clearer.
		_, err := ParseURI(uri)
		return "", err
	}
	if cfg.DNS == nil {
		return "", fmt.Errorf("destination %q is a DNS name and no resolver is configured", uri)
	}
	return d.String(), nil
}

// validate checks cfg and fills in defaults.
func (cfg *Config) validate() error {
	names := map[string]bool{}
	for i, s := range cfg.Sets {
		if s.Name == "" || strings.ContainsAny(s.Name, " \t\"") {
			return bad("sets[%d].name %q: want a word", i, s.Name)
		}
		if names[s.Name] {
			return bad("sets[%d].name %q: used twice", i, s.Name)
		}
		names[s.Name] = true
		if _, ok := algorithmNames[s.Algorithm]; !ok {
			return bad("sets[%d] (%s): unknown algorithm %d", i, s.Name, s.Algorithm)
		}
		if len(s.Destinations) == 0 {
			return bad("sets[%d] (%s): no destinations", i, s.Name)
		}
		seen := map[string]bool{}
		for j, d := range s.Destinations {
			key, err := cfg.destinationKey(d.URI)
			if err != nil {
				return bad("sets[%d].destinations[%d]: %v", i, j, err)
			}
			if seen[key] {
				return bad("sets[%d].destinations[%d]: %s listed twice", i, j, key)
			}
			seen[key] = true
			if d.Weight < 0 || d.Weight > 1000 {
				return bad("sets[%d].destinations[%d].weight %d: want 0..1000", i, j, d.Weight)
			}
			if d.Priority < 0 || d.Priority > 100 {
				return bad("sets[%d].destinations[%d].priority %d: want 0..100", i, j, d.Priority)
			}
		}
	}
	for i, r := range cfg.Rules {
		if !names[r.Set] {
			return bad("rules[%d].set %q: no such set", i, r.Set)
		}
		for _, m := range r.Methods {
			if strings.EqualFold(m, "REGISTER") {
				return bad("rules[%d].methods: REGISTER is sent by register:, not by a rule", i)
			}
			if m == "" || strings.ToUpper(m) != m {
				return bad("rules[%d].methods: %q: want an upper-case method name", i, m)
			}
		}
	}
	if cfg.Register != "" && !names[cfg.Register] {
		return bad("register %q: no such set", cfg.Register)
	}
	p := &cfg.Probe
	if p.Interval != 0 {
		if p.Interval < 500*time.Millisecond || p.Interval > time.Hour {
			return bad("probe.interval %s: want 0 (off) or 500ms..1h", p.Interval)
		}
		if p.Timeout <= 0 || p.Timeout > p.Interval {
			return bad("probe.timeout %s: want more than 0 and at most the interval %s", p.Timeout, p.Interval)
		}
	}
	if p.DownAfter < 1 || p.UpAfter < 1 {
		return bad("probe: down_after %d and up_after %d must be at least 1", p.DownAfter, p.UpAfter)
	}
	f := &cfg.Failover
	if f.Codes == nil {
		f.Codes = slices.Clone(DefaultFailoverCodes)
	}
	for _, c := range f.Codes {
		if c < 300 || c > 699 {
			return bad("failover.codes: %d is not a final error status", c)
		}
	}
	if f.Timeout < 0 || f.Timeout > 32*time.Second {
		return bad("failover.timeout %s: want 0 (timer B only) up to 32s", f.Timeout)
	}
	if f.MaxTries < 0 {
		return bad("failover.max_tries %d: want 0 (all) or more", f.MaxTries)
	}
	if cfg.CallTTL == 0 {
		cfg.CallTTL = DefaultCallTTL
	}
	if cfg.ChallengeTTL == 0 {
		cfg.ChallengeTTL = DefaultChallengeTTL
	}
	if cfg.CallTTL < 0 || cfg.ChallengeTTL < 0 {
		return bad("call and challenge TTLs must be positive")
	}
	return nil
}
