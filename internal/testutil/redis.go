package testutil

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Redis binaries as Debian's redis-server and redis-tools install them.
const (
	redisServerBin = "/usr/bin/redis-server"
	redisCliBin    = "/usr/bin/redis-cli"
)

// RedisClusterConfig describes a Redis Cluster for a test: three masters
// and one replica each, on loopback.
type RedisClusterConfig struct {
	// AppendOnly turns on the append-only file (appendfsync everysec, the
	// default); off, a node keeps nothing across its own restart.
	AppendOnly bool
	// NodeTimeout is cluster-node-timeout: how long a master may be
	// silent before its replica takes over. Default 1s.
	NodeTimeout time.Duration
	// NS runs the nodes inside a namespace of the test instead of on the
	// host, listening on loopback and on Host, which they announce to
	// clients: pinholes in other namespaces reach the cluster over the
	// test's links. nil: the host's loopback alone.
	NS   *NetNS
	Host netip.Addr
}

// RedisCluster is a Redis Cluster run by a test.
type RedisCluster struct {
	t     testing.TB
	dir   string
	cfg   RedisClusterConfig
	Nodes []*RedisNode
}

// RedisNode is one redis-server process of a cluster.
type RedisNode struct {
	Port    int
	host    string // what clients dial: 127.0.0.1 or RedisClusterConfig.Host
	ns      *NetNS
	logPath string
	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
}

// Addr is the node's host:port.
func (n *RedisNode) Addr() string { return net.JoinHostPort(n.host, strconv.Itoa(n.Port)) }

// redisReady bounds the wait for a cluster to form or heal.
const redisReady = 20 * time.Second

// StartRedisCluster starts six redis-server processes in cluster mode on
// loopback, joins them with redis-cli --cluster create (three masters, one
// replica each) and waits until every node reports cluster_state:ok and
// every master has its replica online. Everything is killed when the test ends;
// when the test failed, the nodes' log tails are shown.
func StartRedisCluster(t testing.TB, rc RedisClusterConfig) *RedisCluster {
	t.Helper()
	for _, p := range []string{redisServerBin, redisCliBin} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("redis is not installed (make test installs redis-server and redis-tools): %v", err)
		}
	}
	if rc.NodeTimeout == 0 {
		rc.NodeTimeout = time.Second
	}
	host := "127.0.0.1"
	if rc.NS != nil {
		if !rc.Host.IsValid() {
			t.Fatal("a Redis Cluster in a namespace needs the address it listens on")
		}
		host = rc.Host.String()
	}
	c := &RedisCluster{t: t, dir: t.TempDir(), cfg: rc}
	t.Cleanup(func() {
		for _, n := range c.Nodes {
			n.Kill()
		}
		if t.Failed() {
			for _, n := range c.Nodes {
				t.Logf("redis %d log (tail):\n%s", n.Port, tail(readOr(n.logPath), 15))
			}
		}
	})
	for _, port := range freeRedisPorts(t, 6) {
		n := &RedisNode{Port: port, host: host, ns: rc.NS, logPath: filepath.Join(c.dir, fmt.Sprintf("redis-%d.log", port))}
		c.Nodes = append(c.Nodes, n)
		c.start(n)
	}
	for _, n := range c.Nodes {
		c.waitPing(n)
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		args = append(args, n.Addr())
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := rc.NS.CommandContext(context.Background(), redisCliBin, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	// A fresh cluster has a replica for every master: wait until each is
	// online (its first REPLCONF ACK received), not only linked, or a
	// write with WAIT 1 right after this can find no replica to count.
	c.WaitReplicated()
	return c
}

// Restart starts a killed node again with its cluster configuration: it
// rejoins, as a replica if its replica took over meanwhile.
func (c *RedisCluster) Restart(n *RedisNode) {
	c.t.Helper()
	n.Kill()
	c.start(n)
	c.waitPing(n)
}

func (c *RedisCluster) start(n *RedisNode) {
	c.t.Helper()
	rc := c.cfg
	dir := filepath.Join(c.dir, strconv.Itoa(n.Port))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		c.t.Fatalf("make redis dir: %v", err)
	}
	aof := "no"
	if rc.AppendOnly {
		aof = "yes"
	}
	bind := []string{"--bind", "127.0.0.1"}
	if rc.NS != nil {
		// Protected mode admits loopback only; the namespace is the
		// test's own, reachable from its other namespaces alone.
		bind = []string{"--bind", "127.0.0.1", n.host, "--cluster-announce-ip", n.host, "--protected-mode", "no"}
	}
	cmd := rc.NS.CommandContext(context.Background(), redisServerBin, append(bind,
		"--port", strconv.Itoa(n.Port),
		"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
		"--cluster-node-timeout", strconv.FormatInt(rc.NodeTimeout.Milliseconds(), 10),
		"--appendonly", aof, "--save", "", "--dir", dir,
		// A new replica syncs at once, not after the 5 s default wait
		// for other replicas to share the transfer.
		"--repl-diskless-sync-delay", "0",
		"--daemonize", "no", "--logfile", n.logPath)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start redis-server: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.mu.Unlock()
}

// Kill ends the node with SIGKILL, as a crash would, and waits for it.
func (n *RedisNode) Kill() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Alive reports whether the node's process runs.
func (n *RedisNode) Alive() bool {
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Cli runs redis-cli against the node and returns its output.
func (n *RedisNode) Cli(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := n.ns.CommandContext(ctx, redisCliBin, append([]string{"-p", strconv.Itoa(n.Port)}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func (c *RedisCluster) waitPing(n *RedisNode) {
	c.t.Helper()
	deadline := time.Now().Add(redisReady)
	for {
		if out, err := n.Cli("ping"); err == nil && out == "PONG" {
			return
		}
		if time.Now().After(deadline) || !n.Alive() {
			c.t.Fatalf("redis %d does not answer PING; log:\n%s", n.Port, tail(readOr(n.logPath), 20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Addresses are the host:port of every node, for the client's seed list.
func (c *RedisCluster) Addresses() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.Addr())
	}
	return out
}

// WaitHealthy waits until every live node reports cluster_state:ok and
// every live replica's link to its master is up (a master may have no
// replica left: WaitReplicated asks for that too).
func (c *RedisCluster) WaitHealthy() {
	c.t.Helper()
	deadline := time.Now().Add(redisReady)
	for {
		err := c.healthy()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("redis cluster not healthy after %s: %v", redisReady, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitReplicated waits until the cluster is healthy and every master
// serving slots has its replica online. After a failover, a restarted old
// master reports cluster_state:ok before it has become the promoted one's
// replica, and a write with WAIT 1 in those slots fails until it has.
func (c *RedisCluster) WaitReplicated() {
	c.t.Helper()
	deadline := time.Now().Add(redisReady)
	for {
		err := c.healthy()
		if err == nil {
			err = c.replicated()
		}
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("redis cluster not replicated after %s: %v", redisReady, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// replicated reports a live master that serves slots without a replica
// online.
func (c *RedisCluster) replicated() error {
	for _, n := range c.Nodes {
		if !n.Alive() {
			continue
		}
		repl, err := n.Cli("info", "replication")
		if err != nil {
			return fmt.Errorf("redis %d: %v", n.Port, err)
		}
		if !strings.Contains(repl, "role:master") || strings.Contains(repl, "state=online") {
			continue
		}
		nodes, err := n.Cli("cluster", "nodes")
		if err != nil {
			return fmt.Errorf("redis %d: %v", n.Port, err)
		}
		for _, line := range strings.Split(nodes, "\n") {
			// CLUSTER NODES: id addr flags master ping pong epoch link slots...
			if f := strings.Fields(line); len(f) > 8 && strings.Contains(f[2], "myself") {
				return fmt.Errorf("redis %d: serves slots without a replica online", n.Port)
			}
		}
	}
	return nil
}

func (c *RedisCluster) healthy() error {
	for _, n := range c.Nodes {
		if !n.Alive() {
			continue
		}
		info, err := n.Cli("cluster", "info")
		if err != nil {
			return fmt.Errorf("redis %d: %v", n.Port, err)
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("redis %d: cluster not ok", n.Port)
		}
		repl, err := n.Cli("info", "replication")
		if err != nil {
			return fmt.Errorf("redis %d: %v", n.Port, err)
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			return fmt.Errorf("redis %d: replica link down", n.Port)
		}
	}
	return nil
}

// MasterOf returns the live node that serves key's slot as master.
func (c *RedisCluster) MasterOf(key string) *RedisNode {
	c.t.Helper()
	for _, n := range c.Nodes {
		if !n.Alive() {
			continue
		}
		slot, err := n.Cli("cluster", "keyslot", key)
		if err != nil {
			continue
		}
		// CLUSTER NODES lines: id addr@bus flags master ping pong epoch
		// link-state slot-ranges...
		nodes, err := n.Cli("cluster", "nodes")
		if err != nil {
			continue
		}
		s, _ := strconv.Atoi(slot)
		for _, line := range strings.Split(nodes, "\n") {
			f := strings.Fields(line)
			if len(f) < 9 || !strings.Contains(f[2], "master") || strings.Contains(f[2], "fail") {
				continue
			}
			for _, r := range f[8:] {
				lo, hi, ok := strings.Cut(r, "-")
				if !ok {
					hi = lo
				}
				a, err1 := strconv.Atoi(lo)
				b, err2 := strconv.Atoi(hi)
				if err1 != nil || err2 != nil || s < a || s > b {
					continue
				}
				addr, _, _ := strings.Cut(f[1], "@")
				for _, m := range c.Nodes {
					if m.Addr() == addr {
						return m
					}
				}
			}
		}
	}
	c.t.Fatalf("no live master serves %q", key)
	return nil
}

// freeRedisPorts picks n ports on loopback that are free together with
// their cluster bus ports (port + 10000, Redis's fixed offset), below the
// ephemeral range so that clients' own ports cannot take them meanwhile.
func freeRedisPorts(t testing.TB, n int) []int {
	t.Helper()
	var out []int
	for tries := 0; len(out) < n; tries++ {
		if tries > 200 {
			t.Fatalf("found only %d free port pairs for redis", len(out))
		}
		p := 12000 + rand.IntN(10000)
		if !slices.Contains(out, p) && free(p) && free(p+10000) {
			out = append(out, p)
		}
	}
	return out
}

func free(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
