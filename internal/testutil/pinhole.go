package testutil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// ReadyLine is what pinhole prints once every listener is up.
const ReadyLine = "pinhole ready"

// Timeouts of the daemon's life cycle. A race-enabled build starts slower
// than a plain one, hence the generous ready timeout.
const (
	readyTimeout = 20 * time.Second
	stopTimeout  = 15 * time.Second
	buildTimeout = 5 * time.Minute
)

// PinholeBinEnv names an environment variable holding the path of a
// pinhole binary to use instead of building one, e.g. to run the tests
// against a release build.
const PinholeBinEnv = "PINHOLE_BIN"

// Config is pinhole's YAML configuration as the tests write it. Zero fields
// are left out so pinhole's own defaults apply.
type Config struct {
	// MidRegistrar relays REGISTER to a main registrar; nil leaves it off.
	MidRegistrar *MidRegistrarConfig `yaml:"midregistrar,omitempty"`
	// Dispatch relays to a farm (farm.go); nil leaves it off.
	Dispatch *DispatchConfig `yaml:"dispatch,omitempty"`

	Listen    Listen          `yaml:"listen"`
	Advertise *Advertise      `yaml:"advertise,omitempty"`
	Domains   []string        `yaml:"domains,omitempty"`
	DataDir   string          `yaml:"data_dir,omitempty"`
	Registrar RegistrarConfig `yaml:"registrar,omitempty"`
	Auth      AuthConfig      `yaml:"auth,omitempty"`
	Location  LocationConfig  `yaml:"location,omitempty"`
	Proxy     ProxyConfig     `yaml:"proxy,omitempty"`
	Limits    LimitsConfig    `yaml:"limits,omitempty"`
	Log       LogConfig       `yaml:"log,omitempty"`
	Metrics   MetricsConfig   `yaml:"metrics,omitempty"`
	// API is always written: the embedded default serves the management
	// API on a fixed port that parallel tests would fight over.
	API     APIConfig      `yaml:"api"`
	XDP     *XDPConfig     `yaml:"xdp,omitempty"`
	NATPing *NATPingConfig `yaml:"natping,omitempty"`
	// FastPath is the fastpath section (docs/fastpath.md); nil leaves the default.
	FastPath *FastPathConfig `yaml:"fastpath,omitempty"`
}

// FastPathConfig is pinhole's fastpath section.
type FastPathConfig struct {
	Enabled   bool `yaml:"enabled"`
	Loops     int  `yaml:"loops,omitempty"`
	CacheSize int  `yaml:"cache_size,omitempty"`
	QueueSize int  `yaml:"queue_size,omitempty"`
}

// XDPConfig is pinhole's xdp section (docs/xdp.md).
type XDPConfig struct {
	Interfaces []string   `yaml:"interfaces"`
	Mode       string     `yaml:"mode,omitempty"`
	Rate       uint64     `yaml:"rate,omitempty"`
	Burst      uint64     `yaml:"burst,omitempty"`
	Blocklist  []string   `yaml:"blocklist,omitempty"`
	Ban        *BanConfig `yaml:"ban,omitempty"`
}

// BanConfig is pinhole's xdp.ban section.
type BanConfig struct {
	AuthFailures   int    `yaml:"auth_failures"`
	Window         string `yaml:"window,omitempty"`
	Duration       string `yaml:"duration,omitempty"`
	RateLimitedFor string `yaml:"ratelimited_for,omitempty"`
}

// NATPingConfig is pinhole's natping section (docs/natping.md).
type NATPingConfig struct {
	Interval  string `yaml:"interval"`
	Method    string `yaml:"method,omitempty"`
	MaxMissed int    `yaml:"max_missed"`
}

// Listen lists host:port per transport; an empty list is not served. Every
// list is written, empty ones as [], because pinhole lays the file over its
// embedded default, which serves fixed ports that parallel tests would
// fight over.
type Listen struct {
	UDP []string `yaml:"udp"`
	TCP []string `yaml:"tcp"`
	TLS []string `yaml:"tls"`
	WS  []string `yaml:"ws"`
	WSS []string `yaml:"wss"`
}

// Advertise is the address pinhole writes in Via and Record-Route.
type Advertise struct {
	Host string `yaml:"host,omitempty"`
	Port int    `yaml:"port,omitempty"`
}

// RegistrarConfig holds the registrar's expiry bounds.
type RegistrarConfig struct {
	MinExpires     int `yaml:"min_expires,omitempty"`
	MaxExpires     int `yaml:"max_expires,omitempty"`
	DefaultExpires int `yaml:"default_expires,omitempty"`
	MaxContacts    int `yaml:"max_contacts,omitempty"`
}

// AuthConfig turns on digest authentication when Credentials is set.
type AuthConfig struct {
	Realm       string `yaml:"realm,omitempty"`
	Credentials string `yaml:"credentials"`
	NonceTTL    string `yaml:"nonce_ttl,omitempty"`
	// Algorithms offered in challenges. sipp 3.6 answers only the first
	// challenge and only with MD5, so DefaultConfig offers MD5 alone.
	Algorithms []string `yaml:"algorithms,omitempty"`
}

// LocationConfig sets how often bindings are flushed to disk.
type LocationConfig struct {
	FlushInterval string `yaml:"flush_interval,omitempty"`
}

// ProxyConfig chooses parallel or serial forking.
type ProxyConfig struct {
	Forking string `yaml:"forking,omitempty"`
}

// LimitsConfig bounds incoming messages.
type LimitsConfig struct {
	MaxMessageBytes int `yaml:"max_message_bytes,omitempty"`
	MaxHeaders      int `yaml:"max_headers,omitempty"`
}

// LogConfig sets the log level, per-component levels and the rate limit.
type LogConfig struct {
	Level      string            `yaml:"level,omitempty"`
	Components map[string]string `yaml:"components,omitempty"`
	Rate       int               `yaml:"rate,omitempty"`
}

// APIConfig is the management API (cmd/pinhole/mgmt); an empty Listen is off.
type APIConfig struct {
	Listen    string `yaml:"listen"`
	Token     string `yaml:"token,omitempty"`
	TokenFile string `yaml:"token_file,omitempty"`
}

// MetricsConfig sets where metrics are served.
type MetricsConfig struct {
	Listen string `yaml:"listen,omitempty"`
}

// DefaultConfig is a configuration for one test: UDP and TCP on a free
// loopback port, localhost domains, its own data directory, debug logs,
// one-second flushes, no authentication and no management API.
func DefaultConfig(t testing.TB) Config {
	t.Helper()
	addr := fmt.Sprintf("%s:%d", Loopback, FreePort(t, Loopback))
	return Config{
		Listen:    Listen{UDP: []string{addr}, TCP: []string{addr}},
		Domains:   []string{"localhost", "127.0.0.1"},
		DataDir:   t.TempDir(),
		Registrar: RegistrarConfig{MinExpires: 60, MaxExpires: 3600, DefaultExpires: 3600, MaxContacts: 10},
		Auth:      AuthConfig{Realm: "pinhole", Algorithms: []string{"MD5"}},
		Location:  LocationConfig{FlushInterval: "1s"},
		Proxy:     ProxyConfig{Forking: "parallel"},
		Limits:    LimitsConfig{MaxMessageBytes: 65535, MaxHeaders: 128},
		Log:       LogConfig{Level: "debug"},
		Metrics:   MetricsConfig{Listen: "127.0.0.1:0"},
	}
}

// WriteCredentials writes a credentials file for realm, one
// `username realm md5-ha1 sha256-ha1` line per user, and returns its path.
func WriteCredentials(t testing.TB, realm string, passwords map[string]string) string {
	t.Helper()
	var b strings.Builder
	for user, pass := range passwords {
		fmt.Fprintf(&b, "%s %s %s %s\n", user, realm, HA1MD5(user, realm, pass), HA1SHA256(user, realm, pass))
	}
	path := filepath.Join(t.TempDir(), "users.txt")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatalf("write credentials: %v", err)
	}
	return path
}

// Pinhole is a pinhole daemon run by a test.
type Pinhole struct {
	t       testing.TB
	ns      *NetNS
	bin     string
	cfgPath string
	logPath string
	Config  Config

	mu   sync.Mutex
	proc *pinholeProc
}

type pinholeProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// StartPinhole writes cfg, starts pinhole (in ns, or on the host for nil)
// and waits for it to be ready. It is stopped with SIGTERM when the test
// ends; when the test has failed, the end of its output is logged.
func StartPinhole(t testing.TB, ns *NetNS, cfg Config) *Pinhole {
	t.Helper()
	dir := t.TempDir()
	p := &Pinhole{
		t: t, ns: ns, bin: PinholeBinary(t), Config: cfg,
		cfgPath: filepath.Join(dir, "pinhole.yaml"),
		logPath: filepath.Join(dir, "pinhole.log"),
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatalf("marshal pinhole config: %v", err)
	}
	if err := os.WriteFile(p.cfgPath, data, 0o644); err != nil {
		t.Fatalf("write pinhole config: %v", err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("pinhole config:\n%s\npinhole output (tail, %s):\n%s", data, p.logPath, tail(readOr(p.logPath), 80))
		}
	})
	p.start()
	return p
}

// ConfigPath is the file pinhole was started with.
func (p *Pinhole) ConfigPath() string { return p.cfgPath }

// Output returns everything pinhole has printed, across restarts.
func (p *Pinhole) Output() string { return readOr(p.logPath) }

func (p *Pinhole) start() {
	p.t.Helper()
	out, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatalf("open pinhole log: %v", err)
	}
	fmt.Fprintf(out, "=== harness: starting pinhole at %s\n", time.Now().Format(time.RFC3339Nano))
	ready := make(chan struct{})
	w := &readyWriter{f: out, ready: ready}
	cmd := p.ns.CommandContext(context.Background(), p.bin, "-config", p.cfgPath)
	cmd.Stdout, cmd.Stderr = w, w
	// The daemon leads its own process group so that signals reach it even
	// through `ip netns exec`, and a Ctrl-C of `go test` does not.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		p.t.Fatalf("start pinhole: %v", err)
	}
	proc := &pinholeProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		proc.err = cmd.Wait()
		out.Close()
		close(proc.done)
	}()
	p.mu.Lock()
	p.proc = proc
	p.mu.Unlock()

	select {
	case <-ready:
	case <-proc.done:
		p.t.Fatalf("pinhole exited before it was ready (%v); output:\n%s", proc.err, tail(readOr(p.logPath), 60))
	case <-time.After(readyTimeout):
		p.Kill()
		p.t.Fatalf("pinhole not ready after %s; output:\n%s", readyTimeout, tail(readOr(p.logPath), 60))
	}
}

// Stop sends SIGTERM, pinhole's graceful stop that flushes bindings, and
// waits for the exit; past stopTimeout it kills it and fails the test. It
// returns the exit error (nil for status 0). Stopping a stopped pinhole is
// a no-op.
func (p *Pinhole) Stop() error {
	p.t.Helper()
	proc := p.current()
	if proc == nil {
		return nil
	}
	select {
	case <-proc.done:
		return proc.err
	default:
	}
	_ = syscall.Kill(-proc.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-proc.done:
		return proc.err
	case <-time.After(stopTimeout):
		p.Kill()
		p.t.Errorf("pinhole did not stop within %s of SIGTERM; killed", stopTimeout)
		return errors.New("pinhole killed after stop timeout")
	}
}

// Kill ends pinhole with SIGKILL, the crash that the store must survive, and
// waits until it is gone.
func (p *Pinhole) Kill() {
	proc := p.current()
	if proc == nil {
		return
	}
	_ = syscall.Kill(-proc.cmd.Process.Pid, syscall.SIGKILL)
	<-proc.done
}

// Restart starts pinhole again with the same configuration and data
// directory, stopping it gracefully first if it is still running.
func (p *Pinhole) Restart() {
	p.t.Helper()
	if err := p.Stop(); err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			p.t.Fatalf("stop pinhole before restart: %v", err)
		}
	}
	p.start()
}

// Exited reports whether the current process has exited, and its error.
func (p *Pinhole) Exited() (bool, error) {
	proc := p.current()
	if proc == nil {
		return true, nil
	}
	select {
	case <-proc.done:
		return true, proc.err
	default:
		return false, nil
	}
}

func (p *Pinhole) current() *pinholeProc {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.proc
}

// readyWriter copies pinhole's output to a file and closes ready when the
// ready line has been seen. Output arrives in arbitrary chunks, so it keeps
// the unfinished last line.
type readyWriter struct {
	mu      sync.Mutex
	f       *os.File
	ready   chan struct{}
	partial []byte
	seen    bool
}

func (w *readyWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.seen {
		w.partial = append(w.partial, b...)
		if bytes.Contains(w.partial, []byte(ReadyLine)) {
			w.seen = true
			close(w.ready)
			w.partial = nil
		} else if i := bytes.LastIndexByte(w.partial, '\n'); i >= 0 {
			w.partial = append(w.partial[:0], w.partial[i+1:]...)
		}
	}
	return w.f.Write(b)
}

var build struct {
	once sync.Once
	path string
	err  error
}

// PinholeBinary returns the path of a race-enabled pinhole built from this
// checkout, building it once per test process (or PINHOLE_BIN if set).
// Call CleanupBinaries from TestMain to remove it.
func PinholeBinary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		if bin := os.Getenv(PinholeBinEnv); bin != "" {
			build.path = bin
			return
		}
		build.path, build.err = buildPinhole()
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}

// CleanupBinaries removes what PinholeBinary built.
func CleanupBinaries() {
	if build.path != "" && os.Getenv(PinholeBinEnv) == "" {
		os.RemoveAll(filepath.Dir(build.path))
	}
}

func buildPinhole() (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "pinhole-bin-")
	if err != nil {
		return "", fmt.Errorf("make a directory for the pinhole binary: %w", err)
	}
	bin := filepath.Join(dir, "pinhole")
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-race", "-o", bin, "./cmd/pinhole")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("build pinhole: %w\n%s", err, out)
	}
	return filepath.Join(dir, "pinhole"), nil
}

// ModuleRoot is the directory of the go.mod this test runs in.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find the module root with go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("find the module root: not inside a Go module")
	}
	return filepath.Dir(gomod), nil
}

// MidRegistrarConfig is pinhole's midregistrar section (docs/midregistrar.md).
type MidRegistrarConfig struct {
	Upstreams       []UpstreamConfig `yaml:"upstreams"`
	Mode            string           `yaml:"mode,omitempty"`
	Insertion       string           `yaml:"insertion,omitempty"`
	OutgoingExpires int              `yaml:"outgoing_expires,omitempty"`
	RenewalMargin   int              `yaml:"renewal_margin"`
	Timeout         string           `yaml:"timeout,omitempty"`
	RetryAfter      int              `yaml:"retry_after,omitempty"`
}

// UpstreamConfig is one main registrar.
type UpstreamConfig struct {
	Addr      string `yaml:"addr"`
	Transport string `yaml:"transport"`
}

// EnableAPI turns on the management API on a free loopback port with
// token ("" for none) and returns its base URL, "http://127.0.0.1:PORT".
func (c *Config) EnableAPI(t testing.TB, token string) string {
	t.Helper()
	c.API = APIConfig{Listen: fmt.Sprintf("%s:%d", Loopback, FreePort(t, Loopback)), Token: token}
	return "http://" + c.API.Listen
}

// Ctl runs `pinhole ctl` with args against the API at base (and token,
// if any), in ns (nil: on the host), and returns its standard output,
// standard error and exit status.
func Ctl(t testing.TB, ns *NetNS, base, token string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	full := append([]string{"ctl", "-api", base}, args...)
	if token != "" {
		full = append([]string{"ctl", "-api", base, "-token", token}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := ns.CommandContext(ctx, PinholeBinary(t), full...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run pinhole %v: %v", full, err)
	}
	return out.String(), errb.String(), code
}

// Signal sends sig to the running pinhole, e.g. SIGHUP for a reload.
func (p *Pinhole) Signal(sig syscall.Signal) error {
	proc := p.current()
	if proc == nil {
		return errors.New("pinhole is not running")
	}
	return syscall.Kill(proc.cmd.Process.Pid, sig)
}

// Rewrite writes cfg as pinhole's configuration file, for a reload.
func (p *Pinhole) Rewrite(cfg Config) {
	p.t.Helper()
	data, err := yaml.Marshal(cfg)
	if err != nil {
		p.t.Fatalf("marshal pinhole config: %v", err)
	}
	if err := os.WriteFile(p.cfgPath, data, 0o644); err != nil {
		p.t.Fatalf("write pinhole config: %v", err)
	}
	p.mu.Lock()
	p.Config = cfg
	p.mu.Unlock()
}
