package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// monotonic returns CLOCK_MONOTONIC, the clock of bpf_ktime_get_*ns.
func monotonic() time.Duration {
	var ts unix.Timespec
	// Cannot fail for CLOCK_MONOTONIC on Linux.
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

// wallTime converts a CLOCK_MONOTONIC reading in ns to wall-clock time.
func wallTime(mono uint64) time.Time {
	return time.Now().Add(time.Duration(mono) - monotonic())
}

func endpointKey(ap netip.AddrPort) xdpEndpoint {
	return xdpEndpoint{Addr: xdpAddr{B: ap.Addr().As16()}, Port: ap.Port()}
}

// Ports is the set of UDP destination ports the program treats as SIP.
type Ports struct {
	mu  sync.Mutex
	m   *ebpf.Map
	set []uint16
}

// Set replaces the set of SIP ports. New ports are enabled before old ones
// are disabled, so a port in both sets never lapses.
func (p *Ports) Set(ports []uint16) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	keep := make(map[uint16]bool, len(ports))
	for _, port := range ports {
		if port == 0 {
			return errors.New("set SIP ports: port 0")
		}
		if err := p.m.Put(uint32(port), uint8(1)); err != nil {
			return fmt.Errorf("enable SIP port %d: %w", port, err)
		}
		keep[port] = true
	}
	for _, port := range p.set {
		if keep[port] {
			continue
		}
		if err := p.m.Put(uint32(port), uint8(0)); err != nil {
			return fmt.Errorf("disable SIP port %d: %w", port, err)
		}
	}
	p.set = append(p.set[:0], ports...)
	return nil
}

// Blocklist drops every packet from the listed prefixes. When prefixes nest,
// the longest match decides, even if it has expired.
type Blocklist struct {
	v4, v6 *ebpf.Map
}

// BlockEntry is one blocklisted prefix. A zero Until means forever.
type BlockEntry struct {
	Prefix netip.Prefix
	Until  time.Time
}

func (b *Blocklist) key(p netip.Prefix) (*ebpf.Map, any, error) {
	if !p.IsValid() {
		return nil, nil, fmt.Errorf("invalid prefix %v", p)
	}
	p = p.Masked()
	if p.Addr().Is4() {
		return b.v4, xdpLpm4{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As4()}, nil
	}
	if p.Addr().Is4In6() {
		return nil, nil, fmt.Errorf("prefix %v: use the IPv4 form", p)
	}
	return b.v6, xdpLpm6{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As16()}, nil
}

// Add blocks prefix until the given time; a zero time blocks it forever.
func (b *Blocklist) Add(prefix netip.Prefix, until time.Time) error {
	m, k, err := b.key(prefix)
	if err != nil {
		return fmt.Errorf("blocklist add: %w", err)
	}
	var secs uint64 // 0 = forever
	if !until.IsZero() {
		left := time.Until(until)
		if left <= 0 {
			// Checked on the wall clock: monotonic() + left is still
			// positive for a past time once the host has been up longer
			// than that (the test only failed after an hour of uptime).
			return fmt.Errorf("blocklist add %v: %v is in the past", prefix, until)
		}
		// Monotonic seconds, rounded up so an entry never ends early.
		expiry := monotonic() + left
		secs = uint64((expiry + time.Second - 1) / time.Second)
	}
	if err := m.Put(k, secs); err != nil {
		return fmt.Errorf("blocklist add %v: %w", prefix, err)
	}
	return nil
}

// Remove unblocks prefix; removing a prefix that is not listed is no error.
func (b *Blocklist) Remove(prefix netip.Prefix) error {
	m, k, err := b.key(prefix)
	if err != nil {
		return fmt.Errorf("blocklist remove: %w", err)
	}
	if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("blocklist remove %v: %w", prefix, err)
	}
	return nil
}

// List returns every entry, expired ones included (Until in the past).
func (b *Blocklist) List() ([]BlockEntry, error) {
	var out []BlockEntry
	until := func(secs uint64) time.Time {
		if secs == 0 {
			return time.Time{}
		}
		return wallTime(secs * uint64(time.Second))
	}
	var k4 xdpLpm4
	var secs uint64
	it := b.v4.Iterate()
	for it.Next(&k4, &secs) {
		out = append(out, BlockEntry{netip.PrefixFrom(netip.AddrFrom4(k4.Addr), int(k4.Prefixlen)), until(secs)})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list IPv4 blocklist: %w", err)
	}
	var k6 xdpLpm6
	it = b.v6.Iterate()
	for it.Next(&k6, &secs) {
		out = append(out, BlockEntry{netip.PrefixFrom(netip.AddrFrom16(k6.Addr), int(k6.Prefixlen)), until(secs)})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list IPv6 blocklist: %w", err)
	}
	return out, nil
}

// RateLimit is the per-source-address token bucket applied to SIP requests.
type RateLimit struct {
	m *ebpf.Map
}

// maxBurst keeps burst in nanotokens within uint64.
const maxBurst = 1_000_000_000

// Set allows each source address rate requests per second with bursts of up
// to burst requests. A rate of 0 disables the limit.
func (r *RateLimit) Set(rate, burst uint64) error {
	var cfg xdpRatecfg
	if rate > 0 {
		if burst < 1 || burst > maxBurst {
			return fmt.Errorf("set rate limit: burst %d outside 1..%d", burst, maxBurst)
		}
		if rate > maxBurst {
			return fmt.Errorf("set rate limit: rate %d above %d", rate, maxBurst)
		}
		cfg = xdpRatecfg{Rate: rate, BurstNt: burst * uint64(time.Second)}
		cfg.FillNs = cfg.BurstNt / rate
	}
	if err := r.m.Put(uint32(0), &cfg); err != nil {
		return fmt.Errorf("set rate limit: %w", err)
	}
	return nil
}

// Signatures are the User-Agent prefixes of requests to drop, compared
// without regard to ASCII case.
type Signatures struct {
	m *ebpf.Map
}

const (
	maxSignatures = 16
	signatureLen  = 32
)

// Set replaces the signatures: at most 16, each 1 to 32 bytes.
func (s *Signatures) Set(sigs []string) error {
	if len(sigs) > maxSignatures {
		return fmt.Errorf("set signatures: %d given, at most %d", len(sigs), maxSignatures)
	}
	var v xdpSignatures
	for i, sig := range sigs {
		if len(sig) == 0 || len(sig) > signatureLen {
			return fmt.Errorf("set signatures: %q must be 1 to %d bytes", sig, signatureLen)
		}
		sig = strings.ToLower(sig) // the program lower-cases ASCII only; so does ToLower on ASCII
		for j := 0; j < len(sig); j++ {
			v.Sig[i].Word[j/8] |= uint64(sig[j]) << (8 * (j % 8))
			v.Sig[i].Mask[j/8] |= 0xff << (8 * (j % 8))
		}
	}
	if err := s.m.Put(uint32(0), &v); err != nil {
		return fmt.Errorf("set signatures: %w", err)
	}
	return nil
}

// NATPings holds the tokens of OPTIONS pings in flight, one per device.
type NATPings struct {
	m *ebpf.Map

	batchOnce sync.Once
	noBatch   bool // the kernel refused BPF_MAP_UPDATE_BATCH on this map
}

// CallID is the Call-ID a NAT ping with this token must carry for the
// program to recognise the reply: "ph-" and 16 lower-case hex digits.
func CallID(token uint64) string {
	return fmt.Sprintf("ph-%016x", token)
}

// Expect records that a ping with token (see CallID) was sent to addr; a
// reply from addr carrying it is then swallowed and marks addr alive. Token
// 0 is reserved.
func (n *NATPings) Expect(addr netip.AddrPort, token uint64) error {
	if token == 0 {
		return fmt.Errorf("expect NAT ping reply from %v: token 0 is reserved", addr)
	}
	v := xdpNatping{Token: token, SentNs: uint64(monotonic())}
	if err := n.m.Put(endpointKey(addr), &v); err != nil {
		return fmt.Errorf("expect NAT ping reply from %v: %w", addr, err)
	}
	return nil
}

// ExpectBatch records many pings at once (one syscall per call on kernels
// with batched map updates, 5.6 and later; one per address elsewhere).
// addrs and tokens pair up; no token may be 0.
func (n *NATPings) ExpectBatch(addrs []netip.AddrPort, tokens []uint64) error {
	if len(addrs) != len(tokens) {
		return fmt.Errorf("expect NAT ping replies: %d addresses, %d tokens", len(addrs), len(tokens))
	}
	if len(addrs) == 0 {
		return nil
	}
	now := uint64(monotonic())
	keys := make([]xdpEndpoint, len(addrs))
	vals := make([]xdpNatping, len(addrs))
	for i, a := range addrs {
		if tokens[i] == 0 {
			return fmt.Errorf("expect NAT ping reply from %v: token 0 is reserved", a)
		}
		keys[i] = endpointKey(a)
		vals[i] = xdpNatping{Token: tokens[i], SentNs: now}
	}
	n.batchOnce.Do(func() {
		_, err := n.m.BatchUpdate(keys[:1], vals[:1], nil)
		n.noBatch = err != nil
	})
	if !n.noBatch {
		if _, err := n.m.BatchUpdate(keys, vals, nil); err != nil {
			return fmt.Errorf("expect %d NAT ping replies: %w", len(keys), err)
		}
		return nil
	}
	for i := range keys {
		if err := n.m.Put(&keys[i], &vals[i]); err != nil {
			return fmt.Errorf("expect NAT ping reply from %v: %w", addrs[i], err)
		}
	}
	return nil
}

// AnsweredToken reports whether the ping carrying token was answered by
// addr: the program swallowed a reply with that Call-ID from that address.
func (n *NATPings) AnsweredToken(addr netip.AddrPort, token uint64) bool {
	var v xdpNatping
	if err := n.m.Lookup(endpointKey(addr), &v); err != nil {
		return false
	}
	return v.Token == token && v.AnsweredNs != 0
}

// Answered returns when the reply to the last ping expected from addr was
// swallowed, and false if it has not been (or none was expected).
func (n *NATPings) Answered(addr netip.AddrPort) (time.Time, bool) {
	var v xdpNatping
	if err := n.m.Lookup(endpointKey(addr), &v); err != nil || v.AnsweredNs == 0 {
		return time.Time{}, false
	}
	return wallTime(v.AnsweredNs), true
}

// Forget drops the expectation for addr.
func (n *NATPings) Forget(addr netip.AddrPort) error {
	if err := n.m.Delete(endpointKey(addr)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("forget NAT ping to %v: %w", addr, err)
	}
	return nil
}

// Alive records when each device last sent a keepalive or answered a NAT
// ping. Times come from the kernel's coarse clock: a few milliseconds.
type Alive struct {
	m *ebpf.Map
}

// Lookup returns when addr was last seen alive.
func (a *Alive) Lookup(addr netip.AddrPort) (time.Time, bool) {
	var ns uint64
	if err := a.m.Lookup(endpointKey(addr), &ns); err != nil {
		return time.Time{}, false
	}
	return wallTime(ns), true
}

// Counters are the per-CPU verdict counters.
type Counters struct {
	m *ebpf.Map
}

// Sum adds up every CPU's count for each verdict. Call it at scrape time,
// not per packet: it is one syscall per verdict.
func (c *Counters) Sum() (map[Verdict]uint64, error) {
	out := make(map[Verdict]uint64, numVerdicts)
	var per []uint64
	for v := range numVerdicts {
		if err := c.m.Lookup(uint32(v), &per); err != nil {
			return nil, fmt.Errorf("read counter %s: %w", v, err)
		}
		var sum uint64
		for _, n := range per {
			sum += n
		}
		out[v] = sum
	}
	return out, nil
}

// Liveness gives the NAT pinger (natping.Kernel) the ping tokens and the
// liveness the program records.
type Liveness struct {
	*NATPings
	*Alive
}

// LastSeen is when addr last sent a keepalive or answered a ping.
func (l Liveness) LastSeen(addr netip.AddrPort) (time.Time, bool) { return l.Alive.Lookup(addr) }

// Buckets are the rate limiter's per-source token buckets.
type Buckets struct {
	m *ebpf.Map
}

// bucketBatch is how many buckets one BPF_MAP_LOOKUP_BATCH call returns:
// a million sources take 245 calls.
const bucketBatch = 4096

// Dropped calls fn for every tracked source that has had requests refused,
// with how many (since its bucket was made; an LRU bucket can be evicted
// and start again from 0). Order unspecified. It reads the whole map, in
// batches: call it every few seconds at most, and only when the
// ratelimited counter moved.
func (b *Buckets) Dropped(fn func(src netip.Addr, dropped uint64)) error {
	keys := make([]xdpAddr, bucketBatch)
	vals := make([]xdpBucket, bucketBatch)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := b.m.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			if vals[i].Dropped > 0 {
				fn(netip.AddrFrom16(keys[i].B).Unmap(), vals[i].Dropped)
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return b.iterate(fn, err)
		}
	}
}

// iterate is Dropped for kernels without batched lookups (before 5.6).
func (b *Buckets) iterate(fn func(netip.Addr, uint64), batchErr error) error {
	if !errors.Is(batchErr, ebpf.ErrNotSupported) {
		return fmt.Errorf("read rate limit buckets: %w", batchErr)
	}
	var k xdpAddr
	var v xdpBucket
	it := b.m.Iterate()
	for it.Next(&k, &v) {
		if v.Dropped > 0 {
			fn(netip.AddrFrom16(k.B).Unmap(), v.Dropped)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read rate limit buckets: %w", err)
	}
	return nil
}
