package dispatch

import (
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/pinhole-sip/pinhole/internal/resolve"
)

// State of a destination.
type State uint8

const (
	// Up: used for requests and probed.
	Up State = iota + 1
	// Probing: taken out by failures; probes put it back.
	Probing
	// Disabled: taken out by an operator; only SetState puts it back.
	Disabled
)

func (s State) String() string {
	switch s {
	case Up:
		return "up"
	case Probing:
		return "probing"
	case Disabled:
		return "disabled"
	}
	return "unknown"
}

// ParseState reads "up", "probing" or "disabled".
func ParseState(s string) (State, error) {
	for st := Up; st <= Disabled; st++ {
		if st.String() == s {
			return st, nil
		}
	}
	return 0, fmt.Errorf("state %q: want up, probing or disabled", s)
}

// ErrNotFound is returned by SetState for an unknown set or destination.
var ErrNotFound = errors.New("no such destination")

// Node is one destination of a set.
type Node struct {
	Set    string
	URI    string // canonical, Target.String()
	Target Target
	// Weight is the configured weight; a node resolved from a name has
	// the weight of its SRV record times it, which a refresh may change
	// (weight holds the one in use).
	Weight   int
	Priority int
	Attrs    map[string]string
	ID       string // stable short name, for topology hiding (not secret)
	// From is the configured URI of the name this node was resolved from;
	// "" for a node configured by address.
	From string
	// srvPriority orders nodes resolved from one name inside the
	// configured Priority (RFC 2782: lowest first).
	srvPriority int
	index       int // in its set, for the weighted state
	set         *Set
	// drained is set while the node's name no longer resolves to it: no
	// new request goes to it, and it stays known (NodeAt, NodeByID) so the
	// dialogs it carries keep their route.
	drained   atomic.Bool
	weight    atomic.Int64
	state     atomic.Uint32
	fails     atomic.Int32 // failures in a row
	oks       atomic.Int32 // successes in a row while out
	calls     atomic.Int64 // answered calls in progress
	lastProbe atomic.Int64 // unix nanoseconds
	lastCode  atomic.Int32 // status of the last probe; 0 for none
}

// State is the node's current state.
func (n *Node) State() State { return State(n.state.Load()) }

// Usable reports whether new requests may go to the node.
func (n *Node) Usable() bool { return n.State() == Up && !n.drained.Load() }

// Set is a named group of destinations and its algorithm.
type Set struct {
	Name      string
	Algorithm Algorithm
	// Nodes are the destinations configured by address; those resolved
	// from names come and go with DNS and are in Current.
	Nodes []*Node
	// names are the destinations configured by name.
	names []nameDest
	// view is what requests are routed over; rebuilt when a name's answer
	// changes (view.go).
	view atomic.Pointer[view]

	rr atomic.Uint64 // round robin position

	mu       sync.Mutex // smooth weighted round robin state; resolved nodes
	current  []int
	resolved map[string]*Node // every node ever resolved, by nodeKey
}

// Dispatcher routes requests to sets. It is safe for concurrent use.
type Dispatcher struct {
	cfg      Config
	sets     map[string]*Set
	order    []*Set
	failover map[int]bool
	dns      Resolver
	// index finds nodes by address and by ID; copied and swapped when a
	// name resolves to a new node, so readers never lock.
	index   atomic.Pointer[index]
	indexMu sync.Mutex // serializes the copies
	calls   *callTable
	sticky  *stickyTable
	metrics *metrics.Set
	now     func() time.Time
}

// New checks cfg and builds a dispatcher. Every destination starts Up: a
// node that is down is found by the first probes or the first calls.
func New(cfg Config) (*Dispatcher, error) {
	cfg.Sets = slices.Clone(cfg.Sets)
	cfg.Rules = slices.Clone(cfg.Rules)
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	d := &Dispatcher{
		cfg:      cfg,
		sets:     map[string]*Set{},
		failover: map[int]bool{},
		dns:      cfg.DNS,
		now:      time.Now,
	}
	d.index.Store(&index{nodesBy: map[netip.Addr][]*Node{}, byID: map[string]*Node{}})
	d.metrics = d.newMetrics()
	for _, c := range cfg.Failover.Codes {
		d.failover[c] = true
	}
	for _, sc := range cfg.Sets {
		s := &Set{Name: sc.Name, Algorithm: sc.Algorithm, resolved: map[string]*Node{}}
		var added []*Node
		for _, dc := range sc.Destinations {
			t, err := ParseURI(dc.URI)
			if err != nil {
				dest, _ := resolve.ParseURI(dc.URI) // validated
				s.names = append(s.names, nameDest{dest: dest, cfg: dc})
				continue
			}
			n := d.newNode(s, t, dc, "")
			s.Nodes = append(s.Nodes, n)
			added = append(added, n)
		}
		d.addToIndex(added)
		s.view.Store(d.buildView(s))
		d.sets[s.Name] = s
		d.order = append(d.order, s)
	}
	d.calls = newCallTable(cfg.CallTTL)
	d.sticky = newStickyTable(cfg.ChallengeTTL)
	d.addSetGauges()
	return d, nil
}

// newNode makes a node of s, Up, with its gauges.
func (d *Dispatcher) newNode(s *Set, t Target, dc DestinationConfig, from string) *Node {
	w := dc.Weight
	if w == 0 {
		w = 1
	}
	n := &Node{
		Set: s.Name, URI: t.String(), Target: t, Weight: w, Priority: dc.Priority,
		Attrs: maps.Clone(dc.Attrs), index: len(s.current), set: s, ID: nodeID(s.Name, t), From: from,
	}
	s.current = append(s.current, 0)
	n.weight.Store(int64(w))
	n.state.Store(uint32(Up))
	d.addNodeGauges(n)
	return n
}

// nodeID names a node by what it is, not where it is in the file, so that
// a reordered configuration keeps hidden Contacts of running dialogs valid.
func nodeID(set string, t Target) string {
	h := fnv.New32a()
	h.Write([]byte(set))
	h.Write([]byte{0})
	h.Write([]byte(t.String()))
	return fmt.Sprintf("%08x", h.Sum32())
}

// Config returns the configuration the dispatcher runs with, defaults applied.
func (d *Dispatcher) Config() Config { return d.cfg }

// Set returns a set by name, nil when there is none.
func (d *Dispatcher) Set(name string) *Set { return d.sets[name] }

// RegisterSet is the set REGISTER goes to, nil when pinhole keeps
// registrations itself.
func (d *Dispatcher) RegisterSet() *Set { return d.sets[d.cfg.Register] }

// Request is what rules and algorithms look at.
type Request struct {
	Method   string
	User     string // request-URI user
	Host     string // request-URI host
	ToHost   string // To header host
	CallID   string
	Source   netip.Addr
	FromFarm bool // sent by one of the destinations
}

// Match returns the set of the first rule that matches req, nil for none.
// Requests from the farm itself never match: they go back to devices.
func (d *Dispatcher) Match(req *Request) *Set {
	if req.FromFarm || req.Method == "REGISTER" {
		return nil
	}
	for i := range d.cfg.Rules {
		r := &d.cfg.Rules[i]
		if len(r.Methods) > 0 && !slices.Contains(r.Methods, req.Method) {
			continue
		}
		if len(r.Domains) > 0 && !slices.ContainsFunc(r.Domains, func(s string) bool { return sameDomain(s, req.Host) }) {
			continue
		}
		if r.Prefix != "" && !strings.HasPrefix(req.User, r.Prefix) {
			continue
		}
		if len(r.Sources) > 0 && !slices.ContainsFunc(r.Sources, func(p netip.Prefix) bool { return p.Contains(req.Source.Unmap()) }) {
			continue
		}
		mMatched.Inc()
		return d.sets[r.Set]
	}
	return nil
}

// Select returns the usable destinations of s in the order to try them,
// at most Failover.MaxTries of them; empty when every node is out.
func (d *Dispatcher) Select(s *Set, req *Request) []*Node {
	var out []*Node
	for _, g := range d.current(s).groups {
		out = s.appendGroup(out, g, req)
	}
	if len(out) == 0 {
		mNoDestination.Inc()
	}
	if m := d.cfg.Failover.MaxTries; m > 0 && len(out) > m {
		out = out[:m]
	}
	return out
}

// Starting returns first followed by the other usable destinations of s
// in configuration order (priority groups first), without consulting the
// algorithm: for a request whose node is already known (an authenticated
// retry), so that it does not take a turn from the round robin.
func (d *Dispatcher) Starting(s *Set, first *Node) []*Node {
	out := []*Node{first}
	for _, g := range d.current(s).groups {
		for _, n := range g {
			if n != first && n.Usable() {
				out = append(out, n)
			}
		}
	}
	if m := d.cfg.Failover.MaxTries; m > 0 && len(out) > m {
		out = out[:m]
	}
	return out
}

// IsFarm reports whether a is the address of a destination of any set.
func (d *Dispatcher) IsFarm(a netip.Addr) bool {
	_, ok := d.index.Load().nodesBy[a.Unmap()]
	return ok
}

// NodeAt returns the destination at ap (the first set's when several sets
// share it), or nil. With anyPort the port is not compared: over TCP a
// node sends from an ephemeral port, over UDP from its listening one (and
// on one host, a device on another port of the same address is no node).
func (d *Dispatcher) NodeAt(ap netip.AddrPort, anyPort bool) *Node {
	ns := d.index.Load().nodesBy[ap.Addr().Unmap()]
	for _, n := range ns {
		if anyPort || n.Target.Addr.Port() == ap.Port() {
			return n
		}
	}
	return nil
}

// NodeByID returns the destination with a Node.ID, or nil.
// A node drained from DNS is still found: dialogs through it keep routing.
func (d *Dispatcher) NodeByID(id string) *Node { return d.index.Load().byID[id] }

// IsFailover reports whether a final response moves a request to the next
// destination.
func (d *Dispatcher) IsFailover(code int) bool { return d.failover[code] }

// Failed records a request's failure at n: a timeout or transport error
// (code 0 or 408) counts like a failed probe, a 503 takes the node out at
// once when so configured.
func (d *Dispatcher) Failed(n *Node, code int) {
	mFailovers.Inc()
	if code == 503 && d.cfg.Failover.DownOn503 {
		d.takeOut(n)
		return
	}
	if code == 0 || code == 408 {
		d.probeFailed(n)
	}
}

// Answered records that n answered a request: it counts as a success.
func (d *Dispatcher) Answered(n *Node) { n.fails.Store(0) }

func (d *Dispatcher) probeFailed(n *Node) {
	n.oks.Store(0)
	if n.fails.Add(1) >= int32(d.cfg.Probe.DownAfter) {
		d.takeOut(n)
	}
}

func (d *Dispatcher) probeOK(n *Node) {
	n.fails.Store(0)
	if n.State() != Probing {
		return
	}
	if n.oks.Add(1) >= int32(d.cfg.Probe.UpAfter) {
		if n.state.CompareAndSwap(uint32(Probing), uint32(Up)) {
			mNodeUp.Inc()
		}
		n.oks.Store(0)
	}
}

func (d *Dispatcher) takeOut(n *Node) {
	n.oks.Store(0)
	if n.state.CompareAndSwap(uint32(Up), uint32(Probing)) {
		mNodeDown.Inc()
	}
}

// SetState forces a destination's state: Disabled takes it out until an
// operator sets it Up or Probing again; Probing lets probes decide.
func (d *Dispatcher) SetState(set, uri string, st State) error {
	if st < Up || st > Disabled {
		return fmt.Errorf("set state of %s in %s: %w", uri, set, errors.New("unknown state"))
	}
	s := d.sets[set]
	if s == nil {
		return fmt.Errorf("set state of %s in %s: %w", uri, set, ErrNotFound)
	}
	want := uri
	if t, err := ParseURI(uri); err == nil {
		want = t.String()
	}
	for _, n := range d.current(s).nodes {
		if n.URI == want {
			n.fails.Store(0)
			n.oks.Store(0)
			n.state.Store(uint32(st))
			return nil
		}
	}
	return fmt.Errorf("set state of %s in %s: %w", uri, set, ErrNotFound)
}

// Status is a destination as the management API shows it.
type Status struct {
	Set string
	URI string
	// From is the configured name the node was resolved from; "" for a
	// node configured by address.
	From        string
	ID          string
	State       State
	Weight      int
	Priority    int
	Attrs       map[string]string
	ActiveCalls int64
	// LastProbe is when it was last probed (zero: never) and LastCode the
	// status it answered (0: no answer).
	LastProbe time.Time
	LastCode  int
}

// Destinations returns every destination of every set, in configuration
// order.
func (d *Dispatcher) Destinations() []Status {
	var out []Status
	for _, s := range d.order {
		for _, n := range d.current(s).nodes {
			st := Status{
				Set: n.Set, URI: n.URI, From: n.From, ID: n.ID, State: n.State(), Weight: int(n.weight.Load()), Priority: n.Priority,
				Attrs: maps.Clone(n.Attrs), ActiveCalls: n.calls.Load(), LastCode: int(n.lastCode.Load()),
			}
			if ns := n.lastProbe.Load(); ns != 0 {
				st.LastProbe = time.Unix(0, ns)
			}
			out = append(out, st)
		}
	}
	return out
}

// nodes returns every destination in use once per set.
func (d *Dispatcher) nodes() []*Node {
	var out []*Node
	for _, s := range d.order {
		out = append(out, d.current(s).nodes...)
	}
	return out
}

// CallStarted counts an answered call (a 2xx to an INVITE) against n until
// CallEnded with the same Call-ID, or CallTTL.
func (d *Dispatcher) CallStarted(n *Node, callID string) {
	if d.calls.add(callID, n, d.now()) {
		n.calls.Add(1)
	}
}

// CallEnded stops counting the call (BYE, or a failed re-INVITE that ends
// it is not counted: only BYE ends a call here).
func (d *Dispatcher) CallEnded(callID string) {
	if n := d.calls.remove(callID); n != nil {
		n.calls.Add(-1)
	}
}

// Challenged remembers that n challenged the request with this key (its
// Call-ID and source) so that the authenticated retry reaches n too.
func (d *Dispatcher) Challenged(key string, n *Node) { d.sticky.put(key, n, d.now()) }

// Challenger returns the node that challenged key, if it is still usable.
func (d *Dispatcher) Challenger(key string) *Node {
	n := d.sticky.get(key, d.now())
	if n == nil || !n.Usable() {
		return nil
	}
	return n
}

// Sweep drops expired call and challenge entries; the prober calls it
// once per interval, tests call it directly.
func (d *Dispatcher) Sweep() {
	now := d.now()
	for _, n := range d.calls.expire(now) {
		n.calls.Add(-1)
		mCallsExpired.Inc()
	}
	d.sticky.expire(now)
}

// Close unregisters the dispatcher's metrics.
func (d *Dispatcher) Close() { metrics.UnregisterSet(d.metrics, true) }

// sameDomain compares two domains without case and without the trailing
// dot of a fully qualified name (RFC 1034 §3.1).
func sameDomain(a, b string) bool {
	return strings.EqualFold(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, "."))
}
