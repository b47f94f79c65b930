package midreg

import (
	"context"
	"sync"

	"github.com/pinhole-sip/pinhole/internal/location"
)

// lapseQueue holds bindings whose upstream registration pinhole must
// remove. It is unbounded on purpose: each entry is a binding that
// already left the store, and dropping one would leave a stale contact at
// the main registrar until outgoing_expires.
type lapseQueue struct {
	mu     sync.Mutex
	items  []location.Binding
	queued map[string]bool // mode aor: AORs with a de-registration queued
	wake   chan struct{}
}

func newLapseQueue() lapseQueue {
	return lapseQueue{queued: map[string]bool{}, wake: make(chan struct{}, 1)}
}

func (q *lapseQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// OnExpire is the location store's hook: a binding lapsed at pinhole
// because its device stopped refreshing, so pinhole de-registers it
// upstream. Safe to call before Start; it never blocks.
func (m *MidRegistrar) OnExpire(b location.Binding) {
	if m.cfg.Mode == ModeMirror || b.UpExpires.IsZero() {
		// Mirror: the main registrar holds the same expiry and lets the
		// binding go by itself. No upstream registration: nothing to undo.
		return
	}
	q := &m.lapses
	q.mu.Lock()
	if m.cfg.Mode == ModeAOR {
		if q.queued[b.AOR] {
			q.mu.Unlock()
			return
		}
		q.queued[b.AOR] = true
	}
	q.items = append(q.items, b)
	q.mu.Unlock()
	q.signal()
}

func (q *lapseQueue) pop() (location.Binding, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return location.Binding{}, false
	}
	b := q.items[0]
	q.items[0] = location.Binding{}
	q.items = q.items[1:]
	delete(q.queued, b.AOR)
	if len(q.items) > 0 {
		q.signal() // let another worker take the next one
	} else {
		q.items = nil // release the backing array after a burst
	}
	return b, true
}

func (m *MidRegistrar) lapseWorker() {
	defer m.wg.Done()
	for {
		select {
		case <-m.stop:
			return
		case <-m.lapses.wake:
		}
		for {
			b, ok := m.lapses.pop()
			if !ok {
				break
			}
			m.deregister(&b)
			select {
			case <-m.stop:
				return
			default:
			}
		}
	}
}

// deregister removes b's upstream registration, unless it has ended by
// itself or, in mode aor, the AOR still has a live contact.
func (m *MidRegistrar) deregister(b *location.Binding) {
	if !b.UpExpires.After(m.now()) {
		return
	}
	if m.cfg.Mode == ModeAOR && len(m.store.Lookup(b.AOR)) > 0 {
		return
	}
	req := m.deregistration(b)
	if req == nil {
		m.m.deregFailures.Inc()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.Timeout)
	defer cancel()
	res, err := m.send.Send(ctx, req)
	if err != nil || res.StatusCode >= 300 {
		if err == nil {
			upstreamReply(res.StatusCode)
		}
		// Not retried: the upstream registration ends by itself at
		// UpExpires; until then a call to it gets 480 from pinhole.
		m.m.deregFailures.Inc()
		return
	}
	upstreamReply(res.StatusCode)
	m.m.deregs.Inc()
}
