package ng

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Command names, as rtpengine spells them.
const (
	cmdPing   = "ping"
	cmdOffer  = "offer"
	cmdAnswer = "answer"
	cmdDelete = "delete"
	cmdQuery  = "query"
)

// stickyTTL is how long a call keeps its instance after its last command
// when no delete comes (a lost BYE, a crash of the caller's side).
// rtpengine's own final timeout for a call defaults to no limit, but its
// media timeout (60 s without packets) ends forgotten calls, so a day is
// generous.
const stickyTTL = 24 * time.Hour

// Instance names one rtpengine and its share of new calls.
type Instance struct {
	Addr   netip.AddrPort
	Weight int
}

// Config is what a Client needs; media.Config is built into one.
type Config struct {
	Instances []Instance
	// Timeout is how long one try waits for its reply before the command
	// is sent again.
	Timeout time.Duration
	// Retries is how many times a command is sent again after the first
	// try: Retries+1 tries in all, so a dead instance costs a command
	// (Retries+1)×Timeout.
	Retries int
	// PingInterval between two health pings of each instance; 0: no pinger
	// (an instance marked down then stays down).
	PingInterval time.Duration
}

// Client sends ng commands to a set of rtpengine instances. It is safe for
// concurrent use.
type Client struct {
	cfg       Config
	instances []*instance
	prefix    string // random, so that cookies differ across restarts
	seq       atomic.Uint64
	set       *metrics.Set

	mu    sync.Mutex
	calls map[string]*sticky

	// ctx ends with Close: it stops the pingers and their pings in flight.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// sticky remembers which instance holds a call.
type sticky struct {
	in   *instance
	last time.Time
}

// New opens a socket to each instance and starts reading replies and, with
// a PingInterval, pinging. Close releases them.
func New(cfg Config) (*Client, error) {
	if len(cfg.Instances) == 0 {
		return nil, errors.New("ng: no rtpengine instance")
	}
	if cfg.Timeout <= 0 {
		return nil, errors.New("ng: timeout must be positive")
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	c := &Client{cfg: cfg, prefix: hex.EncodeToString(rnd[:]), calls: map[string]*sticky{}, set: metrics.NewSet()}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	for _, ic := range cfg.Instances {
		in, err := dialInstance(ic.Addr, max(ic.Weight, 1))
		if err != nil {
			c.cancel()
			c.closeSockets()
			return nil, err
		}
		label := `{instance="` + ic.Addr.String() + `"}`
		in.downs = c.set.NewCounter(`pinhole_media_ng_instance_down_total` + label)
		in.ups = c.set.NewCounter(`pinhole_media_ng_instance_up_total` + label)
		c.set.NewGauge(`pinhole_media_ng_instance_up`+label, func() float64 {
			if in.up.Load() {
				return 1
			}
			return 0
		})
		c.instances = append(c.instances, in)
	}
	c.set.NewGauge(`pinhole_media_calls_tracked`, func() float64 {
		c.mu.Lock()
		defer c.mu.Unlock()
		return float64(len(c.calls))
	})
	metrics.RegisterSet(c.set)
	for _, in := range c.instances {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			in.read()
		}()
		if cfg.PingInterval > 0 {
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				c.pingLoop(in)
			}()
		}
	}
	return c, nil
}

// Close stops the pinger and the readers; commands in flight fail.
func (c *Client) Close() error {
	c.cancel()
	c.closeSockets()
	c.wg.Wait()
	metrics.UnregisterSet(c.set, true)
	return nil
}

func (c *Client) closeSockets() {
	for _, in := range c.instances {
		_ = in.conn.Close()
	}
}

// InstanceState is one instance as the client sees it.
type InstanceState struct {
	Addr   netip.AddrPort
	Weight int
	Up     bool
}

// Instances returns every instance and whether it is up, in configured order.
func (c *Client) Instances() []InstanceState {
	out := make([]InstanceState, len(c.instances))
	for i, in := range c.instances {
		out[i] = InstanceState{Addr: in.addr, Weight: in.weight, Up: in.up.Load()}
	}
	return out
}

// Ping sends a ping to the instance at addr; an answer marks it up.
func (c *Client) Ping(ctx context.Context, addr netip.AddrPort) error {
	for _, in := range c.instances {
		if in.addr == addr {
			return c.ping(ctx, in)
		}
	}
	return fmt.Errorf("ng: %s is not a configured instance", addr)
}

func (c *Client) ping(ctx context.Context, in *instance) error {
	_, err := c.do(ctx, in, cmdPing, map[string]any{})
	if err == nil {
		in.markUp()
	}
	return err
}

func (c *Client) pingLoop(in *instance) {
	t := time.NewTicker(c.cfg.PingInterval)
	defer t.Stop()
	for {
		_ = c.ping(c.ctx, in) // a timeout marks it down inside do
		c.expire(time.Now())
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Offer asks rtpengine to relay the media of the SDP offer sdp, sent by the
// party with fromTag, and returns the SDP to send on in its place. A new
// call is given an instance; a re-offer goes to the call's instance.
func (c *Client) Offer(ctx context.Context, callID, fromTag string, sdp []byte, o *Options) ([]byte, error) {
	in, err := c.instanceFor(callID, true)
	if err != nil {
		countCommand(cmdOffer, resultUnavailable)
		return nil, err
	}
	d := map[string]any{"sdp": string(sdp), "call-id": callID, "from-tag": fromTag}
	o.apply(d)
	r, err := c.do(ctx, in, cmdOffer, d)
	if err != nil {
		return nil, err
	}
	return []byte(r.String("sdp")), nil
}

// Answer gives rtpengine the SDP answer of the party with toTag and returns
// the SDP to send on in its place.
func (c *Client) Answer(ctx context.Context, callID, fromTag, toTag string, sdp []byte, o *Options) ([]byte, error) {
	in, err := c.instanceFor(callID, false)
	if err != nil {
		countCommand(cmdAnswer, resultUnavailable)
		return nil, err
	}
	d := map[string]any{"sdp": string(sdp), "call-id": callID, "from-tag": fromTag, "to-tag": toTag}
	o.apply(d)
	r, err := c.do(ctx, in, cmdAnswer, d)
	if err != nil {
		return nil, err
	}
	return []byte(r.String("sdp")), nil
}

// Delete ends the relay of the call (of one branch's to-tag when toTag is
// not empty) and forgets its instance. Its reply carries the final counters.
func (c *Client) Delete(ctx context.Context, callID, fromTag, toTag string) (Reply, error) {
	in, err := c.instanceFor(callID, false)
	if err != nil {
		countCommand(cmdDelete, resultUnavailable)
		return nil, err
	}
	d := map[string]any{"call-id": callID, "from-tag": fromTag}
	if toTag != "" {
		d["to-tag"] = toTag
	}
	r, err := c.do(ctx, in, cmdDelete, d)
	if toTag == "" {
		// Whatever the answer: a refused delete means rtpengine does not
		// know the call, a timeout that the instance is gone with it.
		c.forget(callID)
	}
	return r, err
}

// Query returns rtpengine's view of the call: its tags, streams and
// counters ([Reply.Totals]).
func (c *Client) Query(ctx context.Context, callID string) (Reply, error) {
	in, err := c.instanceFor(callID, false)
	if err != nil {
		countCommand(cmdQuery, resultUnavailable)
		return nil, err
	}
	return c.do(ctx, in, cmdQuery, map[string]any{"call-id": callID})
}

// instanceFor returns the call's instance; a call not seen before gets one
// of the instances that are up when create is set (an offer), and the
// instance the hash picks among those that are up otherwise (pinhole
// restarted since the offer). A call whose instance is down is
// unavailable: its ports exist nowhere else.
func (c *Client) instanceFor(callID string, create bool) (*instance, error) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.calls[callID]; s != nil {
		if !s.in.up.Load() {
			return nil, fmt.Errorf("%w: call's instance %s is down", ErrUnavailable, s.in.addr)
		}
		s.last = now
		return s.in, nil
	}
	in := c.pick(callID)
	if in == nil {
		return nil, fmt.Errorf("%w: all %d instances are down", ErrUnavailable, len(c.instances))
	}
	if create {
		c.calls[callID] = &sticky{in: in, last: now}
	}
	return in, nil
}

// pick chooses among the instances that are up by weighted rendezvous
// hashing: each instance scores -weight/ln(h) with h the hash of the
// Call-ID and the instance's address mapped into (0,1), and the highest
// score wins. Instances are chosen in proportion to their weights, and a
// Call-ID keeps its instance when others come or go.
func (c *Client) pick(callID string) *instance {
	var best *instance
	bestScore := math.Inf(-1)
	for _, in := range c.instances {
		if !in.up.Load() {
			continue
		}
		h := fnv.New64a()
		_, _ = h.Write([]byte(callID))
		_, _ = h.Write([]byte{0})
		_, _ = h.Write([]byte(in.addr.String()))
		u := (float64(mix64(h.Sum64())>>11) + 0.5) / (1 << 53) // in (0,1)
		score := -float64(in.weight) / math.Log(u)
		if score > bestScore {
			best, bestScore = in, score
		}
	}
	return best
}

func (c *Client) forget(callID string) {
	c.mu.Lock()
	delete(c.calls, callID)
	c.mu.Unlock()
}

// expire forgets calls with no command for stickyTTL.
func (c *Client) expire(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, s := range c.calls {
		if now.Sub(s.last) > stickyTTL {
			delete(c.calls, id)
		}
	}
}

// do sends one command to in and reads its reply, counting both.
func (c *Client) do(ctx context.Context, in *instance, command string, d map[string]any) (Reply, error) {
	d["command"] = command
	cookie := c.prefix + "_" + strconv.FormatUint(c.seq.Add(1), 10)
	msg, err := encode(cookie, d)
	if err != nil {
		return nil, fmt.Errorf("encode ng %s: %w", command, err)
	}
	start := time.Now()
	body, err := in.exchange(ctx, c.ctx.Done(), cookie, msg, c.cfg.Timeout, c.cfg.Retries+1)
	if err != nil {
		if errors.Is(err, ErrTimeout) {
			in.markDown()
			countCommand(command, resultTimeout)
		} else {
			countCommand(command, resultCanceled)
		}
		return nil, err
	}
	observeRTT(command, time.Since(start))
	r, err := decodeReply(command, body)
	var ce *CommandError
	switch {
	case err == nil:
		countCommand(command, resultOK)
	case errors.As(err, &ce):
		countCommand(command, resultError)
	default:
		mMalformed.Inc()
		countCommand(command, resultBadReply)
		return nil, fmt.Errorf("ng %s from %s: %w", command, in.addr, err)
	}
	return r, err
}

// mix64 is MurmurHash3's 64-bit finaliser. FNV-1a alone leaves its high
// bits, the ones mapped into (0,1), poorly mixed for keys that differ in
// their last bytes (the instance's port): a 3:1 weighting gave one
// instance 86 % of the calls with some ports. Mixed, every bit of the key
// moves every bit of the score.
func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}
