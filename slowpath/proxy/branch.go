package proxy

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/slowpath/routesig"
)

// pinhole's branch parameter (the one in its own Via of a forwarded
// request) has one of two shapes:
//
//	z9hG4bK.RANDOM[.LOOP]             unsigned
//	z9hG4bK.RANDOM.[LOOP].[FLOW].MAC  signed
//
// RANDOM is sipgo's random token (RFC 3261 §8.1.1.7 uniqueness) in an
// unsigned branch; in a signed one it is a keyed hash (branchToken) of
// what identifies the received transaction and the target, unique as
// RFC 3261 §16.11 makes a stateless proxy's branch, so that the CANCEL of
// a call whose INVITE another pinhole relayed can be sent with the
// INVITE's branch (cancel.go). LOOP is the received request's loop hash
// (loop.go; cancelLoopHash in a signed branch, empty in one that has
// none), FLOW the callee's flow parameter (FlowParam) when the branch went
// to a device over its flow, and MAC a route signature (package routesig)
// over all of it, the request's Call-ID and the hop its responses go back
// to (the next Via's address). A signed branch lets any pinhole holding
// the deployment's route key forward the branch's responses without the
// client transaction that sent it (stray.go): the standby of an
// active/standby pair, for a call ringing when the active box died.

// branchCookie starts every branch sipgo's GenerateBranchN makes.
const branchCookie = sip.RFC3261BranchMagicCookie + "."

// sigBranch separates the branch MAC from pinhole's other signatures
// (sign.go): the same values signed for a Record-Route never verify here.
const sigBranch = "br"

// sigToken separates the token of a signed branch (branchToken) from the
// branch MAC and every other signature: a token never verifies as a MAC.
const sigToken = "bt"

// maxBranchLen bounds what parseBranch looks at: a signed branch with an
// IPv6 flow is under 120 characters.
const maxBranchLen = 160

// branchParts is a branch split into its fields; see the format above.
type branchParts struct {
	base string // cookie, random and loop: what the unsigned branch was
	loop string
	flow string
	mac  string // "" for an unsigned branch
}

// parseBranch splits a branch pinhole wrote. ok is false for any other.
// It checks the shape only; verifyBranch checks the MAC.
func parseBranch(s string) (b branchParts, ok bool) {
	if len(s) > maxBranchLen || !strings.HasPrefix(s, branchCookie) {
		return b, false
	}
	f := strings.Split(s[len(branchCookie):], string(loopSep))
	if !isAlnum(f[0]) || f[0] == "" {
		return b, false
	}
	switch len(f) {
	case 1:
		b.base = s
	case 2:
		b.base, b.loop = s, f[1]
	case 4:
		b.loop, b.flow, b.mac = f[1], f[2], f[3]
		b.base = s[:len(branchCookie)+len(f[0])]
		if b.loop != "" {
			b.base += string(loopSep) + b.loop
		}
		if len(b.mac) != routesig.Len || !isAlnum(b.mac) {
			return branchParts{}, false
		}
		if b.flow != "" {
			if _, err := ParseFlowParam(b.flow); err != nil {
				return branchParts{}, false
			}
		}
	default:
		return branchParts{}, false
	}
	if b.loop != "" && (len(b.loop) != 16 || !isHex(b.loop)) {
		return branchParts{}, false
	}
	return b, true
}

// String is the branch as it goes on the wire.
func (b branchParts) String() string {
	if b.mac == "" {
		return b.base
	}
	if b.loop == "" {
		return b.base + string(loopSep) + string(loopSep) + b.flow + string(loopSep) + b.mac
	}
	return b.base + string(loopSep) + b.flow + string(loopSep) + b.mac
}

// branchMAC is the MAC of a signed branch: its fields, the request's
// Call-ID and where the branch's responses go next (viaHop of the Via
// below pinhole's).
func (p *Proxy) branchMAC(b branchParts, callID, hop string) string {
	return p.keys.Sign(sigBranch, b.base, b.flow, callID, hop)
}

// branchToken is the RANDOM part of a signed branch: a MAC, under the
// route key, of what identifies the received transaction — its top Via
// as sent (transport, sent-by, branch), Call-ID, From tag, CSeq number and
// Request-URI, all of which its CANCEL repeats (RFC 3261 §9.1) — and of
// the target: the forwarded Request-URI, the transport, destination and
// socket it leaves by, and the callee's flow. Different received
// transactions or different targets give different tokens (§8.1.1.7);
// the same INVITE routed to the same target gives the same token on
// every pinhole holding the key, and a sender without the key can
// neither predict nor choose it.
func (p *Proxy) branchToken(in, out *sip.Request, t *target, flow string) string {
	var transport, host, port, branch, cseq, ftag string
	if v := in.Via(); v != nil {
		transport, host, port = v.Transport, v.Host, strconv.Itoa(v.Port)
		branch = v.Params.GetOr("branch", "")
	}
	if cs := in.CSeq(); cs != nil {
		cseq = strconv.FormatUint(uint64(cs.SeqNo), 10)
	}
	if f := in.From(); f != nil {
		ftag = f.Params.GetOr("tag", "")
	}
	var laddr string
	if t.out != nil {
		laddr = t.out.Host + ":" + strconv.Itoa(t.out.Port)
	}
	return p.keys.Sign(sigToken, transport, host, port, branch, callID(in), ftag, cseq,
		in.Recipient.String(), out.Recipient.String(), t.transport, t.dest, laddr, flow)
}

// signBranch gives out, the request for target t built from the received
// request in, a signed branch in place of its random one; flow is the
// callee's flow parameter or "". It reports false, leaving out unsigned,
// when the Via below ours gives no address to return to.
func (p *Proxy) signBranch(out, in *sip.Request, t *target, flow string) bool {
	vias := out.GetHeaders("Via")
	if len(vias) < 2 {
		return false
	}
	top, ok1 := vias[0].(*sip.ViaHeader)
	next, ok2 := vias[1].(*sip.ViaHeader)
	if !ok1 || !ok2 {
		return false
	}
	hop, ok := viaHop(next)
	if !ok {
		return false
	}
	b := branchParts{loop: cancelLoopHash(in), flow: flow}
	b.base = branchCookie + p.branchToken(in, out, t, flow) + string(loopSep) + b.loop
	b.mac = p.branchMAC(b, callID(out), hop)
	top.Params.Add("branch", b.String())
	return true
}

// verifyBranch reports whether b was signed by a pinhole holding this
// deployment's route key, for this Call-ID and this next hop.
func (p *Proxy) verifyBranch(b branchParts, callID, hop string) bool {
	return b.mac != "" && p.keys.Verify(b.mac, sigBranch, b.base, b.flow, callID, hop)
}

// viaHop is where a response goes after the element that wrote v
// (RFC 3261 §18.2.2 with RFC 3581 §4): its transport, the received
// address or the sent-by host, and the rport or sent-by port, as
// "UDP 192.0.2.7:5060". ok is false when that is no IP address (a name
// would need DNS, which pinhole never asks to answer someone).
func viaHop(v *sip.ViaHeader) (string, bool) {
	host := strings.Trim(v.Host, "[]")
	if r, ok := v.Params.Get("received"); ok && r != "" {
		host = r
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return "", false
	}
	tr := strings.ToUpper(v.Transport)
	port := v.Port
	if port == 0 {
		port = int(sip.DefaultPort(tr))
	}
	if rp, ok := v.Params.Get("rport"); ok && rp != "" {
		n, err := strconv.Atoi(rp)
		if err != nil {
			return "", false
		}
		port = n
	}
	if port <= 0 || port > 65535 || tr == "" {
		return "", false
	}
	return tr + " " + netip.AddrPortFrom(addr.Unmap(), uint16(port)).String(), true
}

func isAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
