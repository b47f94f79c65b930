package load

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/pinhole-sip/pinhole/bench/digest"
	"github.com/pinhole-sip/pinhole/bench/hist"
)

// device is one simulated SIP device. It has at most one client transaction
// out at a time (tx), like a phone's REGISTER or INVITE, and at most one
// call, as caller or callee. Kept small: a million of them live at once.
type device struct {
	ep   int32  // endpoint: source address and port (transport)
	gen  uint32 // bumped whenever tx starts or ends: older timers are stale
	busy bool   // tx is out
	tx   clientTx

	registered bool
	kaMeasured bool   // the keepalive out was sent in the measured window
	kaAt       int64  // when the keepalive out was sent; 0: none out
	regEpoch   uint32 // registration Call-ID generation: a new one per first contact
	regCSeq    uint32
	chal       *challenge // last challenge, reused with rising nc (RFC 2617 §3.2.2)
	nc         uint32
	call       *call
}

// challenge is a challenge a device answers, with its HA1 for it (the
// same for every request until the next challenge).
type challenge struct {
	digest.Challenge
	ha1 string
}

// clientTx is the state a request needs to be rebuilt byte for byte when it
// is retransmitted: nothing is kept of the bytes themselves.
type clientTx struct {
	id          uint64 // in the branch
	kind        msgKind
	action      actionKind
	cseq        uint32
	withAuth    bool // carries credentials
	proxyAuth   bool // Proxy-Authorization (after a 407) rather than Authorization
	challenged  bool // this action already answered one challenge
	first       int64
	actionStart int64
	measured    bool          // the action started inside the measured window
	last        time.Duration // last retransmission wait
	proceeding  bool
}

// call is a dialog the device takes part in.
type call struct {
	caller     bool
	gen        uint32
	peer       int32 // callee device (caller side)
	id         string
	inviteCSeq uint32
	// from the 2xx (caller) or the INVITE (callee)
	to     []byte // To with the callee's tag, as the dialog uses it
	from   []byte
	target []byte   // remote target: the callee's Contact URI
	routes [][]byte // route set, in the order Route headers are sent
	// callee side
	resp    []byte // the 2xx, resent on INVITE retransmission and until ACK
	acked   bool
	wait    time.Duration
	started int64
	// caller side: the call started in the measured window; its setup
	// took longer than the deadline
	measured, late bool
}

// stream issues one kind of action at a fixed rate to devices in turn.
type stream struct {
	action actionKind
	pacer  pacer
	cursor int
}

// engine runs the devices. Everything happens on one goroutine, so nothing
// is locked; see run for the loop.
type engine struct {
	cfg     Config
	run     string // random per process: Call-IDs, tags and branches never collide with an earlier run's
	domain  string
	devices []device
	io      transport
	wheel   *wheel
	base    time.Time
	now     int64 // ns since base
	nextTx  uint64
	nextCID uint64
	rnd     *rand.Rand

	lastCallee int

	registeredN int // devices holding a 200 of this run
	// avalanche: set for that scenario while its run goes on
	aval *avalancheState

	floods int // flood sources, endpoints after the devices'
	floodN uint64
	busyN  int // devices with a transaction out

	// statistics: every event is counted in each active set, except the
	// outcome of an action, which the window's totals count only when the
	// action started inside the window (outcome)
	active  []*counters
	total   counters // actions started in the measured window, their outcomes whenever they come
	span    counters // everything from the start of the run to the end of the drain (server check)
	prepare counters
	second  counters
	series  []Sample

	measuring bool             // inside the measured window
	pending   [nActions]uint64 // measured actions without an outcome yet
	deadline  int64            // Config.Deadline in ns

	phase      string
	runStart   int64
	nextSample int64
	maxBacklog uint64
	progress   func(phase string, s Sample, natPings uint64)

	buf   []byte // message being built
	okBuf []byte // a line of Config.OKLog being built
	ubuf  []byte // a user name being built
	msg   message
	rs    [][]byte // scratch for route sets
}

const (
	tagPrefix   = "t"
	branchMagic = "z9hG4bK" // RFC 3261 §8.1.1.7
	userAgent   = "pinhole-bench"
)

// The time helpers: ns since base, and its tick on the timer wheel.
func (e *engine) clock() int64    { return int64(time.Since(e.base)) }
func tick(ns int64) int64         { return ns / int64(time.Millisecond) }
func micros(from, to int64) int64 { return (to - from) / 1000 }

func (e *engine) each(f func(c *counters)) {
	for _, c := range e.active {
		f(c)
	}
}

// ---- sending ----

func (e *engine) sendDev(d *device, b []byte, kind msgKind, retransmission bool) {
	err := e.io.send(d.ep, b)
	e.each(func(c *counters) {
		if err != nil {
			c.countErr(err)
			return
		}
		c.sentMsgs++
		if retransmission {
			c.kinds[kind].Retransmitted++
		} else {
			c.kinds[kind].Sent++
		}
	})
}

// startTx sends a new client transaction from device i.
func (e *engine) startTx(i int, kind msgKind, cseq uint32, withAuth bool) {
	d := &e.devices[i]
	e.nextTx++
	if !d.busy {
		e.busyN++
	}
	d.busy = true
	d.gen++
	d.tx.id, d.tx.kind, d.tx.cseq, d.tx.withAuth = e.nextTx, kind, cseq, withAuth
	d.tx.first, d.tx.last, d.tx.proceeding = e.now, 0, false
	if withAuth {
		d.nc++
	}
	e.buf = e.buildRequest(e.buf[:0], i)
	e.sendDev(d, e.buf, kind, false)
	wait, _ := retransmitAfter(kind == kInvite, false, 0, 0, e.cfg.T1, e.cfg.T2)
	d.tx.last = wait
	e.wheel.set(timerEntry{at: tick(e.now + int64(wait)), dev: int32(i), gen: d.gen, kind: timerRetransmit})
}

// endTx closes device i's transaction and, when the action ends with it,
// counts the action.
func (e *engine) endTx(i int) {
	d := &e.devices[i]
	if d.busy {
		e.busyN--
	}
	d.busy = false
	d.gen++
}

// actionDone counts the outcome of device i's action: its latency runs
// from the action's start, and an answer later than the deadline after
// the transaction's first request makes it a failure.
func (e *engine) actionDone(i int, ok bool) {
	d := &e.devices[i]
	a, start := d.tx.action, d.tx.actionStart
	late := ok && e.now-d.tx.first > e.deadline
	e.outcome(a, d.tx.measured, ok && !late, late, micros(start, e.now))
	if e.aval != nil && a == e.aval.action && !d.registered {
		// A device that got no 200 tries again, as a phone does, after a
		// jittered pause so that the failed ones do not come back as one.
		wait := time.Duration(float64(e.cfg.RetryAfter) * (0.5 + e.rnd.Float64()))
		e.wheel.set(timerEntry{at: tick(e.now + int64(wait)), dev: int32(i), gen: d.gen, kind: timerRetry})
	}
}

// avalancheState follows the avalanche: when each device first held a 200.
type avalancheState struct {
	action  actionKind     // aRegister, or aRefresh for a re-registration after a restart
	start   int64          // the first REGISTER
	last    int64          // the latest first 200
	reached hist.Histogram // per device, µs from start to its first 200
	retries uint64         // registrations started over after a failure
}

// registered marks device d as holding a 200 of this run.
func (e *engine) registered(d *device) {
	if d.registered {
		return
	}
	d.registered = true
	e.registeredN++
	if e.aval != nil {
		e.aval.last = e.now
		e.aval.reached.Record(micros(e.aval.start, e.now))
	}
}

// outcome counts an action's end in the per-second and span sets, and in
// the window's totals only when the action started in the window: an
// answer to a request of the warm-up does not count, one that arrives in
// the drain does, and neither is divided by a window it does not belong
// to. lat < 0: no latency to record.
func (e *engine) outcome(a actionKind, measured, ok, late bool, lat int64) {
	count := func(c *counters) {
		if ok {
			c.actions[a].Succeeded++
			if lat >= 0 {
				c.actions[a].latency.Record(lat)
			}
		} else {
			c.actions[a].Failed++
			if late {
				c.actions[a].Late++
			}
		}
	}
	for _, c := range e.active {
		if c != &e.total {
			count(c)
		}
	}
	if measured {
		count(&e.total)
		e.pending[a]--
	}
}

// started counts the start of action a and says whether it is measured.
func (e *engine) started(a actionKind) bool {
	e.each(func(c *counters) { c.actions[a].Started++ })
	if e.measuring {
		e.pending[a]++
	}
	return e.measuring
}

// ---- request building ----

func (e *engine) appendUser(b []byte, i int) []byte {
	b = append(b, e.cfg.UserPrefix...)
	var digits [7]byte
	n := i
	for k := 6; k >= 0; k-- {
		digits[k] = byte('0' + n%10)
		n /= 10
	}
	if n > 0 { // more than 7 digits
		return strconv.AppendInt(b, int64(i), 10)
	}
	return append(b, digits[:]...)
}

// appendAddr writes the host:port device i puts in Via and Contact: its
// socket's, or the private address of Config.ContactHost, as a phone
// behind NAT does, with the socket's port.
func (e *engine) appendAddr(b []byte, i int) []byte {
	a := e.cfg.DeviceAddr(i)
	if e.cfg.ContactHost.IsValid() {
		b = e.cfg.ContactHost.AppendTo(b)
	} else {
		b = a.Addr().AppendTo(b)
	}
	b = append(b, ':')
	return strconv.AppendUint(b, uint64(a.Port()), 10)
}

func (e *engine) appendVia(b []byte, i int, txID uint64) []byte {
	b = append(b, "Via: SIP/2.0/UDP "...)
	b = e.appendAddr(b, i)
	b = append(b, ";rport;branch="+branchMagic...)
	b = append(b, e.run...)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(i), 36)
	b = append(b, '.')
	b = strconv.AppendUint(b, txID, 36)
	return append(b, "\r\n"...)
}

func (e *engine) appendAOR(b []byte, i int) []byte {
	b = append(b, "<sip:"...)
	b = e.appendUser(b, i)
	b = append(b, '@')
	b = append(b, e.domain...)
	return append(b, '>')
}

func (e *engine) appendContact(b []byte, i int) []byte {
	b = append(b, "Contact: <sip:"...)
	b = e.appendUser(b, i)
	b = append(b, '@')
	b = e.appendAddr(b, i)
	return append(b, ";transport=udp>\r\n"...)
}

func (e *engine) appendTag(b []byte, i int) []byte {
	b = append(b, tagPrefix...)
	b = append(b, e.run...)
	b = append(b, '.')
	return strconv.AppendInt(b, int64(i), 36)
}

func (e *engine) appendAuth(b []byte, i int, method, uri string) []byte {
	d := &e.devices[i]
	if d.tx.proxyAuth {
		b = append(b, "Proxy-Authorization: "...)
	} else {
		b = append(b, "Authorization: "...)
	}
	user := string(e.appendUser(e.ubuf[:0], i))
	ha1 := d.chal.ha1
	// The cnonce is derived from the device and nc: a retransmission must
	// carry the same bytes.
	cnonce := e.run + strconv.FormatUint(uint64(i)<<20|uint64(d.nc&0xfffff), 36)
	b = digest.AppendAuthorization(b, d.chal.Challenge, user, ha1, method, uri, d.nc, cnonce)
	return append(b, "\r\n"...)
}

// appendHead writes a request's start line, Via, Max-Forwards and From of
// device i, and the name of the To header, whose value the caller writes.
func (e *engine) appendHead(b []byte, i int, method, uri string, txID uint64) []byte {
	b = append(b, method...)
	b = append(b, ' ')
	b = append(b, uri...)
	b = append(b, " SIP/2.0\r\n"...)
	b = e.appendVia(b, i, txID)
	b = append(b, "Max-Forwards: 70\r\nFrom: "...)
	b = e.appendAOR(b, i)
	b = append(b, ";tag="...)
	b = e.appendTag(b, i)
	return append(b, "\r\nTo: "...)
}

// buildRequest writes device i's current request.
func (e *engine) buildRequest(b []byte, i int) []byte {
	d := &e.devices[i]
	switch d.tx.kind {
	case kRegisterInitial, kRegisterAuth, kRegisterRefresh:
		uri := "sip:" + e.domain
		b = e.appendHead(b, i, "REGISTER", uri, d.tx.id)
		b = e.appendAOR(b, i)
		b = append(b, "\r\nCall-ID: r"...)
		b = append(b, e.run...)
		b = append(b, '.')
		b = strconv.AppendInt(b, int64(i), 36)
		b = append(b, '.')
		b = strconv.AppendUint(b, uint64(d.regEpoch), 10)
		b = append(b, "\r\nCSeq: "...)
		b = strconv.AppendUint(b, uint64(d.tx.cseq), 10)
		b = append(b, " REGISTER\r\n"...)
		b = e.appendContact(b, i)
		b = append(b, "Expires: "...)
		b = strconv.AppendInt(b, int64(e.cfg.Expires), 10)
		b = append(b, "\r\n"...)
		if d.tx.withAuth {
			b = e.appendAuth(b, i, "REGISTER", uri)
		}
		b = append(b, "User-Agent: "+userAgent+"\r\nContent-Length: 0\r\n\r\n"...)
	case kInvite:
		c := d.call
		uri := e.calleeURI(c)
		b = e.appendHead(b, i, "INVITE", uri, d.tx.id)
		b = e.appendAOR(b, int(c.peer))
		b = append(b, "\r\nCall-ID: "...)
		b = append(b, c.id...)
		b = append(b, "\r\nCSeq: "...)
		b = strconv.AppendUint(b, uint64(d.tx.cseq), 10)
		b = append(b, " INVITE\r\n"...)
		b = e.appendContact(b, i)
		if d.tx.withAuth {
			b = e.appendAuth(b, i, "INVITE", uri)
		}
		b = e.appendSDP(b, i)
	case kBye:
		c := d.call
		b = e.appendInDialog(b, i, "BYE", d.tx.id, d.tx.cseq)
		if d.tx.withAuth {
			b = e.appendAuth(b, i, "BYE", string(c.target))
		}
		b = append(b, "Content-Length: 0\r\n\r\n"...)
	}
	return b
}

// appendInDialog writes the start of an in-dialog request of the caller
// (ACK for a 2xx, BYE): to the remote target through the route set (RFC 3261
// §12.2.1.1, loose routing).
func (e *engine) appendInDialog(b []byte, i int, method string, txID uint64, cseq uint32) []byte {
	c := e.devices[i].call
	b = e.appendHead(b, i, method, string(c.target), txID)
	b = append(b, c.to...)
	b = append(b, "\r\n"...)
	for _, r := range c.routes {
		b = append(b, "Route: "...)
		b = append(b, r...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "Call-ID: "...)
	b = append(b, c.id...)
	b = append(b, "\r\nCSeq: "...)
	b = strconv.AppendUint(b, uint64(cseq), 10)
	b = append(b, ' ')
	b = append(b, method...)
	return append(b, "\r\n"...)
}

// calleeURI is the Request-URI of a call's INVITE: the callee's AOR.
func (e *engine) calleeURI(c *call) string {
	return "sip:" + string(e.appendUser(nil, int(c.peer))) + "@" + e.domain
}

func (e *engine) appendSDP(b []byte, i int) []byte {
	ip := e.cfg.DeviceAddr(i).Addr().String()
	body := "v=0\r\no=- 1 1 IN IP4 " + ip + "\r\ns=-\r\nc=IN IP4 " + ip +
		"\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
	b = append(b, "Content-Type: application/sdp\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	return append(b, body...)
}

// ---- actions ----

// startAction makes device i do a. It reports false when the device still
// has a transaction out: an open-loop generator does not wait, it counts
// the action as offered but skipped.
func (e *engine) startAction(i int, a actionKind) bool {
	d := &e.devices[i]
	e.each(func(c *counters) { c.actions[a].Offered++ })
	if a == aKeepalive {
		if d.kaAt != 0 { // the last one was never answered
			e.outcome(aKeepalive, d.kaMeasured, false, false, -1)
		}
		d.kaMeasured, d.kaAt = e.started(a), max(e.now, 1)
		e.sendKeepalive(i)
		return true
	}
	busy := d.busy
	if a == aCall {
		busy = busy || d.call != nil
	}
	if busy {
		e.each(func(c *counters) { c.actions[a].Busy++ })
		return false
	}
	if a == aCall && e.pickCallee(i) < 0 {
		e.each(func(c *counters) { c.actions[a].Busy++ })
		return false
	}
	d.tx.measured = e.started(a)
	d.tx.action, d.tx.actionStart, d.tx.challenged, d.tx.proxyAuth = a, e.now, false, false
	switch a {
	case aRegister:
		// A first contact: new Call-ID, CSeq 1, nothing cached (RFC 3261
		// §10.2.4 asks a UA to keep its Call-ID; a rebooted one cannot).
		d.regEpoch++
		d.regCSeq = 1
		d.chal, d.nc = nil, 0
		e.startTx(i, kRegisterInitial, 1, false)
	case aRefresh:
		d.regCSeq++
		e.startTx(i, kRegisterRefresh, d.regCSeq, d.chal != nil)
	case aCall:
		peer := e.lastCallee
		e.nextCID++
		d.call = &call{caller: true, peer: int32(peer), inviteCSeq: 1, measured: d.tx.measured,
			id: "c" + e.run + "." + strconv.FormatUint(e.nextCID, 36)}
		// The callee is reserved so that no other call picks it meanwhile.
		e.devices[peer].call = &call{id: d.call.id, started: e.now}
		e.startTx(i, kInvite, 1, false)
	}
	return true
}

// pickCallee returns a device other than i with no call, or -1, and
// keeps it in lastCallee.
func (e *engine) pickCallee(i int) int {
	n := len(e.devices)
	e.lastCallee = -1
	for range 4 {
		j := (i + 1 + e.rnd.IntN(n-1)) % n
		if e.devices[j].call == nil && e.devices[j].registered {
			e.lastCallee = j
			return j
		}
	}
	return -1
}

// STUN Binding request (RFC 5389 §6): the transaction ID carries the send
// time so that a reply gives a latency without any state.
func (e *engine) sendKeepalive(i int) {
	d := &e.devices[i]
	if !e.cfg.KeepaliveSTUN {
		e.sendDev(d, crlfPing, kKeepalive, false) // RFC 5626 §4.4.1 double-CRLF ping
		return
	}
	b := append(e.buf[:0], 0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42)
	b = binary.BigEndian.AppendUint64(b, uint64(e.now))
	b = binary.BigEndian.AppendUint32(b, uint32(i))
	e.buf = b
	e.sendDev(d, b, kKeepalive, false)
}

// ---- receiving ----

func (e *engine) receive(i int, b []byte) {
	e.each(func(c *counters) { c.recvMsgs++ })
	if isKeepaliveReply(b) {
		var lat int64 = -1
		if len(b) >= 20 && b[0] == 0x01 {
			lat = micros(int64(binary.BigEndian.Uint64(b[8:16])), e.now)
		}
		e.each(func(c *counters) {
			c.keepalivesR++
			c.kinds[kKeepalive].Replies++
			if lat >= 0 {
				c.kinds[kKeepalive].latency.Record(lat)
			}
		})
		e.pong(i)
		return
	}
	m := &e.msg
	if err := parse(b, m); err != nil {
		e.each(func(c *counters) { c.unparsable++ })
		return
	}
	if per := e.cfg.DevicesPerSocket; per > 1 {
		// A shared socket: find the device among the socket's.
		j := -1
		if m.request {
			j = e.deviceOfURI(m.ruri)
		} else if m.nVia > 0 {
			if dev, _, ok := e.txIDOf(m.via[0]); ok {
				j = dev
			}
		}
		if j < i || j >= i+per || j >= len(e.devices) {
			e.each(func(c *counters) { c.unmatched++ })
			return
		}
		i = j
	}
	if m.request {
		e.serverRequest(i, m)
		return
	}
	e.response(i, m)
}

// pong ends the keepalive of the device at endpoint owner i (with several
// devices behind one endpoint, the oldest keepalive out among them: a pong
// names no device).
func (e *engine) pong(i int) {
	j := -1
	for k := i; k < min(i+max(e.cfg.DevicesPerSocket, 1), len(e.devices)); k++ {
		if at := e.devices[k].kaAt; at != 0 && (j < 0 || at < e.devices[j].kaAt) {
			j = k
		}
	}
	if j < 0 {
		return // a pong to nothing out: a duplicate
	}
	d := &e.devices[j]
	lat := e.now - d.kaAt
	late := lat > e.deadline
	e.outcome(aKeepalive, d.kaMeasured, !late, late, lat/1000)
	d.kaAt = 0
}

// txIDOf returns the device and transaction ID in a branch the generator
// wrote: z9hG4bK<run>.<device>.<transaction>, both base 36.
func (e *engine) txIDOf(via []byte) (dev int, id uint64, ok bool) {
	br := param(via, "branch")
	prefix := len(branchMagic) + len(e.run) + 1
	if len(br) <= prefix || !bytes.Equal(br[len(branchMagic):prefix-1], []byte(e.run)) {
		return 0, 0, false
	}
	d, t, found := bytes.Cut(br[prefix:], []byte{'.'})
	if !found {
		return 0, 0, false
	}
	dv, err1 := strconv.ParseInt(string(d), 36, 32)
	id, err2 := strconv.ParseUint(string(t), 36, 64)
	return int(dv), id, err1 == nil && err2 == nil
}

// deviceOfURI returns the device whose user is in a Request-URI, or -1.
func (e *engine) deviceOfURI(uri []byte) int {
	u, ok := bytes.CutPrefix(uri, []byte("sip:"))
	at := bytes.IndexByte(u, '@')
	if !ok || at < 0 {
		return -1
	}
	u, ok = bytes.CutPrefix(u[:at], []byte(e.cfg.UserPrefix))
	n, err := strconv.Atoi(string(u))
	if !ok || err != nil {
		return -1
	}
	return n
}

func (e *engine) response(i int, m *message) {
	d := &e.devices[i]
	if m.nVia == 0 {
		e.each(func(c *counters) { c.unmatched++ })
		return
	}
	dev, id, ok := e.txIDOf(m.via[0])
	if !ok || dev != i || !d.busy || id != d.tx.id {
		e.each(func(c *counters) { c.unmatched++ })
		return
	}
	kind := d.tx.kind
	if m.status < 200 {
		e.each(func(c *counters) { c.kinds[kind].Provisional++ })
		d.tx.proceeding = true
		return
	}
	lat := micros(d.tx.first, e.now)
	challenged := m.status == 401 || m.status == 407
	e.each(func(c *counters) {
		k := &c.kinds[kind]
		switch {
		case m.status < 300:
			k.OK++
		case challenged:
			k.Challenged++
		default:
			k.Failed++
		}
		k.latency.Record(lat)
		c.finalLat.Record(lat)
	})
	e.endTx(i)

	if kind == kInvite {
		e.sendAck(i, m)
	}
	if challenged {
		e.answerChallenge(i, m)
		return
	}
	ok = m.status < 300
	switch kind {
	case kRegisterInitial, kRegisterAuth, kRegisterRefresh:
		if ok {
			e.registered(d)
			if d.tx.action == aRefresh && e.cfg.OKLog != nil {
				e.logOK(i)
			}
		}
		e.actionDone(i, ok)
	case kInvite:
		if !ok {
			e.endCall(i)
			e.actionDone(i, false)
			return
		}
		// Setup time is the call action's latency; its success is the
		// BYE's, and a setup slower than the deadline fails it.
		setup := micros(d.tx.actionStart, e.now)
		d.call.late = e.now-d.tx.first > e.deadline
		for _, c := range e.active {
			if c != &e.total {
				c.actions[aCall].latency.Record(setup)
			}
		}
		if d.call.measured {
			e.total.actions[aCall].latency.Record(setup)
		}
		d.call.gen++
		e.wheel.set(timerEntry{at: tick(e.now + int64(e.cfg.CallHold)), dev: int32(i), gen: d.call.gen, kind: timerHangup})
	case kBye:
		measured := d.call != nil && d.call.measured
		late := ok && (e.now-d.tx.first > e.deadline || d.call != nil && d.call.late)
		e.endCall(i)
		e.outcome(aCall, measured, ok && !late, late, -1)
	}
}

// logOK writes device i's refresh 200 to Config.OKLog.
func (e *engine) logOK(i int) {
	b := e.appendUser(e.okBuf[:0], i)
	b = append(b, ' ')
	b = strconv.AppendInt(b, e.base.UnixMilli()+e.now/int64(time.Millisecond), 10)
	b = append(b, '\n')
	e.okBuf = b
	_, _ = e.cfg.OKLog.Write(b)
}

// answerChallenge retries the action's request with credentials, once per
// action (RFC 3261 §22.2): a second challenge means they were refused.
func (e *engine) answerChallenge(i int, m *message) {
	d := &e.devices[i]
	var chosen *challenge
	for _, v := range m.chall[:m.nChall] {
		c, err := digest.ParseChallenge(string(v))
		if err == nil && c.Algorithm == e.cfg.Algorithm {
			user := string(e.appendUser(nil, i))
			chosen = &challenge{Challenge: c, ha1: digest.HA1(c.Algorithm, user, c.Realm, Password(user))}
			break
		}
	}
	stale := chosen != nil && chosen.Stale
	if chosen == nil || (d.tx.challenged && !stale) {
		if d.tx.kind == kInvite || d.tx.kind == kBye {
			e.endCall(i)
		}
		e.actionDone(i, false)
		return
	}
	d.chal, d.nc = chosen, 0
	d.tx.challenged = true
	d.tx.proxyAuth = m.status == 407
	switch d.tx.kind {
	case kRegisterInitial, kRegisterAuth, kRegisterRefresh:
		d.regCSeq++
		e.startTx(i, kRegisterAuth, d.regCSeq, true)
	case kInvite:
		d.call.inviteCSeq++
		e.startTx(i, kInvite, d.call.inviteCSeq, true)
	case kBye:
		e.startTx(i, kBye, d.tx.cseq+1, true)
	}
}

// sendAck acknowledges a final response to an INVITE: for a non-2xx within
// the transaction (same branch, RFC 3261 §17.1.1.3), for a 2xx as a new
// request along the dialog's route set (§13.2.2.4), learning the dialog
// from the 2xx first.
func (e *engine) sendAck(i int, m *message) {
	d := &e.devices[i]
	c := d.call
	b := e.buf[:0]
	if m.status >= 300 {
		b = e.appendHead(b, i, "ACK", e.calleeURI(c), d.tx.id)
		b = append(b, m.to...)
		b = append(b, "\r\nCall-ID: "...)
		b = append(b, c.id...)
		b = append(b, "\r\nCSeq: "...)
		b = strconv.AppendUint(b, uint64(m.cseq), 10)
		b = append(b, " ACK\r\nContent-Length: 0\r\n\r\n"...)
		e.buf = b
		e.sendDev(d, b, kInvite, false)
		e.each(func(c *counters) { c.kinds[kInvite].Sent-- }) // an ACK is not a new INVITE
		return
	}
	if c.target == nil {
		c.to = bytes.Clone(m.to)
		c.target = bytes.Clone(uriOf(m.contact))
		// The route set is the Record-Route list reversed (§12.1.2).
		e.rs = e.rs[:0]
		for _, v := range m.rr[:m.nRR] {
			e.rs = splitComma(e.rs, v)
		}
		c.routes = c.routes[:0]
		for k := len(e.rs) - 1; k >= 0; k-- {
			c.routes = append(c.routes, bytes.Clone(e.rs[k]))
		}
		if len(c.target) == 0 {
			c.target = []byte(e.calleeURI(c))
		}
	}
	e.nextTx++
	b = e.appendInDialog(b, i, "ACK", e.nextTx, m.cseq)
	b = append(b, "Content-Length: 0\r\n\r\n"...)
	e.buf = b
	e.sendDev(d, b, kInvite, false)
	e.each(func(c *counters) { c.kinds[kInvite].Sent-- })
}

// endCall forgets device i's call and frees its callee.
func (e *engine) endCall(i int) {
	d := &e.devices[i]
	if d.call == nil {
		return
	}
	if d.call.caller {
		if p := &e.devices[d.call.peer]; p.call != nil && p.call.id == d.call.id && p.call.resp == nil {
			p.call = nil // reserved but never reached
		}
	}
	d.call = nil
}

// serverRequest answers a request the server sent to device i: NAT pings
// (OPTIONS), and the callee's side of calls.
func (e *engine) serverRequest(i int, m *message) {
	d := &e.devices[i]
	switch string(m.method) {
	case "OPTIONS":
		e.each(func(c *counters) {
			c.kinds[kOptionsIn].Replies++
			if bytes.HasPrefix(m.callID, []byte("ph-")) {
				c.natPings++
			}
		})
		e.reply(i, m, 200, "OK", false)
	case "INVITE":
		e.each(func(c *counters) { c.kinds[kInviteIn].Replies++ })
		switch {
		case d.call != nil && d.call.resp != nil && d.call.id == string(m.callID):
			e.sendDev(d, d.call.resp, kInviteIn, true) // a retransmitted INVITE
		case d.call != nil && (d.call.caller || d.call.id != string(m.callID)):
			e.reply(i, m, 486, "Busy Here", false)
		default:
			d.call = &call{id: string(m.callID), started: e.now, wait: e.cfg.T1}
			e.buf = e.buildResponse(e.buf[:0], i, m, 200, "OK", true)
			d.call.resp = bytes.Clone(e.buf)
			e.sendDev(d, d.call.resp, kInviteIn, false)
			e.each(func(c *counters) { c.kinds[kInviteIn].OK++ })
			d.call.gen++
			e.wheel.set(timerEntry{at: tick(e.now + int64(e.cfg.T1)), dev: int32(i), gen: d.call.gen, kind: timer2xx})
		}
	case "ACK":
		if d.call != nil && !d.call.caller && d.call.id == string(m.callID) {
			d.call.acked = true
		}
	case "BYE":
		e.each(func(c *counters) { c.kinds[kByeIn].Replies++ })
		if d.call != nil && !d.call.caller && d.call.id == string(m.callID) {
			d.call = nil
			e.reply(i, m, 200, "OK", false)
			e.each(func(c *counters) { c.kinds[kByeIn].OK++ })
			return
		}
		e.reply(i, m, 481, "Call/Transaction Does Not Exist", false)
	case "CANCEL":
		e.reply(i, m, 200, "OK", false)
	default:
		e.reply(i, m, 501, "Not Implemented", false)
	}
}

func (e *engine) reply(i int, m *message, code int, reason string, invite2xx bool) {
	e.buf = e.buildResponse(e.buf[:0], i, m, code, reason, invite2xx)
	kind := kOptionsIn
	switch string(m.method) {
	case "INVITE":
		kind = kInviteIn
	case "BYE":
		kind = kByeIn
	}
	e.sendDev(&e.devices[i], e.buf, kind, false)
}

// buildResponse answers m as device i (RFC 3261 §8.2.6): Vias, From, To,
// Call-ID and CSeq copied, a To tag added; a 2xx to an INVITE also copies
// Record-Route (§12.1.1) and carries a Contact and an SDP answer.
func (e *engine) buildResponse(b []byte, i int, m *message, code int, reason string, invite2xx bool) []byte {
	b = append(b, "SIP/2.0 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, reason...)
	b = append(b, "\r\n"...)
	for _, v := range m.via[:m.nVia] {
		b = append(b, "Via: "...)
		b = append(b, v...)
		b = append(b, "\r\n"...)
	}
	if invite2xx {
		for _, v := range m.rr[:m.nRR] {
			b = append(b, "Record-Route: "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	b = append(b, "From: "...)
	b = append(b, m.from...)
	b = append(b, "\r\nTo: "...)
	b = append(b, m.to...)
	if param(m.to, "tag") == nil {
		b = append(b, ";tag="...)
		b = e.appendTag(b, i)
	}
	b = append(b, "\r\nCall-ID: "...)
	b = append(b, m.callID...)
	b = append(b, "\r\nCSeq: "...)
	b = strconv.AppendUint(b, uint64(m.cseq), 10)
	b = append(b, ' ')
	b = append(b, m.cseqMethod...)
	b = append(b, "\r\nUser-Agent: "+userAgent+"\r\n"...)
	if invite2xx {
		b = e.appendContact(b, i)
		return e.appendSDP(b, i)
	}
	return append(b, "Content-Length: 0\r\n\r\n"...)
}

// ---- timers ----

func (e *engine) fire(t timerEntry) {
	i := int(t.dev)
	d := &e.devices[i]
	switch t.kind {
	case timerRetransmit:
		if t.gen != d.gen || !d.busy {
			return
		}
		elapsed := time.Duration(e.now - d.tx.first)
		wait, again := retransmitAfter(d.tx.kind == kInvite, d.tx.proceeding, d.tx.last, elapsed, e.cfg.T1, e.cfg.T2)
		if !again && wait <= 0 {
			// Timer F or B: the transaction timed out.
			kind := d.tx.kind
			e.each(func(c *counters) { c.kinds[kind].Timeouts++ })
			e.endTx(i)
			if kind == kInvite || kind == kBye {
				e.endCall(i)
			}
			e.actionDone(i, false)
			return
		}
		if again {
			e.buf = e.buildRequest(e.buf[:0], i)
			e.sendDev(d, e.buf, d.tx.kind, true)
		}
		d.tx.last = wait
		e.wheel.set(timerEntry{at: tick(e.now + int64(wait)), dev: t.dev, gen: d.gen, kind: timerRetransmit})
	case timerRetry:
		if t.gen != d.gen || d.busy || d.registered || e.aval == nil || e.phase == "drain" {
			return
		}
		e.aval.retries++
		e.startAction(i, e.aval.action)
	case timerHangup:
		c := d.call
		if c == nil || !c.caller || t.gen != c.gen {
			return
		}
		if d.busy { // a refresh is out (mix): hang up a little later
			e.wheel.set(timerEntry{at: tick(e.now) + 100, dev: t.dev, gen: c.gen, kind: timerHangup})
			return
		}
		d.tx.action, d.tx.challenged, d.tx.proxyAuth, d.tx.measured = aCall, false, false, c.measured
		e.startTx(i, kBye, c.inviteCSeq+1, false)
	case timer2xx:
		c := d.call
		if c == nil || c.caller || t.gen != c.gen {
			return
		}
		elapsed := time.Duration(e.now - c.started)
		if c.acked {
			// Waiting for the BYE; give up on a caller that vanished.
			if elapsed > e.cfg.CallHold+64*e.cfg.T1 {
				d.call = nil
				return
			}
			e.wheel.set(timerEntry{at: tick(e.now + int64(e.cfg.T2)), dev: t.dev, gen: c.gen, kind: timer2xx})
			return
		}
		if elapsed >= 64*e.cfg.T1 { // §13.3.1.4: no ACK, the call is over
			e.each(func(c *counters) { c.kinds[kInviteIn].Timeouts++ })
			d.call = nil
			return
		}
		e.sendDev(d, c.resp, kInviteIn, true)
		c.wait = min(2*c.wait, e.cfg.T2)
		e.wheel.set(timerEntry{at: tick(e.now + int64(c.wait)), dev: t.dev, gen: c.gen, kind: timer2xx})
	}
}

// ---- flood ----

// floodMessages are what scanners and attackers send to a SIP edge: a
// sipvicious OPTIONS sweep, REGISTER guessing for common extensions,
// toll-fraud INVITEs, and junk. Each gets a fresh Call-ID and branch.
// floodRegisterGuess and floodRegisterBadAuth are the well-formed
// REGISTERs among floodMessages: a registrar may answer them (401), so the
// server check allows for them.
const (
	floodRegisterGuess   = 1
	floodRegisterBadAuth = 2
)

var floodMessages = []string{
	"OPTIONS sip:100@%[1]s SIP/2.0\r\nVia: SIP/2.0/UDP %[2]s;branch=z9hG4bK-fl%[3]d;rport\r\nMax-Forwards: 70\r\nTo: \"sipvicious\"<sip:100@1.1.1.1>\r\nFrom: \"sipvicious\"<sip:100@1.1.1.1>;tag=fl%[3]d\r\nUser-Agent: friendly-scanner\r\nCall-ID: fl%[3]d\r\nCSeq: 1 OPTIONS\r\nContact: <sip:100@%[2]s>\r\nAccept: application/sdp\r\nContent-Length: 0\r\n\r\n",
	"REGISTER sip:%[1]s SIP/2.0\r\nVia: SIP/2.0/UDP %[2]s;branch=z9hG4bK-fl%[3]d;rport\r\nMax-Forwards: 70\r\nFrom: <sip:%[4]d@%[1]s>;tag=fl%[3]d\r\nTo: <sip:%[4]d@%[1]s>\r\nCall-ID: fl%[3]d\r\nCSeq: 1 REGISTER\r\nContact: <sip:%[4]d@%[2]s>\r\nUser-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n",
	"REGISTER sip:%[1]s SIP/2.0\r\nVia: SIP/2.0/UDP %[2]s;branch=z9hG4bK-fl%[3]d;rport\r\nMax-Forwards: 70\r\nFrom: <sip:admin@%[1]s>;tag=fl%[3]d\r\nTo: <sip:admin@%[1]s>\r\nCall-ID: fl%[3]d\r\nCSeq: 2 REGISTER\r\nContact: <sip:admin@%[2]s>\r\nAuthorization: Digest username=\"admin\", realm=\"pinhole\", nonce=\"bogus%[3]d\", uri=\"sip:%[1]s\", response=\"0123456789abcdef0123456789abcdef\", algorithm=MD5\r\nContent-Length: 0\r\n\r\n",
	"INVITE sip:00972%[4]d@%[1]s SIP/2.0\r\nVia: SIP/2.0/UDP %[2]s;branch=z9hG4bK-fl%[3]d;rport\r\nMax-Forwards: 70\r\nFrom: <sip:%[4]d@%[1]s>;tag=fl%[3]d\r\nTo: <sip:00972%[4]d@%[1]s>\r\nCall-ID: fl%[3]d\r\nCSeq: 1 INVITE\r\nContact: <sip:%[4]d@%[2]s>\r\nContent-Length: 0\r\n\r\n",
	"\x00\x01junk that is not SIP at all %[3]d\r\n\r\n",
	"REGISTER sip:%[1]s SIP/2.0\r\nVia: SIP/2.0/UDP %[2]s;branch=z9hG4bK-fl%[3]d\r\nCSeq: banana\r\n\r\n",
}

func (e *engine) sendFlood() {
	k := int(e.floodN % uint64(e.floods))
	e.floodN++
	src := e.cfg.floodAddr(k).String()
	which := e.floodN % uint64(len(floodMessages))
	msg := fmt.Sprintf(floodMessages[which], e.domain, src, e.floodN, 100+e.floodN%900)
	err := e.io.send(int32(e.cfg.endpoints()+k), []byte(msg))
	e.each(func(c *counters) {
		c.actions[aFlood].Offered++
		if err != nil {
			c.countErr(err)
			return
		}
		if which == floodRegisterGuess || which == floodRegisterBadAuth {
			c.floodRegs++
		}
		c.sentMsgs++
		c.kinds[kFlood].Sent++
		c.actions[aFlood].Started++
	})
}

func (e *engine) floodReply(b []byte) {
	e.each(func(c *counters) {
		c.recvMsgs++
		c.kinds[kFlood].Replies++
	})
}

// newRunID returns 8 random hex digits.
func newRunID() string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], rand.Uint32())
	return hex.EncodeToString(b[:])
}

var errInterrupted = errors.New("load: interrupted")

var crlfPing = []byte("\r\n\r\n")
