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
	"sync"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/pinhole-sip/pinhole/bpf"
	"github.com/pinhole-sip/pinhole/fastpath/natping"
	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/slowpath"
	"github.com/pinhole-sip/pinhole/slowpath/ban"
)

func main() {
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
	log := newLogger(cfg.Log.Level)

	srv, err := slowpath.New(cfg, log)
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
	aors, bindings := srv.Store().Len()
	log.Info("pinhole ready", "config", cfg.Source, "aors", aors, "bindings", bindings)
	printHowTo(cfg)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			log.Warn("SIGHUP: reload is not implemented yet; restart to apply configuration changes")
			continue
		}
		break
	}
	log.Info("stopping: finishing transactions and flushing bindings")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stopMetrics()
	fast.stopPinger()
	if err := srv.Close(ctx); err != nil {
		log.Error("stop", "error", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level)) // validated by config
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
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
	// Profiles are how slow-path limits get found under load; the endpoint
	// is on loopback by default (metrics.listen).
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
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
	if f.xdp, err = bpf.Start(xc, log); err != nil {
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
				For: b.RateLimitedFor, Duration: b.Duration, Blocker: f.xdp.Blocklist, Buckets: f.xdp.Buckets, Log: log,
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
			Host: cfg.Advertise.Host, Store: srv.Store(), Sockets: srv.UDPSocket, Log: log,
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
	if f.xdp != nil {
		_ = f.xdp.Close()
		f.xdp = nil
	}
}
