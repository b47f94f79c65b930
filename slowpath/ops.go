package slowpath

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/slowpath/auth"
	"github.com/pinhole-sip/pinhole/slowpath/dispatch"
	"github.com/pinhole-sip/pinhole/slowpath/proxy"
	"github.com/pinhole-sip/pinhole/slowpath/sanity"
)

// ops is what an operator needs of the slow path (docs/operations.md):
// the parts a reload swaps, the drain of a graceful stop and the request
// metrics. Everything a request reads from here is one atomic load.
type ops struct {
	proxy  atomic.Pointer[proxy.Proxy]
	farm   atomic.Pointer[dispatch.Dispatcher]
	authn  atomic.Pointer[auth.Authenticator]
	limits atomic.Pointer[sanity.Limits]
	// secret keys the nonces of every authenticator this server builds,
	// so a challenge issued before a reload is answered after it.
	secret []byte

	reloadMu  sync.Mutex      // one reload at a time
	dispatch  config.Dispatch // last applied
	started   bool            // Start ran: a new farm is probed at once
	stopProbe func()          // stops the current farm's prober

	draining atomic.Bool
	inflight atomic.Int64 // requests whose handler has not returned
	// lastDone is when (unix ns) a handler last returned while draining:
	// the ACK and BYE of a call answered during the stop come right
	// after its INVITE's handler returns, and Drain waits for them.
	lastDone atomic.Int64

	metrics *metrics.Set
	latency map[sip.RequestMethod]*metrics.PrometheusHistogram
}

// latencyBuckets are upper bounds in seconds of the request duration
// histograms: a REGISTER answered from the store takes well under a
// millisecond, one relayed upstream tens of milliseconds; an INVITE's
// duration includes ringing, hence the long tail.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// drainRetryAfter is the Retry-After of the 503 a stopping pinhole gives
// new transactions: long enough that a device tries another edge first.
const drainRetryAfter = "30"

func (s *Server) initOps() error {
	s.ops.secret = make([]byte, 32)
	if _, err := rand.Read(s.ops.secret); err != nil {
		return fmt.Errorf("generate nonce secret: %w", err)
	}
	l := sanity.Limits{MaxMessageBytes: s.cfg.Limits.MaxMessageBytes, MaxHeaders: s.cfg.Limits.MaxHeaders}
	s.ops.limits.Store(&l)
	s.ops.dispatch = s.cfg.Dispatch

	set := metrics.NewSet()
	s.ops.latency = map[sip.RequestMethod]*metrics.PrometheusHistogram{}
	for _, m := range append([]sip.RequestMethod{sip.REGISTER}, proxy.Methods...) {
		s.ops.latency[m] = set.NewPrometheusHistogramExt(`pinhole_sip_request_duration_seconds{method="`+m.String()+`"}`, latencyBuckets)
	}
	set.NewGauge(`pinhole_sip_transactions_active`, func() float64 { return float64(s.ops.inflight.Load()) })
	set.NewGauge(`pinhole_draining`, func() float64 {
		if s.ops.draining.Load() {
			return 1
		}
		return 0
	})
	set.RegisterMetricsWriter(s.writeStoreMetrics)
	set.RegisterMetricsWriter(s.writeAuthMetrics)
	metrics.RegisterSet(set)
	s.ops.metrics = set
	return nil
}

// writeStoreMetrics publishes the location store's counts at scrape time:
// nothing is counted per binding for them.
func (s *Server) writeStoreMetrics(w io.Writer) {
	st := s.store.Stats()
	metrics.WriteGaugeUint64(w, "pinhole_location_aors", uint64(st.AORs))
	metrics.WriteGaugeUint64(w, "pinhole_location_bindings", uint64(st.Bindings))
	metrics.WriteCounterUint64(w, "pinhole_location_expired_total", st.Expired)
	metrics.WriteCounterUint64(w, "pinhole_location_writes_total", st.Writes)
	metrics.WriteCounterUint64(w, "pinhole_location_commits_total", st.Commits)
	metrics.WriteCounterUint64(w, "pinhole_location_flushes_total", st.Flushes)
	metrics.WriteCounterUint64(w, "pinhole_location_flush_errors_total", st.FlushErrors)
	metrics.WriteCounterUint64(w, "pinhole_location_skipped_at_load_total", st.SkippedAtLoad)
	metrics.WriteCounterUint64(w, "pinhole_location_write_errors_total", st.WriteErrors)
	metrics.WriteCounterUint64(w, "pinhole_location_followed_total", st.Followed)
	metrics.WriteCounterUint64(w, "pinhole_location_follow_errors_total", st.FollowErrors)
	metrics.WriteCounterUint64(w, "pinhole_location_swept_total", st.Swept)
	metrics.WriteCounterUint64(w, "pinhole_location_sweep_errors_total", st.SweepErrors)
}

// writeAuthMetrics publishes the digest replay memory at scrape time.
func (s *Server) writeAuthMetrics(w io.Writer) {
	a := s.ops.authn.Load()
	if a == nil {
		return
	}
	nonces, evicted := a.ReplayStats()
	metrics.WriteGaugeUint64(w, "pinhole_auth_replay_nonces", uint64(nonces))
	metrics.WriteCounterUint64(w, "pinhole_auth_replay_evicted_total", evicted)
}

// observe wraps a request handler: it counts the request as in flight
// until the handler returns (the final response is sent, or the ACK
// relayed), records how long that took, and while draining answers new
// transactions with 503. One shared atomic pair and one histogram lock per
// request: the slow path spends microseconds per request on parsing alone
// (BenchmarkObserve measures the wrapper).
func (s *Server) observe(m sip.RequestMethod, h sipgo.RequestHandler) sipgo.RequestHandler {
	hist := s.ops.latency[m]
	return func(req *sip.Request, tx sip.ServerTransaction) {
		s.ops.inflight.Add(1)
		if s.ops.draining.Load() && opensTransaction(req) {
			res := sip.NewResponseFromRequest(req, sip.StatusServiceUnavailable, "Service Unavailable", nil)
			res.AppendHeader(sip.NewHeader("Retry-After", drainRetryAfter))
			_ = tx.Respond(res)
			s.ops.inflight.Add(-1) // refused: nothing follows it
			return
		}
		defer s.ops.done()
		start := time.Now()
		h(req, tx)
		if hist != nil {
			hist.Update(time.Since(start).Seconds())
		}
	}
}

// done ends the time in flight of a request that was handled; while
// draining it also marks the moment, which Drain's quiet period counts
// from. REGISTERs and refused requests do not: nothing follows them.
func (o *ops) done() {
	if o.draining.Load() {
		o.lastDone.Store(time.Now().UnixNano())
	}
	o.inflight.Add(-1)
}

// recentlyDone reports whether a request was handled during the drain
// less than drainQuiet ago. A stop with nothing in flight waits for
// nothing.
func (o *ops) recentlyDone() bool {
	last := o.lastDone.Load()
	return last != 0 && time.Since(time.Unix(0, last)) < drainQuiet
}

// opensTransaction reports whether a stopping pinhole refuses req: new
// dialogs and registrations are refused, while in-dialog requests, ACK and
// CANCEL finish what is already running.
func opensTransaction(req *sip.Request) bool {
	switch req.Method {
	case sip.ACK, sip.CANCEL:
		return false
	}
	if to := req.To(); to != nil {
		if _, ok := to.Params.Get("tag"); ok {
			return false
		}
	}
	return true
}

// handleProxy runs the current proxy: a reload swaps it, and requests
// already inside the old one finish there.
func (s *Server) handleProxy(req *sip.Request, tx sip.ServerTransaction) {
	s.ops.proxy.Load().Handle(req, tx)
}

// drainQuiet is how long Drain waits after the last request in flight
// finished before it reports the server idle. A call answered during the
// stop is followed at once by its ACK and, often, its BYE (a caller that
// hangs up on seeing the edge go): both must still pass. A second covers
// a device's round trip many times over without holding a stop for long.
const drainQuiet = time.Second

// Drain makes pinhole refuse new transactions with 503 and waits until
// the ones in flight have their final response and, when any finished
// during the drain, no request has been in flight for drainQuiet, or ctx
// ends. The sockets stay open meanwhile:
// on UDP the answers to relayed requests arrive on the socket that would
// otherwise be closed first.
func (s *Server) Drain(ctx context.Context) error {
	s.ops.lastDone.Store(0)
	s.ops.draining.Store(true)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for s.ops.inflight.Load() > 0 || s.ops.recentlyDone() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("drain: %d transactions still running: %w", s.ops.inflight.Load(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// InFlight is how many requests are being handled: the server
// transactions without a final response.
func (s *Server) InFlight() int64 { return s.ops.inflight.Load() }

// ErrNoBinding is returned by RemoveBindings when nothing matched.
var ErrNoBinding = errors.New("no such binding")

// RemoveBindings removes the bindings of aor, or only those with the given
// Contact URI, and returns them. Each is handed to what the store calls on
// expiry (the mid-registrar de-registers it upstream), as if it had lapsed.
func (s *Server) RemoveBindings(aor, contact string) ([]location.Binding, error) {
	removed, err := s.removeBindings(aor, func(b *location.Binding) bool { return contact == "" || b.Contact == contact })
	if err != nil {
		return nil, fmt.Errorf("remove bindings of %s: %w", aor, err)
	}
	return removed, nil
}

// removeBindings removes the bindings of aor that gone selects, as if they
// had lapsed (the mid-registrar de-registers them upstream), and returns
// them; ErrNoBinding when it selects none.
func (s *Server) removeBindings(aor string, gone func(*location.Binding) bool) ([]location.Binding, error) {
	var removed []location.Binding
	_, err := s.store.Update(aor, func(cur []location.Binding) ([]location.Binding, error) {
		removed = removed[:0]
		keep := cur[:0:0]
		for i := range cur {
			if gone(&cur[i]) {
				removed = append(removed, cur[i])
				continue
			}
			keep = append(keep, cur[i])
		}
		if len(removed) == 0 {
			return nil, ErrNoBinding
		}
		return keep, nil
	})
	if err != nil {
		return nil, err
	}
	if s.mid != nil {
		for _, b := range removed {
			s.mid.OnExpire(b)
		}
	}
	return removed, nil
}

// Reload applies what a reload may change of next (config.Reloadable):
// the dispatch section but dispatch.register, the UDP message limits and
// the credentials file (while authentication stays on).
// Everything is built before anything is swapped, so a failure leaves the
// running server as it was. Transactions in flight finish with what they
// started with; bindings are not touched. It returns the keys it applied.
func (s *Server) Reload(next *config.Config) ([]string, error) {
	s.ops.reloadMu.Lock()
	defer s.ops.reloadMu.Unlock()
	var applied []string

	// Credentials: read the file again even when its name is unchanged;
	// that is the usual reason to reload them.
	var authn *auth.Authenticator
	var creds *auth.Credentials
	if s.authOn && next.Auth.Enabled() {
		var err error
		if creds, err = auth.LoadCredentials(next.Auth.Credentials); err != nil {
			return nil, fmt.Errorf("reload auth.credentials: %w", err)
		}
		// The same nonce key and replay memory: a (nonce, nc) accepted
		// before the reload must not be accepted again after it.
		if authn, err = s.ops.authn.Load().WithCredentials(creds); err != nil {
			return nil, fmt.Errorf("reload auth.credentials: %w", err)
		}
		applied = append(applied, "auth.credentials")
	}

	limits := sanity.Limits{MaxMessageBytes: next.Limits.MaxMessageBytes, MaxHeaders: next.Limits.MaxHeaders}
	if limits != *s.ops.limits.Load() {
		applied = append(applied, "limits")
	}

	// Dispatch: a new dispatcher and a proxy that uses it, only when the
	// section changed (a rebuilt dispatcher starts with no call counts).
	// dispatch.register decides who handles REGISTER: it keeps its value
	// until a restart (the caller reports it as such, config.Reloadable).
	var p *proxy.Proxy
	var farm *dispatch.Dispatcher
	nd := next.Dispatch
	nd.Register = s.ops.dispatch.Register
	dispatchChanged := !reflect.DeepEqual(nd, s.ops.dispatch)
	if dispatchChanged {
		if nd.Register != "" && !slices.ContainsFunc(nd.Sets, func(set config.DispatchSet) bool { return set.Name == nd.Register }) {
			return nil, fmt.Errorf("reload dispatch: set %q, where REGISTER goes until a restart, must stay in dispatch.sets", nd.Register)
		}
		var err error
		if p, farm, err = s.buildProxy(nd); err != nil {
			return nil, fmt.Errorf("reload dispatch: %w", err)
		}
		if old := s.ops.farm.Load(); old != nil && farm != nil {
			carryStates(old, farm)
		}
		applied = append(applied, "dispatch")
	}

	// The route signing keys are read again: an operator, or the other edge
	// sharing the file, may have rotated them. A bad file keeps the keys in
	// use (routesig.Keyring.Reload), so dialogs keep routing.
	if err := s.keys.Reload(); err != nil {
		return nil, fmt.Errorf("reload route keys: %w", err)
	}

	// TLS: read last, as its swap is immediate; a failure keeps the
	// certificates in use and refuses the rest of the reload too.
	if err := s.reloadCertificates(next); err != nil {
		return nil, err
	}
	if s.certs != nil {
		applied = append(applied, "tls")
	}

	// Swap.
	if authn != nil {
		s.ops.authn.Store(authn)
	}
	s.ops.limits.Store(&limits)
	if dispatchChanged {
		old := s.ops.farm.Load()
		if s.ops.stopProbe != nil {
			s.ops.stopProbe()
			s.ops.stopProbe = nil
		}
		s.ops.farm.Store(farm)
		s.ops.proxy.Store(p)
		s.ops.dispatch = nd
		if old != nil {
			old.Close()
		}
		if s.ops.started {
			s.startProbe()
		}
	}
	slices.Sort(applied)
	return applied, nil
}

// carryStates keeps what an operator or the probes decided about a
// destination across a reload: a node taken out stays out.
func carryStates(old, next *dispatch.Dispatcher) {
	for _, st := range old.Destinations() {
		if st.State != dispatch.Up {
			_ = next.SetState(st.Set, st.URI, st.State) // ErrNotFound: it left the configuration
		}
	}
}

// startProbe probes the current farm from the listeners until the next
// reload or Close.
func (s *Server) startProbe() {
	farm := s.ops.farm.Load()
	if farm == nil {
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	p := s.ops.proxy.Load()
	go func() { farm.Run(ctx, p); close(done) }()
	s.ops.stopProbe = func() { stop(); <-done }
}

// newAuthenticator builds a digest authenticator over creds with the
// configuration's realm, algorithms and nonce lifetime and the server's
// nonce secret.
func (s *Server) newAuthenticator(creds *auth.Credentials) (*auth.Authenticator, error) {
	var algs []auth.Algorithm
	for _, name := range s.cfg.Auth.Algorithms {
		a, err := auth.ParseAlgorithm(name)
		if err != nil {
			return nil, fmt.Errorf("auth.algorithms: %w", err)
		}
		algs = append(algs, a)
	}
	return auth.New(auth.Config{Realm: s.cfg.Auth.Realm, Domains: s.cfg.Domains, NonceTTL: s.cfg.Auth.NonceTTL, Algorithms: algs, Creds: creds, Secret: s.ops.secret})
}

// RotateRouteKey makes a new route signing key current and writes it to
// the key file; entries signed with the previous key keep verifying for
// RouteKeyGrace.
func (s *Server) RotateRouteKey() error {
	return s.keys.Rotate()
}
