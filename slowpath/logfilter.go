package slowpath

import (
	"context"
	"log/slog"
	"strings"

	"github.com/VictoriaMetrics/metrics"
)

var (
	sipgoParseFailures = metrics.NewCounter(`pinhole_sip_parse_failures_total`)
	sipgoRefAfterClose = metrics.NewCounter(`pinhole_sipgo_ref_after_close_total`)
)

// quietHandler sits between sipgo and pinhole's log. sipgo logs every
// datagram it cannot parse at error level with the whole packet: a flood
// would become a logging storm (docs/architecture.md, "What the libraries
// do and don't do"). Those records are counted instead;
// everything else goes through at sipgo's level, capped at warn-and-above
// unless pinhole runs at debug.
//
// sipgo's "WS ref went negative" and "TCP ref went negative" warnings are
// counted too. They are not a fault: when a connection ends, its reader
// closes it hard, which sets its reference count to zero although
// transactions still hold references; each of those gives its reference
// back when it terminates (Timer J, K or the INVITE's 32 s), taking the
// count below zero, and sipgo warns and closes nothing. A short call whose
// callee tab closed did it once per such transaction, ~32 s later.
type quietHandler struct {
	next slog.Handler
	min  slog.Level
}

func (h quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.next.Enabled(ctx, l)
}

func (h quietHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "failed to parse") {
		sipgoParseFailures.Inc()
		return nil
	}
	if r.Message == "WS ref went negative" || r.Message == "TCP ref went negative" {
		sipgoRefAfterClose.Inc()
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h quietHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return quietHandler{next: h.next.WithAttrs(as), min: h.min}
}

func (h quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{next: h.next.WithGroup(name), min: h.min}
}
