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
	Meta       Meta      `json:"meta"`
	Scenario   string    `json:"scenario"`
	Server     string    `json:"server"`
	Devices    int       `json:"devices"`
	Rate       float64   `json:"offered_rate"` // actions per second of the main stream
	Duration   float64   `json:"duration_s"`
	Warmup     float64   `json:"warmup_s"`
	Deadline   float64   `json:"deadline_s"` // answers later than this after their request count as failed
	Started    time.Time `json:"started"`
	FDLimit    string    `json:"fd_limit"`
	Unfinished int       `json:"unfinished"`    // transactions still out after the drain
	MaxBacklog uint64    `json:"max_backlog"`   // most actions due and not yet sent: > 0 means the generator fell behind
	CPU        float64   `json:"generator_cpu"` // generator CPU time / wall time over the measured run (1 = one core)
	// MsgsPerCore is what the generator moved (sent + received datagrams)
	// per second of its own CPU time in the window: its ceiling on one
	// core at this mix, whatever the server did.
	MsgsPerCore float64 `json:"generator_msgs_per_core_s"`
	// With the generator pinned to one CPU: that CPU's busy share over the
	// window (the generator, the kernel's softirq and NAPI work for its
	// datagrams, and anything else that ran there) and the datagrams
	// moved per busy second, the ceiling with the kernel's share counted.
	GenCore     int           `json:"generator_core"`
	CoreBusy    float64       `json:"generator_core_busy"`
	MsgsPerBusy float64       `json:"generator_msgs_per_busy_core_s"`
	Prepare     *Phase        `json:"prepare,omitempty"`
	Run         Phase         `json:"run"`  // actions started after warm-up until the end, with their outcomes
	Span        Phase         `json:"span"` // everything from the run's start to the drain's end, by when it happened
	Series      []Sample      `json:"series"`
	ServerSide  *ServerCounts `json:"server_counts,omitempty"`
	Cadence     float64       `json:"cadence_s,omitempty"` // refresh/keepalive scenarios: seconds between two actions of one device
	RefreshRate float64       `json:"mix_refresh_rate,omitempty"`
	Avalanche   *Avalanche    `json:"avalanche,omitempty"`
}

// Avalanche is what the avalanche scenario is about: how long until every
// device held a 200, counted from the first REGISTER.
type Avalanche struct {
	Devices    int     `json:"devices"`
	Registered int     `json:"registered"`
	AllSeconds float64 `json:"all_registered_s"` // until the last device's 200; 0 when not every device got one
	// LastSeconds is when the last 200 came, whether or not every device
	// had one by then.
	LastSeconds float64 `json:"last_registered_s"`
	Retries     uint64  `json:"retries"` // registrations started over after a failure (RetryAfter)
	// Mode is how the devices register: "first" (a fresh server, first
	// contact), "reregister" (after a restart, each device's Call-ID with
	// the next CSeq and its cached credentials) or "reregister-fresh"
	// (after a restart, a new Call-ID as after a reboot).
	Mode string `json:"mode"`
	// Prepared is how many devices were registered before the restart
	// (Reregister only).
	Prepared int `json:"prepared,omitempty"`
	// Reached is, per device, the time from the first REGISTER to its
	// first 200 (µs).
	Reached Latency `json:"time_to_registered"`
}

// maxPerIteration bounds how many actions one loop iteration issues per
// stream, so receiving is never starved for long; what is left is the
// backlog, issued on the next iterations without waiting.
const maxPerIteration = 256

// Run runs cfg: opens the transport, prepares (registers every device)
// when the scenario needs it, runs the scenario for cfg.Duration and drains
// until every action of the measured window has an outcome or is past its
// deadline. The calling goroutine is locked to its thread for the whole
// run. A run whose server counts disagree with the generator's returns
// the result and an error.
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
	var (
		io  transport
		err error
	)
	if cfg.IO == IOSocket {
		io, err = newSockTransport(&cfg, floods)
	} else {
		io, err = newBatchTransport(&cfg, floods)
	}
	if err != nil {
		return nil, err
	}
	defer io.close()
	e := &engine{
		cfg: cfg, run: newRunID(), domain: cfg.domain(), io: io, floods: floods, deadline: int64(cfg.Deadline),
		devices: make([]device, cfg.Devices), rnd: rand.New(rand.NewPCG(rand.Uint64(), 1)),
		buf: make([]byte, 0, 4096), ubuf: make([]byte, 0, 32),
	}
	per := max(cfg.DevicesPerSocket, 1)
	for i := range e.devices {
		e.devices[i].ep = int32(i / per)
	}

	res := &Result{Meta: collectMeta(&cfg), Scenario: cfg.Scenario, Server: cfg.Server.String(), Devices: cfg.Devices, Rate: cfg.Rate,
		Duration: cfg.Duration.Seconds(), Warmup: cfg.Warmup.Seconds(), Deadline: cfg.Deadline.Seconds(),
		Started: time.Now().UTC(), FDLimit: fdLimitNote()}
	e.base = time.Now()
	e.wheel = newWheel(0)
	e.progress = progressWriter(cfg.Progress)

	prepared := 0
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
		if cfg.Reregister {
			prepared = reg
			if cfg.Restart != nil {
				if err := cfg.Restart(ctx); err != nil {
					return res, fmt.Errorf("load: restart between the preparation and the avalanche: %w", err)
				}
			}
			e.forgetRegistrations()
		}
	}

	before := readServer(&cfg)
	streams := e.streams(res)
	start := e.clock()
	e.now = start
	for _, s := range streams {
		s.pacer.start = start
	}
	e.second.reset()
	e.active = []*counters{&e.second, &e.span}
	e.phase, e.runStart, e.nextSample = "run", start, start+int64(time.Second)
	warm, end := start+int64(cfg.Warmup), start+int64(cfg.Duration)
	var ru0 unix.Rusage
	var windowStart int64
	var busy0, total0 uint64
	res.GenCore = pinnedCPU()
	startWindow := func() {
		e.measuring, windowStart = true, e.now
		e.active = append(e.active, &e.total)
		unix.Getrusage(unix.RUSAGE_SELF, &ru0)
		if res.GenCore >= 0 {
			busy0, total0 = cpuBusy(res.GenCore)
		}
	}
	if cfg.Scenario == ScenarioAvalanche {
		// Everything counts: the window opens before the first REGISTER.
		e.aval = &avalancheState{start: start, action: cfg.avalancheAction()}
		startWindow()
	}
	err = e.loop(ctx, streams, func() bool {
		if !e.measuring && e.now >= warm {
			startWindow()
		}
		if e.aval != nil && e.registeredN == cfg.Devices {
			return true
		}
		return e.now >= end
	})
	var ru1 unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru1)
	if res.GenCore >= 0 && total0 > 0 {
		busy1, total1 := cpuBusy(res.GenCore)
		if total1 > total0 {
			res.CoreBusy = float64(busy1-busy0) / float64(total1-total0)
		}
	}
	measured := float64(e.now-windowStart) / 1e9
	e.measuring = false
	e.active = []*counters{&e.second, &e.span} // the drain adds only outcomes to the totals
	res.Run = e.total.phase(measured)          // messages of the window, before the drain
	if windowStart > 0 && measured > 0 {
		cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
		res.CPU = cpu.Seconds() / measured
		moved := float64(e.total.sentMsgs + e.total.recvMsgs)
		if cpu > 0 {
			res.MsgsPerCore = moved / cpu.Seconds()
		}
		if res.CoreBusy > 0 {
			res.MsgsPerBusy = moved / (res.CoreBusy * measured)
		}
	}
	if err == nil {
		// Drain: actions of the window still out get until their deadline
		// (a call also its hold time and its BYE's deadline); nothing new
		// is offered.
		bound := e.now + e.deadline
		if e.pending[aCall] > 0 {
			bound += int64(cfg.CallHold) + e.deadline
		}
		e.phase = "drain"
		err = e.loop(ctx, nil, func() bool { return e.pendingN() == 0 || e.now >= bound })
	}
	// What has no outcome now failed: it was not answered within its deadline.
	for a := range e.pending {
		e.total.actions[a].Failed += e.pending[a]
		e.total.actions[a].Unfinished += e.pending[a]
	}
	runMsgs := res.Run
	res.Run = e.total.phase(measured)
	res.Run.SentMsgs, res.Run.RecvMsgs, res.Run.Kinds = runMsgs.SentMsgs, runMsgs.RecvMsgs, runMsgs.Kinds
	res.Span = e.span.phase(float64(e.now-start) / 1e9)
	res.Series = e.series
	res.Unfinished = e.busyN
	res.MaxBacklog = e.maxBacklog
	res.Meta.LoadEnd = loadavg()
	if a := e.aval; a != nil {
		res.Avalanche = &Avalanche{Devices: cfg.Devices, Registered: e.registeredN, Retries: a.retries,
			Mode: cfg.avalancheMode(), Prepared: prepared, Reached: summarize(&a.reached)}
		if e.registeredN > 0 {
			res.Avalanche.LastSeconds = float64(a.last-a.start) / 1e9
		}
		if e.registeredN == cfg.Devices {
			res.Avalanche.AllSeconds = res.Avalanche.LastSeconds
		}
	}
	if err == nil && before != nil {
		// Every transaction still out is in flight, measured or not.
		after := readServer(&cfg)
		res.ServerSide = compareServer(before, after, &res.Span, uint64(e.busyN))
		if res.Avalanche != nil {
			checkAvalancheBindings(res.ServerSide, before, after, res.Avalanche.Registered, cfg.Reregister)
		}
		if !res.ServerSide.OK {
			err = fmt.Errorf("load: the server's counts disagree with the generator's: %s", res.ServerSide.Check)
		}
	}
	return res, err
}

// forgetRegistrations ends the preparation's registrations before an
// avalanche after a restart: the devices' Call-IDs, CSeqs and cached
// challenges stay (a phone keeps them while its server is away), but
// none holds a 200 of the avalanche yet, and a transaction the
// preparation left unanswered is abandoned (its timers are stale).
func (e *engine) forgetRegistrations() {
	for i := range e.devices {
		e.endTx(i)
		e.devices[i].registered = false
	}
	e.registeredN = 0
}

func (e *engine) pendingN() uint64 {
	var n uint64
	for _, p := range e.pending {
		n += p
	}
	return n
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
	case ScenarioAvalanche:
		// Each device once; the ones that fail start over on their own
		// (timerRetry).
		return []*stream{{action: c.avalancheAction(), pacer: pacer{rate: c.Rate, limit: uint64(n)}}}
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
		if c.RegisterRate > 0 {
			s = append(s, &stream{action: aRegister, cursor: 2 * n / 3, pacer: pacer{rate: c.RegisterRate}})
		}
		return s
	}
	return nil // idle
}

// loop is the generator: issue what the streams have due and hand it to
// the kernel, wait up to a millisecond for replies (not at all while
// behind), handle every datagram that arrived, fire due timers, sample each
// second; until stop says so.
func (e *engine) loop(ctx context.Context, streams []*stream, stop func() bool) error {
	fail := func(err error) { e.each(func(c *counters) { c.countErr(err) }) }
	endpoints := int32(e.cfg.endpoints())
	per := int32(max(e.cfg.DevicesPerSocket, 1))
	deliver := func(ep int32, b []byte) {
		e.now = e.clock()
		if ep < endpoints {
			e.receive(int(ep*per), b)
		} else {
			e.floodReply(b)
		}
	}
	for {
		if ctx.Err() != nil {
			return errInterrupted
		}
		e.now = e.clock()
		backlog := e.issue(streams)
		e.io.flush(fail)
		timeout := 1
		if backlog > 0 {
			timeout = 0
		}
		if err := e.io.poll(timeout, deliver, fail); err != nil {
			return err
		}
		e.now = e.clock()
		e.wheel.advance(tick(e.now), e.fire)
		if e.now >= e.nextSample {
			e.sampleSecond(backlog)
		}
		if stop() {
			e.io.flush(fail)
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
