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

	"github.com/pinhole-sip/pinhole/internal/config"
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

// Config is pinhole's configuration as the tests write it: the daemon's
// own type, marshalled whole, so every key the file holds is one pinhole
// reads and a renamed or retyped key breaks the tests' build, not a run.
type Config = config.Config

// DefaultConfig is a configuration for one test: the embedded default with
// UDP and TCP on a free loopback port (and no TLS, WS or WSS), localhost
// domains, its own data directory, debug logs, one-second flushes, MD5
// challenges only, no authentication, metrics on a free port and no
// management API. The default's fixed ports would make parallel tests
// fight over them. sipp 3.6 answers only the first challenge and only with
// MD5, hence MD5 alone.
func DefaultConfig(t testing.TB) Config {
	t.Helper()
	cfg, err := config.Load("")
	if err != nil {
		t.Fatalf("pinhole's embedded default: %v", err)
	}
	addr := fmt.Sprintf("%s:%d", Loopback, FreePort(t, Loopback))
	cfg.Listen = config.Listen{UDP: []string{addr}, TCP: []string{addr}}
	cfg.Domains = []string{"localhost", "127.0.0.1"}
	cfg.DataDir = t.TempDir()
	cfg.Auth.Credentials = ""
	cfg.Auth.Algorithms = []string{"MD5"}
	cfg.Location.FlushInterval = time.Second
	cfg.Log.Level = "debug"
	cfg.Metrics.Listen = "127.0.0.1:0"
	cfg.API = config.API{}
	cfg.Source = ""
	return *cfg
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
	out := openDaemonLog(p.t, "pinhole", p.logPath)
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

// PID is the running pinhole's process id, 0 when it is not running.
func (p *Pinhole) PID() int {
	if pr := p.current(); pr != nil && pr.cmd.Process != nil {
		return pr.cmd.Process.Pid
	}
	return 0
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

// EnableAPI turns on c's management API on a free loopback port with
// token ("" for none) and returns its base URL, "http://127.0.0.1:PORT".
func EnableAPI(t testing.TB, c *Config, token string) string {
	t.Helper()
	c.API = config.API{Listen: fmt.Sprintf("%s:%d", Loopback, FreePort(t, Loopback)), Token: token}
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
	return RunPinhole(t, ns, full...)
}

// RunPinhole runs the pinhole binary with args in ns (nil: on the host) to
// its end, at most a minute, and returns its standard output, standard
// error and exit status.
func RunPinhole(t testing.TB, ns *NetNS, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := ns.CommandContext(ctx, PinholeBinary(t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run pinhole %v: %v", args, err)
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
