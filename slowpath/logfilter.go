package slowpath

import (
	"context"
	"log/slog"
	"strings"

	"github.com/VictoriaMetrics/metrics"
)

var sipgoParseFailures = metrics.NewCounter(`pinhole_sip_parse_failures_total`)

// quietHandler sits between sipgo and pinhole's log. sipgo logs every
// datagram it cannot parse at error level with the whole packet: a flood
// would become a logging storm (docs/architecture.md, "What the libraries
// do and don't do"). Those records are counted instead;
// everything else goes through at sipgo's level, capped at warn-and-above
// unless pinhole runs at debug.
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
	return h.next.Handle(ctx, r)
}

func (h quietHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return quietHandler{next: h.next.WithAttrs(as), min: h.min}
}

func (h quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{next: h.next.WithGroup(name), min: h.min}
}
