// Command sipload simulates many SIP devices against one server over UDP,
// each from its own address and port, at a fixed offered rate, and reports
// per-message success, latency percentiles, a per-second series (JSON) and
// plots (PNG). See bench/README.md.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/pinhole-sip/pinhole/bench/digest"
	"github.com/pinhole-sip/pinhole/bench/load"
	"github.com/pinhole-sip/pinhole/bench/plot"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "sipload:", err)
		os.Exit(1)
	}
}

func run() error {
	c := load.Defaults()
	var (
		server, sources, alg string
		contactHost          string
		out, plots           string
		credentials, realm   string
		quiet                bool
		cpuprofile           string
		pauseFile            string
		pauseLimit           time.Duration
		okLog                string
	)
	flag.StringVar(&server, "server", c.Server.String(), "SIP server `address:port` (UDP)")
	flag.StringVar(&c.Domain, "domain", "", "domain of AORs and Request-URIs (default: the server's address)")
	flag.BoolVar(&c.AllowNonLoopback, "allow-non-loopback", false, "allow a server outside 127.0.0.0/8 (only one you own)")
	flag.IntVar(&c.Devices, "devices", c.Devices, "number of simulated devices")
	flag.IntVar(&c.DevicesPerSocket, "devices-per-socket", c.DevicesPerSocket, "devices sharing one socket (source address and port), to pass the open-file limit")
	flag.StringVar(&sources, "sources", c.Sources.String(), "prefix the devices' source addresses are taken from (must be local: all of 127.0.0.0/8 is)")
	flag.StringVar(&contactHost, "contact-host", "", "address devices write in Via and Contact (e.g. 192.168.1.2: they look NAT'd and get NAT pings)")
	flag.IntVar(&c.PortBase, "port-base", c.PortBase, "first source port on each address")
	flag.IntVar(&c.PortsPerAddr, "ports-per-addr", c.PortsPerAddr, "devices per source address")
	flag.StringVar(&c.UserPrefix, "user-prefix", c.UserPrefix, "users are this prefix and a 7-digit index; passwords are pw-<user>")
	flag.StringVar(&alg, "algorithm", "MD5", "digest algorithm to answer with: MD5 or SHA-256")
	flag.IntVar(&c.Expires, "expires", c.Expires, "Expires of every REGISTER (seconds)")
	flag.StringVar(&c.Scenario, "scenario", c.Scenario, "register, refresh, keepalive, flood, calls, idle, mix or avalanche")
	flag.Float64Var(&c.Rate, "rate", c.Rate, "offered actions per second (open loop)")
	flag.DurationVar(&c.Duration, "duration", c.Duration, "measured run, warm-up included (avalanche: the longest it may take)")
	flag.DurationVar(&c.Warmup, "warmup", c.Warmup, "first part of the run left out of the summary")
	flag.DurationVar(&c.Deadline, "deadline", c.Deadline, "an answer later than this after its request counts as failed; the drain waits at most this long")
	flag.StringVar(&c.IO, "io", c.IO, "batch: a few wildcard sockets, source address per datagram (IP_PKTINFO), sendmmsg/recvmmsg; socket: one connected socket per device")
	flag.IntVar(&c.Sockets, "sockets", c.Sockets, "batch io: sockets (source ports PORT-BASE…) the devices are spread over")
	flag.StringVar(&c.ServerMetrics, "server-metrics", "", "`URL` of the server's Prometheus metrics (pinhole's /metrics), read before and after: the run fails if its counts disagree")
	flag.IntVar(&c.ServerPID, "server-pid", 0, "the server's `pid`: its network namespace's UDP drops are read before and after")
	labels := map[string]string{}
	flag.Func("label", "`key=value` recorded in the results' metadata (server, server_version, settings, mode, commit); repeatable", func(v string) error {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" {
			return fmt.Errorf("want key=value")
		}
		labels[k] = val
		return nil
	})
	flag.Float64Var(&c.PrepareRate, "prepare-rate", c.PrepareRate, "registrations per second while registering every device before the run")
	flag.DurationVar(&c.Refresh, "refresh", c.Refresh, "mix: refresh cadence per device")
	flag.DurationVar(&c.Keepalive, "keepalive", c.Keepalive, "mix: keepalive cadence per device (0: none)")
	flag.BoolVar(&c.KeepaliveSTUN, "stun", false, "send STUN Binding requests as keepalives instead of CRLF")
	flag.Float64Var(&c.CallRate, "call-rate", c.CallRate, "mix: calls per second")
	flag.Float64Var(&c.RegisterRate, "register-rate", 0, "mix: first registrations per second (devices that rebooted)")
	flag.DurationVar(&c.CallHold, "call-hold", c.CallHold, "time between a call's ACK and its BYE")
	flag.Float64Var(&c.FloodRate, "flood-rate", c.FloodRate, "flood: hostile messages per second")
	flag.IntVar(&c.FloodSources, "flood-sources", c.FloodSources, "flood: hostile source addresses")
	flag.DurationVar(&c.RetryAfter, "retry-after", c.RetryAfter, "avalanche: pause (±50 %) before a device whose registration failed starts over")
	flag.BoolVar(&c.Reregister, "reregister", false, "avalanche: register every device first (at -prepare-rate), pause for the server's restart (-pause-file), then re-register them all: same Call-ID, next CSeq, cached credentials")
	flag.BoolVar(&c.FreshCallID, "fresh-call-id", false, "with -reregister: come back as after a reboot (new Call-ID, CSeq 1, no credentials)")
	flag.StringVar(&pauseFile, "pause-file", "", "with -reregister: create this `file` once the devices are registered and wait until it is removed (restart the server, then remove it)")
	flag.DurationVar(&pauseLimit, "pause-limit", 10*time.Minute, "with -pause-file: the longest to wait for its removal")
	flag.DurationVar(&c.T1, "t1", c.T1, "RFC 3261 T1")
	flag.DurationVar(&c.T2, "t2", c.T2, "RFC 3261 T2")
	flag.StringVar(&out, "out", "", "write the results as JSON to this `file`")
	flag.StringVar(&plots, "plot", "", "write `prefix`-rate.png and prefix-latency.png")
	flag.StringVar(&credentials, "write-credentials", "", "write a pinhole credentials file for -devices users to this `file` and exit")
	flag.StringVar(&realm, "realm", "pinhole", "realm of -write-credentials")
	flag.BoolVar(&quiet, "q", false, "no progress line")
	flag.StringVar(&cpuprofile, "cpuprofile", "", "write the generator's CPU profile to this `file`")
	flag.StringVar(&okLog, "ok-log", "", "write one line per 200 to a refresh to this `file`: user and Unix milliseconds (a failover's gap, per device)")
	flag.Parse()

	c.Labels = labels
	if credentials != "" {
		return writeCredentials(credentials, realm, &c)
	}
	var err error
	if c.Server, err = netip.ParseAddrPort(server); err != nil {
		return fmt.Errorf("-server: %w", err)
	}
	if c.Sources, err = netip.ParsePrefix(sources); err != nil {
		return fmt.Errorf("-sources: %w", err)
	}
	if contactHost != "" {
		if c.ContactHost, err = netip.ParseAddr(contactHost); err != nil {
			return fmt.Errorf("-contact-host: %w", err)
		}
	}
	if c.Algorithm, err = digest.ParseAlgorithm(alg); err != nil {
		return fmt.Errorf("-algorithm: %w", err)
	}
	if !quiet {
		c.Progress = os.Stderr
	}
	if pauseFile != "" {
		if !c.Reregister {
			return fmt.Errorf("-pause-file: only with -scenario avalanche -reregister")
		}
		c.Restart = func(ctx context.Context) error { return pause(ctx, pauseFile, pauseLimit) }
	}
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	var okFile *os.File
	var okW *bufio.Writer
	if okLog != "" {
		var err error
		if okFile, err = os.Create(okLog); err != nil {
			return fmt.Errorf("-ok-log: %w", err)
		}
		defer okFile.Close()
		// Small, so that a reader following the file during the run
		// (the failover test) lags by a few hundred lines at most.
		okW = bufio.NewWriterSize(okFile, 1<<12)
		c.OKLog = okW
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, runErr := load.Run(ctx, c)
	if okW != nil {
		if err := okW.Flush(); err != nil {
			return fmt.Errorf("-ok-log: %w", err)
		}
		if err := okFile.Close(); err != nil {
			return fmt.Errorf("-ok-log: %w", err)
		}
	}
	if res != nil {
		printSummary(res)
		if out != "" {
			b, err := json.MarshalIndent(res, "", "  ")
			if err != nil {
				return fmt.Errorf("encode results: %w", err)
			}
			if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
				return fmt.Errorf("write results: %w", err)
			}
		}
		if plots != "" {
			if err := plot.Rate(res, plots+"-rate.png"); err != nil {
				return err
			}
			if err := plot.Latency(res, plots+"-latency.png"); err != nil {
				return err
			}
		}
	}
	return runErr
}

// pause is the restart between an avalanche's preparation and its run:
// the generator says it is ready by creating path, and whoever restarts
// the server says it is back by removing it. A file, not a signal:
// compare.sh starts the generator in another network namespace through
// ip netns exec and taskset, and both sides share the file system.
func pause(ctx context.Context, path string, limit time.Duration) error {
	if err := os.WriteFile(path, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644); err != nil {
		return err
	}
	end := time.Now().Add(limit)
	for {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("%s still there after %v: nobody restarted the server", path, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// writeCredentials writes `user realm md5-ha1 sha256-ha1` lines, pinhole's
// auth.credentials format, for every device.
func writeCredentials(path, realm string, c *load.Config) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for i := range c.Devices {
		u := c.User(i)
		p := load.Password(u)
		fmt.Fprintf(w, "%s %s %s %s\n", u, realm, digest.HA1(digest.MD5, u, realm, p), digest.HA1(digest.SHA256, u, realm, p))
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("write credentials: %w", err)
	}
	return f.Close()
}

func printSummary(r *load.Result) {
	w := os.Stdout
	fmt.Fprintf(w, "\nscenario %s against %s: %d devices, offered %.0f actions/s, measured %.1fs after %.1fs warm-up\n",
		r.Scenario, r.Server, r.Devices, r.Rate, r.Run.Seconds, r.Warmup)
	if r.Prepare != nil {
		fmt.Fprintf(w, "prepare: %.1fs, %d sent, %d received\n", r.Prepare.Seconds, r.Prepare.SentMsgs, r.Prepare.RecvMsgs)
	}
	fmt.Fprintf(w, "generator: %.0f%% of a core (%s io), %.0f messages per core-second, max backlog %d, unfinished %d, send errors %d, refused %d, unparsable %d, unmatched %d\n",
		100*r.CPU, r.Meta.IO, r.MsgsPerCore, r.MaxBacklog, r.Unfinished, r.Run.SendErrors, r.Run.Refused, r.Run.Unparsable, r.Run.Unmatched)
	if r.GenCore >= 0 {
		fmt.Fprintf(w, "generator core %d: %.0f%% busy, %.0f messages per busy core-second (kernel work for the generator included)\n", r.GenCore, 100*r.CoreBusy, r.MsgsPerBusy)
	}
	fmt.Fprintf(w, "commit %.12s (dirty %v), %d × %s, kernel %s, load %s → %s; answers count within %.1fs of their request\n",
		r.Meta.Commit, r.Meta.Dirty, r.Meta.Cores, r.Meta.CPU, r.Meta.Kernel, r.Meta.LoadStart, r.Meta.LoadEnd, r.Deadline)
	fmt.Fprintf(w, "%-18s %9s %7s %9s %9s %7s %7s %9s %8s %8s %8s %8s\n", "message", "sent", "retrans", "2xx/s", "challenged", "failed", "timeout", "replies", "p50 ms", "p90 ms", "p99 ms", "max ms")
	names := make([]string, 0, len(r.Run.Kinds))
	for n := range r.Run.Kinds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		k := r.Run.Kinds[n]
		fmt.Fprintf(w, "%-18s %9d %7d %9.0f %9d %7d %7d %9d %8.2f %8.2f %8.2f %8.2f\n", n, k.Sent, k.Retransmitted, k.PerSecond, k.Challenged, k.Failed, k.Timeouts, k.Replies,
			ms(k.Latency.P50), ms(k.Latency.P90), ms(k.Latency.P99), ms(k.Latency.Max))
	}
	fmt.Fprintf(w, "%-18s %9s %9s %7s %7s %7s %9s %8s %8s\n", "action", "offered", "ok/s", "failed", "late", "busy", "succeeded", "p50 ms", "p99 ms")
	names = names[:0]
	for n := range r.Run.Actions {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		a := r.Run.Actions[n]
		fmt.Fprintf(w, "%-18s %9d %9.0f %7d %7d %7d %9d %8.2f %8.2f\n", n, a.Offered, a.PerSecond, a.Failed, a.Late, a.Busy, a.Succeeded, ms(a.Latency.P50), ms(a.Latency.P99))
	}
	if s := r.ServerSide; s != nil {
		fmt.Fprintf(w, "server: absorbed %.0f, handed off %.0f, shed %.0f, kernel dropped %.0f, sanity refused %.0f; %s (agree: %v)\n",
			s.Absorbed, s.HandedOff, s.Shed, s.KernelDropped, s.SanityRefused, s.Check, s.OK)
	}
	if a := r.Avalanche; a != nil {
		all := "not all registered"
		if a.AllSeconds > 0 {
			all = fmt.Sprintf("all registered after %.2fs", a.AllSeconds)
		}
		fmt.Fprintf(w, "avalanche: %d of %d devices registered, %s (last 200 at %.2fs); per device p50 %.2fs, p90 %.2fs, p99 %.2fs; %d retries; %s",
			a.Registered, a.Devices, all, a.LastSeconds, float64(a.Reached.P50)/1e6, float64(a.Reached.P90)/1e6, float64(a.Reached.P99)/1e6, a.Retries, a.Mode)
		if a.Mode != "first" {
			fmt.Fprintf(w, " (%d registered before the restart)", a.Prepared)
		}
		fmt.Fprintln(w)
	}
	if r.Run.NATPings > 0 || r.Run.Pongs > 0 {
		fmt.Fprintf(w, "NAT pings answered %d, keepalive replies %d\n", r.Run.NATPings, r.Run.Pongs)
	}
}

func ms(us int64) float64 { return float64(us) / 1000 }
