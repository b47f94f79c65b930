package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/google/go-cmp/cmp"
)

// TestCallThroughNAT: a call between two phones behind NAT. The INVITE
// reaches the callee at the address its packets come from, from the
// proxy's listening socket, with its registered Contact as Request-URI;
// ACK and BYE from either side find the other phone's flow through the
// Record-Route parameters.
func TestCallThroughNAT(t *testing.T) {
	for _, hangup := range []string{"caller", "callee"} {
		t.Run(hangup+" hangs up", func(t *testing.T) {
			tp := startProxy(t, nil)
			alice := newDevice(t, "alice", "sip:alice@192.0.2.2:5998", nil)
			bob := newDevice(t, "bob", "sip:bob@192.0.2.1:5999", answer(50*time.Millisecond))
			tp.loc.add("bob@example.com", bob.binding(tp, 1000))

			inv, tx := alice.invite(tp, "sip:bob@example.com")
			got := bob.expect(sip.INVITE)
			if diff := cmp.Diff("sip:bob@192.0.2.1:5999", got.Recipient.String()); diff != "" {
				t.Errorf("callee's Request-URI (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tp.udp.String(), got.Source()); diff != "" {
				t.Errorf("INVITE source port is not the proxy's listener (-want +got):\n%s", diff)
			}
			if got.CSeq().SeqNo != inv.CSeq().SeqNo {
				t.Errorf("CSeq changed: %d -> %d", inv.CSeq().SeqNo, got.CSeq().SeqNo)
			}
			if n := len(got.GetHeaders("Via")); n != 2 {
				t.Errorf("callee sees %d Via, want 2", n)
			}
			if mf := got.MaxForwards().Val(); mf != 69 {
				t.Errorf("Max-Forwards = %d, want 69", mf)
			}

			rs := responses(t, tx)
			if diff := cmp.Diff([]int{100, 180, 200}, codes(rs)); diff != "" {
				t.Fatalf("caller's responses (-want +got):\n%s", diff)
			}
			ok := rs[2]
			if n := len(ok.GetHeaders("Via")); n != 1 {
				t.Errorf("2xx reaches caller with %d Via, want its own only", n)
			}
			rr := ok.RecordRoute()
			if rr == nil {
				t.Fatal("2xx has no Record-Route")
			}
			for _, p := range []string{"lr", paramFtag, paramCallee, paramCaller} {
				if !rr.Address.UriParams.Has(p) {
					t.Errorf("Record-Route %s lacks %s", rr.Address.String(), p)
				}
			}

			ack := fromCaller(sip.ACK, inv, ok, inv.CSeq().SeqNo)
			if err := alice.cli.WriteRequest(ack); err != nil {
				t.Fatal(err)
			}
			gotAck := bob.expect(sip.ACK)
			if gotAck.Route() != nil {
				t.Errorf("ACK reaches callee with our Route: %s", gotAck.Route().Value())
			}
			if diff := cmp.Diff(tp.udp.String(), gotAck.Source()); diff != "" {
				t.Errorf("ACK source (-want +got):\n%s", diff)
			}

			if hangup == "caller" {
				res := alice.do(fromCaller(sip.BYE, inv, ok, inv.CSeq().SeqNo+1))
				if res.StatusCode != 200 {
					t.Errorf("BYE answered %d", res.StatusCode)
				}
				bye := bob.expect(sip.BYE)
				if bye.Route() != nil {
					t.Errorf("BYE reaches callee with Route %s", bye.Route().Value())
				}
				if diff := cmp.Diff("sip:bob@192.0.2.1:5999", bye.Recipient.String()); diff != "" {
					t.Errorf("BYE Request-URI (-want +got):\n%s", diff)
				}
				return
			}
			res := bob.do(bob.fromCallee(sip.BYE))
			if res.StatusCode != 200 {
				t.Errorf("BYE answered %d", res.StatusCode)
			}
			bye := alice.expect(sip.BYE)
			if diff := cmp.Diff(tp.udp.String(), bye.Source()); diff != "" {
				t.Errorf("BYE source (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCallerCancel: CANCEL before the answer gives the caller 487 and the
// ringing phone a CANCEL.
func TestCallerCancel(t *testing.T) {
	tp := startProxy(t, nil)
	alice := newDevice(t, "alice", "sip:alice@192.0.2.2:5998", nil)
	bob := newDevice(t, "bob", "sip:bob@192.0.2.1:5999", ring)
	tp.loc.add("bob@example.com", bob.binding(tp, 1000))

	inv, tx := alice.invite(tp, "sip:bob@example.com", sip.NewHeader("Reason", `SIP;cause=487;text="hung up"`))
	bob.expect(sip.INVITE)
	waitFor(t, tx, 180)

	cancel := sip.NewRequest(sip.CANCEL, inv.Recipient)
	cancel.AppendHeader(inv.Via().Clone())
	cancel.AppendHeader(sip.HeaderClone(inv.From()))
	cancel.AppendHeader(sip.HeaderClone(inv.To()))
	cancel.AppendHeader(sip.HeaderClone(inv.CallID()))
	cancel.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	cancel.AppendHeader(sip.NewHeader("Reason", `SIP;cause=16;text="normal"`))
	cancel.SetDestination(tp.udp.String())
	if res := alice.do(cancel); res.StatusCode != 200 {
		t.Errorf("CANCEL answered %d", res.StatusCode)
	}
	rs := responses(t, tx)
	if last := rs[len(rs)-1].StatusCode; last != 487 {
		t.Errorf("caller's final response %d, want 487", last)
	}
	got := bob.expect(sip.CANCEL)
	if h := got.GetHeader("Reason"); h == nil || !strings.Contains(h.Value(), "cause=16") {
		t.Errorf("callee's CANCEL lacks the caller's Reason: %v", h)
	}
}

// waitFor reads provisional responses until one with code.
func waitFor(t *testing.T, tx sip.ClientTransaction, code int) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case r := <-tx.Responses():
			if r.StatusCode == code {
				return
			}
			if !r.IsProvisional() {
				t.Fatalf("final %d before %d", r.StatusCode, code)
			}
		case <-timeout:
			t.Fatalf("no %d", code)
		}
	}
}

// TestParallelFork: both phones ring; when one answers, the other gets a
// CANCEL saying the call was completed elsewhere (RFC 3326).
func TestParallelFork(t *testing.T) {
	tp := startProxy(t, nil)
	alice := newDevice(t, "alice", "sip:alice@192.0.2.2:5998", nil)
	desk := newDevice(t, "bob", "sip:bob@192.0.2.1:5999", answer(300*time.Millisecond))
	mobile := newDevice(t, "bob", "sip:bob@192.0.2.3:5997", ring)
	tp.loc.add("bob@example.com", desk.binding(tp, 1000), mobile.binding(tp, 500))

	_, tx := alice.invite(tp, "sip:bob@example.com")
	desk.expect(sip.INVITE)
	mobile.expect(sip.INVITE)
	rs := responses(t, tx)
	if last := rs[len(rs)-1].StatusCode; last != 200 {
		t.Fatalf("caller's responses %v, want a 200 last", codes(rs))
	}
	got := mobile.expect(sip.CANCEL)
	want := `SIP;cause=200;text="Call completed elsewhere"`
	if h := got.GetHeader("Reason"); h == nil || h.Value() != want {
		t.Errorf("CANCEL Reason = %v, want %s", h, want)
	}
	desk.quiet(sip.CANCEL, 200*time.Millisecond)
}

// TestSerialFork: with serial forking the lower q is tried only after the
// higher one failed, by a busy answer or by timer C.
func TestSerialFork(t *testing.T) {
	tests := []struct {
		name   string
		first  func(*device, *sip.Request, sip.ServerTransaction)
		cancel bool // the first phone is cancelled by timer C
	}{
		{name: "busy", first: func(d *device, req *sip.Request, tx sip.ServerTransaction) {
			time.Sleep(300 * time.Millisecond)
			busy(d, req, tx)
		}},
		{name: "no answer", first: silent, cancel: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp := startProxy(t, func(c *Config) {
				c.Forking = ForkSerial
				c.InviteTimeout = 500 * time.Millisecond
			})
			alice := newDevice(t, "alice", "sip:alice@192.0.2.2:5998", nil)
			first := newDevice(t, "bob", "sip:bob@192.0.2.1:5999", tt.first)
			second := newDevice(t, "bob", "sip:bob@192.0.2.3:5997", answer(0))
			tp.loc.add("bob@example.com", first.binding(tp, 1000), second.binding(tp, 500))

			_, tx := alice.invite(tp, "sip:bob@example.com")
			first.expect(sip.INVITE)
			second.quiet(sip.INVITE, 100*time.Millisecond)
			if tt.cancel {
				first.expect(sip.CANCEL)
			}
			second.expect(sip.INVITE)
			rs := responses(t, tx)
			if last := rs[len(rs)-1].StatusCode; last != 200 {
				t.Errorf("caller's responses %v, want a 200 last", codes(rs))
			}
		})
	}
}

// TestBestResponse: with every branch failing the caller gets the best
// final response (RFC 3261 §16.7 step 6).
func TestBestResponse(t *testing.T) {
	tp := startProxy(t, nil)
	alice := newDevice(t, "alice", "sip:alice@192.0.2.2:5998", nil)
	one := newDevice(t, "bob", "sip:bob@192.0.2.1:5999", busy)
	two := newDevice(t, "bob", "sip:bob@192.0.2.3:5997", func(d *device, req *sip.Request, tx sip.ServerTransaction) {
		d.respond(req, tx, 503, "Service Unavailable")
	})
	tp.loc.add("bob@example.com", one.binding(tp, 1000), two.binding(tp, 1000))
	_, tx := alice.invite(tp, "sip:bob@example.com")
	rs := responses(t, tx)
	if last := rs[len(rs)-1].StatusCode; last != 486 {
		t.Errorf("caller's responses %v, want 486 last", codes(rs))
	}
}
