package location

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// RedisOptions configure the Redis Cluster backing (docs/cluster.md).
type RedisOptions struct {
	Addresses []string // seed nodes, host:port; the client learns the rest
	Username  string   // ACL user; "" for the default user
	Password  string
	// WaitReplicas, when above 0, makes every write-through batch wait
	// (WAIT) until that many replicas of each master written have it, or
	// WaitTimeout passes; fewer acknowledgements fail the batch.
	WaitReplicas int
	WaitTimeout  time.Duration // default 100ms
	DialTimeout  time.Duration // default 2s
	KeyPrefix    string        // default "ph:b:"
}

// Redis defaults applied by Open.
const (
	DefaultRedisKeyPrefix   = "ph:b:"
	DefaultRedisWaitTimeout = 100 * time.Millisecond
	DefaultRedisDialTimeout = 2 * time.Second
	// redisKeyGrace is how long a key stays after its last binding
	// expired when no edge removed it (sweep.go): long enough for a
	// pinhole restarted within the hour to see the lapsed bindings and
	// de-register them upstream (OnExpire), short enough that an AOR
	// every edge forgot does not stay for ever.
	redisKeyGrace = time.Hour
	// redisRetryFor is how long a batch whose writes failed is retried:
	// a master's failover with a cluster-node-timeout of a second takes
	// about two, and a REGISTER answered late (its UDP retransmissions
	// are absorbed meanwhile) is better than one refused with a 500.
	redisRetryFor   = 3 * time.Second
	redisRetryPause = 200 * time.Millisecond
	// slotsRefresh is how often the client reads the cluster's slot map
	// even when nothing failed.
	slotsRefresh = time.Second
	// redisOpTimeout bounds one batch: a master that stopped answering
	// fails the batch (and the REGISTERs waiting on it) instead of
	// holding them until TCP gives up.
	redisOpTimeout = 5 * time.Second
)

// ErrReplicas: a write-through batch reached fewer replicas than
// RedisOptions.WaitReplicas within WaitTimeout.
var ErrReplicas = errors.New("too few replicas acknowledged the write")

// redisBacking keeps one string key per AOR, "<prefix>{<aor>}", whose
// value is the same bytes bbolt stores. The hash tag puts the key in the
// AOR's own slot whatever the prefix, so companions a later version may
// add (a lock, an owner) share that slot and its master.
type redisBacking struct {
	client rueidis.Client
	opts   RedisOptions

	// slots maps each of the 16384 slots to its master's address, for
	// batches that must WAIT on the connection that wrote them; refreshed
	// from CLUSTER SLOTS when a write meets a moved slot.
	slotsMu sync.Mutex
	slots   []string
}

var _ backing = (*redisBacking)(nil)

// openRedis connects to the cluster. onInvalidate, when set, receives the
// keys under the prefix that any client changed (nil: notices may have
// been lost, e.g. a connection closed); see follow.go.
func openRedis(o RedisOptions, onInvalidate func(keys []string)) (*redisBacking, error) {
	if len(o.Addresses) == 0 {
		return nil, errors.New("open redis location backing: no addresses")
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = DefaultRedisKeyPrefix
	}
	if o.WaitTimeout == 0 {
		o.WaitTimeout = DefaultRedisWaitTimeout
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = DefaultRedisDialTimeout
	}
	co := rueidis.ClientOption{
		InitAddress: o.Addresses,
		Username:    o.Username,
		Password:    o.Password,
		Dialer:      net.Dialer{Timeout: o.DialTimeout},
		// A dead master must fail a batch within seconds, not minutes.
		ConnWriteTimeout: o.DialTimeout,
		// One pipelined connection per node: the change notices of
		// client-side caching arrive once per node, not once per
		// connection.
		PipelineMultiplex: -1,
		ClusterOption:     rueidis.ClusterOption{ShardsRefreshInterval: slotsRefresh},
	}
	if onInvalidate != nil {
		// Broadcast tracking (RESP3): every master tells this client about
		// every change to a key under the prefix, whoever made it, and
		// about keys Redis expired; NOLOOP leaves out this connection's
		// own writes. The client's own cache stays empty: pinhole never
		// calls DoCache, Memory is the cache.
		co.ClientTrackingOptions = []string{"PREFIX", o.KeyPrefix, "BCAST", "NOLOOP"}
		co.OnInvalidations = func(msgs []rueidis.RedisMessage) {
			if msgs == nil {
				onInvalidate(nil)
				return
			}
			keys := make([]string, 0, len(msgs))
			for _, m := range msgs {
				if k, err := m.ToString(); err == nil {
					keys = append(keys, k)
				}
			}
			onInvalidate(keys)
		}
	} else {
		co.DisableCache = true
	}
	client, err := rueidis.NewClient(co)
	if err != nil {
		return nil, fmt.Errorf("open redis location backing %v: %w", o.Addresses, err)
	}
	r := &redisBacking{client: client, opts: o}
	if err := r.refreshSlots(); err != nil {
		client.Close()
		return nil, fmt.Errorf("open redis location backing %v: %w", o.Addresses, err)
	}
	return r, nil
}

func (r *redisBacking) key(aor string) string {
	return r.opts.KeyPrefix + "{" + aor + "}"
}

// aorOf returns the AOR a key holds, false for a key not written by key.
func (r *redisBacking) aorOf(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, r.opts.KeyPrefix+"{")
	if !ok {
		return "", false
	}
	return strings.CutSuffix(rest, "}")
}

func (r *redisBacking) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), redisOpTimeout)
}

// refreshSlots reads which master serves each slot.
func (r *redisBacking) refreshSlots() error {
	ctx, cancel := r.ctx()
	defer cancel()
	ranges, err := r.client.Do(ctx, r.client.B().ClusterSlots().Build()).ToArray()
	if err != nil {
		return fmt.Errorf("cluster slots: %w", err)
	}
	slots := make([]string, 16384)
	for _, rg := range ranges {
		f, err := rg.ToArray()
		if err != nil || len(f) < 3 {
			return fmt.Errorf("cluster slots: malformed range")
		}
		lo, err1 := f[0].AsInt64()
		hi, err2 := f[1].AsInt64()
		node, err3 := f[2].ToArray()
		if err1 != nil || err2 != nil || err3 != nil || len(node) < 2 || lo < 0 || hi > 16383 || lo > hi {
			return fmt.Errorf("cluster slots: malformed range")
		}
		host, _ := node[0].ToString()
		port, _ := node[1].AsInt64()
		addr := net.JoinHostPort(host, strconv.FormatInt(port, 10))
		for s := lo; s <= hi; s++ {
			slots[s] = addr
		}
	}
	r.slotsMu.Lock()
	r.slots = slots
	r.slotsMu.Unlock()
	return nil
}

// masters returns the address of every master serving a slot.
func (r *redisBacking) masters() []string {
	r.slotsMu.Lock()
	defer r.slotsMu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, a := range r.slots {
		if a != "" && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}

// load scans every master for the prefix and reads the values found, a
// page of keys per round trip.
func (r *redisBacking) load(fn func(aor string, v []byte)) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*redisOpTimeout)
	defer cancel()
	return r.loadCtx(ctx, fn)
}

// loadCtx is load bounded by ctx: SCAN is retried by the client while a
// master is unreachable, until ctx ends.
func (r *redisBacking) loadCtx(ctx context.Context, fn func(aor string, v []byte)) error {
	nodes := r.client.Nodes()
	for _, addr := range r.masters() {
		node, ok := nodes[addr]
		if !ok {
			return fmt.Errorf("load from redis: master %s unknown to the client", addr)
		}
		if err := r.scanNode(ctx, node, fn); err != nil {
			return fmt.Errorf("load from redis master %s: %w", addr, err)
		}
	}
	return nil
}

func (r *redisBacking) scanNode(ctx context.Context, node rueidis.Client, fn func(aor string, v []byte)) error {
	var cursor uint64
	for {
		e, err := node.Do(ctx, node.B().Scan().Cursor(cursor).Match(r.opts.KeyPrefix+"*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			return fmt.Errorf("scan: %w", err)
		}
		if err := r.get(ctx, e.Elements, func(key string, v []byte) {
			if aor, ok := r.aorOf(key); ok {
				fn(strings.Clone(aor), v) // the view keeps the AOR, not the whole key
			}
		}); err != nil {
			return err
		}
		if e.Cursor == 0 {
			return nil
		}
		cursor = e.Cursor
	}
}

// get reads keys in one pipelined round trip per master and calls fn for
// each, with a nil value for a key that does not exist.
func (r *redisBacking) get(ctx context.Context, keys []string, fn func(key string, v []byte)) error {
	if len(keys) == 0 {
		return nil
	}
	cmds := make(rueidis.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = r.client.B().Get().Key(k).Build()
	}
	for i, res := range r.client.DoMulti(ctx, cmds...) {
		v, err := res.AsBytes()
		if rueidis.IsRedisNil(err) {
			fn(keys[i], nil)
			continue
		}
		if err != nil {
			return fmt.Errorf("get %s: %w", keys[i], err)
		}
		fn(keys[i], v)
	}
	return nil
}

// write sends the batch pipelined, one round trip per master. Keys get
// no TTL (a plain SET also drops the TTL an older pinhole set): the
// lapse path and the sweep remove them (sweep.go). The AORs of a master
// that failed fail alone (partialError): the others' devices get their
// 200.
func (r *redisBacking) write(batch []setWrite, through bool) error {
	if len(batch) == 0 {
		return nil
	}
	// Pinned: rueidis recycles a command once DoMulti has sent it, and a
	// write that failed over a master's failover is sent again below
	// with the same commands (an unpinned one panics when reused).
	cmds := make(rueidis.Commands, len(batch))
	for i, p := range batch {
		k := r.key(p.aor)
		if p.value == nil {
			cmds[i] = r.client.B().Del().Key(k).Build().Pin()
			continue
		}
		cmds[i] = r.client.B().Set().Key(k).Value(rueidis.BinaryString(p.value)).Build().Pin()
	}
	var errs []error // per command; nil: all written
	deadline := time.Now().Add(redisRetryFor)
	for {
		pending := cmds
		var at []int // index in cmds of each pending command, when retrying
		if errs != nil {
			pending, at = nil, nil
			for i, err := range errs {
				if err != nil {
					pending = append(pending, cmds[i])
					at = append(at, i)
				}
			}
		}
		var got []error
		if through && r.opts.WaitReplicas > 0 {
			got = r.writeWaited(pending)
		} else {
			got = r.do(pending)
		}
		if at == nil {
			errs = got
		} else {
			for j, i := range at {
				errs[i] = nil
				if got != nil {
					errs[i] = got[j]
				}
			}
		}
		if !retryable(errs) || time.Now().After(deadline) {
			break
		}
		// A master is failing over: learn the new slot owners and send
		// the failed writes again (a SET of the whole set is idempotent,
		// and writeMu keeps newer states from being written meanwhile).
		time.Sleep(redisRetryPause)
		_ = r.refreshSlots()
	}
	if !anyError(errs) {
		return nil
	}
	part := &partialError{aors: map[string]error{}}
	for i, err := range errs {
		if err != nil {
			part.aors[batch[i].aor] = err
		}
	}
	if len(part.aors) == len(batch) {
		return fmt.Errorf("write to redis: %w", errs[0])
	}
	return part
}

// retryable reports whether some write failed for a reason other than too
// few replicas: a connection refused or reset, a moved slot, a timeout.
func retryable(errs []error) bool {
	for _, err := range errs {
		if err != nil && !errors.Is(err, ErrReplicas) {
			return true
		}
	}
	return false
}

func anyError(errs []error) bool {
	for _, err := range errs {
		if err != nil {
			return true
		}
	}
	return false
}

// do sends cmds through the cluster client, which pipelines them to each
// master and follows MOVED; it returns one error per command, or nil.
func (r *redisBacking) do(cmds rueidis.Commands) []error {
	ctx, cancel := r.ctx()
	defer cancel()
	var errs []error
	// At most redisPipelineMax commands per DoMulti: rueidis sends a
	// longer pipeline (its BlockingPipeline, 2 000) over a pooled
	// connection instead of the one whose client tracking hides this
	// edge's own writes (NOLOOP), and the edge would then hear of its own
	// writes and read them back. A flush is chunked already; a group
	// commit during an avalanche is not.
	for start := 0; start < len(cmds); start += redisPipelineMax {
		chunk := cmds[start:min(start+redisPipelineMax, len(cmds))]
		for i, res := range r.client.DoMulti(ctx, chunk...) {
			if err := res.Error(); err != nil {
				if errs == nil {
					errs = make([]error, len(cmds))
				}
				errs[start+i] = err
			}
		}
	}
	return errs
}

// redisPipelineMax is the longest pipeline write sends at once, below
// rueidis's DefaultBlockingPipeline.
const redisPipelineMax = 1024

// writeWaited groups the batch by master and sends each group, then WAIT,
// on one dedicated connection to that master: WAIT counts the replicas
// that have every write the same connection made before it. The cluster
// client cannot do this itself (it sends WAIT, a blocking command, on
// another connection than the pipelined writes). It returns one error per
// command, or nil.
func (r *redisBacking) writeWaited(cmds rueidis.Commands) []error {
	r.slotsMu.Lock()
	slots := r.slots
	r.slotsMu.Unlock()
	groups := map[string][]int{}
	for i, c := range cmds {
		addr := slots[c.Slot()]
		groups[addr] = append(groups[addr], i)
	}
	nodes := r.client.Nodes()
	ctx, cancel := r.ctx()
	defer cancel()
	errs := make([]error, len(cmds))
	failed := false
	var mu sync.Mutex
	var wg sync.WaitGroup
	for addr, idx := range groups {
		node, ok := nodes[addr]
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if addr == "" || !ok {
				err = errors.New("no master known for the slot")
			} else {
				group := make(rueidis.Commands, len(idx))
				for j, i := range idx {
					group[j] = cmds[i]
				}
				err = r.writeNode(ctx, node, group)
			}
			if err == nil {
				return
			}
			mu.Lock()
			failed = true
			for _, i := range idx {
				errs[i] = err
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if !failed {
		return nil
	}
	return errs
}

func (r *redisBacking) writeNode(ctx context.Context, node rueidis.Client, group rueidis.Commands) error {
	want := int64(r.opts.WaitReplicas)
	return node.Dedicated(func(dc rueidis.DedicatedClient) error {
		group = append(group, dc.B().Wait().Numreplicas(want).Timeout(r.opts.WaitTimeout.Milliseconds()).Build())
		res := dc.DoMulti(ctx, group...)
		for _, x := range res[:len(res)-1] {
			if err := x.Error(); err != nil {
				return err
			}
		}
		got, err := res[len(res)-1].AsInt64()
		if err != nil {
			return fmt.Errorf("wait for replicas: %w", err)
		}
		if got < want {
			return fmt.Errorf("%d of %d replicas: %w", got, want, ErrReplicas)
		}
		return nil
	})
}

func (r *redisBacking) close() error {
	r.client.Close()
	return nil
}
