package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

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
	// Trust names the peers believed by source address (trust.go).
	Trust Trust `yaml:"trust"`
	// MidRegistrar puts pinhole in front of a main registrar; off while it
	// names no upstream.
	MidRegistrar MidRegistrar `yaml:"midregistrar"`
	Limits       Limits       `yaml:"limits"`
	Streams      Streams      `yaml:"streams"` // TCP, TLS, WS and WSS connections (docs/security.md)
	Metrics      Metrics      `yaml:"metrics"`
	API          API          `yaml:"api"`
	Log          Log          `yaml:"log"`
	XDP          XDP          `yaml:"xdp"`
	NATPing      NATPing      `yaml:"natping"`
	// FastPath puts gnet event loops in front of the UDP listeners and
	// absorbs REGISTER refreshes from a cache (docs/fastpath.md).
	FastPath FastPath `yaml:"fastpath"`
	// Capture copies SIP messages to HEP collectors (docs/capture.md).
	Capture Capture `yaml:"capture"`

	// Dispatch relays requests to a farm of servers; off while it has no
	// sets.
	Dispatch Dispatch `yaml:"dispatch"`
	// DNS resolves destinations configured by name (dns.go).
	DNS DNS `yaml:"dns"`

	// Media relays calls' media through rtpengine; off by default
	// (docs/media.md).
	Media Media `yaml:"media"`

	// Cluster places this box among other edges (cluster.go).
	Cluster Cluster `yaml:"cluster"`

	// Memory paces the garbage collector for a large live heap (memory.go).
	Memory Memory `yaml:"memory"`

	// Source names where the configuration came from, for messages.
	Source string `yaml:"-"`
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
		return nil, located(err, &root, source)
	}
	return cfg, nil
}

// located rewrites each of validate's errors with the source and the line
// of its key, one per line, so that -check-config shows every mistake.
func located(err error, root *yaml.Node, source string) error {
	var out []error
	for _, e := range leaves(err) {
		var fe *fieldError
		switch {
		case !errors.As(e, &fe):
			out = append(out, fmt.Errorf("%s: %w", source, e))
		case lineOf(root, fe.key) > 0:
			out = append(out, fmt.Errorf("%s: line %d: %w: %s: %s", source, lineOf(root, fe.key), ErrInvalid, fe.key, fe.msg))
		default:
			out = append(out, fmt.Errorf("%s: %w: %s: %s", source, ErrInvalid, fe.key, fe.msg))
		}
	}
	return errors.Join(out...)
}

// leaves flattens the errors.Join trees validate builds.
func leaves(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leaves(e)...)
		}
		return out
	}
	return []error{err}
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

// validate checks each section in turn, in a fixed order, and reports
// every section's mistakes (errors.Join), so that an operator fixes a file
// in one round rather than one error per run; the order keeps the report
// stable. Most sections stop at their own first mistake. Checks that span
// sections (an upstream needs a listener of its transport, the API must
// not share the metrics port) live with the section that needs them, and
// read other sections only as written, never through Listeners, which
// assumes listen is valid.
func (c *Config) validate() error {
	var errs []error
	errs = append(errs, c.Listen.validate(), c.Advertise.validate())
	if len(c.Domains) == 0 {
		errs = append(errs, bad("domains", "at least one served domain is needed"))
	}
	for i, d := range c.Domains {
		if d == "" || strings.ContainsAny(d, " :;@<>") {
			errs = append(errs, bad("domains", "entry %d (%q) is not a host name or address", i, d))
			break
		}
		c.Domains[i] = strings.ToLower(d)
	}
	if c.DataDir == "" {
		errs = append(errs, bad("data_dir", "must name a directory for bindings and generated certificates"))
	}
	checks := []func() error{
		c.TLS.validate,
		c.Registrar.validate,
		c.Auth.validate,
		c.Location.validate,
		c.Proxy.validate,
		c.Trust.validate,
		c.validateMidRegistrar,
		c.validateDispatch,
		c.DNS.validate,
		c.Limits.validate,
		c.Streams.validate,
		c.Metrics.validate,
		c.Log.validate,
		c.validateAPI,
		c.XDP.validate,
		c.NATPing.validate,
		c.validateFastPath,
		c.Media.validate,
		c.Capture.validate,
		c.Cluster.validate,
		c.Memory.validate,
	}
	for _, check := range checks {
		errs = append(errs, check())
	}
	return errors.Join(errs...)
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
