package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

//go:embed default.yaml
var defaultYAML []byte

// Default returns the embedded default configuration's text.
func Default() []byte { return append([]byte(nil), defaultYAML...) }

// Config is pinhole's whole configuration.
type Config struct {
	Listen    Listen    `yaml:"listen"`
	Advertise Advertise `yaml:"advertise"`
	Domains   []string  `yaml:"domains"`
	DataDir   string    `yaml:"data_dir"`
	TLS       TLS       `yaml:"tls"`
	Registrar Registrar `yaml:"registrar"`
	Auth      Auth      `yaml:"auth"`
	Location  Location  `yaml:"location"`
	Proxy     Proxy     `yaml:"proxy"`
	// MidRegistrar puts pinhole in front of a main registrar (seed 004);
	// off while it names no upstream.
	MidRegistrar MidRegistrar `yaml:"midregistrar"`
	Limits       Limits       `yaml:"limits"`
	Metrics      Metrics      `yaml:"metrics"`
	API          API          `yaml:"api"`
	Log          Log          `yaml:"log"`
	XDP          XDP          `yaml:"xdp"`
	NATPing      NATPing      `yaml:"natping"`
	// FastPath puts gnet event loops in front of the UDP listeners and
	// absorbs REGISTER refreshes from a cache (docs/fastpath.md).
	FastPath FastPath `yaml:"fastpath"`

	// Dispatch relays requests to a farm of servers (seeds 000, 002); off
	// while it has no sets.
	Dispatch Dispatch `yaml:"dispatch"`

	// Source names where the configuration came from, for messages.
	Source string `yaml:"-"`
}

// Listen lists the host:port pairs served per transport. A transport left
// out is not served.
type Listen struct {
	UDP []string `yaml:"udp"`
	TCP []string `yaml:"tcp"`
	TLS []string `yaml:"tls"`
	WS  []string `yaml:"ws"`
	WSS []string `yaml:"wss"`
}

// Listener is one validated socket to serve.
type Listener struct {
	Transport string // "UDP", "TCP", "TLS", "WS", "WSS" (sipgo's network names)
	Addr      netip.AddrPort
}

// Listeners returns every configured socket, UDP first. Only valid after Load.
func (l Listen) Listeners() []Listener {
	var out []Listener
	add := func(transport string, addrs []string) {
		for _, a := range addrs {
			out = append(out, Listener{Transport: transport, Addr: netip.MustParseAddrPort(a)})
		}
	}
	add("UDP", l.UDP)
	add("TCP", l.TCP)
	add("TLS", l.TLS)
	add("WS", l.WS)
	add("WSS", l.WSS)
	return out
}

// Advertise is the address pinhole puts in Via, Record-Route, Path and
// Contact when it runs behind NAT or a virtual IP (seed 001: devices must
// always see one stable address). Empty host: the listening address.
type Advertise struct {
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
}

// TLS names the certificate for TLS and WSS. Both empty: a self-signed
// certificate is generated into data_dir at first start.
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Registrar holds the expiry bounds granted to devices (RFC 3261 §10.3).
type Registrar struct {
	MinExpires     int `yaml:"min_expires"`
	MaxExpires     int `yaml:"max_expires"`
	DefaultExpires int `yaml:"default_expires"`
	MaxContacts    int `yaml:"max_contacts"`
}

// Auth configures digest authentication in standalone mode.
type Auth struct {
	Realm       string        `yaml:"realm"`
	Credentials string        `yaml:"credentials"` // empty: authentication off
	NonceTTL    time.Duration `yaml:"nonce_ttl"`
	// Algorithms offered in challenges, most preferred first (RFC 8760:
	// one challenge per algorithm). Some devices, sipp among them, answer
	// only the first challenge and only with MD5: list MD5 alone for them.
	Algorithms []string `yaml:"algorithms"`
}

// Enabled reports whether requests must authenticate.
func (a Auth) Enabled() bool { return a.Credentials != "" }

// Location configures the binding store.
type Location struct {
	FlushInterval time.Duration `yaml:"flush_interval"`
}

// Proxy configures request routing between devices.
type Proxy struct {
	Forking  string `yaml:"forking"`  // "parallel" or "serial"
	Outbound string `yaml:"outbound"` // SIP URI for foreign domains; empty refuses them
}

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
	Addr      string `yaml:"addr"`      // IP:port
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
		ap, err := netip.ParseAddrPort(u.Addr)
		if err != nil || ap.Port() == 0 || ap.Addr().IsUnspecified() {
			return bad("midregistrar.upstreams", "entry %d: addr %q is not an IP:port", i, u.Addr)
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

// Dispatch configures the edge proxy toward a farm (docs/dispatch.md).
// Three registration modes exist and at most one is chosen: standalone
// registrar (the default: pinhole keeps bindings), mid-registrar
// (midregistrar.upstreams: pinhole keeps bindings and relays to a main
// registrar) and edge relay (dispatch.register: pinhole keeps no binding and
// relays REGISTER with a Path header to a node of a set).
type Dispatch struct {
	Sets  []DispatchSet  `yaml:"sets"`
	Rules []DispatchRule `yaml:"rules"`
	// Register names the set REGISTER is relayed to; empty: not relayed.
	Register string           `yaml:"register"`
	Probe    DispatchProbe    `yaml:"probe"`
	Failover DispatchFailover `yaml:"failover"`
	// TopologyHiding keeps the farm's addresses out of every message that
	// reaches a device: Via, Record-Route and Contact.
	TopologyHiding bool             `yaml:"topology_hiding"`
	Oversize       DispatchOversize `yaml:"oversize"`
}

// DispatchSet is a named set of destinations.
type DispatchSet struct {
	Name string `yaml:"name"`
	// Algorithm: round_robin, weighted, hash_user, hash_domain,
	// hash_callid or least_calls.
	Algorithm    string                `yaml:"algorithm"`
	Destinations []DispatchDestination `yaml:"destinations"`
}

// DispatchDestination is one node of a set.
type DispatchDestination struct {
	URI      string            `yaml:"uri"` // sip:IP:PORT[;transport=tcp]
	Weight   int               `yaml:"weight"`
	Priority int               `yaml:"priority"` // lowest first; higher are spares
	Attrs    map[string]string `yaml:"attrs"`
}

// DispatchRule sends matching requests to a set; empty conditions match all.
type DispatchRule struct {
	Set     string   `yaml:"set"`
	Methods []string `yaml:"methods"`
	Domains []string `yaml:"domains"`
	Prefix  string   `yaml:"prefix"`  // request-URI user prefix
	Sources []string `yaml:"sources"` // CIDR prefixes of the sender
}

// DispatchProbe configures OPTIONS probing of destinations.
type DispatchProbe struct {
	Interval  time.Duration `yaml:"interval"` // 0: no probing
	Timeout   time.Duration `yaml:"timeout"`
	DownAfter int           `yaml:"down_after"`
	UpAfter   int           `yaml:"up_after"`
}

// DispatchFailover says when a request tries the next destination.
type DispatchFailover struct {
	Codes     []int         `yaml:"codes"`
	DownOn503 bool          `yaml:"down_on_503"`
	Timeout   time.Duration `yaml:"timeout"` // silence before the next node; 0: timer B
	MaxTries  int           `yaml:"max_tries"`
}

// DispatchOversize bounds device-bound requests over UDP (RFC 3261
// §18.1.1): past MTU minus Headroom they are shrunk.
type DispatchOversize struct {
	MTU          int      `yaml:"mtu"` // 0: no limit
	Headroom     int      `yaml:"headroom"`
	StripHeaders []string `yaml:"strip_headers"`
	// TCP sends an oversized request over TCP instead when the device is
	// not behind NAT and its Contact allows TCP.
	TCP bool `yaml:"tcp"`
}

// Enabled reports whether any set is configured.
func (d Dispatch) Enabled() bool { return len(d.Sets) > 0 }

var dispatchAlgorithms = []string{"round_robin", "weighted", "hash_user", "hash_domain", "hash_callid", "least_calls"}

func (c *Config) validateDispatch() error {
	d := &c.Dispatch
	sets := map[string]bool{}
	for i, s := range d.Sets {
		if s.Name == "" || strings.ContainsAny(s.Name, " \t\"") {
			return bad("dispatch.sets", "entry %d: name %q: want a word", i, s.Name)
		}
		if sets[s.Name] {
			return bad("dispatch.sets", "entry %d: name %q is used twice", i, s.Name)
		}
		sets[s.Name] = true
		if !slices.Contains(dispatchAlgorithms, s.Algorithm) {
			return bad("dispatch.sets", "set %s: algorithm %q: want one of %s", s.Name, s.Algorithm, strings.Join(dispatchAlgorithms, ", "))
		}
		if len(s.Destinations) == 0 {
			return bad("dispatch.sets", "set %s: no destinations", s.Name)
		}
		for j, dst := range s.Destinations {
			if !validDestination(dst.URI) {
				return bad("dispatch.sets", "set %s destination %d: uri %q: want sip:IP:PORT with an optional ;transport=udp or tcp (no DNS names)", s.Name, j, dst.URI)
			}
			if dst.Weight < 0 || dst.Weight > 1000 {
				return bad("dispatch.sets", "set %s destination %d: weight %d: want 0..1000", s.Name, j, dst.Weight)
			}
			if dst.Priority < 0 || dst.Priority > 100 {
				return bad("dispatch.sets", "set %s destination %d: priority %d: want 0..100", s.Name, j, dst.Priority)
			}
		}
	}
	for i, r := range d.Rules {
		if !sets[r.Set] {
			return bad("dispatch.rules", "entry %d: set %q is not in dispatch.sets", i, r.Set)
		}
		for _, m := range r.Methods {
			if m == "REGISTER" {
				return bad("dispatch.rules", "entry %d: REGISTER goes by dispatch.register, not by a rule", i)
			}
			if m == "" || strings.ToUpper(m) != m || strings.ContainsAny(m, " \t") {
				return bad("dispatch.rules", "entry %d: method %q: want an upper-case method name", i, m)
			}
		}
		for _, p := range r.Sources {
			if _, err := netip.ParsePrefix(p); err != nil {
				return bad("dispatch.rules", "entry %d: source %q is not a CIDR prefix", i, p)
			}
		}
	}
	if d.Register != "" {
		if !sets[d.Register] {
			return bad("dispatch.register", "%q is not in dispatch.sets", d.Register)
		}
		if c.MidRegistrar.Enabled() {
			return bad("dispatch.register", "relaying REGISTER to a farm and the mid-registrar (midregistrar.upstreams) exclude each other: choose one")
		}
		if c.Auth.Enabled() {
			return bad("auth.credentials", "with dispatch.register the farm's registrar authenticates: leave credentials empty")
		}
	}
	p := d.Probe
	if p.Interval != 0 && (p.Interval < 500*time.Millisecond || p.Interval > time.Hour) {
		return bad("dispatch.probe.interval", "%s: must be 0 (off) or between 500ms and 1h", p.Interval)
	}
	if p.Interval != 0 && (p.Timeout <= 0 || p.Timeout > p.Interval) {
		return bad("dispatch.probe.timeout", "%s: must be above 0 and at most the interval %s", p.Timeout, p.Interval)
	}
	if p.DownAfter < 1 || p.DownAfter > 100 {
		return bad("dispatch.probe.down_after", "%d: must be between 1 and 100", p.DownAfter)
	}
	if p.UpAfter < 1 || p.UpAfter > 100 {
		return bad("dispatch.probe.up_after", "%d: must be between 1 and 100", p.UpAfter)
	}
	f := d.Failover
	for _, code := range f.Codes {
		if code < 300 || code > 699 {
			return bad("dispatch.failover.codes", "%d: must be a final error status (300..699)", code)
		}
	}
	if f.Timeout < 0 || f.Timeout > 32*time.Second {
		// Past 64*T1 a UDP caller's own transaction has ended.
		return bad("dispatch.failover.timeout", "%s: must be between 0 (timer B only) and 32s", f.Timeout)
	}
	if f.MaxTries < 0 {
		return bad("dispatch.failover.max_tries", "%d: must be 0 (every destination) or more", f.MaxTries)
	}
	o := d.Oversize
	if o.MTU != 0 && (o.MTU < 576 || o.MTU > 65535) {
		return bad("dispatch.oversize.mtu", "%d: must be 0 (no limit) or between 576 and 65535", o.MTU)
	}
	if o.Headroom < 0 || (o.MTU != 0 && o.MTU-o.Headroom < 500) {
		return bad("dispatch.oversize.headroom", "%d: must be at least 0 and leave at least 500 bytes of the mtu %d", o.Headroom, o.MTU)
	}
	for _, h := range o.StripHeaders {
		switch strings.ToLower(h) {
		case "via", "v", "from", "f", "to", "t", "call-id", "i", "cseq", "max-forwards", "route", "record-route", "contact", "m", "content-length", "l", "content-type", "c":
			return bad("dispatch.oversize.strip_headers", "%q is needed to route or parse the request: it cannot be stripped", h)
		}
		if h == "" || strings.ContainsAny(h, ": \t") {
			return bad("dispatch.oversize.strip_headers", "%q is not a header name", h)
		}
	}
	return nil
}

// validDestination checks a destination URI's form; slowpath/dispatch
// parses it again with the same rules.
func validDestination(u string) bool {
	rest, ok := strings.CutPrefix(u, "sip:")
	if !ok {
		return false
	}
	hostport, params, _ := strings.Cut(rest, ";")
	switch strings.ToLower(params) {
	case "", "transport=udp", "transport=tcp", "lr":
	default:
		return false
	}
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return ap.Port() != 0 && !ap.Addr().IsUnspecified()
	}
	a, err := netip.ParseAddr(strings.Trim(hostport, "[]"))
	return err == nil && !a.IsUnspecified() && !strings.Contains(hostport, "%")
}

// Limits bound what a message may cost before it is refused.
type Limits struct {
	MaxMessageBytes int `yaml:"max_message_bytes"`
	MaxHeaders      int `yaml:"max_headers"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	Listen string `yaml:"listen"` // empty: no endpoint
}

// API configures the management API (docs/operations.md). It changes
// state (removes bindings, blocks sources), so away from loopback it needs
// a bearer token.
type API struct {
	Listen    string `yaml:"listen"`     // IP:port; empty: no API
	Token     string `yaml:"token"`      // bearer token; prefer token_file
	TokenFile string `yaml:"token_file"` // file holding the token (one line)
}

// minTokenLen keeps a guessable token off the network: 16 characters of
// a random base64 or hex string are at least 64 bits.
const minTokenLen = 16

// ResolveToken returns the bearer token, read from token_file when that is
// set; "" means the API takes no token (loopback only, see validate).
func (a API) ResolveToken() (string, error) {
	if a.TokenFile == "" {
		return a.Token, nil
	}
	b, err := os.ReadFile(a.TokenFile)
	if err != nil {
		return "", fmt.Errorf("api.token_file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < minTokenLen || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("api.token_file %s: want one line of at least %d characters without spaces", a.TokenFile, minTokenLen)
	}
	return tok, nil
}

// Log configures logging (docs/operations.md).
type Log struct {
	Level string `yaml:"level"` // debug, info, warn, error
	// Components override Level per component, e.g. {sipgo: warn, proxy: debug}.
	Components map[string]string `yaml:"components"`
	// Format is text (logfmt) or json.
	Format string `yaml:"format"`
	// Rate is how many records per second each component may write; the
	// rest are dropped and counted, so a flood cannot make logging the
	// bottleneck (seed 003). 0: no limit.
	Rate int `yaml:"rate"`
}

// LogComponents are the names log.components may use: one per logger the
// daemon hands out. slowpath covers the registrar, the mid-registrar and
// dispatch, which log through the server.
var LogComponents = []string{"main", "slowpath", "proxy", "sipgo", "xdp", "natping", "ban", "mgmt"}

// LevelOf returns the level of a component: its override, else log.level.
func (l Log) LevelOf(component string) string {
	if v, ok := l.Components[component]; ok {
		return v
	}
	return l.Level
}

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

// NATPing configures the keepalives pinhole sends to NAT'd UDP bindings
// (docs/natping.md).
type NATPing struct {
	// Interval between two pings to one binding; 0 turns pinging off.
	Interval time.Duration `yaml:"interval"`
	// Method: options (a SIP OPTIONS the device answers) or crlf (a bare
	// CRLF that only keeps the NAT open; no liveness from it).
	Method string `yaml:"method"`
	// MaxMissed is how many OPTIONS pings in a row may go unanswered
	// before the binding is removed; 0 = never remove.
	MaxMissed int `yaml:"max_missed"`
}

// FastPath configures the userspace fast path (docs/fastpath.md).
type FastPath struct {
	// Enabled: gnet owns the UDP listeners and absorbs refreshes; false
	// is the slow path alone, exactly as before the fast path existed.
	Enabled bool `yaml:"enabled"`
	// Loops is the number of event loops (one SO_REUSEPORT socket each)
	// per UDP listener; 0 = one per CPU.
	Loops int `yaml:"loops"`
	// CacheSize is how many AORs' prepared answers are held at most.
	CacheSize int `yaml:"cache_size"`
	// QueueSize bounds the hand-off to the slow path per listener
	// (in-dialog traffic; new requests get three quarters of it).
	QueueSize int `yaml:"queue_size"`
}

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid configuration")

// Load reads and validates the file at path; an empty path loads the
// embedded default.
func Load(path string) (*Config, error) {
	if path == "" {
		return Parse(defaultYAML, "embedded default")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	return Parse(data, path)
}

// Parse decodes and validates YAML text. Keys missing from the text take
// the embedded default's values; unknown keys are refused.
func Parse(data []byte, source string) (*Config, error) {
	cfg := &Config{}
	if err := decodeStrict(defaultYAML, cfg); err != nil {
		return nil, fmt.Errorf("embedded default: %w", err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", source, ErrInvalid, err)
	}
	// A file that names listen names every socket: a transport it leaves
	// out is not served, rather than inherited from the default.
	if hasKey(&root, "listen") {
		cfg.Listen = Listen{}
	}
	if err := decodeStrict(data, cfg); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", source, ErrInvalid, err)
	}
	cfg.Source = source
	if err := cfg.validate(); err != nil {
		var fe *fieldError
		if errors.As(err, &fe) {
			if line := lineOf(&root, fe.key); line > 0 {
				return nil, fmt.Errorf("%s: line %d: %w: %s: %s", source, line, ErrInvalid, fe.key, fe.msg)
			}
			return nil, fmt.Errorf("%s: %w: %s: %s", source, ErrInvalid, fe.key, fe.msg)
		}
		return nil, err
	}
	return cfg, nil
}

func decodeStrict(data []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	// An empty document decodes to io.EOF: it means "all defaults".
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// fieldError names the dotted key whose value is wrong.
type fieldError struct {
	key string
	msg string
}

func (e *fieldError) Error() string { return e.key + ": " + e.msg }

func bad(key, format string, args ...any) error {
	return &fieldError{key: key, msg: fmt.Sprintf(format, args...)}
}

func (c *Config) validate() error {
	lists := []struct {
		key   string
		addrs []string
	}{
		{"listen.udp", c.Listen.UDP}, {"listen.tcp", c.Listen.TCP}, {"listen.tls", c.Listen.TLS},
		{"listen.ws", c.Listen.WS}, {"listen.wss", c.Listen.WSS},
	}
	total := 0
	seen := map[string]string{}
	for _, l := range lists {
		for _, a := range l.addrs {
			ap, err := netip.ParseAddrPort(a)
			if err != nil {
				return bad(l.key, "%q is not an IP:port (use [::1]:5060 for IPv6): %v", a, err)
			}
			if ap.Port() == 0 {
				return bad(l.key, "%q needs a port", a)
			}
			if l.key == "listen.udp" && ap.Addr().IsUnspecified() {
				// A wildcard UDP socket answers from whatever address the
				// kernel picks, and NAT pinholes open only for the address
				// a device sent to (DESIGN.md: one address, one port).
				return bad(l.key, "%q: name the address to serve; a wildcard UDP socket may answer from another address than the device sent to", a)
			}
			// TCP-based transports share the kernel's TCP port space.
			family := "udp"
			if l.key != "listen.udp" {
				family = "tcp"
			}
			k := family + "/" + ap.String()
			if prev, dup := seen[k]; dup {
				return bad(l.key, "%q is already used by %s", a, prev)
			}
			seen[k] = l.key
			total++
		}
	}
	if total == 0 {
		return bad("listen", "no listening address: give at least one of udp, tcp, tls, ws, wss")
	}
	if c.Advertise.Port < 0 || c.Advertise.Port > 65535 {
		return bad("advertise.port", "%d is not a port", c.Advertise.Port)
	}
	if c.Advertise.Port != 0 && c.Advertise.Host == "" {
		return bad("advertise.host", "a port without a host: set advertise.host too")
	}
	if len(c.Domains) == 0 {
		return bad("domains", "at least one served domain is needed")
	}
	for i, d := range c.Domains {
		if d == "" || strings.ContainsAny(d, " :;@<>") {
			return bad("domains", "entry %d (%q) is not a host name or address", i, d)
		}
		c.Domains[i] = strings.ToLower(d)
	}
	if c.DataDir == "" {
		return bad("data_dir", "must name a directory for bindings and generated certificates")
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return bad("tls", "give both cert and key, or neither for a generated self-signed pair")
	}
	r := c.Registrar
	switch {
	case r.MinExpires < 1:
		return bad("registrar.min_expires", "%d: must be at least 1 second", r.MinExpires)
	case r.MaxExpires < r.MinExpires:
		return bad("registrar.max_expires", "%d is below min_expires %d", r.MaxExpires, r.MinExpires)
	case r.DefaultExpires < r.MinExpires || r.DefaultExpires > r.MaxExpires:
		return bad("registrar.default_expires", "%d is outside [%d, %d]", r.DefaultExpires, r.MinExpires, r.MaxExpires)
	case r.MaxContacts < 1:
		return bad("registrar.max_contacts", "%d: must be at least 1", r.MaxContacts)
	}
	if c.Auth.Realm == "" || strings.ContainsAny(c.Auth.Realm, "\"\\\r\n") {
		return bad("auth.realm", "%q: must be non-empty and contain no quote, backslash or line break", c.Auth.Realm)
	}
	if len(c.Auth.Algorithms) == 0 {
		return bad("auth.algorithms", "offer at least one of SHA-256, MD5")
	}
	for _, a := range c.Auth.Algorithms {
		if a != "SHA-256" && a != "MD5" {
			return bad("auth.algorithms", "%q: must be SHA-256 or MD5", a)
		}
	}
	if c.Auth.NonceTTL < time.Second || c.Auth.NonceTTL > time.Hour {
		return bad("auth.nonce_ttl", "%s: must be between 1s and 1h", c.Auth.NonceTTL)
	}
	if c.Location.FlushInterval < 10*time.Millisecond || c.Location.FlushInterval > time.Minute {
		return bad("location.flush_interval", "%s: must be between 10ms and 1m", c.Location.FlushInterval)
	}
	switch c.Proxy.Forking {
	case "parallel", "serial":
	default:
		return bad("proxy.forking", "%q: must be parallel or serial", c.Proxy.Forking)
	}
	if o := c.Proxy.Outbound; o != "" && !strings.HasPrefix(o, "sip:") && !strings.HasPrefix(o, "sips:") {
		return bad("proxy.outbound", "%q: must be a sip: or sips: URI", o)
	}
	if err := c.validateMidRegistrar(); err != nil {
		return err
	}
	if err := c.validateDispatch(); err != nil {
		return err
	}
	// 65535 is the largest UDP payload; stream transports are bounded the same way
	// so that one connection cannot make pinhole buffer more.
	if c.Limits.MaxMessageBytes < 1024 || c.Limits.MaxMessageBytes > 65535 {
		return bad("limits.max_message_bytes", "%d: must be between 1024 and 65535", c.Limits.MaxMessageBytes)
	}
	if c.Limits.MaxHeaders < 16 || c.Limits.MaxHeaders > 1024 {
		return bad("limits.max_headers", "%d: must be between 16 and 1024", c.Limits.MaxHeaders)
	}
	if m := c.Metrics.Listen; m != "" {
		if _, err := netip.ParseAddrPort(m); err != nil {
			return bad("metrics.listen", "%q is not an IP:port: %v", m, err)
		}
	}
	if err := c.validateOps(); err != nil {
		return err
	}
	if err := c.XDP.validate(); err != nil {
		return err
	}
	if err := c.NATPing.validate(); err != nil {
		return err
	}
	return c.validateFastPath()
}

func (c *Config) validateFastPath() error {
	f := &c.FastPath
	if f.Loops < 0 || f.Loops > 256 {
		return bad("fastpath.loops", "%d: must be between 0 (one per CPU) and 256", f.Loops)
	}
	if f.CacheSize < 1 || f.CacheSize > 100_000_000 {
		return bad("fastpath.cache_size", "%d: must be between 1 and 100000000", f.CacheSize)
	}
	if f.QueueSize < 16 || f.QueueSize > 1<<20 {
		return bad("fastpath.queue_size", "%d: must be between 16 and 1048576", f.QueueSize)
	}
	// listen.udp already refuses port 0, which the fast path could not
	// serve (each loop binds its own SO_REUSEPORT socket to the address).
	return nil
}

func validLevel(l string) bool {
	switch l {
	case "debug", "info", "warn", "error":
		return true
	}
	return false
}

// validateOps checks the api and log sections.
func (c *Config) validateOps() error {
	if !validLevel(c.Log.Level) {
		return bad("log.level", "%q: must be debug, info, warn or error", c.Log.Level)
	}
	for name, l := range c.Log.Components {
		if !slices.Contains(LogComponents, name) {
			return bad("log.components", "%q is not a component: want one of %s", name, strings.Join(LogComponents, ", "))
		}
		if !validLevel(l) {
			return bad("log.components", "%s: %q: must be debug, info, warn or error", name, l)
		}
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		return bad("log.format", "%q: must be text or json", c.Log.Format)
	}
	if c.Log.Rate < 0 || c.Log.Rate > 1_000_000 {
		return bad("log.rate", "%d: must be between 0 (no limit) and 1000000 records per second", c.Log.Rate)
	}
	a := c.API
	if a.Token != "" && a.TokenFile != "" {
		return bad("api.token", "give token or token_file, not both")
	}
	if a.Token != "" && (len(a.Token) < minTokenLen || strings.ContainsAny(a.Token, " \t\r\n")) {
		return bad("api.token", "want at least %d characters without spaces (e.g. openssl rand -hex 16)", minTokenLen)
	}
	if a.Listen == "" {
		return nil
	}
	ap, err := netip.ParseAddrPort(a.Listen)
	if err != nil {
		return bad("api.listen", "%q is not an IP:port: %v", a.Listen, err)
	}
	if !ap.Addr().IsLoopback() && a.Token == "" && a.TokenFile == "" {
		// The API removes bindings and blocks sources: off loopback it
		// must not answer whoever reaches the port.
		return bad("api.listen", "%q is not a loopback address: set api.token_file (or api.token) too", a.Listen)
	}
	if m, err := netip.ParseAddrPort(c.Metrics.Listen); err == nil && m == ap && ap.Port() != 0 {
		return bad("api.listen", "%q is also metrics.listen: give each its own port", a.Listen)
	}
	return nil
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

func (n *NATPing) validate() error {
	// Below a second the pinger would be a flood; above 10 minutes most
	// NATs have closed the binding (UDP timeouts of 30 s to 5 min are common).
	if n.Interval != 0 && (n.Interval < time.Second || n.Interval > 10*time.Minute) {
		return bad("natping.interval", "%s: must be 0 (off) or between 1s and 10m", n.Interval)
	}
	switch n.Method {
	case "options", "crlf":
	default:
		return bad("natping.method", "%q: must be options or crlf", n.Method)
	}
	if n.MaxMissed < 0 || n.MaxMissed > 100 {
		return bad("natping.max_missed", "%d: must be between 0 (never remove) and 100", n.MaxMissed)
	}
	return nil
}

// hasKey reports whether the document's top mapping has key.
func hasKey(root *yaml.Node, key string) bool {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return true
		}
	}
	return false
}

// lineOf finds the line of a dotted key ("registrar.min_expires") in the
// parsed document, or of its nearest parent that is present.
func lineOf(root *yaml.Node, key string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := 0
	for _, part := range strings.Split(key, ".") {
		if n.Kind != yaml.MappingNode {
			break
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == part {
				line = n.Content[i].Line
				next = n.Content[i+1]
				break
			}
		}
		if next == nil {
			break
		}
		n = next
	}
	return line
}
