package slowpath

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/capture"
	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/internal/vip"
	"github.com/pinhole-sip/pinhole/slowpath/auth"
	"github.com/pinhole-sip/pinhole/slowpath/certs"
	"github.com/pinhole-sip/pinhole/slowpath/dispatch"
	"github.com/pinhole-sip/pinhole/slowpath/media/ng"
	"github.com/pinhole-sip/pinhole/slowpath/midreg"
	"github.com/pinhole-sip/pinhole/slowpath/registrar"
	"github.com/pinhole-sip/pinhole/slowpath/routesig"
	"github.com/pinhole-sip/pinhole/slowpath/streams"
)

// sipgoDefaultLogger guards sipgo's process-wide logger; see buildUA.
var sipgoDefaultLogger sync.Once

// Server is pinhole's slow path: one sipgo user agent serving every
// configured socket, with the registrar and the proxy behind it.
type Server struct {
	cfg   *config.Config
	log   *slog.Logger
	ua    *sipgo.UserAgent
	srv   *sipgo.Server
	cli   *sipgo.Client
	store *location.Memory
	// authOn: digest authentication is configured; the authenticator and
	// credentials themselves are in ops, swapped by a reload.
	authOn bool
	reg    *registrar.Registrar
	mid    *midreg.MidRegistrar // nil: standalone registrar
	// certs serves TLS and WSS handshakes (nil without such listeners);
	// a reload reads its files again.
	certs *certs.Store
	// keys sign the Record-Route, Path and hidden-Contact parameters the
	// proxy will follow later; the file in data_dir keeps them across
	// restarts and reloads, so dialogs set up before either still route.
	keys *routesig.Keyring

	udp     udpSockets
	inLoops inLoops // UDP listeners filtered in the fast path's loops (loopfilter.go)
	hooks   hooks   // what the daemon plugs in (XDP, NAT pinger, fast path), hooks.go
	// ops holds the proxy and dispatcher (dispatch sets, route.go), the
	// authenticator and the message limits, which a reload swaps, and the
	// request metrics (ops.go).
	ops ops

	mu      sync.Mutex
	closers []func() error
	serving sync.WaitGroup
	streams *streams.Budget // bounds TCP, TLS, WS and WSS connections (streams.go)
	// sl answers UDP REGISTERs without sipgo transactions (stateless.go);
	// nil under the mid-registrar and the edge relay.
	sl *stateless
	// conns removes the bindings of stream connections that closed
	// (flowclose.go).
	conns *connBindings
	// media controls rtpengine (relay.go); nil when media is off.
	media *ng.Client

	closeOnce sync.Once
	closeErr  error
	// sipParser is sipgo's parser as configured (parser.go); WebSocket
	// messages meet it in the read filter too (filter.go).
	sipParser *sip.Parser
	// dns resolves destinations configured by name (dns.go).
	dns dnsResolver
	// tap is the HEP capture (capture.go); nil while capture is off. Set
	// before Start, never after.
	tap *capture.Tap
	// vip follows cluster.vip (cluster.go); nil outside an active/standby
	// pair.
	vip *vip.Watcher
}

// RouteKeyFile is the key file of slowpath/routesig in data_dir. Edges
// that must honour each other's Record-Route entries share it.
const RouteKeyFile = "route.key"

// RouteKeyGrace is how long a rotated-out key still verifies: longer than
// any dialog a carrier lets ring and talk through one rotation.
const RouteKeyGrace = 24 * time.Hour

// New builds the slow path from a validated configuration. It opens the
// location store (loading persisted bindings) but binds no socket yet.
func New(cfg *config.Config, log *slog.Logger) (*Server, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data_dir: %w", err)
	}
	s := &Server{cfg: cfg, log: log}
	if err := s.initOps(); err != nil {
		return nil, err
	}
	s.streams = s.newStreamBudget()
	keys, err := routesig.Open(filepath.Join(cfg.DataDir, RouteKeyFile), RouteKeyGrace)
	if err != nil {
		return nil, fmt.Errorf("route signing keys: %w", err)
	}
	s.keys = keys

	if cfg.Auth.Enabled() {
		creds, err := auth.LoadCredentials(cfg.Auth.Credentials)
		if err != nil {
			return nil, fmt.Errorf("auth.credentials: %w", err)
		}
		authn, err := s.newAuthenticator(creds)
		if err != nil {
			return nil, fmt.Errorf("set up authentication: %w", err)
		}
		s.ops.authn.Store(authn)
		s.authOn = true
	}

	// The mid-registrar exists before the store: bindings found lapsed
	// while loading are handed to OnExpire, to be de-registered upstream.
	var onExpire func(location.Binding)
	if cfg.MidRegistrar.Enabled() {
		if s.mid, err = s.newMidRegistrar(); err != nil {
			return nil, err
		}
		onExpire = s.mid.OnExpire
		s.mid.OnCommit(s.committed)
	}
	// Whether this box acts is known before the store loads: bindings
	// found lapsed then are lapsed (and de-registered) by the box that
	// acts for them only (cluster.go).
	if err := s.startVIP(); err != nil {
		return nil, err
	}
	opts := storeOptions(cfg, onExpire, s.bindingChanged)
	opts.ActsFor = s.ActsFor // cluster.go
	if s.vip != nil {
		opts.Holds = s.holds
	}
	s.store, err = location.Open(opts)
	if err != nil {
		s.stopVIP()
		return nil, err
	}

	trusted, err := trustList(cfg)
	if err != nil {
		s.store.Close()
		s.stopVIP()
		return nil, err
	}
	var authz registrar.Authorizer
	if s.authOn {
		authz = registerAuth{a: s.ops.authn.Load, failed: s.authFailed}
	}
	s.reg, err = registrar.New(registrar.Config{
		Domains:        cfg.Domains,
		MinExpires:     cfg.Registrar.MinExpires,
		MaxExpires:     cfg.Registrar.MaxExpires,
		DefaultExpires: cfg.Registrar.DefaultExpires,
		MaxContacts:    cfg.Registrar.MaxContacts,
		Committed:      s.committed,
		Settle:         s.settle,
		Trusted:        trusted,
		Edge:           cfg.Cluster.EdgeID,
	}, s.store, authz)
	if err != nil {
		s.store.Close()
		s.stopVIP()
		return nil, err
	}

	if len(cfg.Listen.TLS)+len(cfg.Listen.WSS) > 0 {
		if s.certs, err = certs.New(s.tlsSettings(cfg), s.isTLSPeer(trusted)); err != nil {
			s.store.Close()
			s.stopVIP()
			return nil, err
		}
		s.logCertificates()
	}

	if err := s.buildUA(); err != nil {
		s.store.Close()
		s.stopVIP()
		return nil, err
	}
	s.conns = newConnBindings(s)
	return s, nil
}

func (s *Server) certHosts() []string {
	hosts := append([]string(nil), s.cfg.Domains...)
	for _, l := range s.cfg.Listen.Listeners() {
		hosts = append(hosts, l.Addr.Addr().String())
	}
	if s.cfg.Advertise.Host != "" {
		hosts = append(hosts, s.cfg.Advertise.Host)
	}
	return hosts
}

// hostname is what pinhole calls itself in Via and Record-Route.
func (s *Server) hostname() string {
	if s.cfg.Advertise.Host != "" {
		return s.cfg.Advertise.Host
	}
	return s.cfg.Listen.Listeners()[0].Addr.Addr().String()
}

func (s *Server) buildUA() error {
	// sipgo's level is log.components.sipgo, warn by default (package
	// logging decides); this floor only keeps its info chatter out of a
	// logger that knows no components (tests).
	level := slog.LevelWarn
	if s.cfg.Log.LevelOf("sipgo") == "debug" {
		level = slog.LevelDebug
	} else if l := s.cfg.Log.LevelOf("sipgo"); l == "info" {
		level = slog.LevelInfo
	}
	sipLog := slog.New(quietHandler{next: s.log.Handler(), min: level}).With("component", "sipgo")
	// sipgo logs from a few places through a process-wide default (its UDP
	// connection reference counting among them) that its goroutines read
	// at any time: set it once, before the first server serves.
	sipgoDefaultLogger.Do(func() { sip.SetDefaultLogger(sipLog) })

	parser := newParser(s.cfg.Limits.MaxMessageBytes)
	s.sipParser = parser
	opts := []sipgo.UserAgentOption{
		sipgo.WithUserAgent("pinhole"),
		sipgo.WithUserAgentHostname(s.hostname()),
		sipgo.WithUserAgentParser(parser),
		sipgo.WithUserAgentTransportLayerOptions(
			sip.WithTransportLayerLogger(sipLog),
			sip.WithTransportLayerReadFilter(s.filterRead), // keepalives, intercept hook, sanity (filter.go)
			// Responses never reflect (noreflect.go).
			sip.WithTransportLayerTransports(guardedTransports()),
		),
		sipgo.WithUserAgentDNSResolver(guardedResolver()),
		sipgo.WithUserAgentTransactionLayerOptions(
			sip.WithTransactionLayerLogger(sipLog),
			// RFC 3261 §16.7 step 1: a response no client transaction
			// takes is the proxy's to forward statelessly, when its
			// signed branch allows (proxy/stray.go); sipgo would log
			// and drop it.
			sip.WithTransactionLayerUnhandledResponseHandler(s.strayResponse),
		),
	}
	if s.certs != nil {
		// sipgo dials TLS with it (to a farm node, an upstream); pinhole's
		// own listeners take the server side (streams.go).
		opts = append(opts, sipgo.WithUserAgenTLSConfig(s.certs.ClientConfig()))
	}
	ua, err := sipgo.NewUA(opts...)
	if err != nil {
		return fmt.Errorf("create SIP user agent: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(sipLog))
	if err != nil {
		return fmt.Errorf("create SIP server: %w", err)
	}
	cli, err := sipgo.NewClient(ua, sipgo.WithClientLogger(sipLog), sipgo.WithClientHostname(s.hostname()))
	if err != nil {
		return fmt.Errorf("create SIP client: %w", err)
	}
	cli.TxRequester = ownRequests{tx: ua.TransactionLayer(), tp: ua.TransportLayer()} // noreflect.go
	s.ua, s.srv, s.cli = ua, srv, cli
	if s.mid != nil {
		// REGISTER goes to the main registrar through the mid-registrar.
		s.mid.Start(s.store, midreg.ClientSender{Client: cli})
		srv.OnRegister(s.observe(sip.REGISTER, s.mid.Handle))
	} else {
		srv.OnRegister(s.observe(sip.REGISTER, s.reg.Handle))
	}
	if err := s.routeRequests(); err != nil {
		return err
	}
	s.initStateless(parser)
	return nil
}

// strayResponse hands a response that matched no client transaction to
// the proxy in use (a reload may swap it).
func (s *Server) strayResponse(res *sip.Response) {
	if p := s.ops.proxy.Load(); p != nil {
		p.ForwardStray(res)
	}
}

// Start binds every configured socket and serves them. It returns once all
// are bound, or the first bind error (after closing what it had opened).
func (s *Server) Start() error {
	for _, l := range s.cfg.Listen.Listeners() {
		if err := s.listen(l); err != nil {
			s.closeListeners()
			return fmt.Errorf("listen %s %s: %w", l.Transport, l.Addr, err)
		}
	}
	// Probes leave from the listeners, so they start once those serve.
	s.ops.reloadMu.Lock()
	s.ops.started = true
	s.startProbe()
	s.ops.reloadMu.Unlock()
	metrics.RegisterSet(s.ops.metrics)
	return nil
}

func (s *Server) listen(l config.Listener) error {
	addr := l.Addr.String()
	serve := func(run func() error) {
		s.serving.Add(1)
		go func() {
			defer s.serving.Done()
			if err := run(); err != nil && !errors.Is(err, net.ErrClosed) {
				s.log.Error("listener stopped", "transport", l.Transport, "addr", addr, "error", err)
			}
		}()
	}
	switch l.Transport {
	case "UDP":
		open := listenUDP
		if fn := s.hooks.listenUDP.Load(); fn != nil {
			open = func(string) (net.PacketConn, error) { return (*fn)(l.Addr) }
		}
		pc, err := open(addr)
		if err != nil {
			return err
		}
		s.filterInLoops(pc)          // the fast path's listeners filter in their loops
		pc = s.capturePacketConn(pc) // what is written to it is captured (capture.go)
		s.addCloser(pc.Close)
		s.udp.add(pc)
		serve(func() error { return s.srv.ServeUDP(pc) })
	case "TCP", "WS":
		ln, err := s.listenStream(l.Transport, addr) // under the stream budget (streams.go)
		if err != nil {
			return err
		}
		s.addCloser(ln.Close)
		if l.Transport == "TCP" {
			// Each message is framed and vetted before sipgo parses it
			// (stream.go); WS messages in the read filter (filter.go).
			ln := saneListener{Listener: ln, wrap: s.saneStream}
			serve(func() error { return s.srv.ServeTCP(ln) })
		} else {
			ln := s.captureWS(ln) // messages sent captured (wsframe.go)
			serve(func() error { return s.srv.ServeWS(ln) })
		}
	case "TLS", "WSS":
		ln, err := s.listenStream(l.Transport, addr) // TLS inside, handshake timed
		if err != nil {
			return err
		}
		s.addCloser(ln.Close)
		if l.Transport == "TLS" {
			ln := saneListener{Listener: ln, wrap: s.saneStream}
			serve(func() error { return s.srv.ServeTLS(ln) })
		} else {
			ln := s.captureWS(ln)
			serve(func() error { return s.srv.ServeWSS(ln) })
		}
	default:
		return fmt.Errorf("unknown transport %q", l.Transport)
	}
	return nil
}

func (s *Server) addCloser(f func() error) {
	s.mu.Lock()
	s.closers = append(s.closers, f)
	s.mu.Unlock()
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	cs := s.closers
	s.closers = nil
	s.mu.Unlock()
	for _, c := range cs {
		_ = c()
	}
}

// Store is the location store, the authority for bindings.
func (s *Server) Store() location.Store { return s.store }

// Dispatcher is the farm dispatcher (Destinations, SetState for the
// management API), nil when dispatch has no sets.
func (s *Server) Dispatcher() *dispatch.Dispatcher { return s.ops.farm.Load() }

// AuthEnabled reports whether requests must authenticate.
func (s *Server) AuthEnabled() bool { return s.authOn }

// Close stops accepting, lets sipgo finish, and flushes every binding to
// disk. Drain first to let transactions in flight finish. Calls after the
// first return its result.
func (s *Server) Close(ctx context.Context) error {
	s.closeOnce.Do(func() { s.closeErr = s.close(ctx) })
	return s.closeErr
}

func (s *Server) close(ctx context.Context) error {
	s.conns.stop() // before the listeners: bindings survive a restart
	s.ops.reloadMu.Lock()
	if s.ops.stopProbe != nil {
		s.ops.stopProbe()
		s.ops.stopProbe = nil
	}
	s.ops.started = false
	s.ops.reloadMu.Unlock()
	metrics.UnregisterSet(s.ops.metrics, false)
	s.closeListeners()
	done := make(chan struct{})
	go func() { s.serving.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	if s.sl != nil {
		s.sl.stop()
	}
	if s.mid != nil {
		s.mid.Close()
	}
	s.closeDNS()
	_ = s.ua.Close()
	if s.media != nil {
		_ = s.media.Close() // after the calls in flight: they may still delete
	}
	err := s.store.Close()
	s.stopVIP() // after the store: its last expiry pass still asks ActsFor
	return err
}

// registerAuth adapts the digest authenticator to the registrar.
type registerAuth struct {
	a      func() *auth.Authenticator // the current one: a reload swaps it
	failed func(*sip.Request)         // told of wrong credentials (403)
}

func (r registerAuth) Authorize(req *sip.Request, aor string) *sip.Response {
	res := r.a().Check(req, true)
	if res.OK {
		return nil
	}
	if res.Status == 403 {
		r.failed(req)
	}
	resp := sip.NewResponseFromRequest(req, res.Status, res.Reason, nil)
	for _, h := range res.Headers {
		resp.AppendHeader(h)
	}
	return resp
}

// UDPLimits are the current message limits (a reload may change them).
func (s *Server) UDPLimits() (maxMessageBytes, maxHeaders int) {
	l := s.ops.limits.Load()
	return l.MaxMessageBytes, l.MaxHeaders
}

// MidRegistrar reports whether REGISTER goes through the mid-registrar.
func (s *Server) MidRegistrar() bool { return s.mid != nil }

// storeOptions are the location store's options for cfg: a bbolt file in
// data_dir, or the Redis Cluster of location.redis.
func storeOptions(cfg *config.Config, onExpire func(location.Binding), onChange func(string)) location.Options {
	o := location.Options{
		FlushInterval: cfg.Location.FlushInterval,
		OnExpire:      onExpire,
		OnChange:      onChange,
	}
	if cfg.Location.Backend != "redis" {
		o.Path = filepath.Join(cfg.DataDir, "bindings.db")
		return o
	}
	r := cfg.Location.Redis
	o.Redis = &location.RedisOptions{
		Addresses:    r.Addresses,
		Username:     r.Username,
		Password:     r.Password,
		WaitReplicas: r.WaitReplicas,
		WaitTimeout:  r.WaitTimeout,
		DialTimeout:  r.DialTimeout,
		KeyPrefix:    r.KeyPrefix,
	}
	return o
}
