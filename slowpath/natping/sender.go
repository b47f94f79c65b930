package natping

import (
	"net/netip"
	"syscall"
	"time"
)

// sender does one slot's work; its buffers live across slots so that a
// steady state allocates nothing per ping.
type sender struct {
	p      *Pinger
	arena  []byte
	msgs   []pending
	addrs  []netip.AddrPort
	tokens []uint64
	socks  map[netip.AddrPort]syscall.RawConn
	b      batch
}

// pending is one ping built into the arena.
type pending struct {
	key      flowKey
	off, end int
}

// slot evaluates the last ping of each target, removes the silent ones and
// pings the others.
func (s *sender) slot(targets []*target) {
	p := s.p
	now := time.Now()
	s.arena, s.msgs, s.addrs, s.tokens = s.arena[:0], s.msgs[:0], s.addrs[:0], s.tokens[:0]
	var answered, missed, removed int
	var silent []*target
	var since []time.Time

	p.mu.Lock()
	for _, t := range targets {
		st := p.states[t.key]
		if st == nil {
			st = &state{seen: true}
			p.states[t.key] = st
		} else if !st.sentAt.IsZero() {
			if p.alive(t, st) {
				answered++
				st.missed = 0
			} else if p.cfg.Method == MethodOptions {
				missed++
				if st.missed == 0 {
					st.firstMiss = st.sentAt
				}
				st.missed++
				if p.cfg.MaxMissed > 0 && st.missed >= p.cfg.MaxMissed {
					silent = append(silent, t)
					since = append(since, st.firstMiss)
					delete(p.states, t.key)
					continue
				}
			}
		}
		st.token = newToken()
		st.sentAt = now
		st.answered = false
		off := len(s.arena)
		if p.cfg.Method == MethodOptions {
			s.arena = appendOptions(s.arena, t.uri, t.aor, t.key.local, p.cfg.Host, st.token)
			s.addrs = append(s.addrs, t.key.remote)
			s.tokens = append(s.tokens, st.token)
		} else {
			s.arena = append(s.arena, crlfPing...)
		}
		s.msgs = append(s.msgs, pending{key: t.key, off: off, end: len(s.arena)})
	}
	p.mu.Unlock()

	for i, t := range silent {
		removed += p.expire(t, since[i])
		if k := p.cfg.Kernel; k != nil {
			_ = k.Forget(t.key.remote)
		}
		p.log.Debug("natping: device silent; binding removed", "remote", t.key.remote, "aor", t.aor, "missed", p.cfg.MaxMissed)
	}
	if len(silent) > 0 {
		// One line per slot, not per device: an outage can silence many.
		p.log.Info("natping: removed bindings of silent devices", "devices", len(silent), "bindings", removed, "missed_pings", p.cfg.MaxMissed)
	}
	answeredTotal.Add(answered)
	missedTotal.Add(missed)
	removedTotal.Add(removed)

	// Record the tokens before the pings leave, so that no reply can
	// arrive before the program knows what to look for.
	if k := p.cfg.Kernel; k != nil && len(s.addrs) > 0 {
		if err := k.ExpectBatch(s.addrs, s.tokens); err != nil {
			errorsTotal.Add(len(s.addrs))
			p.log.Warn("natping: record ping tokens", "error", err)
		}
	}
	s.flush()
}

// flush sends the slot's pings, batched per socket.
func (s *sender) flush() {
	if s.socks == nil {
		s.socks = map[netip.AddrPort]syscall.RawConn{}
	}
	sent := 0
	// Pings are grouped by socket: a slot's targets mostly share one.
	done := make([]bool, len(s.msgs))
	for i := range s.msgs {
		if done[i] {
			continue
		}
		local := s.msgs[i].key.local
		rc, err := s.socket(local)
		if err != nil {
			for j := i; j < len(s.msgs); j++ {
				if s.msgs[j].key.local == local {
					done[j] = true
				}
			}
			continue
		}
		v4 := local.Addr().Unmap().Is4()
		for j := i; j < len(s.msgs); j++ {
			m := s.msgs[j]
			if done[j] || m.key.local != local {
				continue
			}
			done[j] = true
			if s.b.n == maxBatch {
				n, _ := s.b.send(rc)
				sent += n
			}
			// Refused only for an address of the wrong family: counted below.
			s.b.add(s.arena[m.off:m.end], m.key.remote, v4)
		}
		n, _ := s.b.send(rc)
		sent += n
	}
	failed := len(s.msgs) - sent
	sentTotal.Add(sent)
	if failed > 0 {
		errorsTotal.Add(failed)
	}
}

func (s *sender) socket(local netip.AddrPort) (syscall.RawConn, error) {
	if rc, ok := s.socks[local]; ok {
		return rc, nil
	}
	rc, err := s.p.cfg.Sockets(local)
	if err != nil {
		return nil, err
	}
	s.socks[local] = rc
	return rc, nil
}
