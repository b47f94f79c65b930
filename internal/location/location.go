package location

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Transport is the transport a flow uses.
type Transport uint8

// Transports, named as sipgo names networks.
const (
	TransportUDP Transport = iota + 1
	TransportTCP
	TransportTLS
	TransportWS
	TransportWSS
)

var transportNames = [...]string{
	TransportUDP: "UDP",
	TransportTCP: "TCP",
	TransportTLS: "TLS",
	TransportWS:  "WS",
	TransportWSS: "WSS",
}

// String returns sipgo's network name ("UDP", "TCP", "TLS", "WS", "WSS").
func (t Transport) String() string {
	if t == 0 || int(t) >= len(transportNames) {
		return fmt.Sprintf("Transport(%d)", uint8(t))
	}
	return transportNames[t]
}

// ParseTransport parses a transport name, ignoring case.
func ParseTransport(s string) (Transport, error) {
	for t := TransportUDP; t <= TransportWSS; t++ {
		if strings.EqualFold(s, transportNames[t]) {
			return t, nil
		}
	}
	return 0, fmt.Errorf("parse transport %q: %w", s, ErrUnknownTransport)
}

// Flow is how to reach a device again: the transport, the address packets
// really came from, and pinhole's own socket they arrived on (replies and
// requests must leave from it: NAT pinholes).
type Flow struct {
	Transport Transport
	Remote    netip.AddrPort
	Local     netip.AddrPort
}

// Binding is one registered contact of an AOR.
type Binding struct {
	AOR       string    // canonical "user@domain"
	Contact   string    // Contact URI as the device sent it, e.g. "sip:alice@192.168.1.2:5060;ob"
	Instance  string    // +sip.instance value without quotes/angle brackets, "" if none (RFC 5626)
	RegID     uint32    // reg-id, 0 if none
	CallID    string    //
	CSeq      uint32    //
	Q         uint16    // q-value × 1000 (1000 when absent)
	Expires   time.Time // absolute, second precision is enough
	Updated   time.Time // when the binding was last written (second precision)
	Flow      Flow      //
	NAT       bool      // device is behind NAT: use Flow.Remote, not the Contact host
	Path      string    // Path header value(s) to use toward the device, "" if none (RFC 3327)
	UserAgent string    // may be empty; kept because operators want it
	// The mid-registrar's upstream registration of this binding: when it
	// ends (zero: none) and which configured upstream registrar holds it.
	UpExpires time.Time
	Upstream  uint8
	// Edge is the cluster.edge_id of the edge the device registered
	// through, the one whose socket reaches it (docs/cluster.md); "" for a
	// box alone, or a record written before edges were recorded: owned by
	// whoever holds it.
	Edge string
}

// Refresh is one REGISTER refresh absorbed by the fast path, as Touch
// applies it. It names the registration it refreshed by Call-ID and flow
// as well as Contact: applied late, after the device registered afresh
// under a new Call-ID, a refresh of the old registration must change
// nothing, or its CSeq would be stamped on the new one and the device's
// next refresh refused as out of order (RFC 3261 §10.3 step 7).
type Refresh struct {
	AOR, Contact, CallID string
	Flow                 Flow
	CSeq                 uint32
	Expires              time.Time
}

// Store is the authority for bindings. Implementations are safe for
// concurrent use.
type Store interface {
	// Lookup returns copies of the live (unexpired at now) bindings of aor,
	// highest q first, then most recently updated first.
	Lookup(aor string) []Binding
	// Update runs fn under the AOR's lock with its live bindings and stores
	// what fn returns (an empty result removes the AOR). fn must not keep cur.
	// If fn returns an error nothing changes and Update returns that error.
	// Returns the stored set, sorted like Lookup.
	Update(aor string, fn func(cur []Binding) ([]Binding, error)) ([]Binding, error)
	// Touch applies a refresh answered without Update (the fast path's):
	// it moves the expiry of the live binding of r.AOR with r.Contact,
	// r.CallID and r.Flow if its CSeq is lower than r.CSeq, and reports
	// whether it did.
	Touch(r Refresh) bool
	// Len reports how many AORs and bindings are held.
	Len() (aors, bindings int)
	// Range calls fn for each live binding until fn returns false. Order
	// unspecified.
	Range(fn func(Binding) bool)
	// Close flushes what is pending to the backing and stops background work.
	Close() error
}

// Options configure Open.
type Options struct {
	Path          string        // bbolt file; "" = memory only (tests)
	Redis         *RedisOptions // a Redis Cluster instead of a file (docs/cluster.md)
	FlushInterval time.Duration // default 1s
	Shards        int           // default 256 (power of two)
	// OnExpire is called (from the expiry goroutine, outside shard locks) for
	// every binding that lapses. The mid-registrar will de-register upstream
	// from it; the NAT pinger will use it too.
	OnExpire func(Binding)
	// ActsFor, when set, decides whether this box lapses b: only then is
	// a lapse of b written to the backing and handed to OnExpire. Edges
	// sharing a Redis Cluster each hold every binding, and only a
	// binding's owner should write its removal and de-register it
	// upstream, once (docs/cluster.md, "Who acts for a binding"); the
	// others drop it from their view quietly. nil: every binding.
	ActsFor func(Binding) bool
	// OnChange, when set, is called (outside shard locks) with the AOR of
	// every Update and of every lapsed binding, after the change: caches
	// of bindings (the fast path's) forget the AOR. Touch does not call it.
	OnChange func(aor string)
	// Holds, when set, says whether this store keeps a binding past its
	// expiry in its view instead of lapsing it, asking again at every
	// expiry pass: the standby box of an active/standby pair holds its
	// edge's bindings until the active box's removal arrives from the
	// shared backing (follow.go) or, after a failover, until it acts for
	// them itself and lapses them with their OnExpire, so that each is
	// de-registered upstream once (docs/cluster.md). Bindings found lapsed
	// at Open or in a set read from the backing are kept for the pass to
	// ask. It is called under a shard's lock. Nil: nothing is held.
	Holds func(Binding) bool
	Now   func() time.Time // for tests; default time.Now
}

// Defaults applied by Open to zero Options fields.
const (
	DefaultFlushInterval = time.Second
	DefaultShards        = 256
)

// Stats are counts for metrics. Counters (the uint64 fields) only grow
// during the life of a Memory.
type Stats struct {
	AORs     int    // AORs held
	Bindings int    // bindings held
	Expired  uint64 // bindings that lapsed, including those dropped at Open
	Writes   uint64 // sets written through by Update (changes other than refreshes)
	// Commits counts the transactions (one fsync each) the write-throughs
	// were grouped into: Writes ÷ Commits is the mean batch (commit.go).
	Commits uint64
	Flushes uint64 // write-behind transactions committed
	// FlushErrors counts failed write-behind transactions; their AORs stay
	// dirty and are retried at the next flush.
	FlushErrors   uint64
	SkippedAtLoad uint64 // stored records that could not be decoded (at Open, or read from Redis)
	// WriteErrors counts failed write-through batches: their callers got
	// the error (a REGISTER its 500) and their AORs were left to the
	// flusher to retry.
	WriteErrors uint64
	// Followed counts AORs whose local view was replaced by what another
	// edge sharing the Redis Cluster wrote (follow.go); FollowErrors the
	// failed re-reads.
	Followed     uint64
	FollowErrors uint64
	// Swept counts Redis keys the sweep deleted: AORs whose bindings all
	// expired more than an hour before and that no edge removed
	// (sweep.go); SweepErrors the passes that failed.
	Swept       uint64
	SweepErrors uint64
}

// Errors a caller can test for with errors.Is.
var (
	ErrUnknownTransport = errors.New("unknown transport")
	// ErrInvalidBinding: what Update's fn returned cannot be stored.
	ErrInvalidBinding = errors.New("invalid binding")
	// ErrCorrupt: a persisted record could not be decoded.
	ErrCorrupt = errors.New("corrupt binding record")
)
