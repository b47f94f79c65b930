package ng

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/slowpath/media/bencode"
)

// peer is a scripted ng responder on loopback, for the client's own
// behaviour (retransmission, failover, stickiness); the real rtpengine is
// driven by the integration tests in internal/e2e.
type peer struct {
	t    *testing.T
	conn *net.UDPConn

	mu       sync.Mutex
	received []string // cookie and command of every datagram, in order
	drop     int      // datagrams still to ignore
	silent   bool     // ignore everything
	reply    func(cmd map[string]any) map[string]any
}

func newPeer(t *testing.T) *peer {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{t: t, conn: conn, reply: func(cmd map[string]any) map[string]any {
		if cmd["command"] == "ping" {
			return map[string]any{"result": "pong"}
		}
		return map[string]any{"result": "ok", "sdp": "relayed:" + fmt.Sprint(cmd["sdp"])}
	}}
	done := make(chan struct{})
	t.Cleanup(func() { conn.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, maxReply)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			cookie, body, _ := bytes.Cut(buf[:n], []byte{' '})
			v, err := bencode.Unmarshal(body)
			if err != nil {
				t.Errorf("peer got an undecodable command %q: %v", buf[:n], err)
				continue
			}
			cmd := v.(map[string]any)
			p.mu.Lock()
			p.received = append(p.received, string(cookie)+" "+fmt.Sprint(cmd["command"]))
			skip := p.silent || p.drop > 0
			if p.drop > 0 {
				p.drop--
			}
			var out []byte
			if !skip {
				out, _ = bencode.Marshal(p.reply(cmd))
			}
			p.mu.Unlock()
			if skip {
				continue
			}
			_, _ = conn.WriteToUDPAddrPort(append([]byte(string(cookie)+" "), out...), from)
		}
	}()
	return p
}

func (p *peer) addr() netip.AddrPort { return p.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (p *peer) log() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.received...)
}

func (p *peer) set(f func(p *peer)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = 50 * time.Millisecond
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestOfferAnswerDelete(t *testing.T) {
	p := newPeer(t)
	var got []map[string]any
	p.set(func(p *peer) {
		p.reply = func(cmd map[string]any) map[string]any {
			got = append(got, cmd)
			return map[string]any{"result": "ok", "sdp": "v=0 from rtpengine"}
		}
	})
	c := newClient(t, Config{Instances: []Instance{{Addr: p.addr()}}})
	ctx := context.Background()
	sdp, err := c.Offer(ctx, "call-1", "ft", []byte("v=0"), &Options{ICE: "force", DTLS: "passive", TransportProtocol: "UDP/TLS/RTP/SAVPF",
		ReceivedFrom: netip.MustParseAddr("192.0.2.7"), Flags: []string{"SIP-source-address"}, Replace: []string{"origin"}})
	if err != nil || string(sdp) != "v=0 from rtpengine" {
		t.Fatalf("Offer = %q, %v", sdp, err)
	}
	if _, err := c.Answer(ctx, "call-1", "ft", "tt", []byte("v=0"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete(ctx, "call-1", "ft", ""); err != nil {
		t.Fatal(err)
	}
	want := []map[string]any{
		{"command": "offer", "call-id": "call-1", "from-tag": "ft", "sdp": "v=0", "ICE": "force", "DTLS": "passive",
			"transport-protocol": "UDP/TLS/RTP/SAVPF", "received-from": []any{"IP4", "192.0.2.7"},
			"flags": []any{"SIP-source-address"}, "replace": []any{"origin"}},
		{"command": "answer", "call-id": "call-1", "from-tag": "ft", "to-tag": "tt", "sdp": "v=0"},
		{"command": "delete", "call-id": "call-1", "from-tag": "ft"},
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("commands rtpengine received (-want +got):\n%s", d)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.calls); n != 0 {
		t.Errorf("%d calls still tracked after delete", n)
	}
}

// A lost reply is asked for again with the same cookie: rtpengine answers
// a known cookie from its cache instead of running the command twice.
func TestRetransmitSameCookie(t *testing.T) {
	p := newPeer(t)
	p.set(func(p *peer) { p.drop = 2 })
	c := newClient(t, Config{Instances: []Instance{{Addr: p.addr()}}, Timeout: 30 * time.Millisecond, Retries: 2})
	before := mRetransmissions.Get()
	if _, err := c.Offer(context.Background(), "c", "f", []byte("v=0"), nil); err != nil {
		t.Fatalf("third try should have been answered: %v", err)
	}
	log := p.log()
	if len(log) != 3 || log[0] != log[1] || log[1] != log[2] {
		t.Errorf("datagrams received: %q; want the same cookie and command three times", log)
	}
	if n := mRetransmissions.Get() - before; n != 2 {
		t.Errorf("retransmissions counted: %d, want 2", n)
	}
}

// An instance that never answers costs (Retries+1)×Timeout, is marked
// down, and the next command fails at once without sending; a ping that
// is answered puts it back.
func TestTimeoutMarksDownPingMarksUp(t *testing.T) {
	p := newPeer(t)
	p.set(func(p *peer) { p.silent = true })
	c := newClient(t, Config{Instances: []Instance{{Addr: p.addr()}}, Timeout: 20 * time.Millisecond, Retries: 1})
	start := time.Now()
	_, err := c.Offer(context.Background(), "c", "f", []byte("v=0"), nil)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Offer to a silent instance: %v, want ErrTimeout", err)
	}
	if el := time.Since(start); el < 40*time.Millisecond || el > 2*time.Second {
		t.Errorf("timed out after %s, want about 2×20ms", el)
	}
	if c.Instances()[0].Up {
		t.Error("instance still up after a timeout")
	}
	sent := len(p.log())
	if _, err := c.Offer(context.Background(), "c2", "f", []byte("v=0"), nil); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Offer with every instance down: %v, want ErrUnavailable", err)
	}
	if _, err := c.Answer(context.Background(), "c", "f", "t", []byte("v=0"), nil); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Answer for a call on a down instance: %v, want ErrUnavailable", err)
	}
	if n := len(p.log()); n != sent {
		t.Errorf("%d datagrams sent to a down instance", n-sent)
	}
	p.set(func(p *peer) { p.silent = false })
	if err := c.Ping(context.Background(), p.addr()); err != nil {
		t.Fatal(err)
	}
	if !c.Instances()[0].Up {
		t.Error("instance still down after an answered ping")
	}
}

func TestPingerFindsInstanceBack(t *testing.T) {
	p := newPeer(t)
	p.set(func(p *peer) { p.silent = true })
	c := newClient(t, Config{Instances: []Instance{{Addr: p.addr()}}, Timeout: 20 * time.Millisecond, PingInterval: 30 * time.Millisecond})
	waitFor(t, "the pinger marks the silent instance down", func() bool { return !c.Instances()[0].Up })
	p.set(func(p *peer) { p.silent = false })
	waitFor(t, "the pinger marks the instance up again", func() bool { return c.Instances()[0].Up })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCommandError(t *testing.T) {
	p := newPeer(t)
	p.set(func(p *peer) {
		p.reply = func(map[string]any) map[string]any {
			return map[string]any{"result": "error", "error-reason": "Unknown call-id"}
		}
	})
	c := newClient(t, Config{Instances: []Instance{{Addr: p.addr()}}})
	_, err := c.Answer(context.Background(), "nope", "f", "t", []byte("v=0"), nil)
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Reason != "Unknown call-id" || ce.Command != "answer" {
		t.Fatalf("Answer = %v, want a CommandError with rtpengine's reason", err)
	}
	if !c.Instances()[0].Up {
		t.Error("a refusal marked the instance down; it answered")
	}
}

func TestBadReply(t *testing.T) {
	p := newPeer(t)
	p.set(func(p *peer) {
		p.reply = func(map[string]any) map[string]any { return map[string]any{"no-result": "x"} }
	})
	c := newClient(t, Config{Instances: []Instance{{Addr: p.addr()}}})
	if _, err := c.Query(context.Background(), "c"); !errors.Is(err, ErrBadReply) {
		t.Fatalf("Query = %v, want ErrBadReply", err)
	}
}

// A call stays on the instance its offer went to, even when the hash would
// now pick another; new calls spread by weight; a down instance gets none.
func TestStickyAndWeighted(t *testing.T) {
	a, b := newPeer(t), newPeer(t)
	c := newClient(t, Config{Instances: []Instance{{Addr: a.addr(), Weight: 3}, {Addr: b.addr(), Weight: 1}}})
	ctx := context.Background()
	const calls = 400
	onA := 0
	for i := range calls {
		in, err := c.instanceFor(fmt.Sprintf("call-%d", i), true)
		if err != nil {
			t.Fatal(err)
		}
		if in.addr == a.addr() {
			onA++
		}
	}
	// Weight 3:1 gives A 75%; 400 calls put it within ±10% at any sane hash.
	if onA < calls*65/100 || onA > calls*85/100 {
		t.Errorf("%d of %d calls on the weight-3 instance, want about 75%%", onA, calls)
	}

	if _, err := c.Offer(ctx, "stuck", "f", []byte("v=0"), nil); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	first := c.calls["stuck"].in
	c.mu.Unlock()
	other := c.instances[0]
	if other == first {
		other = c.instances[1]
	}
	other.markDown()
	first.markDown()
	first.markUp()
	other.markUp()
	for range 3 {
		if _, err := c.Answer(ctx, "stuck", "f", "t", []byte("v=0"), nil); err != nil {
			t.Fatal(err)
		}
	}
	firstPeer, otherPeer := a, b
	if first.addr == b.addr() {
		firstPeer, otherPeer = b, a
	}
	if n := len(otherPeer.log()); n != 0 {
		t.Errorf("%d commands of the call went to the instance that does not hold it", n)
	}
	if n := len(firstPeer.log()); n != 4 {
		t.Errorf("%d commands reached the call's instance, want 4", n)
	}

	c.instances[0].markDown()
	for i := range 50 {
		in, err := c.instanceFor(fmt.Sprintf("new-%d", i), true)
		if err != nil || in != c.instances[1] {
			t.Fatalf("new call with A down went to %v, %v", in, err)
		}
	}
}

func TestExpire(t *testing.T) {
	p := newPeer(t)
	c := newClient(t, Config{Instances: []Instance{{Addr: p.addr()}}})
	if _, err := c.instanceFor("old", true); err != nil {
		t.Fatal(err)
	}
	c.expire(time.Now().Add(stickyTTL - time.Minute))
	if len(c.calls) != 1 {
		t.Fatal("call forgotten before stickyTTL")
	}
	c.expire(time.Now().Add(stickyTTL + time.Minute))
	if len(c.calls) != 0 {
		t.Fatal("call kept after stickyTTL")
	}
}

func TestContextCanceled(t *testing.T) {
	p := newPeer(t)
	p.set(func(p *peer) { p.silent = true })
	c := newClient(t, Config{Instances: []Instance{{Addr: p.addr()}}, Timeout: time.Second, Retries: 5})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := c.Offer(ctx, "c", "f", []byte("v=0"), nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Offer = %v, want the context's deadline", err)
	}
	if !c.Instances()[0].Up {
		t.Error("the caller giving up marked the instance down")
	}
}

func TestTotals(t *testing.T) {
	v, err := bencode.Unmarshal([]byte("d6:result2:ok6:totalsd3:RTPd5:bytesi800e6:errorsi0e7:packetsi5ee4:RTCPd5:bytesi0e6:errorsi0e7:packetsi0eeee"))
	if err != nil {
		t.Fatal(err)
	}
	rtp, rtcp := Reply(v.(map[string]any)).Totals()
	if rtp != (Stats{Packets: 5, Bytes: 800}) || rtcp != (Stats{}) {
		t.Errorf("Totals = %+v, %+v", rtp, rtcp)
	}
}

func TestCloseEndsCommandsInFlight(t *testing.T) {
	p := newPeer(t)
	p.set(func(p *peer) { p.silent = true })
	c, err := New(Config{Instances: []Instance{{Addr: p.addr()}}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Offer(context.Background(), "c", "f", []byte("v=0"), nil)
		errc <- err
	}()
	waitFor(t, "the offer reached the peer", func() bool { return len(p.log()) > 0 })
	c.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Offer in flight at Close: %v, want ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close left a command waiting for its 5s timeout")
	}
}
