package load

import (
	"errors"

	"github.com/pinhole-sip/pinhole/bench/hist"
)

// msgKind classifies the messages the generator sends or answers.
type msgKind uint8

const (
	kRegisterInitial msgKind = iota // first REGISTER of a first registration: a 401 is expected
	kRegisterAuth                   // REGISTER answering a challenge
	kRegisterRefresh                // refresh, same Call-ID, next CSeq, cached credentials
	kKeepalive                      // CRLF or STUN keepalive
	kInvite                         // INVITE as caller (with its ACK)
	kBye                            // BYE as caller
	kOptionsIn                      // OPTIONS received (NAT pings) and answered 200
	kInviteIn                       // INVITE received as callee and answered
	kByeIn                          // BYE received as callee and answered
	kFlood                          // flood message from a hostile source
	nKinds
)

var kindNames = [nKinds]string{
	"register_initial", "register_auth", "register_refresh", "keepalive",
	"invite", "bye", "options_in", "invite_in", "bye_in", "flood",
}

// actionKind is what a device does when a stream picks it.
type actionKind uint8

const (
	aRegister  actionKind = iota // first registration: REGISTER, 401, REGISTER with credentials, 200
	aRefresh                     // refresh of an existing registration
	aKeepalive                   // one keepalive
	aCall                        // a call to another device: INVITE … 200, ACK, hold, BYE … 200
	aFlood                       // one flood message
	aIdle                        // nothing (the idle scenario only answers NAT pings)
	nActions
)

var actionNames = [nActions]string{"register", "refresh", "keepalive", "call", "flood", "idle"}

// kindStats counts one message kind. Latency runs from the first
// transmission of a request to its final response, in microseconds.
type kindStats struct {
	Sent          uint64 `json:"sent"`
	Retransmitted uint64 `json:"retransmitted"`
	Provisional   uint64 `json:"provisional"`
	OK            uint64 `json:"ok"`
	Challenged    uint64 `json:"challenged"`
	Failed        uint64 `json:"failed"`
	Timeouts      uint64 `json:"timeouts"`
	Replies       uint64 `json:"replies"` // keepalive pongs, replies to the flood, answered requests
	latency       hist.Histogram
}

// actionStats counts one action kind from start to end (a first
// registration's latency includes its challenge round trip).
type actionStats struct {
	Offered    uint64 `json:"offered"`
	Started    uint64 `json:"started"`
	Busy       uint64 `json:"skipped_busy"` // the device still had a transaction out: offered, not sent
	Succeeded  uint64 `json:"succeeded"`    // answered in time (Config.Deadline)
	Failed     uint64 `json:"failed"`       // refused, timed out, answered late, or not done when the drain ended
	Late       uint64 `json:"late"`         // of Failed: answered, but after the deadline
	Unfinished uint64 `json:"unfinished"`   // of Failed: no outcome by the end of the drain
	latency    hist.Histogram
}

// counters is one set of statistics: the whole measured run, the
// preparation, or one second of the time series.
type counters struct {
	kinds       [nKinds]kindStats
	actions     [nActions]actionStats
	sentMsgs    uint64
	recvMsgs    uint64
	sendErrors  uint64
	refused     uint64 // ECONNREFUSED: nothing listens at the server address
	unparsable  uint64
	unmatched   uint64 // replies for no transaction (late, after a timeout or retransmission)
	finalLat    hist.Histogram
	natPings    uint64 // OPTIONS with a pinhole NAT-ping Call-ID (ph-…)
	keepalivesR uint64
	floodRegs   uint64 // well-formed REGISTERs among the flood
}

func (c *counters) reset() { *c = counters{} }

// countErr counts a datagram the transport could not send or deliver.
func (c *counters) countErr(err error) {
	switch {
	case errors.Is(err, errStranger):
		c.unmatched++
	case errors.Is(err, errTruncated):
		c.unparsable++
	case isRefused(err):
		c.refused++
		c.sendErrors++
	default:
		c.sendErrors++
	}
}

// Latency is a latency summary in microseconds.
type Latency struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean_us"`
	P50   int64   `json:"p50_us"`
	P90   int64   `json:"p90_us"`
	P99   int64   `json:"p99_us"`
	P999  int64   `json:"p999_us"`
	Max   int64   `json:"max_us"`
}

func summarize(h *hist.Histogram) Latency {
	return Latency{Count: h.Count(), Mean: h.Mean(), P50: h.Quantile(0.5), P90: h.Quantile(0.9),
		P99: h.Quantile(0.99), P999: h.Quantile(0.999), Max: h.Max()}
}

// KindResult is one message kind in the results.
type KindResult struct {
	kindStats
	SuccessRatio float64 `json:"success_ratio"` // ok / (ok + failed + timeouts), challenges excluded
	PerSecond    float64 `json:"ok_per_s"`
	Latency      Latency `json:"latency"`
}

// ActionResult is one action kind in the results.
type ActionResult struct {
	actionStats
	PerSecond float64 `json:"succeeded_per_s"`
	Latency   Latency `json:"latency"`
}

// Phase is the statistics of one phase (the preparation or the measured run).
type Phase struct {
	Seconds    float64                 `json:"seconds"`
	SentMsgs   uint64                  `json:"sent_msgs"`
	RecvMsgs   uint64                  `json:"recv_msgs"`
	SendErrors uint64                  `json:"send_errors"`
	Refused    uint64                  `json:"refused"`
	Unparsable uint64                  `json:"unparsable"`
	Unmatched  uint64                  `json:"unmatched"`
	NATPings   uint64                  `json:"nat_pings_answered"`
	Pongs      uint64                  `json:"keepalive_replies"`
	FloodRegs  uint64                  `json:"flood_registers,omitempty"` // well-formed REGISTERs the flood sent
	Kinds      map[string]KindResult   `json:"messages"`
	Actions    map[string]ActionResult `json:"actions"`
	Latency    Latency                 `json:"final_response_latency"`
}

func (c *counters) phase(seconds float64) Phase {
	p := Phase{Seconds: seconds, SentMsgs: c.sentMsgs, RecvMsgs: c.recvMsgs, SendErrors: c.sendErrors,
		Refused: c.refused, Unparsable: c.unparsable, Unmatched: c.unmatched, NATPings: c.natPings,
		Pongs: c.keepalivesR, FloodRegs: c.floodRegs, Kinds: map[string]KindResult{}, Actions: map[string]ActionResult{},
		Latency: summarize(&c.finalLat)}
	for i := range c.kinds {
		k := &c.kinds[i]
		if k.Sent == 0 && k.Replies == 0 {
			continue
		}
		r := KindResult{kindStats: *k, Latency: summarize(&k.latency)}
		if done := k.OK + k.Failed + k.Timeouts; done > 0 {
			r.SuccessRatio = float64(k.OK) / float64(done)
		}
		if seconds > 0 {
			r.PerSecond = float64(k.OK) / seconds
		}
		p.Kinds[kindNames[i]] = r
	}
	for i := range c.actions {
		a := &c.actions[i]
		if a.Offered == 0 {
			continue
		}
		r := ActionResult{actionStats: *a, Latency: summarize(&a.latency)}
		if seconds > 0 {
			r.PerSecond = float64(a.Succeeded) / seconds
		}
		p.Actions[actionNames[i]] = r
	}
	return p
}

// Sample is one second of the time series.
type Sample struct {
	T         float64 `json:"t"` // seconds since the measured run started (negative: preparation)
	Sent      uint64  `json:"sent"`
	Recv      uint64  `json:"recv"`
	OK        uint64  `json:"ok"`
	Failed    uint64  `json:"failed"`
	Timeouts  uint64  `json:"timeouts"`
	Offered   uint64  `json:"offered_actions"`
	Succeeded uint64  `json:"succeeded_actions"`
	Backlog   uint64  `json:"backlog"`
	Busy      int     `json:"devices_in_transaction"`
	P50       int64   `json:"p50_us"`
	P99       int64   `json:"p99_us"`
}

func (c *counters) sample(t float64, backlog uint64, busy int) Sample {
	s := Sample{T: t, Sent: c.sentMsgs, Recv: c.recvMsgs, Backlog: backlog, Busy: busy,
		P50: c.finalLat.Quantile(0.5), P99: c.finalLat.Quantile(0.99)}
	for i := range c.kinds {
		s.OK += c.kinds[i].OK
		s.Failed += c.kinds[i].Failed
		s.Timeouts += c.kinds[i].Timeouts
	}
	for i := range c.actions {
		s.Offered += c.actions[i].Offered
		s.Succeeded += c.actions[i].Succeeded
	}
	return s
}

// Messages returns the statistics of one message kind by its JSON name.
func (p *Phase) Messages(name string) KindResult { return p.Kinds[name] }
