// Command pinhole is the SIP edge registrar and proxy daemon. It parses
// flags, wires the paths together and handles signals; the work lives in
// the packages below it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/pinhole-sip/pinhole/bpf"
	"github.com/pinhole-sip/pinhole/cmd/pinhole/mgmt"
	"github.com/pinhole-sip/pinhole/fastpath"
	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/internal/logging"
	"github.com/pinhole-sip/pinhole/slowpath"
	"github.com/pinhole-sip/pinhole/slowpath/ban"
	"github.com/pinhole-sip/pinhole/slowpath/natping"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "ctl" {
		os.Exit(ctl(os.Args[2:], os.Stdout, os.Stderr)) // ctl.go
	}
	os.Exit(run())
}

func run() int {
	configPath := flag.String("config", "", "YAML configuration `file` (default: the embedded configuration)")
	checkOnly := flag.Bool("check-config", false, "validate the configuration and exit")
	printDefault := flag.Bool("print-default-config", false, "print the embedded configuration and exit")
	flag.Parse()

	if *printDefault {
		os.Stdout.Write(config.Default())
		return 0
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pinhole:", err)
		return 2
	}
	if *checkOnly {
		fmt.Printf("pinhole: %s is valid\n", cfg.Source)
		return 0
	}
	logs, err := logging.New(cfg.Log, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pinhole:", err)
		return 2
	}
	log := logs.Logger("main")
	token, err := cfg.API.ResolveToken()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pinhole:", err)
		return 2
	}

	srv, err := slowpath.New(cfg, logs.Logger("slowpath"))
	if err != nil {
		log.Error("start failed", "error", err)
		return 1
	}
	if !srv.AuthEnabled() {
		log.Warn("authentication is OFF: any device may register any user of the served domains; set auth.credentials to require digest authentication")
	}
	fast, err := startFastPath(cfg, srv, log)
	if err != nil {
		log.Error("start failed", "error", err)
		_ = srv.Close(context.Background())
		return 1
	}
	defer fast.stop()
	if err := srv.Start(); err != nil {
		log.Error("start failed", "error", err)
		_ = srv.Close(context.Background())
		return 1
	}
	fast.run()
	stopMetrics, err := serveMetrics(cfg.Metrics.Listen, log)
	if err != nil {
		log.Error("start failed", "error", err)
		_ = srv.Close(context.Background())
		return 1
	}
	rl := &reloader{path: *configPath, started: cfg, xdp: cfg.XDP, logCfg: cfg.Log, srv: srv, fast: fast, logs: logs, log: log}
	stopAPI, err := serveAPI(cfg.API.Listen, token, srv, fast, rl, logs.Logger("mgmt"))
	if err != nil {
		log.Error("start failed", "error", err)
		stopMetrics()
		_ = srv.Close(context.Background())
		return 1
	}
	aors, bindings := srv.Store().Len()
	log.Info("pinhole ready", "config", cfg.Source, "aors", aors, "bindings", bindings)
	printHowTo(cfg)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			_, _ = rl.reload("SIGHUP") // logs what it did
			continue
		}
		break
	}
	// Graceful stop: new transactions get 503 while those in flight
	// finish on the still open sockets, then the sockets close and every
	// binding is flushed.
	log.Info("stopping: refusing new transactions, finishing those in flight, flushing bindings", "in_flight", srv.InFlight())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stopAPI()
	drainCtx, cancelDrain := context.WithTimeout(ctx, drainTimeout)
	if err := srv.Drain(drainCtx); err != nil {
		log.Warn("stopping with transactions unfinished", "error", err)
	}
	cancelDrain()
	stopMetrics()
	fast.stopPinger()
	if err := srv.Close(ctx); err != nil {
		log.Error("stop", "error", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// drainTimeout bounds how long a stopping pinhole waits for transactions
// in flight; the rest of the 10 s is for closing and the final flush. An
// INVITE still ringing is cut at this point.
const drainTimeout = 7 * time.Second

// serveAPI starts the management API (cmd/pinhole/mgmt) on addr; "" is off.
func serveAPI(addr, token string, srv *slowpath.Server, fast *fastPath, rl *reloader, log *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	mc := mgmt.Config{
		Token: token,
		Store: srv.Store(),
		Remove: func(aor, contact string) ([]location.Binding, error) {
			bs, err := srv.RemoveBindings(aor, contact)
			if errors.Is(err, slowpath.ErrNoBinding) {
				return nil, fmt.Errorf("%w: %w", mgmt.ErrNotFound, err)
			}
			return bs, err
		},
		Dispatcher: func() mgmt.Dispatcher {
			if d := srv.Dispatcher(); d != nil {
				return d
			}
			return nil
		},
		Reload: func() (mgmt.ReloadResult, error) { return rl.reload("api") },
		Log:    log,
	}
	if fast.xdp != nil {
		mc.Blocklist = fast.xdp.Blocklist
	}
	stop, bound, err := mgmt.Serve(addr, mgmt.New(mc), log)
	if err != nil {
		return nil, err
	}
	log.Info("management API", "url", "http://"+bound+"/api/v1/", "token", token != "")
	return stop, nil
}

// reloader applies the configuration file again, on SIGHUP or the API's
// reload: the keys config.Reloadable names take effect at once, without
// dropping bindings or transactions; the others are reported as waiting
// for a restart.
type reloader struct {
	mu      sync.Mutex
	path    string
	started *config.Config // what the process started with
	xdp     config.XDP     // last applied
	logCfg  config.Log     // last applied
	srv     *slowpath.Server
	fast    *fastPath
	logs    *logging.Logging
	log     *slog.Logger
}

func (r *reloader) reload(by string) (mgmt.ReloadResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := mgmt.ReloadResult{Applied: []string{}, Restart: []string{}}
	next, err := config.Load(r.path)
	if err != nil {
		r.log.Error("reload refused; the running configuration stays", "by", by, "error", err)
		return res, err
	}
	for _, k := range config.Diff(r.started, next) {
		if !config.Reloadable(k) || (k == "auth.credentials" && r.started.Auth.Enabled() != next.Auth.Enabled()) ||
			(strings.HasPrefix(k, "xdp.") && r.fast.xdp == nil) {
			res.Restart = append(res.Restart, k)
		}
	}
	applied, err := r.srv.Reload(next)
	if err != nil {
		r.log.Error("reload refused; the running configuration stays", "by", by, "error", err)
		return res, err
	}
	res.Applied = append(res.Applied, applied...)
	xa, err := r.fast.reload(r.xdp, next.XDP)
	res.Applied = append(res.Applied, xa...)
	if err != nil {
		// The slow path's part is applied; say which kernel map failed.
		r.log.Error("reload: XDP maps not fully updated", "by", by, "error", err)
		return res, err
	}
	r.xdp = next.XDP
	if !reflect.DeepEqual(r.logCfg, next.Log) {
		if err := r.logs.Apply(next.Log); err != nil {
			return res, err
		}
		r.logCfg = next.Log
		res.Applied = append(res.Applied, "log")
	}
	slices.Sort(res.Applied)
	r.log.Info("configuration reloaded", "by", by, "applied", res.Applied, "restart_needed", res.Restart)
	return res, nil
}

// serveMetrics exposes Prometheus text on /metrics.
func serveMetrics(addr string, log *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		metrics.WritePrometheus(w, true)
	})
	// Profiles are how slow-path limits get found under load. They reveal
	// internals and cost CPU, so they are served only when the metrics
	// endpoint is on loopback (the default), never on a pod or public address.
	if ap, err := netip.ParseAddrPort(addr); err == nil && ap.Addr().IsLoopback() {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics endpoint stopped", "error", err)
		}
	}()
	log.Info("metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	return func() { _ = hs.Close() }, nil
}

// printHowTo tells a newcomer how to point a softphone at pinhole.
func printHowTo(cfg *config.Config) {
	domain := cfg.Domains[0]
	fmt.Printf("\npinhole is serving %v\n", cfg.Domains)
	for _, l := range cfg.Listen.Listeners() {
		fmt.Printf("  %-3s %s\n", l.Transport, l.Addr)
	}
	fmt.Printf("\nRegister a softphone with:\n  user:      any name, e.g. alice\n  domain:    %s\n  proxy:     sip:%s;transport=udp\n", domain, cfg.Listen.Listeners()[0].Addr)
	if cfg.Auth.Enabled() {
		fmt.Printf("  password:  as in %s (realm %q)\n", cfg.Auth.Credentials, cfg.Auth.Realm)
	} else {
		fmt.Printf("  password:  none (authentication is off in this configuration)\n")
	}
	fmt.Printf("Register two phones and call one from the other (sip:bob@%s).\n\n", domain)
}

// fastPath is the kernel program, the NAT pinger and the ban on sources
// over the rate limit, wired to the slow path.
type fastPath struct {
	xdp        *bpf.Objects // nil without XDP
	unregister func()
	pinger     *natping.Pinger
	overlimit  *ban.Overlimit
	user       *fastpath.FastPath // gnet loops in front of the UDP listeners; nil when fastpath.enabled is false
	cancel     context.CancelFunc
	done       sync.WaitGroup
}

// startFastPath loads and attaches XDP (or logs one line saying pinhole
// runs without it), and sets the slow path's hooks for the pinger and the
// ban feed. The pinger starts with run, once the sockets are bound.
func startFastPath(cfg *config.Config, srv *slowpath.Server, log *slog.Logger) (*fastPath, error) {
	f := &fastPath{unregister: func() {}}
	xc := bpf.Config{Interfaces: cfg.XDP.Interfaces, Mode: cfg.XDP.Mode, Rate: cfg.XDP.Rate, Burst: cfg.XDP.Burst, Signatures: cfg.XDP.Signatures}
	seen := map[uint16]bool{}
	for _, l := range cfg.Listen.Listeners() {
		if l.Transport == "UDP" && !seen[l.Addr.Port()] {
			seen[l.Addr.Port()] = true
			xc.Ports = append(xc.Ports, l.Addr.Port())
		}
	}
	for _, p := range cfg.XDP.Blocklist {
		xc.Blocklist = append(xc.Blocklist, netip.MustParsePrefix(p)) // validated by config
	}
	if len(xc.Ports) == 0 {
		xc.Mode = "off" // only UDP reaches the program's SIP path
	}
	var err error
	if f.xdp, err = bpf.Start(xc, log.With(logging.ComponentKey, "xdp")); err != nil {
		return nil, err
	}
	if f.xdp != nil {
		f.unregister = f.xdp.Counters.RegisterMetrics()
		if b := cfg.XDP.Ban; b.AuthFailures > 0 {
			tr, err := ban.New(ban.Config{Failures: b.AuthFailures, Window: b.Window, Duration: b.Duration, Blocker: f.xdp.Blocklist})
			if err != nil {
				f.stop()
				return nil, err
			}
			srv.SetAuthFailure(func(src netip.Addr) { tr.Failure(src) })
		}
		if b := cfg.XDP.Ban; b.RateLimitedFor > 0 && cfg.XDP.Rate > 0 {
			counters := f.xdp.Counters
			f.overlimit = &ban.Overlimit{
				For: b.RateLimitedFor, Duration: b.Duration, Blocker: f.xdp.Blocklist, Buckets: f.xdp.Buckets, Log: log.With(logging.ComponentKey, "ban"),
				Refused: func() (uint64, error) {
					sums, err := counters.Sum()
					return sums[bpf.VerdictRateLimited], err
				},
			}
		}
	}
	if n := cfg.NATPing; n.Interval > 0 && len(cfg.Listen.UDP) > 0 {
		method, err := natping.ParseMethod(n.Method)
		if err != nil {
			f.stop()
			return nil, err
		}
		pc := natping.Config{
			Interval: n.Interval, Method: method, MaxMissed: n.MaxMissed,
			Host: cfg.Advertise.Host, Store: srv.Store(), Sockets: srv.UDPSocket, Log: log.With(logging.ComponentKey, "natping"),
		}
		if f.xdp != nil {
			pc.Kernel = bpf.Liveness{NATPings: f.xdp.NATPings, Alive: f.xdp.Alive}
		}
		if f.pinger, err = natping.New(pc); err != nil {
			f.stop()
			return nil, err
		}
		// Without XDP (or for an interface without it) the answers reach
		// userspace; the pinger claims them before sipgo sees them.
		srv.SetIntercept(f.pinger.Reply)
	}
	if cfg.FastPath.Enabled {
		if f.user, err = fastpath.Attach(srv, cfg, log, fastpath.Options{}); err != nil {
			f.stop()
			return nil, err
		}
		log.Info("userspace fast path on", "loops_per_listener", cfg.FastPath.Loops, "absorbing", f.user.Absorbing)
	}
	return f, nil
}

// run starts the pinger and the over-limit watch.
func (f *fastPath) run() {
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	if f.pinger != nil {
		f.done.Go(func() { f.pinger.Run(ctx) })
	}
	if f.overlimit != nil {
		f.done.Go(func() { _ = f.overlimit.Run(ctx) }) // configured above: cannot fail
	}
}

// stopPinger stops pinging (and watching) before the sockets close.
func (f *fastPath) stopPinger() {
	if f.cancel != nil {
		f.cancel()
		f.done.Wait()
		f.cancel = nil
	}
}

// stop stops the pinger and detaches XDP: the program only ever runs while
// pinhole does (its BPF links die with the process in any case).
func (f *fastPath) stop() {
	f.stopPinger()
	f.unregister()
	if f.user != nil {
		f.user.Close()
		f.user = nil
	}
	if f.xdp != nil {
		_ = f.xdp.Close()
		f.xdp = nil
	}
}

// reload brings the XDP maps from prev to next: the rate limit, the
// scanner signatures and the configured blocklist prefixes (entries a ban
// or the API added are left alone). Interfaces and mode wait for a
// restart. Without the program nothing is applied.
func (f *fastPath) reload(prev, next config.XDP) (applied []string, err error) {
	if f.xdp == nil {
		return nil, nil
	}
	if prev.Rate != next.Rate || prev.Burst != next.Burst {
		if err := f.xdp.RateLimit.Set(next.Rate, next.Burst); err != nil {
			return applied, err
		}
		applied = append(applied, "xdp.rate")
	}
	if !slices.Equal(prev.Signatures, next.Signatures) {
		if err := f.xdp.Signatures.Set(next.Signatures); err != nil {
			return applied, err
		}
		applied = append(applied, "xdp.signatures")
	}
	if !slices.Equal(prev.Blocklist, next.Blocklist) {
		for _, p := range prev.Blocklist {
			if !slices.Contains(next.Blocklist, p) {
				if err := f.xdp.Blocklist.Remove(netip.MustParsePrefix(p)); err != nil { // validated by config
					return applied, err
				}
			}
		}
		for _, p := range next.Blocklist {
			if err := f.xdp.Blocklist.Add(netip.MustParsePrefix(p), time.Time{}); err != nil {
				return applied, err
			}
		}
		applied = append(applied, "xdp.blocklist")
	}
	return applied, nil
}
