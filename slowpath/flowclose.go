package slowpath

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/slowpath/registrar"
	"github.com/pinhole-sip/pinhole/slowpath/streams"
)

// Bindings that die with their connection (docs/nat.md, "Flows over
// connections"). A device that registered over TCP, TLS, WS or WSS is
// reachable only through that connection; once it closes, the proxy no
// longer forks to its bindings, and they are removed from the store here
// rather than left until they expire. Left in place, they would fill the
// AOR's contact limit (a browser user who reloads the tab registers a new
// Contact each time), and the registrar would list them in every 200 to
// the user's other devices. Kamailio's usrloc does the same with
// handle_lost_tcp; OpenSIPS with its tcp_persistent contacts.
// Nothing is removed while pinhole stops:
// every connection ends then, and the bindings must survive the restart.

var (
	flowClosedRemoved = metrics.NewCounter(`pinhole_registrar_flow_closed_removed_total`)
	flowClosedShed    = metrics.NewCounter(`pinhole_registrar_flow_closed_shed_total`)
)

// flowClosedDelay is how long after a connection's end its bindings are
// looked for: a device that sends its REGISTER and closes at once ends
// its connection before the registrar, which answered first, tells
// connBindings of the binding.
const flowClosedDelay = time.Second

// flowClosedQueue bounds the connections whose bindings wait for removal:
// past it (a network event that drops many devices at once) their
// bindings stay until they expire, never forked to, and are counted.
const flowClosedQueue = 16384

// connID names a stream connection by what the location store records of
// it: a connection's remote address is unique within its transport.
type connID struct {
	transport location.Transport
	remote    netip.AddrPort
}

// closedConn is a connection that ended, and when to look for its
// bindings.
type closedConn struct {
	id connID
	at time.Time
}

// connBindings remembers which AORs registered over each open stream
// connection, and removes their bindings when it closes.
type connBindings struct {
	s       *Server
	mu      sync.Mutex
	aors    map[connID][]string
	q       chan closedConn
	closing atomic.Bool
	quit    chan struct{} // closed by stop
	done    chan struct{} // closed when the worker returns
}

func newConnBindings(s *Server) *connBindings {
	c := &connBindings{s: s, aors: map[connID][]string{}, q: make(chan closedConn, flowClosedQueue), quit: make(chan struct{}), done: make(chan struct{})}
	go c.work()
	return c
}

// registered is told of every 200 to a REGISTER: a stream flow's AOR is
// remembered under its connection.
func (c *connBindings) registered(req *sip.Request, flow location.Flow) {
	if c == nil || flow.Transport == location.TransportUDP || flow.Transport == 0 {
		return
	}
	to := req.To()
	if to == nil {
		return
	}
	aor, err := registrar.AOR(&to.Address)
	if err != nil {
		return
	}
	id := connID{flow.Transport, flow.Remote}
	c.mu.Lock()
	known := false
	for _, a := range c.aors[id] {
		known = known || a == aor
	}
	if !known {
		c.aors[id] = append(c.aors[id], aor)
	}
	c.mu.Unlock()
}

// ended is told of a stream connection's end (streams.Options.Ended).
func (c *connBindings) ended(kind streams.Kind, remote net.Addr) {
	if c == nil {
		return
	}
	t, err := location.ParseTransport(kind.String())
	if err != nil {
		return
	}
	ta, ok := remote.(*net.TCPAddr)
	if !ok {
		return
	}
	c.enqueue(connID{t, unmapped(ta.AddrPort())})
}

// enqueue hands a closed connection to the worker.
func (c *connBindings) enqueue(id connID) {
	if c.closing.Load() {
		return
	}
	select {
	case c.q <- closedConn{id, time.Now().Add(flowClosedDelay)}:
	default:
		c.mu.Lock()
		delete(c.aors, id)
		c.mu.Unlock()
		flowClosedShed.Inc()
	}
}

// stop ends the worker before the store closes; connections that end
// from now on (pinhole closing them) keep their bindings.
func (c *connBindings) stop() {
	if c == nil || c.closing.Swap(true) {
		return
	}
	close(c.quit)
	<-c.done
}

func (c *connBindings) work() {
	defer close(c.done)
	for {
		select {
		case <-c.quit:
			return
		case cc := <-c.q:
			if d := time.Until(cc.at); d > 0 {
				select {
				case <-time.After(d):
				case <-c.quit:
					return
				}
			}
			id := cc.id
			c.mu.Lock()
			aors := c.aors[id]
			delete(c.aors, id)
			c.mu.Unlock()
			for _, aor := range aors {
				if c.closing.Load() {
					return
				}
				c.remove(aor, id)
			}
		}
	}
}

// remove takes out of aor the bindings over the closed connection id.
func (c *connBindings) remove(aor string, id connID) {
	removed, err := c.s.removeBindings(aor, func(b *location.Binding) bool {
		return b.Flow.Transport == id.transport && b.Flow.Remote == id.remote && !c.s.flowOpen(b.Flow)
	})
	if err != nil {
		if !errors.Is(err, ErrNoBinding) {
			c.s.log.Warn("remove the bindings of a closed connection", "aor", aor, "error", err)
		}
		return
	}
	flowClosedRemoved.Add(len(removed))
}
