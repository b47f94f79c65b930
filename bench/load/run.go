package load

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// Result is what one run measured; the command writes it as JSON.
type Result struct {
	Scenario    string    `json:"scenario"`
	Server      string    `json:"server"`
	Devices     int       `json:"devices"`
	Rate        float64   `json:"offered_rate"` // actions per second of the main stream
	Duration    float64   `json:"duration_s"`
	Warmup      float64   `json:"warmup_s"`
	Started     time.Time `json:"started"`
	FDLimit     string    `json:"fd_limit"`
	Unfinished  int       `json:"unfinished"`    // transactions still out after the drain
	MaxBacklog  uint64    `json:"max_backlog"`   // most actions due and not yet sent: > 0 means the generator fell behind
	CPU         float64   `json:"generator_cpu"` // generator CPU time / wall time over the measured run (1 = one core)
	Prepare     *Phase    `json:"prepare,omitempty"`
	Run         Phase     `json:"run"` // after warm-up
	Series      []Sample  `json:"series"`
	Cadence     float64   `json:"cadence_s,omitempty"` // refresh/keepalive scenarios: seconds between two actions of one device
	RefreshRate float64   `json:"mix_refresh_rate,omitempty"`
}

// maxPerIteration bounds how many actions one loop iteration issues per
// stream, so receiving is never starved for long; what is left is the
// backlog, issued on the next iterations without waiting.
const maxPerIteration = 256

// Run runs cfg: opens a socket per device, prepares (registers every device)
// when the scenario needs it, runs the scenario for cfg.Duration and drains.
// The calling goroutine is locked to its thread for the whole run.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	floods := 0
	if cfg.Scenario == ScenarioFlood {
		floods = cfg.FloodSources
	}
	per := cfg.DevicesPerSocket
	socks, err := newSockets((cfg.Devices+per-1)/per + floods)
	if err != nil {
		return nil, err
	}
	defer socks.close()
	e := &engine{
		cfg: cfg, run: newRunID(), domain: cfg.domain(), socks: socks,
		devices: make([]device, cfg.Devices), rnd: rand.New(rand.NewPCG(rand.Uint64(), 1)),
		buf: make([]byte, 0, 4096), rbuf: make([]byte, 65536),
	}
	opened := time.Now()
	for i := range e.devices {
		if i%per != 0 {
			e.devices[i].fd = e.devices[i-1].fd
			continue
		}
		// A shared socket is owned by its first device; receive finds the
		// others by branch or Request-URI.
		fd, err := socks.open(cfg.DeviceAddr(i), cfg.Server, int32(i))
		if err != nil {
			return nil, fmt.Errorf("device %d: %w", i, err)
		}
		e.devices[i].fd = int32(fd)
		if cfg.Progress != nil && i > 0 && i%100000 == 0 {
			fmt.Fprintf(cfg.Progress, "opened %d sockets (%.1fs)\n", i, time.Since(opened).Seconds())
		}
	}
	for k := range floods {
		fd, err := socks.open(cfg.floodAddr(k), cfg.Server, int32(-2-k))
		if err != nil {
			return nil, fmt.Errorf("flood source %d: %w", k, err)
		}
		e.flood = append(e.flood, fd)
	}

	res := &Result{Scenario: cfg.Scenario, Server: cfg.Server.String(), Devices: cfg.Devices, Rate: cfg.Rate,
		Duration: cfg.Duration.Seconds(), Warmup: cfg.Warmup.Seconds(), Started: time.Now().UTC(), FDLimit: fdLimitNote()}
	e.base = time.Now()
	e.wheel = newWheel(0)
	e.progress = progressWriter(cfg.Progress)

	if cfg.needsPrepare() {
		start := e.clock()
		s := &stream{action: aRegister, pacer: pacer{rate: cfg.PrepareRate, start: start, limit: uint64(cfg.Devices)}}
		deadline := start + int64(float64(cfg.Devices)/cfg.PrepareRate*1e9) + int64(64*cfg.T1) + int64(5*time.Second)
		e.active = []*counters{&e.prepare, &e.second}
		e.phase, e.runStart, e.nextSample = "prepare", start, start+int64(time.Second)
		err := e.loop(ctx, []*stream{s}, func() bool {
			return (s.pacer.done() && e.busyN == 0) || e.now > deadline
		})
		p := e.prepare.phase(float64(e.now-start) / 1e9)
		res.Prepare = &p
		if err != nil {
			return res, err
		}
		reg := 0
		for i := range e.devices {
			if e.devices[i].registered {
				reg++
			}
		}
		if reg == 0 {
			return res, fmt.Errorf("load: no device registered in the preparation (%d sent, %d received, %d refused): is a registrar at %v, and do its users and passwords match?",
				p.SentMsgs, p.RecvMsgs, p.Refused, cfg.Server)
		}
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "prepared: %d of %d devices registered in %.1fs\n", reg, cfg.Devices, p.Seconds)
		}
	}

	streams := e.streams(res)
	start := e.clock()
	e.now = start
	for _, s := range streams {
		s.pacer.start = start
	}
	e.second.reset()
	e.active = []*counters{&e.second}
	e.phase, e.runStart, e.nextSample = "run", start, start+int64(time.Second)
	warm, end := start+int64(cfg.Warmup), start+int64(cfg.Duration)
	var ru0 unix.Rusage
	measuring := false
	err = e.loop(ctx, streams, func() bool {
		if !measuring && e.now >= warm {
			measuring = true
			e.active = append(e.active, &e.total)
			unix.Getrusage(unix.RUSAGE_SELF, &ru0)
		}
		return e.now >= end
	})
	var ru1 unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru1)
	measured := float64(e.now-warm) / 1e9
	if measuring && measured > 0 {
		cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
		res.CPU = cpu.Seconds() / measured
	}
	if err == nil {
		// Drain: replies to what was sent in the run still count, nothing new is offered.
		drainEnd := e.now + int64(cfg.Drain)
		e.phase = "drain"
		err = e.loop(ctx, nil, func() bool { return e.busyN == 0 || e.now >= drainEnd })
	}
	res.Run = e.total.phase(measured)
	res.Series = e.series
	res.Unfinished = e.busyN
	res.MaxBacklog = e.maxBacklog
	return res, err
}

// streams builds the scenario's action streams; start times are set by Run.
func (e *engine) streams(res *Result) []*stream {
	c, n := e.cfg, len(e.devices)
	one := func(a actionKind, rate float64) []*stream {
		return []*stream{{action: a, pacer: pacer{rate: rate}}}
	}
	switch c.Scenario {
	case ScenarioRegister:
		return one(aRegister, c.Rate)
	case ScenarioRefresh:
		res.Cadence = float64(n) / c.Rate
		return one(aRefresh, c.Rate)
	case ScenarioKeepalive:
		res.Cadence = float64(n) / c.Rate
		return one(aKeepalive, c.Rate)
	case ScenarioFlood:
		res.Cadence = float64(n) / c.Rate
		return append(one(aRefresh, c.Rate), &stream{action: aFlood, pacer: pacer{rate: c.FloodRate}})
	case ScenarioCalls:
		return one(aCall, c.Rate)
	case ScenarioMix:
		res.RefreshRate = float64(n) / c.Refresh.Seconds()
		res.Cadence = c.Refresh.Seconds()
		s := one(aRefresh, res.RefreshRate)
		if c.Keepalive > 0 {
			s = append(s, &stream{action: aKeepalive, cursor: n / 2, pacer: pacer{rate: float64(n) / c.Keepalive.Seconds()}})
		}
		if c.CallRate > 0 {
			s = append(s, &stream{action: aCall, cursor: n / 3, pacer: pacer{rate: c.CallRate}})
		}
		return s
	}
	return nil // idle
}

// loop is the generator: issue what the streams have due, wait up to a
// millisecond for replies (not at all while behind), read every readable
// socket once, fire due timers, sample each second; until stop says so.
func (e *engine) loop(ctx context.Context, streams []*stream, stop func() bool) error {
	for {
		if ctx.Err() != nil {
			return errInterrupted
		}
		e.now = e.clock()
		backlog := e.issue(streams)
		timeout := 1
		if backlog > 0 {
			timeout = 0
		}
		evs, err := e.socks.wait(timeout)
		if err != nil {
			return err
		}
		e.now = e.clock()
		for _, ev := range evs {
			fd := int(ev.Fd)
			n, err := e.socks.read(fd, e.rbuf)
			if err != nil {
				e.each(func(c *counters) {
					if isRefused(err) {
						c.refused++
					} else {
						c.sendErrors++
					}
				})
				continue
			}
			if n < 0 {
				continue
			}
			if owner := e.socks.owner[fd]; owner >= 0 {
				e.receive(int(owner), e.rbuf[:n])
			} else {
				e.floodReply(e.rbuf[:n])
			}
		}
		e.wheel.advance(tick(e.now), e.fire)
		if e.now >= e.nextSample {
			e.sampleSecond(backlog)
		}
		if stop() {
			return nil
		}
	}
}

// issue starts what each stream has due, at most maxPerIteration per stream,
// and returns what is left over (the backlog).
func (e *engine) issue(streams []*stream) uint64 {
	var backlog uint64
	n := len(e.devices)
	for _, s := range streams {
		due := s.pacer.due(e.now)
		k := min(due, maxPerIteration)
		for range k {
			if s.action == aFlood {
				e.sendFlood()
			} else {
				if s.action == aCall {
					// A device already in a call (as the callee of
					// another) is not a caller now: the next idle one is.
					for skip := 0; skip < 16 && e.devices[s.cursor].call != nil; skip++ {
						s.cursor = (s.cursor + 1) % n
					}
				}
				e.startAction(s.cursor, s.action)
				s.cursor++
				if s.cursor == n {
					s.cursor = 0
				}
			}
		}
		s.pacer.issued += k
		backlog += due - k
	}
	e.maxBacklog = max(e.maxBacklog, backlog)
	return backlog
}

func (e *engine) sampleSecond(backlog uint64) {
	t := float64(e.nextSample-e.runStart)/1e9 - 1
	if e.phase == "prepare" {
		t = -1e-9 - float64(len(e.series)) // marked negative: before the run
	}
	s := e.second.sample(t, backlog, e.busyN)
	if e.phase != "prepare" {
		e.series = append(e.series, s)
	}
	if e.progress != nil {
		e.progress(e.phase, s, e.second.natPings)
	}
	e.second.reset()
	e.nextSample += int64(time.Second)
	if e.nextSample <= e.now { // a stall longer than a second: skip, do not replay
		e.nextSample = e.now + int64(time.Second)
	}
}

// progressWriter prints one line a second: overwritten in place on a
// terminal, one per line otherwise.
func progressWriter(w interface{ Write([]byte) (int, error) }) func(phase string, s Sample, natPings uint64) {
	if w == nil {
		return nil
	}
	tty := false
	if f, ok := w.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		tty = err == nil
	}
	return func(phase string, s Sample, natPings uint64) {
		line := fmt.Sprintf("%-7s %6.0fs  sent %7d/s  recv %7d/s  ok %7d/s  fail %d  timeout %d  p50 %.2fms  p99 %.2fms  backlog %d  in-tx %d  natpings %d",
			phase, s.T+1, s.Sent, s.Recv, s.OK, s.Failed, s.Timeouts, float64(s.P50)/1000, float64(s.P99)/1000, s.Backlog, s.Busy, natPings)
		if tty {
			fmt.Fprintf(w, "\r\033[K%s", line)
			if phase == "drain" {
				fmt.Fprintln(w)
			}
			return
		}
		fmt.Fprintln(w, line)
	}
}
