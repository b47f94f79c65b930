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
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/slowpath"
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
	if err := srv.Start(); err != nil {
		log.Error("start failed", "error", err)
		_ = srv.Close(context.Background())
		return 1
	}
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
