package slowpath

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/location"
)

// TestStoreOptions: location.backend picks the backing the store opens,
// and every location.redis key reaches it.
func TestStoreOptions(t *testing.T) {
	bolt, err := config.Parse([]byte("data_dir: /var/lib/ph\n"), "test")
	if err != nil {
		t.Fatal(err)
	}
	o := storeOptions(bolt, nil, nil)
	if o.Path != filepath.Join("/var/lib/ph", "bindings.db") || o.Redis != nil {
		t.Errorf("backend bbolt: path %q, redis %v", o.Path, o.Redis)
	}

	redis, err := config.Parse([]byte(`location:
  backend: redis
  flush_interval: 200ms
  redis:
    addresses: ["10.0.0.1:6379", "10.0.0.2:6380"]
    username: ph
    password: secret
    wait_replicas: 1
    wait_timeout: 50ms
    dial_timeout: 1s
    key_prefix: "edge:"
`), "test")
	if err != nil {
		t.Fatal(err)
	}
	o = storeOptions(redis, nil, nil)
	if o.Path != "" || o.FlushInterval != 200*time.Millisecond {
		t.Errorf("backend redis: path %q, flush interval %v", o.Path, o.FlushInterval)
	}
	want := &location.RedisOptions{
		Addresses: []string{"10.0.0.1:6379", "10.0.0.2:6380"}, Username: "ph", Password: "secret",
		WaitReplicas: 1, WaitTimeout: 50 * time.Millisecond, DialTimeout: time.Second, KeyPrefix: "edge:",
	}
	if diff := cmp.Diff(want, o.Redis); diff != "" {
		t.Errorf("redis options (-want +got):\n%s", diff)
	}
}
