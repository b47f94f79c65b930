package proxy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/slowpath/routesig"
)

// paperBinding is a device behind NAT registered over UDP to unitProxy.
func paperBinding(contact, remote string) location.Binding {
	return location.Binding{
		AOR: "bob@example.com", Contact: contact, Q: 1000, NAT: true,
		Flow: location.Flow{
			Transport: location.TransportUDP,
			Remote:    netip.MustParseAddrPort(remote),
			Local:     unitUDP,
		},
	}
}

// signedBranchFor is the branch p gives the request it forwards for in to
// binding b, built as call.start builds an INVITE's.
func signedBranchFor(t *testing.T, p *Proxy, in *sip.Request, b location.Binding) string {
	t.Helper()
	tg, err := p.bindingTarget(&b)
	if err != nil {
		t.Fatal(err)
	}
	out := p.branchRequest(p.prepare(in, &decision{}), &tg, nil, loopHash(in))
	if !p.signBranch(out, in, &tg, FlowParam(tg.flow)) {
		t.Fatal("branch not signed")
	}
	return out.Via().Params.GetOr("branch", "")
}

// TestSignedBranchDeterministic: the signed branch is the same on two
// proxies holding the same key, for the INVITE and for its CANCEL (which
// repeats the INVITE's top Via, Call-ID, From, CSeq number and
// Request-URI but not its credentials), and differs for every other
// transaction or target (RFC 3261 §8.1.1.7) and under another key.
func TestSignedBranchDeterministic(t *testing.T) {
	const ruri = "sip:bob@example.com"
	bob := paperBinding("sip:bob@192.0.2.1:5999", "203.0.113.1:40001")
	a, _ := unitProxy(t, nil)
	b, _ := unitProxy(t, nil)
	invite := request(t, msg("INVITE", ruri, `Proxy-Authorization: Digest username="alice"`))
	want := signedBranchFor(t, a, invite, bob)

	parts, ok := parseBranch(want)
	if !ok || parts.mac == "" || parts.flow == "" {
		t.Fatalf("branch %q: parsed %+v, %v; want a signed branch with a flow", want, parts, ok)
	}
	if !a.verifyBranch(parts, "c1", "UDP 203.0.113.9:40000") {
		t.Errorf("branch %q does not verify for the caller's hop", want)
	}
	if got := signedBranchFor(t, b, invite, bob); got != want {
		t.Errorf("other proxy, same key: branch %q, want %q", got, want)
	}
	if got := signedBranchFor(t, b, request(t, msg("CANCEL", ruri)), bob); got != want {
		t.Errorf("the INVITE's CANCEL: branch %q, want the INVITE's %q", got, want)
	}

	otherKey, _ := unitProxy(t, func(c *Config) { c.Keys = routesig.NewStatic([routesig.KeySize]byte{8}) })
	differ := map[string]string{
		"other key": signedBranchFor(t, otherKey, invite, bob),
		"other contact": signedBranchFor(t, a, invite,
			paperBinding("sip:bob@192.0.2.1:5998", "203.0.113.1:40001")),
		"other flow": signedBranchFor(t, a, invite,
			paperBinding("sip:bob@192.0.2.1:5999", "203.0.113.1:40002")),
		"other Via branch": signedBranchFor(t, a, request(t, strings.ReplaceAll(msg("INVITE", ruri), "branch=z9hG4bK-1", "branch=z9hG4bK-2")), bob),
		"other sent-by":    signedBranchFor(t, a, request(t, strings.ReplaceAll(msg("INVITE", ruri), "10.0.0.9:5060;branch", "10.0.0.9:5062;branch")), bob),
		"other Call-ID":    signedBranchFor(t, a, request(t, strings.ReplaceAll(msg("INVITE", ruri), "Call-ID: c1", "Call-ID: c2")), bob),
		"other CSeq":       signedBranchFor(t, a, request(t, strings.ReplaceAll(msg("INVITE", ruri), "CSeq: 1 ", "CSeq: 2 ")), bob),
		"other From tag":   signedBranchFor(t, a, request(t, strings.ReplaceAll(msg("INVITE", ruri), "tag=a1", "tag=a2")), bob),
	}
	seen := map[string]string{want: "the INVITE"}
	for name, got := range differ {
		if prev, ok := seen[got]; ok {
			t.Errorf("%s: branch %q, the same as %s's", name, got, prev)
		}
		seen[got] = name
	}
}

// TestSignedBranchLoop: a request that comes back to pinhole under its
// own signed branch is a loop (RFC 3261 §16.3 step 4), with or without
// the credentials the signed loop hash leaves out.
func TestSignedBranchLoop(t *testing.T) {
	p, _ := unitProxy(t, nil)
	bob := paperBinding("sip:bob@192.0.2.1:5999", "203.0.113.1:40001")
	first := request(t, msg("INVITE", "sip:bob@example.com", `Proxy-Authorization: Digest username="alice"`))
	branch := signedBranchFor(t, p, first, bob)
	text := msg("INVITE", "sip:bob@example.com", `Proxy-Authorization: Digest username="alice"`)
	ourVia := "Via: SIP/2.0/UDP edge.example.com:5060;branch=" + branch + "\n"
	back := strings.Replace(text, "Via:", ourVia+"Via:", 1)
	if !p.looped(request(t, back)) {
		t.Errorf("request back under its signed branch not taken for a loop:\n%s", back)
	}
	spiral := strings.Replace(back, "INVITE sip:bob@example.com", "INVITE sip:bob@192.0.2.1:5999", 1)
	if p.looped(request(t, spiral)) {
		t.Errorf("spiral (new Request-URI) taken for a loop")
	}
}
