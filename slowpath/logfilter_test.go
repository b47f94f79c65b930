package slowpath

import (
	"bytes"
	"log/slog"
	"testing"
)

// TestQuietHandler: the sipgo records that would flood or mislead the log
// are counted instead; others pass.
func TestQuietHandler(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(quietHandler{next: slog.NewTextHandler(&out, nil), min: slog.LevelInfo})
	parse, ref := sipgoParseFailures.Get(), sipgoRefAfterClose.Get()
	log.Error("failed to parse", "data", "\x01\x02")
	log.Warn("WS ref went negative", "ip", "192.0.2.1:5060", "ref", -1)
	log.Warn("TCP ref went negative", "ip", "192.0.2.1:5060", "ref", -1)
	if out.Len() != 0 {
		t.Errorf("logged: %s", out.String())
	}
	if sipgoParseFailures.Get() != parse+1 || sipgoRefAfterClose.Get() != ref+2 {
		t.Errorf("counted %d parse failures, %d references after close", sipgoParseFailures.Get()-parse, sipgoRefAfterClose.Get()-ref)
	}
	log.Warn("something else")
	if !bytes.Contains(out.Bytes(), []byte("something else")) {
		t.Error("another warning was swallowed")
	}
}
