package ng

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/pinhole-sip/pinhole/slowpath/media/bencode"
)

// Sentinel errors a caller decides on (docs/media.md: media.on_down).
var (
	// ErrUnavailable: no instance is up, or the instance that holds the
	// call is down. Nothing was sent.
	ErrUnavailable = errors.New("ng: no rtpengine available")
	// ErrTimeout: the instance did not answer the command or any of its
	// retransmissions. The instance is marked down.
	ErrTimeout = errors.New("ng: rtpengine did not answer")
	// ErrClosed: the client was closed while the command waited.
	ErrClosed = errors.New("ng: client closed")
	// ErrBadReply: the reply could not be decoded or is not a dictionary
	// with a result.
	ErrBadReply = errors.New("ng: malformed reply")
)

// CommandError is rtpengine's own refusal: result "error" and its reason.
type CommandError struct {
	Command string
	Reason  string
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("ng: rtpengine refused %s: %s", e.Command, e.Reason)
}

// Options are the optional keys of offer and answer that pinhole uses; the
// names and values are rtpengine's (docs/media.md lists them). Zero values
// are left out of the command.
type Options struct {
	// ICE: remove, force, default, force-relay, optional.
	ICE string
	// DTLS: off, passive, active.
	DTLS string
	// TransportProtocol the SDP sent on should use, e.g. RTP/AVP or
	// UDP/TLS/RTP/SAVPF: rtpengine bridges between the two sides.
	TransportProtocol string
	// ReceivedFrom is the address the SIP message came from; with the
	// "SIP-source-address" flag rtpengine uses it instead of the SDP's
	// c= address, which behind NAT is a private one.
	ReceivedFrom netip.Addr
	// Flags such as "SIP-source-address", "trust-address", "symmetric".
	Flags []string
	// Replace: "origin", "session-connection".
	Replace []string
	// RTCPMux: "offer", "demux", "accept", "reject", "require".
	RTCPMux []string
	// Extra keys, sent as they are; they win over the fields above.
	Extra map[string]any
}

func (o *Options) apply(d map[string]any) {
	if o == nil {
		return
	}
	if o.ICE != "" {
		d["ICE"] = o.ICE
	}
	if o.DTLS != "" {
		d["DTLS"] = o.DTLS
	}
	if o.TransportProtocol != "" {
		d["transport-protocol"] = o.TransportProtocol
	}
	if o.ReceivedFrom.IsValid() {
		family := "IP4"
		if o.ReceivedFrom.Unmap().Is6() {
			family = "IP6"
		}
		d["received-from"] = []string{family, o.ReceivedFrom.Unmap().String()}
	}
	if len(o.Flags) > 0 {
		d["flags"] = o.Flags
	}
	if len(o.Replace) > 0 {
		d["replace"] = o.Replace
	}
	if len(o.RTCPMux) > 0 {
		d["rtcp-mux"] = o.RTCPMux
	}
	for k, v := range o.Extra {
		d[k] = v
	}
}

// Reply is a decoded reply dictionary.
type Reply map[string]any

// String returns the byte-string value of key, "" when absent or not a string.
func (r Reply) String(key string) string {
	s, _ := r[key].(string)
	return s
}

// Int returns the integer value of key, 0 when absent or not an integer.
func (r Reply) Int(key string) int64 {
	n, _ := r[key].(int64)
	return n
}

// Dict returns the dictionary value of key, nil when absent or not one.
func (r Reply) Dict(key string) Reply {
	d, _ := r[key].(map[string]any)
	return d
}

// List returns the list value of key, nil when absent or not a list.
func (r Reply) List(key string) []any {
	l, _ := r[key].([]any)
	return l
}

// Stats are one direction's counters as query reports them.
type Stats struct {
	Packets, Bytes, Errors int64
}

// Totals reads a query reply's call-wide RTP and RTCP counters.
func (r Reply) Totals() (rtp, rtcp Stats) {
	t := r.Dict("totals")
	read := func(d Reply) Stats {
		return Stats{Packets: d.Int("packets"), Bytes: d.Int("bytes"), Errors: d.Int("errors")}
	}
	return read(t.Dict("RTP")), read(t.Dict("RTCP"))
}

// encode writes one request: cookie, space, dictionary.
func encode(cookie string, cmd map[string]any) ([]byte, error) {
	sdp, _ := cmd["sdp"].(string)
	b := make([]byte, 0, 128+len(cookie)+len(sdp))
	b = append(b, cookie...)
	b = append(b, ' ')
	return bencode.Append(b, map[string]any(cmd))
}

// decodeReply reads one reply's dictionary (the cookie already cut off)
// and turns result "error" into a *CommandError.
func decodeReply(command string, body []byte) (Reply, error) {
	v, err := bencode.Unmarshal(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadReply, err)
	}
	d, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: not a dictionary", ErrBadReply)
	}
	r := Reply(d)
	switch res := r.String("result"); res {
	case "ok", "pong":
		return r, nil
	case "error":
		return r, &CommandError{Command: command, Reason: r.String("error-reason")}
	case "":
		return nil, fmt.Errorf("%w: no result", ErrBadReply)
	default:
		return nil, fmt.Errorf("%w: result %q", ErrBadReply, res)
	}
}
