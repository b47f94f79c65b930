//go:build integration

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/testutil"
)

// Load of TestRedisBackend: bounded in count and in time.
const (
	redisUsers = 240 // distinct users in all
	redisFirst = 60  // registered before the crashes
	redisRate  = 150 // REGISTERs per second
)

// TestRedisBackend runs pinhole with location.backend redis against a
// real six-node Redis Cluster (three masters, a replica each):
//
//   - every binding acknowledged before a pinhole kill -9 is there after
//     the restart, read back from Redis (no bindings.db is written);
//   - the master of a registered AOR's slot is killed while REGISTERs
//     keep coming; its replica takes over (cluster-node-timeout 1 s) and
//     pinhole goes on answering 200;
//   - afterwards every REGISTER that got its 200 is queried. With
//     wait_replicas 1 none may be missing; with 0 the test reports how
//     many were (docs/cluster.md: an acknowledged write the master had
//     not yet sent its replica dies with it).
func TestRedisBackend(t *testing.T) {
	for _, wait := range []int{0, 1} {
		t.Run(fmt.Sprintf("wait_replicas=%d", wait), func(t *testing.T) {
			testRedisBackend(t, wait)
		})
	}
}

func testRedisBackend(t *testing.T, wait int) {
	began := time.Now()
	stage := func(what string) { t.Logf("%6.2fs %s", time.Since(began).Seconds(), what) }
	cluster := testutil.StartRedisCluster(t, testutil.RedisClusterConfig{NodeTimeout: time.Second})
	stage("cluster up")
	users := make([]testutil.User, redisUsers)
	for i := range users {
		users[i] = testutil.User{Name: fmt.Sprintf("r%04d", i), Password: "pw", Expires: 3600}
	}
	s := startServer(t, nil, false, func(c *testutil.Config) {
		c.Location.Backend = "redis"
		c.Location.Redis.Addresses = cluster.Addresses()
		c.Location.Redis.WaitReplicas = wait
		c.Location.Redis.WaitTimeout = 500 * time.Millisecond
		c.Location.FlushInterval = 100 * time.Millisecond
		c.Log.Level = "info"
	})
	register := func(us []testutil.User, timeout time.Duration) *testutil.SippResult {
		t.Helper()
		return testutil.Sipp{
			Scenario: scenario(t, "register.xml"), Remote: s.Addr, LocalIP: testutil.Loopback,
			Users: us, Calls: len(us), Rate: redisRate, Limit: 50,
			Vars:    map[string]string{"domain": domain},
			Timeout: timeout, RecvTimeout: 3 * time.Second, NoMessageTrace: true,
		}.Run(t)
	}
	first, during, after := users[:redisFirst], users[redisFirst:redisUsers-redisFirst], users[redisUsers-redisFirst:]

	r := register(first, 30*time.Second)
	if r.ExitCode != testutil.SippExitOK || r.Successful != len(first) {
		t.Fatalf("first registrations: want all %d acknowledged:\n%s", len(first), r.Report())
	}

	stage("first registrations")
	// kill -9 of pinhole: the bindings come back from Redis.
	s.Kill()
	s.Restart()
	if _, err := os.Stat(filepath.Join(s.Config.DataDir, "bindings.db")); err == nil {
		t.Error("backend redis wrote bindings.db")
	}
	assertBound(t, s, first, "after pinhole's kill -9 and restart")
	stage("pinhole killed, restarted, queried")

	// Kill the master of the first user's slot while REGISTERs arrive.
	master := cluster.MasterOf("ph:b:{" + first[0].Name + "@" + domain + "}")
	load := testutil.Sipp{
		Scenario: scenario(t, "register.xml"), Remote: s.Addr, LocalIP: testutil.Loopback,
		Users: during, Calls: len(during), Rate: redisRate / 3, Limit: 50,
		Vars:    map[string]string{"domain": domain},
		Timeout: 30 * time.Second, RecvTimeout: 3 * time.Second, NoMessageTrace: true,
	}.Start(t)
	if !load.WaitLog("registered: ", 10*time.Second) {
		t.Fatal("load registered nobody within 10s")
	}
	time.Sleep(200 * time.Millisecond)
	killed := time.Now()
	master.Kill()
	lr := load.Wait(t)
	stage("load through the failover")
	acked := lr.LogValues("registered")
	t.Logf("REGISTERs during the failover: %d of %d acknowledged (%d calls failed: 500s while the slot had no master, or timeouts)",
		len(acked), len(during), lr.Failed)
	cluster.WaitHealthy()
	t.Logf("cluster healthy %v after the master's kill", time.Since(killed).Round(time.Millisecond))

	if wait > 0 {
		// The promoted replica has no replica of its own: WAIT 1 cannot be
		// met in its slots until the old master rejoins as one.
		cluster.Restart(master)
		cluster.WaitReplicated()
	}
	stage("cluster healthy")
	r = register(after, 30*time.Second)
	stage("registrations after")
	if r.ExitCode != testutil.SippExitOK || r.Successful != len(after) {
		t.Fatalf("after the failover: want all %d REGISTERs acknowledged:\n%s", len(after), r.Report())
	}

	var ackedUsers []testutil.User
	for _, u := range during {
		for _, a := range acked {
			if a == u.Name {
				ackedUsers = append(ackedUsers, u)
			}
		}
	}
	lost := missing(t, s, append(append(ackedUsers, first...), after...))
	stage("queried")
	t.Logf("wait_replicas=%d: %d of %d acknowledged bindings lost with the master", wait, len(lost), len(ackedUsers)+len(first)+len(after))
	if wait > 0 && len(lost) > 0 {
		t.Errorf("wait_replicas=%d lost acknowledged bindings: %v", wait, lost)
	}
	if len(lost) > 0 {
		for _, u := range first {
			for _, l := range lost {
				if l == u.Name {
					t.Errorf("%s, registered long before the failover, lost", u.Name)
				}
			}
		}
	}
}

// assertBound fails the test unless every user has a binding.
func assertBound(t *testing.T, s *server, us []testutil.User, when string) {
	t.Helper()
	if lost := missing(t, s, us); len(lost) > 0 {
		t.Errorf("%s, %d of %d users have no binding: %v", when, len(lost), len(us), lost)
	}
}

// missing queries every user and returns those with no binding.
func missing(t *testing.T, s *server, us []testutil.User) []string {
	t.Helper()
	q := testutil.Sipp{
		Scenario: scenario(t, "register_query.xml"), Remote: s.Addr, LocalIP: testutil.Loopback,
		Users: us, Calls: len(us), Rate: redisRate, Limit: 50,
		Vars:    map[string]string{"domain": domain},
		Timeout: 30 * time.Second, NoMessageTrace: true,
	}.Run(t)
	bound := map[string]bool{}
	for _, v := range q.LogValues("bound") {
		bound[strings.Fields(v)[0]] = true
	}
	var lost []string
	for _, u := range us {
		if !bound[u.Name] {
			lost = append(lost, u.Name)
		}
	}
	return lost
}
