package slowpath

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/internal/sipheader"
	"github.com/pinhole-sip/pinhole/slowpath/nat"
	"github.com/pinhole-sip/pinhole/slowpath/registrar"
	"github.com/pinhole-sip/pinhole/slowpath/retrans"
)

// stateless answers REGISTERs that arrive over UDP for the standalone
// registrar, and OPTIONS for pinhole itself, without a sipgo server
// transaction (docs/registrar.md): the read filter hands the datagram to a
// bounded queue (or answers a retransmission at once), a fixed set of
// workers parses it with sipgo's parser, runs the registrar and writes the
// response on the socket it came in on, and a retransmission is answered
// from a bounded memory of responses (package retrans).
//
// Why: sipgo keeps a server transaction about 32 s after its final
// response, some 5 KB of heap each, and starts a goroutine per request.
// At a million devices that was 2 972 bytes of resident memory per binding
// against 267 of live heap (docs/benchmarks.md, "Memory per binding").
type stateless struct {
	s       *Server
	parser  *sip.Parser
	cache   *retrans.Cache
	q       chan *slJob // every other REGISTER, and OPTIONS for pinhole
	vq      chan *slJob // REGISTERs whose credentials verify: drained first (priority.go)
	done    chan struct{}
	wg      sync.WaitGroup
	workers int
	// committed is the batch of answers the store's committer writes
	// (raw200.go), sent after each group commit; nil in tests that
	// build a stateless without a store (answerBatch's methods take nil).
	committed *answerBatch
	shed      atomic.Uint64 // REGISTERs dropped on a full queue
	noKey     atomic.Uint64 // REGISTERs without a top Via: answered, not remembered
	options   atomic.Uint64 // OPTIONS for pinhole answered
	// unparsed: retransmissions answered (or dropped as in progress)
	// before parsing, in the read filter.
	unparsed atomic.Uint64
	// optionsDeclined: OPTIONS taken that the proxy would route after all.
	optionsDeclined atomic.Uint64
	// rawAnswered and rawDeclined: credential-less REGISTERs challenged
	// from their bytes in the read filter, and those left to the workers
	// (rawchallenge.go).
	rawAnswered atomic.Uint64
	rawDeclined atomic.Uint64

	// queuedVouched: REGISTERs whose credentials verified, queued ahead
	// of the rest (priority.go); shedVouched: those shed on a full queue
	// of their own (counted in shed too).
	queuedVouched atomic.Uint64
	shedVouched   atomic.Uint64

	// raw200: REGISTERs with credentials (any REGISTER when
	// authentication is off) answered from their bytes in the workers,
	// and those left to sipgo (raw200.go).
	raw200  raw200Counts
	latency *metrics.PrometheusHistogram

	listenersMu sync.RWMutex
	listeners   map[netip.AddrPort]udpListener // by the address datagrams arrive on
}

// udpListener is one of pinhole's UDP sockets as take finds it from the
// address a datagram arrived on: the socket, and that address as text.
type udpListener struct {
	conn  net.PacketConn
	local string
}

// listener returns the socket that received a datagram on local, and
// local as text (as sipgo prints it in a request's source), or nil when
// it is not a listener of ours. Formatting the address and looking the
// socket up by it cost two allocations per datagram; the few listeners
// are remembered by address instead (they are opened once, at Start).
func (sl *stateless) listener(local net.Addr) (net.PacketConn, string) {
	ua, ok := local.(*net.UDPAddr)
	if !ok {
		s := local.String()
		return sl.s.udp.get(s), s
	}
	ap := ua.AddrPort()
	sl.listenersMu.RLock()
	l, ok := sl.listeners[ap]
	sl.listenersMu.RUnlock()
	if ok {
		return l.conn, l.local
	}
	s := local.String()
	c := sl.s.udp.get(s)
	if c == nil {
		return nil, s
	}
	sl.listenersMu.Lock()
	if sl.listeners == nil {
		sl.listeners = map[netip.AddrPort]udpListener{}
	}
	sl.listeners[ap] = udpListener{conn: c, local: s}
	sl.listenersMu.Unlock()
	return c, s
}

// slJob is one REGISTER datagram, copied out of sipgo's read buffer.
type slJob struct {
	buf    []byte
	conn   net.PacketConn // the listener it arrived on; the answer leaves from it
	remote net.Addr
	local  string
	start  time.Time
	id     []byte // the transaction key's bytes (scratch)
	raw    raw200 // the raw 200's state (raw200.go)
	vouch  vouch  // the read filter's Valid verdict on its credentials, if any (priority.go)
	// out is the batch of answers of the worker handling the job, for
	// what it writes in its own goroutine (answers.go); nil otherwise.
	out *answerBatch
}

var slJobs = sync.Pool{New: func() any { return &slJob{buf: make([]byte, 0, 2048), id: make([]byte, 0, 256)} }}

// slOut are the buffers responses are written into; a response is sent
// (and remembered) from whichever goroutine its durability completes on.
var slOut = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// slAnswers are the buffers a remembered response is copied into to
// answer a retransmission. Past saturation most datagrams are
// retransmissions; copying each answer into a buffer that was then
// dropped made every one of them an allocation of its response's size.
var slAnswers = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// putAnswer returns an answer buffer, grown to b, to slAnswers.
func putAnswer(p *[]byte, b []byte) {
	if cap(b) <= 16384 {
		*p = b[:0]
		slAnswers.Put(p)
	}
}

// initStateless turns the stateless path on when REGISTER is answered by
// the standalone registrar. The mid-registrar answers only after the main
// registrar did, and the edge relay forwards REGISTER to a farm node:
// both are proxies for REGISTER and keep sipgo's transactions (their
// client transactions need the server side to match responses to).
func (s *Server) initStateless(parser *sip.Parser) {
	if s.mid != nil {
		return
	}
	if farm := s.ops.farm.Load(); farm != nil && farm.RegisterSet() != nil {
		return
	}
	rc := s.cfg.Registrar
	workers := rc.Workers
	if workers == 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	queue, rate := rc.Queue, rc.ResponseCacheRate
	if queue == 0 {
		queue = config.DefaultRegistrarQueue
	}
	if rate == 0 {
		rate = config.DefaultResponseCacheRate
	}
	sl := &stateless{
		s:       s,
		parser:  parser,
		cache:   retrans.New(rate),
		q:       make(chan *slJob, queue),
		vq:      make(chan *slJob, queue),
		done:    make(chan struct{}),
		workers: workers,
		latency: s.ops.latency[sip.REGISTER],
	}
	// The 200s of new and changed bindings leave from the store's
	// committer after each group commit, hundreds at a time: one
	// sendmmsg per batch instead of a sendto each (17 us of the core's
	// 61 per first registration over veth, profile of 2026-12-07).
	sl.committed = newAnswerBatch()
	s.store.AfterCommits(sl.committed.flush)
	s.ops.metrics.RegisterMetricsWriter(sl.writeMetrics)
	for range workers {
		sl.wg.Add(1)
		go sl.work()
	}
	s.sl = sl
}

// stop ends the workers once the listeners are closed; REGISTERs still
// queued get no answer (their devices retransmit to the next pinhole).
func (sl *stateless) stop() {
	close(sl.done)
	sl.wg.Wait()
}

// take reports whether the vetted UDP datagram data is a REGISTER (or an
// OPTIONS for pinhole itself) for the stateless path, after queueing a copy
// of it or shedding it. It runs in sipgo's reading goroutine, so it never
// blocks: past the queue's capacity the REGISTER is dropped and counted,
// and responses and in-dialog requests, which never come here, keep flowing
// to sipgo (the hand-off's rule, docs/fastpath.md "Shedding instead of
// livelock": a new registration is the lowest priority, the device
// retransmits it).
func (sl *stateless) take(p sip.TransportReadProps, data []byte) bool {
	if p.Transport != "UDP" {
		return false
	}
	register := bytes.HasPrefix(data, []byte("REGISTER "))
	if !register && !sl.optionsForItself(data) {
		return false
	}
	conn, local := sl.listener(p.LocalAddr)
	if conn == nil {
		return false // not a listener of ours: sipgo answers as before
	}
	j := slJobs.Get().(*slJob)
	if register && sl.retransmitted(j, conn, p.RemoteAddr, data) {
		sl.release(j)
		return true
	}
	credentials := hasCredentials(data)
	authOn := sl.s.ops.authn.Load() != nil
	q := sl.q
	j.vouch = vouch{}
	copied := register && credentials
	if copied {
		// Scanned in the job's copy, where the worker's raw 200 reads
		// it: once vouched for, it is not scanned again (priority.go).
		j.buf = append(j.buf[:0], data...)
	}
	if register && credentials && sl.vouchedScan(j.buf, &j.vouch, &j.raw.reg) {
		q = sl.vq // priority.go
	} else if authOn && len(sl.q) >= cap(sl.q)/2 {
		// Past half the queue what proves nothing goes first. A REGISTER
		// without credentials: its answer is a 401 that starts a
		// registration, while one with credentials completes a
		// registration whose 401 was already paid for; under overload
		// this keeps the work done turning into registrations instead
		// of challenges whose answers are shed. One with credentials
		// that do not verify: a guess, or a device whose nonce pinhole
		// no longer knows and which a 401 sends round once more.
		// Without authentication nothing proves more than anything
		// else: the whole queue serves, and only a full one sheds.
		sl.shed.Add(1)
		sl.release(j)
		return true
	}
	start := time.Now()
	// The raw 401: for a REGISTER without credentials, and for one whose
	// credentials earn a new challenge (a nonce pinhole did not issue, as
	// after a restart, or an expired one); those that verify go on to
	// the worker's raw 200.
	if register && authOn && j.vouch.v == nil && sl.challengeRaw(conn, p.RemoteAddr, data, start) {
		sl.release(j)
		return true
	}
	if !copied {
		j.buf = append(j.buf[:0], data...)
	}
	j.conn, j.remote, j.local, j.start = conn, p.RemoteAddr, local, start
	sl.s.ops.inflight.Add(1)
	select {
	case q <- j:
		if q == sl.vq {
			sl.queuedVouched.Add(1)
		}
	default:
		sl.s.ops.inflight.Add(-1)
		sl.shed.Add(1)
		if q == sl.vq {
			sl.shedVouched.Add(1)
		}
		sl.release(j)
	}
	return true
}

// retransmitted answers a retransmission of a REGISTER from the response
// cache before it is parsed or queued, and reports whether it did (or
// dropped it, its first copy still in progress). Under overload, when the
// queue is full and answers are late, devices retransmit (RFC 3261 Timer
// E): each such copy of a request already answered costs a look-up here
// instead of a parse, and is answered even when new REGISTERs are shed.
// The key is read from the raw bytes (rawTransactionID); when it cannot
// be, the worker recognises the retransmission after parsing, as before.
func (sl *stateless) retransmitted(j *slJob, conn net.PacketConn, remote net.Addr, data []byte) bool {
	ua, ok := remote.(*net.UDPAddr)
	if !ok {
		return false
	}
	// The source as req.Source() prints it (net.UDPAddr.String).
	ap := ua.AddrPort()
	if ap.Addr().Is4In6() {
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	var srcBuf [64]byte
	src := ap.AppendTo(srcBuf[:0])
	if j.id, ok = rawTransactionID(j.id[:0], data, src); !ok {
		return false
	}
	p := slAnswers.Get().(*[]byte)
	b, st := sl.cache.Peek(sl.cache.Key(j.id), (*p)[:0])
	switch st {
	case retrans.Answered:
		sl.unparsed.Add(1) // before the answer: whoever sees it sees the count
		_, _ = conn.WriteTo(b, remote)
		putAnswer(p, b)
		return true
	case retrans.Pending:
		putAnswer(p, b)
		sl.unparsed.Add(1)
		return true
	}
	putAnswer(p, b)
	return false
}

// retransmission marks key's transaction as begun in the response cache,
// or reports that this REGISTER is a retransmission instead: answered
// again from the cache, or dropped while its first copy is in progress
// (its answer leaves once the first copy is durable).
func (sl *stateless) retransmission(j *slJob, key uint64) bool {
	p := slAnswers.Get().(*[]byte)
	b, st := sl.cache.Begin(key, (*p)[:0])
	if st == retrans.Answered {
		j.out.write(j.conn, b, j.remote) // in the worker
	}
	putAnswer(p, b)
	return st == retrans.Answered || st == retrans.Pending
}

// optionsForItself reports whether msg is an OPTIONS that pinhole answers
// itself (proxy.OptionsForItself): its Request-URI names pinhole or a
// served domain, without a user, and it has no Route. Those the stateless
// path answers as it answers REGISTER: a monitoring system or a phone that
// pings pinhole with OPTIONS every 30 s would otherwise leave a sipgo
// transaction behind for 32 s each time. A retransmission is answered
// again: the answer depends on nothing that changes.
func (sl *stateless) optionsForItself(msg []byte) bool {
	if !bytes.HasPrefix(msg, []byte("OPTIONS ")) {
		return false
	}
	line, _, ok := bytes.Cut(msg, []byte("\r\n"))
	if !ok {
		return false
	}
	target, _, ok := bytes.Cut(line[len("OPTIONS "):], []byte(" "))
	if !ok || bytes.IndexByte(target, '@') >= 0 || hasHeader(msg, "route") {
		return false
	}
	var u sip.Uri
	if err := sip.ParseUri(string(target), &u); err != nil {
		return false
	}
	p := sl.s.ops.proxy.Load()
	return p != nil && p.OptionsForItself(&u)
}

// hasCredentials reports whether the header section of msg has an
// Authorization header (it has no compact form), without parsing it.
func hasCredentials(msg []byte) bool { return hasHeader(msg, "authorization") }

// hasHeader reports whether the header section of msg has a field named
// name (lower case, a name without a compact form), without parsing it.
func hasHeader(msg []byte, name string) bool {
	// Skip the request line.
	i := bytes.IndexByte(msg, '\n')
	for i >= 0 && i+1 < len(msg) {
		line := msg[i+1:]
		end := bytes.IndexByte(line, '\n')
		if end < 0 {
			end = len(line)
		}
		line = bytes.TrimRight(line[:end], "\r")
		if len(line) == 0 {
			return false // end of the headers
		}
		if c := bytes.IndexByte(line, ':'); c > 0 && sipheader.EqualFold(bytes.TrimRight(line[:c], " \t"), name) {
			return true
		}
		i += 1 + end
	}
	return false
}

func (sl *stateless) release(j *slJob) {
	j.conn, j.remote, j.out = nil, nil, nil
	if cap(j.buf) <= 8192 {
		slJobs.Put(j)
	}
}

func (sl *stateless) work() {
	defer sl.wg.Done()
	out := newAnswerBatch() // answers.go
	defer out.flush()
	for {
		// The vouched queue first, whatever waits in the other.
		var j *slJob
		select {
		case j = <-sl.vq:
		default:
			select {
			case j = <-sl.vq:
			case j = <-sl.q:
			default:
				// Nothing waits: the answers batched so far leave
				// before the worker does.
				out.flush()
				select {
				case j = <-sl.vq:
				case j = <-sl.q:
				case <-sl.done:
					return
				}
			}
		}
		j.out = out
		sl.handle(j)
		if sl.s.hooks.listenUDP.Load() != nil {
			// With the fast path's sockets (its event loops), between
			// two REGISTERs let a waiting event loop have the P (see handoff.Conn.ReadFrom): a worker
			// draining a full queue would otherwise delay absorbed
			// refreshes by up to 10 ms when pinhole has one core.
			// Without the fast path there is no event loop to wait for,
			// and the yield put the worker behind every runnable
			// goroutine of sipgo's (one per request and timer) for each
			// REGISTER: under a flood the queue drained at the
			// scheduler's pace, not the worker's.
			runtime.Gosched()
		}
	}
}

// handle answers one REGISTER: from memory when it is a retransmission,
// else through the registrar; or one OPTIONS for pinhole.
func (sl *stateless) handle(j *slJob) {
	finish := func() {
		sl.s.ops.inflight.Add(-1)
		sl.release(j)
	}
	key, done := sl.answerRaw200(j, finish)
	if done {
		return
	}
	msg, err := sl.parser.ParseSIP(j.buf)
	req, ok := msg.(*sip.Request)
	if err != nil || !ok {
		if err != nil {
			sipgoParseFailures.Inc() // counted as sipgo's reader would have
		}
		if key != 0 {
			sl.cache.Forget(key)
		}
		finish()
		return
	}
	req.SetTransport("UDP")
	req.SetSource(j.remote.String())
	if req.Method == sip.OPTIONS {
		sl.answerOptions(j, req)
		finish()
		return
	}

	// A key the raw path began (it declined before changing anything)
	// is this REGISTER's; otherwise the parsed request's.
	if key == 0 {
		if j.id, ok = transactionID(j.id[:0], req); ok {
			key = sl.cache.Key(j.id)
			if sl.retransmission(j, key) {
				finish()
				return
			}
		} else {
			sl.noKey.Add(1)
		}
	}

	if sl.s.ops.draining.Load() {
		res := sip.NewResponseFromRequest(req, sip.StatusServiceUnavailable, "Service Unavailable", nil)
		res.AppendHeader(sip.NewHeader("Retry-After", drainRetryAfter))
		sl.send(j, key, res)
		finish()
		return
	}
	remote, rok := nat.ParseAddrPort(req.Source())
	local, lok := nat.ParseAddrPort(j.local)
	if !rok || !lok {
		// Without the source we could not reach the device again (as
		// registrar.Handle).
		sl.send(j, key, registrar.Reply(req, 500, "Unknown Source Address"))
		finish()
		return
	}
	flow := location.Flow{Transport: location.TransportUDP, Remote: remote, Local: local}
	sl.s.reg.Respond(req, flow, func(res *sip.Response) {
		sl.send(j, key, res)
		if sl.latency != nil {
			sl.latency.Update(time.Since(j.start).Seconds())
		}
		finish()
	})
}

// answerOptions answers an OPTIONS for pinhole itself, as the proxy would
// through a transaction (proxy.SelfAnswer), or a 503 while stopping.
func (sl *stateless) answerOptions(j *slJob, req *sip.Request) {
	if sl.s.ops.draining.Load() && opensTransaction(req) {
		res := sip.NewResponseFromRequest(req, sip.StatusServiceUnavailable, "Service Unavailable", nil)
		res.AppendHeader(sip.NewHeader("Retry-After", drainRetryAfter))
		sl.send(j, 0, res)
		return
	}
	res, handled := sl.s.ops.proxy.Load().SelfAnswer(req)
	if !handled {
		// A reload put a farm in front meanwhile: dropped, and the
		// retransmission goes to sipgo (take asks the new proxy).
		sl.optionsDeclined.Add(1)
		return
	}
	if res != nil {
		sl.options.Add(1) // before the answer, as for retransmissions
		sl.send(j, 0, res)
	}
	if h := sl.s.ops.latency[sip.OPTIONS]; h != nil {
		h.Update(time.Since(j.start).Seconds())
	}
}

// send writes res to the address the request came from, from the socket
// it arrived on (RFC 3261 §18.2.2 with RFC 3581: the source address and
// port, whatever the Via says; docs/architecture.md "One address, one
// port"), and remembers it for retransmissions unless it is a digest
// challenge: a retransmitted REGISTER without credentials may as well be
// challenged afresh (the nonce carries its own state, slowpath/auth), and
// challenges are half of a first registration's answers.
func (sl *stateless) send(j *slJob, key uint64, res *sip.Response) {
	out := slOut.Get().(*bytes.Buffer)
	out.Reset()
	res.StringWrite(out)
	b := out.Bytes()
	if key != 0 {
		if res.StatusCode == sip.StatusUnauthorized || res.StatusCode == sip.StatusProxyAuthRequired {
			sl.cache.Forget(key)
		} else {
			// Before the write, so a retransmission racing the answer
			// finds it rather than a pending mark.
			sl.cache.Finish(key, b)
		}
	}
	_, _ = j.conn.WriteTo(b, j.remote)
	if out.Cap() <= 16384 {
		slOut.Put(out)
	}
}

// transactionID appends what identifies req's server transaction (RFC
// 3261 §17.2.3): with a branch starting with the magic cookie, the branch,
// the sent-by of the top Via and the method; pinhole adds the CSeq number
// and the source address, so that another sender reusing a branch (a
// badly random client, or someone who saw it) neither gets a device's 200
// nor sets what the device gets. Without the cookie (RFC 2543 clients) it
// adds the Request-URI, the From and To tags and the Call-ID. ok is false
// without a top Via.
func transactionID(dst []byte, req *sip.Request) ([]byte, bool) {
	via := req.Via()
	cseq := req.CSeq()
	if via == nil || cseq == nil {
		return dst, false
	}
	branch, _ := via.Params.Get("branch")
	dst = append(dst, branch...)
	dst = append(dst, 0)
	dst = append(dst, strings.ToLower(via.Host)...)
	dst = append(dst, ':')
	dst = strconv.AppendInt(dst, int64(via.Port), 10)
	dst = append(dst, 0)
	dst = strconv.AppendUint(dst, uint64(cseq.SeqNo), 10)
	dst = append(dst, ' ')
	dst = append(dst, cseq.MethodName...)
	dst = append(dst, 0)
	dst = append(dst, req.Source()...)
	if !strings.HasPrefix(branch, sip.RFC3261BranchMagicCookie) {
		dst = append(dst, 0)
		dst = append(dst, req.Recipient.String()...)
		if f := req.From(); f != nil {
			t, _ := f.Params.Get("tag")
			dst = append(dst, 0)
			dst = append(dst, t...)
		}
		if t := req.To(); t != nil {
			tag, _ := t.Params.Get("tag")
			dst = append(dst, 0)
			dst = append(dst, tag...)
		}
		if c := req.CallID(); c != nil {
			dst = append(dst, 0)
			dst = append(dst, c.Value()...)
		}
	}
	return dst, true
}

// writeMetrics publishes the stateless path's counts at scrape time.
func (sl *stateless) writeMetrics(w io.Writer) {
	st := sl.cache.Stats()
	metrics.WriteCounterUint64(w, `pinhole_registrar_retransmissions_total{result="answered"}`, st.Answered)
	metrics.WriteCounterUint64(w, `pinhole_registrar_retransmissions_total{result="in_progress"}`, st.Pending)
	metrics.WriteCounterUint64(w, "pinhole_registrar_response_cache_stored_total", st.Stored)
	metrics.WriteCounterUint64(w, "pinhole_registrar_response_cache_evicted_total", st.Evicted)
	metrics.WriteCounterUint64(w, "pinhole_registrar_response_cache_evicted_early_total", st.EvictedEarly)
	metrics.WriteCounterUint64(w, "pinhole_registrar_response_cache_too_big_total", st.TooBig)
	metrics.WriteGaugeUint64(w, "pinhole_registrar_response_cache_bytes", st.Bytes)
	metrics.WriteGaugeUint64(w, "pinhole_registrar_response_cache_capacity_bytes", st.Capacity)
	metrics.WriteCounterUint64(w, "pinhole_registrar_shed_total", sl.shed.Load())
	metrics.WriteCounterUint64(w, "pinhole_registrar_shed_vouched_total", sl.shedVouched.Load())
	metrics.WriteCounterUint64(w, "pinhole_registrar_vouched_total", sl.queuedVouched.Load())
	metrics.WriteCounterUint64(w, "pinhole_registrar_unkeyed_total", sl.noKey.Load())
	metrics.WriteCounterUint64(w, "pinhole_registrar_retransmissions_unparsed_total", sl.unparsed.Load())
	metrics.WriteCounterUint64(w, `pinhole_registrar_raw_challenges_total{result="answered"}`, sl.rawAnswered.Load())
	metrics.WriteCounterUint64(w, `pinhole_registrar_raw_challenges_total{result="declined"}`, sl.rawDeclined.Load())
	metrics.WriteCounterUint64(w, `pinhole_registrar_raw_200_total{result="answered"}`, sl.raw200.answered.Load())
	metrics.WriteCounterUint64(w, `pinhole_registrar_raw_200_total{result="fallback"}`, sl.raw200.fallback.Load())
	for why := raw200Off; why < numRaw200Why; why++ {
		metrics.WriteCounterUint64(w, `pinhole_registrar_raw_200_declined_total{reason="`+raw200WhyNames[why]+`"}`, sl.raw200.declined[why].Load())
	}
	metrics.WriteCounterUint64(w, `pinhole_stateless_options_total{result="answered"}`, sl.options.Load())
	metrics.WriteCounterUint64(w, `pinhole_stateless_options_total{result="declined"}`, sl.optionsDeclined.Load())
	metrics.WriteGaugeUint64(w, "pinhole_registrar_queued", uint64(len(sl.q)+len(sl.vq)))
	metrics.WriteGaugeUint64(w, "pinhole_registrar_workers", uint64(sl.workers))
}
