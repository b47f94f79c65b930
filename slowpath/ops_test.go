package slowpath

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/emiago/sipgo/sip"
	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/slowpath/dispatch"
)

// status is the status line of a response, "" for none.
func status(res []byte) string {
	line, _, _ := bytes.Cut(res, []byte("\r\n"))
	return string(line)
}

func TestDrainRefusesNewTransactions(t *testing.T) {
	s, addr := startServer(t, "")
	c := client(t)
	local := c.LocalAddr().String()
	if got := status(exchange(t, c, addr, register("alice", "d-1", 1, local), 5*time.Second)); got != "SIP/2.0 200 OK" {
		t.Fatalf("REGISTER before the drain: %q", got)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := s.Drain(ctx); err != nil {
		t.Fatalf("Drain with nothing in flight: %v", err)
	}
	res := exchange(t, c, addr, register("bob", "d-2", 1, local), 5*time.Second)
	if got := status(res); got != "SIP/2.0 503 Service Unavailable" || !bytes.Contains(res, []byte("Retry-After: 30")) {
		t.Errorf("REGISTER while draining:\n%s\nwant 503 with Retry-After: 30", res)
	}
	if len(s.Store().Lookup("bob@example.com")) != 0 {
		t.Error("a REGISTER refused while draining left a binding")
	}
	if got := len(s.Store().Lookup("alice@example.com")); got != 1 {
		t.Errorf("alice has %d bindings after the drain, want 1", got)
	}
}

func TestOpensTransaction(t *testing.T) {
	tests := []struct {
		method sip.RequestMethod
		toTag  bool
		want   bool
	}{
		{sip.INVITE, false, true},
		{sip.REGISTER, false, true},
		{sip.INVITE, true, false}, // re-INVITE
		{sip.BYE, true, false},
		{sip.ACK, false, false},
		{sip.CANCEL, false, false},
	}
	for _, tt := range tests {
		req := sip.NewRequest(tt.method, sip.Uri{User: "bob", Host: "example.com"})
		to := &sip.ToHeader{Address: sip.Uri{User: "bob", Host: "example.com"}, Params: sip.NewParams()}
		if tt.toTag {
			to.Params.Add("tag", "x")
		}
		req.AppendHeader(to)
		if got := opensTransaction(req); got != tt.want {
			t.Errorf("%s (to tag %v): opensTransaction = %v, want %v", tt.method, tt.toTag, got, tt.want)
		}
	}
}

// TestDrainWaitsForInFlight: Drain returns only once a handler running
// when it began has returned, and says so when its context ends first.
func TestDrainWaitsForInFlight(t *testing.T) {
	s, _ := startServer(t, "")
	release := make(chan struct{})
	h := s.observe(sip.OPTIONS, func(*sip.Request, sip.ServerTransaction) { <-release })
	var wg sync.WaitGroup
	wg.Go(func() { h(sip.NewRequest(sip.OPTIONS, sip.Uri{Host: "example.com"}), nil) })
	deadline := time.Now().Add(5 * time.Second)
	for s.InFlight() != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	short, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := s.Drain(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Drain with a handler running: %v, want a deadline error", err)
	}
	close(release)
	wg.Wait()
	ctx, cancel2 := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel2()
	if err := s.Drain(ctx); err != nil {
		t.Errorf("Drain after the handler returned: %v", err)
	}
}

// TestDrainWaitsForTrailingInDialog: a call answered during the stop
// ends its INVITE's handler, and its BYE arrives just after, when nothing
// is in flight; Drain's quiet period keeps the server up for it, and the
// BYE is handled rather than refused.
func TestDrainWaitsForTrailingInDialog(t *testing.T) {
	s, _ := startServer(t, "")
	release := make(chan struct{})
	invite := s.observe(sip.INVITE, func(*sip.Request, sip.ServerTransaction) { <-release })
	handled := make(chan struct{})
	bye := s.observe(sip.BYE, func(*sip.Request, sip.ServerTransaction) {
		time.Sleep(200 * time.Millisecond)
		close(handled)
	})
	go invite(sip.NewRequest(sip.INVITE, sip.Uri{User: "bob", Host: "example.com"}), nil)
	for s.InFlight() != 1 {
		time.Sleep(time.Millisecond)
	}
	drained := make(chan error, 1)
	go func() { drained <- s.Drain(t.Context()) }()
	time.Sleep(50 * time.Millisecond)
	close(release) // the callee answered: the INVITE's handler returns
	time.Sleep(drainQuiet / 2)
	req := sip.NewRequest(sip.BYE, sip.Uri{Host: "example.com"})
	to := &sip.ToHeader{Address: sip.Uri{Host: "example.com"}, Params: sip.NewParams()}
	to.Params.Add("tag", "callee")
	req.AppendHeader(to)
	bye(req, nil)
	select {
	case <-handled:
	default:
		t.Fatal("the in-dialog BYE was refused during the drain")
	}
	select {
	case err := <-drained:
		t.Fatalf("Drain returned (%v) with the BYE just finished, want it to wait drainQuiet", err)
	case <-time.After(drainQuiet / 2):
	}
	select {
	case err := <-drained:
		if err != nil {
			t.Errorf("Drain: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Drain did not return after the quiet period")
	}
}

// TestDrainIdleReturnsAtOnce: with nothing in flight and nothing handled
// during the drain, a stop waits for nothing.
func TestDrainIdleReturnsAtOnce(t *testing.T) {
	s, _ := startServer(t, "")
	start := time.Now()
	if err := s.Drain(t.Context()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > drainQuiet/2 {
		t.Errorf("an idle Drain took %v", d)
	}
}

func TestRemoveBindings(t *testing.T) {
	s, addr := startServer(t, "")
	c1, c2 := client(t), client(t)
	for i, c := range []*net.UDPConn{c1, c2} {
		if got := status(exchange(t, c, addr, register("alice", fmt.Sprintf("rm-%d", i), 1, c.LocalAddr().String()), 5*time.Second)); got != "SIP/2.0 200 OK" {
			t.Fatalf("REGISTER %d: %q", i, got)
		}
	}
	one := "sip:alice@" + c1.LocalAddr().String()
	removed, err := s.RemoveBindings("alice@example.com", one)
	if err != nil || len(removed) != 1 || removed[0].Contact != one {
		t.Fatalf("RemoveBindings(one contact) = %+v, %v", removed, err)
	}
	if got := s.Store().Lookup("alice@example.com"); len(got) != 1 || got[0].Contact == one {
		t.Errorf("after removing one contact: %+v", got)
	}
	if _, err := s.RemoveBindings("alice@example.com", "sip:nobody@192.0.2.1"); !errors.Is(err, ErrNoBinding) {
		t.Errorf("RemoveBindings(unknown contact): %v, want ErrNoBinding", err)
	}
	if removed, err := s.RemoveBindings("alice@example.com", ""); err != nil || len(removed) != 1 {
		t.Errorf("RemoveBindings(all) = %d, %v; want 1 removed", len(removed), err)
	}
	if _, err := s.RemoveBindings("alice@example.com", ""); !errors.Is(err, ErrNoBinding) {
		t.Errorf("RemoveBindings of an empty AOR: %v, want ErrNoBinding", err)
	}
}

// TestReloadLimits: a reload that lowers limits.max_headers refuses a
// request the old limit let through, with no restart and the binding kept.
func TestReloadLimits(t *testing.T) {
	s, addr := startServer(t, "")
	c := client(t)
	local := c.LocalAddr().String()
	padded := func(callID string, cseq int) []byte {
		msg := register("carol", callID, cseq, local)
		extra := strings.Repeat("X-Pad: 1\r\n", 20)
		return bytes.Replace(msg, []byte("Content-Length: 0\r\n"), []byte(extra+"Content-Length: 0\r\n"), 1)
	}
	if got := status(exchange(t, c, addr, padded("lim", 1), 5*time.Second)); got != "SIP/2.0 200 OK" {
		t.Fatalf("REGISTER with 29 headers before reload: %q", got)
	}
	next := reparse(t, s, "limits:\n  max_headers: 16\n")
	applied, err := s.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"limits"}, applied); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
	if got := status(exchange(t, c, addr, padded("lim", 2), 5*time.Second)); !strings.HasPrefix(got, "SIP/2.0 4") && !strings.HasPrefix(got, "SIP/2.0 5") {
		t.Errorf("REGISTER with 29 headers after max_headers 16: %q, want it refused", got)
	}
	if got := len(s.Store().Lookup("carol@example.com")); got != 1 {
		t.Errorf("carol has %d bindings after the reload, want 1", got)
	}
}

// reparse is the server's configuration with extra YAML laid over it.
func reparse(t *testing.T, s *Server, extra string) *config.Config {
	t.Helper()
	yaml := fmt.Sprintf("listen:\n  udp: [%q]\ndomains: [example.com]\ndata_dir: %q\nmetrics:\n  listen: \"\"\n%s", s.cfg.Listen.UDP[0], s.cfg.DataDir, extra)
	cfg, err := config.Parse([]byte(yaml), "reload")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestReloadDispatch: a reload with a new destination swaps the
// dispatcher; a node an operator took out stays out; dispatch.register
// is left for a restart.
func TestReloadDispatch(t *testing.T) {
	sets := func(uris ...string) string {
		var ds []string
		for _, u := range uris {
			ds = append(ds, fmt.Sprintf("{uri: %q}", u))
		}
		return "dispatch:\n  probe:\n    interval: 0s\n  sets: [{name: fs, algorithm: round_robin, destinations: [" + strings.Join(ds, ", ") + "]}]\n  rules: [{set: fs, methods: [INVITE]}]\n"
	}
	s, _ := startServer(t, sets("sip:192.0.2.1:5080", "sip:192.0.2.2:5080"))
	if err := s.Dispatcher().SetState("fs", "sip:192.0.2.2:5080", dispatch.Disabled); err != nil {
		t.Fatal(err)
	}
	before := s.Dispatcher()
	applied, err := s.Reload(reparse(t, s, sets("sip:192.0.2.1:5080", "sip:192.0.2.2:5080", "sip:192.0.2.3:5080")))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"dispatch"}, applied); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
	if s.Dispatcher() == before {
		t.Fatal("the dispatcher was not replaced")
	}
	got := map[string]string{}
	for _, d := range s.Dispatcher().Destinations() {
		got[d.URI] = d.State.String()
	}
	want := map[string]string{"sip:192.0.2.1:5080": "up", "sip:192.0.2.2:5080": "disabled", "sip:192.0.2.3:5080": "up"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("destinations after reload (-want +got):\n%s", diff)
	}

	// dispatch.register waits for a restart: alone it changes nothing.
	cur := s.Dispatcher()
	applied, err = s.Reload(reparse(t, s, sets("sip:192.0.2.1:5080", "sip:192.0.2.2:5080", "sip:192.0.2.3:5080")+"  register: fs\n"))
	if err != nil || len(applied) != 0 || s.Dispatcher() != cur {
		t.Errorf("reload changing only dispatch.register: applied %v, err %v, dispatcher replaced %v", applied, err, s.Dispatcher() != cur)
	}
	// The same configuration again changes nothing.
	applied, err = s.Reload(reparse(t, s, sets("sip:192.0.2.1:5080", "sip:192.0.2.2:5080", "sip:192.0.2.3:5080")))
	if err != nil || len(applied) != 0 || s.Dispatcher() != cur {
		t.Errorf("reload of an unchanged configuration: applied %v, err %v, dispatcher replaced %v", applied, err, s.Dispatcher() != cur)
	}
}

// TestStoreAndRequestMetrics: the store's gauges and the request
// histogram count what the server did.
func TestStoreAndRequestMetrics(t *testing.T) {
	s, addr := startServer(t, "")
	c := client(t)
	local := c.LocalAddr().String()
	before := registerCount()
	for i := range 3 {
		if got := status(exchange(t, c, addr, register(fmt.Sprintf("m%d", i), fmt.Sprintf("m-%d", i), 1, local), 5*time.Second)); got != "SIP/2.0 200 OK" {
			t.Fatalf("REGISTER %d: %q", i, got)
		}
	}
	var b bytes.Buffer
	s.writeStoreMetrics(&b)
	for _, line := range []string{"pinhole_location_aors 3", "pinhole_location_bindings 3"} {
		if !strings.Contains(b.String(), line+"\n") {
			t.Errorf("store metrics lack %q:\n%s", line, b.String())
		}
	}
	// The handler returns just after sending the 200.
	deadline := time.Now().Add(2 * time.Second)
	for {
		after := registerCount()
		if after-before == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("REGISTER duration histogram counted %d, want 3", after-before)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// registerCount reads the REGISTER duration histogram's _count from the
// process's metrics output (a PrometheusHistogram has no getter).
func registerCount() int {
	var b bytes.Buffer
	metrics.WritePrometheus(&b, false)
	n := 0
	for l := range strings.SplitSeq(b.String(), "\n") {
		if v, ok := strings.CutPrefix(l, `pinhole_sip_request_duration_seconds_count{method="REGISTER"} `); ok {
			fmt.Sscan(v, &n)
		}
	}
	return n
}

// BenchmarkObserve is the wrapper's cost per request: two shared atomic
// adds and one histogram update (a mutex), in parallel.
func BenchmarkObserve(b *testing.B) {
	s := &Server{}
	s.ops.latency = map[sip.RequestMethod]*metrics.PrometheusHistogram{
		sip.REGISTER: metrics.NewSet().NewPrometheusHistogramExt(`x`, latencyBuckets),
	}
	h := s.observe(sip.REGISTER, func(*sip.Request, sip.ServerTransaction) {})
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Host: "example.com"})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h(req, nil)
		}
	})
}
