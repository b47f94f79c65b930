package ng

import (
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Counters of every client in the process, listed in docs/metrics.md. They
// move once per command, never per media packet: rtpengine forwards the
// media and pinhole never sees it.
var (
	mRetransmissions = metrics.NewCounter(`pinhole_media_ng_retransmissions_total`)
	mLate            = metrics.NewCounter(`pinhole_media_ng_late_replies_total`)
	mMalformed       = metrics.NewCounter(`pinhole_media_ng_malformed_replies_total`)
)

// Results a command is counted under.
const (
	resultOK          = "ok"
	resultError       = "error"       // rtpengine answered result=error
	resultTimeout     = "timeout"     // no answer after every retransmission
	resultUnavailable = "unavailable" // no instance to send it to
	resultBadReply    = "bad_reply"   // an answer that could not be read
	resultCanceled    = "canceled"    // the caller's context ended first
)

// rttBuckets span a loopback rtpengine (~100 µs for a ping) to a command
// that needed every retransmission of a slow one.
var rttBuckets = metrics.ExponentialBuckets(0.0001, 2, 16) // 0.1 ms … 3.3 s

var rtt = map[string]*metrics.PrometheusHistogram{}

func init() {
	for _, c := range []string{cmdPing, cmdOffer, cmdAnswer, cmdDelete, cmdQuery} {
		rtt[c] = metrics.NewPrometheusHistogramExt(`pinhole_media_ng_rtt_seconds{command="`+c+`"}`, rttBuckets)
	}
}

func countCommand(command, result string) {
	metrics.GetOrCreateCounter(`pinhole_media_ng_commands_total{command="` + command + `",result="` + result + `"}`).Inc()
}

func observeRTT(command string, d time.Duration) {
	if h := rtt[command]; h != nil {
		h.Update(d.Seconds())
	}
}
