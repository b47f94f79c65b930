package load

import "time"

// RFC 3261 §17.1.1.1 and §17.1.2.2 timer defaults.
const (
	DefaultT1 = 500 * time.Millisecond
	DefaultT2 = 4 * time.Second
)

// retransmitAfter returns how long to wait before the next retransmission of
// a client transaction over UDP, given the interval just waited, or false
// when the transaction has timed out instead. elapsed is the time since the
// first transmission.
//
//   - non-INVITE (§17.1.2.2): Timer E starts at T1 and doubles up to T2; once
//     a provisional reply arrived it fires every T2. Timer F = 64·T1 ends it.
//   - INVITE (§17.1.1.2): Timer A starts at T1 and doubles without a cap
//     until a provisional reply stops retransmissions; Timer B = 64·T1 ends
//     it. The generator applies the same 64·T1 bound after a provisional
//     reply too, so a call that never gets a final answer is counted as a
//     timeout instead of hanging (RFC 3261 leaves that to the TU).
//
// The last wait is cut short so that the timeout fires at exactly 64·T1.
func retransmitAfter(invite, proceeding bool, last, elapsed, t1, t2 time.Duration) (wait time.Duration, retransmit bool) {
	limit := 64 * t1
	if elapsed >= limit {
		return 0, false
	}
	switch {
	case invite && proceeding:
		return limit - elapsed, false
	case invite:
		wait = 2 * last
	case proceeding:
		wait = t2
	default:
		wait = min(2*last, t2)
	}
	if last == 0 {
		wait = t1
	}
	if elapsed+wait >= limit {
		return limit - elapsed, false
	}
	return wait, true
}

// timerKind says what a timer entry does when it fires.
type timerKind uint8

const (
	timerRetransmit timerKind = iota // client transaction: retransmit or time out
	timerHangup                      // caller: the call's hold time is over, send BYE
	timer2xx                         // callee: retransmit the 2xx until ACK (§13.3.1.4)
	timerRetry                       // avalanche: a device whose registration failed starts over
)

// timerEntry names a device and the generation of the state it was set for:
// an entry whose generation no longer matches the device's is stale and
// ignored, so nothing is ever cancelled.
type timerEntry struct {
	at   int64 // tick
	dev  int32
	gen  uint32
	kind timerKind
}

// wheel is a hashed timing wheel with one-millisecond ticks. Setting and
// firing cost O(1); an entry further away than one turn stays in its slot
// and is looked at once per turn. A million devices with one retransmission
// timer each cost 16 MB and no allocation once the slots have grown.
type wheel struct {
	slots [][]timerEntry
	mask  int64
	now   int64        // last tick advanced to
	due   []timerEntry // scratch for advance, reused
}

// wheelSlots is one turn of the wheel: 8.192 s at 1 ms, longer than any
// RFC 3261 retransmission interval (T2 = 4 s), so retransmission timers
// never wait for a second turn.
const wheelSlots = 8192

func newWheel(start int64) *wheel {
	return &wheel{slots: make([][]timerEntry, wheelSlots), mask: wheelSlots - 1, now: start}
}

// set schedules e at tick e.at; a tick not after the wheel's present fires
// on the next advance.
func (w *wheel) set(e timerEntry) {
	if e.at <= w.now {
		e.at = w.now + 1
	}
	i := e.at & w.mask
	w.slots[i] = append(w.slots[i], e)
}

// advance moves the wheel to tick now and calls fire for every entry due,
// in tick order. fire may set new timers.
func (w *wheel) advance(now int64, fire func(timerEntry)) {
	for w.now < now {
		w.now++
		i := w.now & w.mask
		slot := w.slots[i]
		if len(slot) == 0 {
			continue
		}
		// Entries due now leave the slot; later ones stay. fire may
		// append to this very slot (a timer exactly one turn away), so
		// the kept ones are compacted first and the slot is replaced.
		kept := slot[:0]
		due := w.due[:0]
		for _, e := range slot {
			if e.at <= w.now {
				due = append(due, e)
			} else {
				kept = append(kept, e)
			}
		}
		w.slots[i] = kept
		for _, e := range due {
			fire(e)
		}
		w.due = due[:0]
	}
}

// pacer issues actions at a fixed offered rate, whatever the replies do
// (open loop): the n-th action is due at start + n/rate. A generator that
// cannot keep up accumulates a backlog, which the caller reports; it never
// slows the offered rate down.
type pacer struct {
	rate   float64 // per second
	start  int64   // ns
	issued uint64
	limit  uint64 // stop after this many; 0 = no limit
}

// due returns how many actions are due at now (ns) and not issued yet.
func (p *pacer) due(now int64) uint64 {
	if p.rate <= 0 || now < p.start {
		return 0
	}
	want := uint64(float64(now-p.start)*p.rate/1e9) + 1 // the first is due at start
	if p.limit > 0 && want > p.limit {
		want = p.limit
	}
	if want <= p.issued {
		return 0
	}
	return want - p.issued
}

// done reports whether a limited pacer has issued everything.
func (p *pacer) done() bool { return p.limit > 0 && p.issued >= p.limit }
