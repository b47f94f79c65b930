package bpf

// Verdict is what xdp_sip decided about one frame; it indexes the counters
// map. The values mirror enum verdict in include/pinhole.h.
type Verdict uint32

const (
	VerdictPass             Verdict = iota // not SIP-port UDP: untouched
	VerdictSIPPassed                       // SIP request or response handed to the stack
	VerdictKeepalivePassed                 // keepalive or STUN left to userspace
	VerdictCRLFAnswered                    // "\r\n\r\n" answered with "\r\n"
	VerdictSTUNAnswered                    // STUN Binding Request answered
	VerdictFillerDropped                   // CRLF/NUL/space filler of up to 4 bytes
	VerdictNATPingSwallowed                // reply to our own OPTIONS ping
	VerdictRateLimited                     // request over its source's token bucket
	VerdictBlocklisted                     // source in the blocklist
	VerdictScanner                         // User-Agent matched a signature
	VerdictJunk                            // neither keepalive, STUN nor SIP
	VerdictEmpty                           // zero-length UDP payload
	VerdictMalformed                       // IP/UDP lengths disagree with the frame
	numVerdicts
)

var verdictNames = [numVerdicts]string{
	"pass", "sip_passed", "keepalive_passed", "crlf_answered", "stun_answered",
	"filler_dropped", "natping_swallowed", "ratelimited", "blocklisted",
	"scanner", "junk", "empty", "malformed",
}

// String returns the verdict's metric label, e.g. "crlf_answered".
func (v Verdict) String() string {
	if v < numVerdicts {
		return verdictNames[v]
	}
	return "unknown"
}

// Verdicts lists every verdict, in counter order.
func Verdicts() []Verdict {
	vs := make([]Verdict, numVerdicts)
	for i := range vs {
		vs[i] = Verdict(i)
	}
	return vs
}
