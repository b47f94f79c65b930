package testutil

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// openDaemonLog opens the log a daemon the tests run writes to, kept
// across its restarts (appended to), and marks where this start begins.
func openDaemonLog(t testing.TB, name, path string) *os.File {
	t.Helper()
	out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("open %s log: %v", name, err)
	}
	fmt.Fprintf(out, "=== harness: starting %s at %s\n", name, time.Now().Format(time.RFC3339Nano))
	return out
}

// stopAtCleanup stops a daemon when the test ends and, when the test
// failed, shows the end of its log.
func stopAtCleanup(t testing.TB, name, logPath string, stop func()) {
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("%s log (tail, %s):\n%s", name, logPath, tail(readOr(logPath), 40))
		}
	})
}
