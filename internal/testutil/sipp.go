package testutil

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// sippGrace is how long past its own -timeout a sipp run may take before the
// harness kills it: sipp stops by itself, this only catches a hung process.
const sippGrace = 10 * time.Second

// defaultSippTimeout bounds a run whose Sipp.Timeout is zero.
const defaultSippTimeout = 30 * time.Second

// sipp exit codes (sipp(1), "EXIT STATUS").
const (
	SippExitOK          = 0  // every call succeeded
	SippExitCallsFailed = 1  // at least one call failed
	SippExitNoCalls     = 99 // normal exit without any call processed
)

// User is one line of a sipp injection file: register.xml and
// register_query.xml read the user from field0, the password from field1 and
// the expiry from field2.
type User struct {
	Name, Password string
	Expires        int
}

// Sipp describes one sipp run. Zero fields take sipp's defaults, except
// Timeout (defaultSippTimeout) and Calls (1): every run stops by itself.
type Sipp struct {
	// Scenario is the path of the scenario XML file.
	Scenario string
	// Remote is host:port of the peer; empty for a pure UAS.
	Remote string
	// LocalIP and LocalPort are where sipp binds (and what it writes in Via
	// and Contact).
	LocalIP   netip.Addr
	LocalPort int
	// Transport is sipp's -t: "u1" (one UDP socket, the default), "t1", "l1".
	Transport string
	// Calls is -m: the run ends after this many calls. Zero means 1.
	Calls int
	// Rate is -r in calls per second; zero leaves sipp's default of 10.
	Rate float64
	// Limit is -l, the number of simultaneous calls.
	Limit int
	// Users, when set, are written to an injection file read sequentially.
	Users []User
	// Service is -s, the user part of the request URI.
	Service string
	// AuthUser and AuthPassword answer digest challenges (-au, -ap).
	AuthUser, AuthPassword string
	// AuthURI is the digest uri (-auth_uri) without its scheme: sipp
	// prepends "sip:". It must be the Request-URI (RFC 2617 section
	// 3.2.2.5), but sipp defaults to its peer's address.
	AuthURI string
	// Vars are global scenario variables (-set NAME VALUE), [$NAME] in XML.
	Vars map[string]string
	// OutOfCall is a scenario for requests that match no call of the main
	// scenario (-oocsf): how one sipp process is a phone that registers and
	// answers calls on the same socket.
	OutOfCall string
	// Timeout is sipp's global -timeout; reaching it fails the run.
	Timeout time.Duration
	// RecvTimeout is -recv_timeout for every <recv>.
	RecvTimeout time.Duration
	// NS runs sipp inside a namespace; nil runs it on the host.
	NS *NetNS
	// NoMessageTrace turns off -trace_msg, for load runs whose message log
	// would be large.
	NoMessageTrace bool
	// Args are appended to the command line as they are.
	Args []string
}

// SippResult is what a finished sipp run left behind.
type SippResult struct {
	ExitCode   int
	Successful int
	Failed     int
	// Dir holds every file sipp wrote: errors.log, messages.log, logs.log,
	// stats.csv, screen.log and output.log (stdout and stderr).
	Dir string
	// Logs are the lines the scenario's <log> actions wrote.
	Logs []string
}

// ErrorLog returns sipp's log of unexpected messages, "" when there is none.
func (r *SippResult) ErrorLog() string { return readOr(filepath.Join(r.Dir, "errors.log")) }

// Report is a summary for test failure messages: counts, the tail of the
// error log and of sipp's own output.
func (r *SippResult) Report() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sipp exit %d, %d successful, %d failed calls (files in %s)\n",
		r.ExitCode, r.Successful, r.Failed, r.Dir)
	if e := tail(r.ErrorLog(), 40); e != "" {
		fmt.Fprintf(&b, "--- errors.log (tail)\n%s\n", e)
	}
	if o := tail(readOr(filepath.Join(r.Dir, "output.log")), 20); o != "" {
		fmt.Fprintf(&b, "--- output (tail)\n%s\n", o)
	}
	if m := tail(readOr(filepath.Join(r.Dir, "messages.log")), 60); m != "" {
		fmt.Fprintf(&b, "--- messages.log (tail)\n%s\n", m)
	}
	return b.String()
}

// Run runs sipp to its end and returns the result. It fails the test only
// when sipp could not be started or its files not read: a failed call is
// the caller's to judge, with Report for the message.
func (s Sipp) Run(t testing.TB) *SippResult {
	t.Helper()
	p := s.Start(t)
	return p.Wait(t)
}

// SippProcess is a running sipp.
type SippProcess struct {
	cmd    *exec.Cmd
	dir    string
	cancel context.CancelFunc
	done   chan struct{}
	err    error

	once   sync.Once
	result *SippResult
}

// Start starts sipp and returns at once. The process is killed when the
// test ends if it is still running; Stop ends it earlier.
func (s Sipp) Start(t testing.TB) *SippProcess {
	t.Helper()
	if _, err := exec.LookPath("sipp"); err != nil {
		t.Fatal("sipp not found: run scripts/install-deps.sh test")
	}
	dir, err := os.MkdirTemp(t.TempDir(), "sipp-"+strings.TrimSuffix(filepath.Base(s.Scenario), ".xml")+"-")
	if err != nil {
		t.Fatalf("make a directory for sipp: %v", err)
	}
	if s.LocalPort == 0 && s.NS == nil && s.LocalIP.IsValid() {
		// sipp would try 5060 first, the port a developer's own pinhole or
		// another test may hold; a namespace of ours has it free.
		s.LocalPort = FreePort(t, s.LocalIP)
	}
	args, err := s.args(dir)
	if err != nil {
		t.Fatal(err)
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = defaultSippTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout+sippGrace)
	cmd := s.NS.CommandContext(ctx, "sipp", args...)
	cmd.Dir = dir // sipp writes some files next to itself whatever it is told
	// Make sipp its own process group leader so killing it reaches it
	// through `ip netns exec` too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := os.Create(filepath.Join(dir, "output.log"))
	if err != nil {
		cancel()
		t.Fatalf("create sipp output file: %v", err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		out.Close()
		t.Fatalf("start %q: %v", cmd.Args, err)
	}
	p := &SippProcess{cmd: cmd, dir: dir, cancel: cancel, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("sipp %s:\n%s", filepath.Base(s.Scenario), p.Wait(t).Report())
		}
	})
	return p
}

// Stop ends sipp at once (SIGKILL to its process group) unless it is done.
func (p *SippProcess) Stop() {
	select {
	case <-p.done:
	default:
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	p.cancel()
}

// WaitLog waits until the scenario has logged a line starting with prefix
// (sipp writes <log> lines as they happen) and reports whether it did
// before the timeout or the end of the process.
func (p *SippProcess) WaitLog(prefix string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		for l := range strings.SplitSeq(readOr(filepath.Join(p.dir, "logs.log")), "\n") {
			if strings.HasPrefix(l, prefix) {
				return true
			}
		}
		select {
		case <-p.done:
			return strings.Contains(readOr(filepath.Join(p.dir, "logs.log")), prefix)
		default:
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// LogValues is SippResult.LogValues of what a running sipp has logged so far.
func (p *SippProcess) LogValues(key string) []string {
	r := SippResult{}
	for l := range strings.SplitSeq(readOr(filepath.Join(p.dir, "logs.log")), "\n") {
		r.Logs = append(r.Logs, strings.TrimRight(l, "\r"))
	}
	return r.LogValues(key)
}

// Done is closed when sipp has exited.
func (p *SippProcess) Done() <-chan struct{} { return p.done }

// Wait waits for sipp to exit by itself (its -timeout bounds that) and reads
// what it left.
func (p *SippProcess) Wait(t testing.TB) *SippResult {
	t.Helper()
	<-p.done
	p.cancel()
	p.once.Do(func() {
		r := &SippResult{Dir: p.dir, ExitCode: p.cmd.ProcessState.ExitCode()}
		var exit *exec.ExitError
		if p.err != nil && !errors.As(p.err, &exit) {
			t.Errorf("wait for sipp: %v", p.err)
		}
		r.Successful, r.Failed = readSippStats(filepath.Join(p.dir, "stats.csv"))
		if logs := readOr(filepath.Join(p.dir, "logs.log")); logs != "" {
			for l := range strings.SplitSeq(strings.TrimRight(logs, "\n"), "\n") {
				r.Logs = append(r.Logs, strings.TrimRight(l, "\r"))
			}
		}
		p.result = r
	})
	return p.result
}

func (s Sipp) args(dir string) ([]string, error) {
	var a []string
	if s.Remote != "" {
		a = append(a, s.Remote)
	}
	a = append(a, "-sf", s.Scenario, "-nostdin",
		"-trace_err", "-error_file", filepath.Join(dir, "errors.log"),
		"-trace_logs", "-log_file", filepath.Join(dir, "logs.log"),
		// The statistics file is written every -fd seconds and once more
		// at exit; its last line holds the final counts.
		"-trace_stat", "-stf", filepath.Join(dir, "stats.csv"), "-fd", "1",
		"-trace_screen", "-screen_file", filepath.Join(dir, "screen.log"),
	)
	if !s.NoMessageTrace {
		a = append(a, "-trace_msg", "-message_file", filepath.Join(dir, "messages.log"))
	}
	if s.LocalIP.IsValid() {
		a = append(a, "-i", s.LocalIP.String())
	}
	if s.LocalPort != 0 {
		a = append(a, "-p", strconv.Itoa(s.LocalPort))
	}
	if s.Transport != "" {
		a = append(a, "-t", s.Transport)
	}
	calls := s.Calls
	if calls <= 0 {
		calls = 1
	}
	a = append(a, "-m", strconv.Itoa(calls))
	if s.Rate > 0 {
		a = append(a, "-r", strconv.FormatFloat(s.Rate, 'f', -1, 64))
	}
	if s.Limit > 0 {
		a = append(a, "-l", strconv.Itoa(s.Limit))
	}
	if len(s.Users) > 0 {
		inf := filepath.Join(dir, "users.csv")
		if err := writeUsers(inf, s.Users); err != nil {
			return nil, err
		}
		a = append(a, "-inf", inf)
	}
	if s.Service != "" {
		a = append(a, "-s", s.Service)
	}
	if s.AuthUser != "" {
		a = append(a, "-au", s.AuthUser)
	}
	if s.AuthPassword != "" {
		a = append(a, "-ap", s.AuthPassword)
	}
	if s.AuthURI != "" {
		a = append(a, "-auth_uri", s.AuthURI)
	}
	names := make([]string, 0, len(s.Vars))
	for k := range s.Vars {
		names = append(names, k)
	}
	sort.Strings(names) // a stable command line is easier to rerun by hand
	for _, k := range names {
		a = append(a, "-set", k, s.Vars[k])
	}
	if s.OutOfCall != "" {
		a = append(a, "-oocsf", s.OutOfCall)
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = defaultSippTimeout
	}
	a = append(a, "-timeout", fmt.Sprintf("%dms", timeout.Milliseconds()), "-timeout_error")
	if s.RecvTimeout > 0 {
		a = append(a, "-recv_timeout", fmt.Sprintf("%dms", s.RecvTimeout.Milliseconds()))
	}
	return append(a, s.Args...), nil
}

// writeUsers writes a sipp injection file. SEQUENTIAL hands line i to call i,
// so with -m equal to the number of users each registers once. Fields:
// user, password, expires, and the whole authentication keyword — sipp
// does not substitute fields inside [authentication ...], but it does
// expand the keyword when a field holds it.
func writeUsers(path string, users []User) error {
	var b strings.Builder
	b.WriteString("SEQUENTIAL\n")
	for _, u := range users {
		fmt.Fprintf(&b, "%s;%s;%d;[authentication username=%s password=%s]\n", u.Name, u.Password, u.Expires, u.Name, u.Password)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write sipp injection file: %w", err)
	}
	return nil
}

// readSippStats reads the final SuccessfulCall(C) and FailedCall(C) columns
// of sipp's statistics file; -1 when they are missing (sipp died early).
func readSippStats(path string) (ok, failed int) {
	f, err := os.Open(path)
	if err != nil {
		return -1, -1
	}
	defer f.Close()
	var header, last []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ";")
		if header == nil {
			header = fields
			continue
		}
		last = fields
	}
	ok, failed = -1, -1
	for i, name := range header {
		if i >= len(last) {
			break
		}
		n, err := strconv.Atoi(strings.TrimSpace(last[i]))
		if err != nil {
			continue
		}
		switch name {
		case "SuccessfulCall(C)":
			ok = n
		case "FailedCall(C)":
			failed = n
		}
	}
	return ok, failed
}

// LogValues collects "key: value" lines that the scenarios' <log> actions
// write, in order, e.g. all "code" values of a run.
func (r *SippResult) LogValues(key string) []string {
	var vs []string
	prefix := key + ":"
	for _, l := range r.Logs {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			vs = append(vs, strings.TrimSpace(v))
		}
	}
	return vs
}

func readOr(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(b)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
