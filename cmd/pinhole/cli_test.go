package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/pinhole-sip/pinhole/bpf"
)

// buildCLI builds this command as the Makefile does, with a version and a
// commit stamped in at link time.
func buildCLI(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pinhole")
	cmd := exec.Command("go", "build", "-ldflags", "-X main.version=v9.9.9-test -X main.commit=0123abcd", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func runCLI(t *testing.T, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("run %v: %v", args, err)
	}
	return o.String(), e.String(), code
}

// TestCommandLine: what a packager's scripts rely on. Both spellings of
// version print the stamped version, the commit, the Go version and the
// embedded BPF object's hash; an unknown flag or argument is refused with
// the usage and status 2 instead of starting a daemon; -check-config lists
// every mistake of a file.
func TestCommandLine(t *testing.T) {
	bin := buildCLI(t)
	for _, args := range [][]string{{"-version"}, {"version"}, {"--version"}} {
		out, errOut, code := runCLI(t, bin, args...)
		if code != 0 {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
		for _, want := range []string{"pinhole v9.9.9-test\n", "commit: 0123abcd\n", "go: " + runtime.Version() + "\n", "bpf object sha256: " + bpf.ObjectSHA256() + "\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("%v printed %q, want it to contain %q", args, out, want)
			}
		}
	}
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(bpf.ObjectSHA256()) {
		t.Errorf("BPF object hash %q is not a SHA-256", bpf.ObjectSHA256())
	}

	for _, args := range [][]string{{"start"}, {"-no-such-flag"}, {"version", "extra"}, {"-config", "x.yaml", "run"}} {
		out, errOut, code := runCLI(t, bin, args...)
		if code != 2 || !strings.Contains(errOut, "usage: pinhole") || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want status 2 and the usage on stderr", args, code, out, errOut)
		}
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("domains: []\nregistrar:\n  min_expires: -5\nstreams:\n  max_per_source: 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runCLI(t, bin, "-check-config", "-config", bad)
	if code != 2 {
		t.Errorf("-check-config of a bad file: exit %d, want 2", code)
	}
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	want := []string{"line 1: invalid configuration: domains", "line 3: invalid configuration: registrar.min_expires", "line 5: invalid configuration: streams.max_per_source"}
	if len(lines) != len(want) {
		t.Fatalf("-check-config printed %d lines, want %d:\n%s", len(lines), len(want), errOut)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], "pinhole: "+bad+": ") || !strings.Contains(lines[i], w) {
			t.Errorf("line %d = %q, want %q", i, lines[i], w)
		}
	}
	if out, errOut, code := runCLI(t, bin, "-check-config"); code != 0 || !strings.Contains(out, "is valid") {
		t.Errorf("-check-config of the embedded default: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
