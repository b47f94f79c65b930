//go:build integration

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/bench/load"
	"github.com/pinhole-sip/pinhole/internal/testutil"
)

// vipDeadline is how long after its first send a refresh may take,
// retransmissions (RFC 3261 timer E) included, and still count: long
// enough for one sent to the dying box to be answered by the new one.
const vipDeadline = 10 * time.Second

// sipload is the project's load generator (bench/cmd/sipload) running as
// TestVIPFailover's refreshing devices.
type sipload struct {
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

var siploadBuild struct {
	once sync.Once
	path string
	err  error
}

// siploadBinary builds sipload once per test process, in a directory
// TestMain removes when every test is over (a plain build: it is the load,
// not what is tested). Removing it when the first test using it ended
// left the next one an exec of a file that was gone.
func siploadBinary(t *testing.T) string {
	t.Helper()
	siploadBuild.once.Do(func() {
		root, err := testutil.ModuleRoot()
		if err != nil {
			siploadBuild.err = err
			return
		}
		dir, err := os.MkdirTemp("", "sipload-bin-")
		if err != nil {
			siploadBuild.err = err
			return
		}
		bin := filepath.Join(dir, "sipload")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./bench/cmd/sipload")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			siploadBuild.err = fmt.Errorf("build sipload: %w\n%s", err, out)
			return
		}
		siploadBuild.path = bin
	})
	if siploadBuild.err != nil {
		t.Fatal(siploadBuild.err)
	}
	return siploadBuild.path
}

// removeSiploadBinary removes sipload's build, if there was one.
func removeSiploadBinary() {
	if siploadBuild.path != "" {
		os.RemoveAll(filepath.Dir(siploadBuild.path))
	}
}

// startSipload starts vipDevices devices in ns against server: they
// register (no challenge: the test's pinholes authenticate nobody), then
// each refreshes every vipPeriod for vipLoad, every 200 to a refresh
// logged with its device and time. The run is bounded by its duration
// and the drain (vipDeadline); a test that ends early kills it.
func startSipload(t *testing.T, ns *testutil.NetNS, server string) *sipload {
	t.Helper()
	bin := siploadBinary(t)
	s := &sipload{dir: t.TempDir(), done: make(chan struct{})}
	rate := float64(vipDevices) / vipPeriod.Seconds()
	args := []string{
		"-server", server, "-allow-non-loopback", "-domain", domain,
		"-devices", strconv.Itoa(vipDevices), "-sources", vipSources,
		"-scenario", "refresh", "-rate", strconv.FormatFloat(rate, 'f', -1, 64),
		"-prepare-rate", "800", "-expires", "600",
		"-duration", vipLoad.String(), "-warmup", "0s", "-deadline", vipDeadline.String(),
		"-out", filepath.Join(s.dir, "result.json"), "-ok-log", filepath.Join(s.dir, "ok.log"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), vipLoad+2*time.Minute)
	s.cmd = ns.CommandContext(ctx, bin, args...)
	out, err := os.Create(filepath.Join(s.dir, "output.txt"))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s.cmd.Stdout, s.cmd.Stderr = out, out
	if err := s.cmd.Start(); err != nil {
		cancel()
		out.Close()
		t.Fatalf("start sipload: %v", err)
	}
	go func() {
		s.err = s.cmd.Wait()
		out.Close()
		cancel()
		close(s.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-s.done
	})
	return s
}

// oks is what the devices logged so far: "USER UNIX_MS" per refresh
// answered 200 (sipload buffers the file: the last second may be
// missing while it runs).
func (s *sipload) oks() []string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "ok.log"))
	var out []string
	for l := range strings.SplitSeq(string(b), "\n") {
		if strings.Count(l, " ") == 1 {
			out = append(out, l)
		}
	}
	return out
}

func (s *sipload) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// report is sipload's output, for failure messages.
func (s *sipload) report() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "output.txt"))
	return fmt.Sprintf("sipload (files in %s, exit %v):\n%s", s.dir, s.err, b)
}

// wait waits for sipload to end by itself and returns its results.
func (s *sipload) wait(t *testing.T) *load.Result {
	t.Helper()
	<-s.done
	if s.err != nil {
		t.Fatalf("sipload failed: %s", s.report())
	}
	b, err := os.ReadFile(filepath.Join(s.dir, "result.json"))
	if err != nil {
		t.Fatalf("sipload's results: %v\n%s", err, s.report())
	}
	var r load.Result
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("sipload's results: %v", err)
	}
	if r.Prepare == nil {
		t.Fatalf("sipload's results have no preparation:\n%s", s.report())
	}
	return &r
}
