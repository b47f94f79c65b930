package config

import (
	"crypto/tls"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDefaultIsValid(t *testing.T) {
	cfg, err := Load("")
	if err != nil {
		t.Fatalf("embedded default: %v", err)
	}
	got := cfg.Listen.Listeners()
	if len(got) != 5 || got[0].Transport != "UDP" || got[0].Addr.String() != "127.0.0.1:5060" {
		t.Errorf("default listeners = %v", got)
	}
	if cfg.Auth.Enabled() {
		t.Error("embedded default must run without credentials")
	}
	if cfg.Auth.NonceTTL != 30*time.Second || cfg.Location.FlushInterval != time.Second {
		t.Errorf("durations: nonce_ttl=%s flush=%s", cfg.Auth.NonceTTL, cfg.Location.FlushInterval)
	}
	if diff := cmp.Diff(Memory{GCHeadroom: 50, GCHeadroomMinMB: 128, ReleaseAfter: 30 * time.Second}, cfg.Memory); diff != "" {
		t.Errorf("memory (-want +got):\n%s", diff)
	}
}

// TestMemoryReleaseOff: 0 turns the release off and is valid.
func TestMemoryReleaseOff(t *testing.T) {
	cfg, err := Parse([]byte("memory:\n  release_after: 0s\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Memory.ReleaseAfter != 0 || cfg.Memory.GCHeadroom != 50 {
		t.Errorf("memory = %+v, want release off and the default headroom", cfg.Memory)
	}
}

func TestPartialFileKeepsDefaults(t *testing.T) {
	cfg, err := Parse([]byte("registrar:\n  min_expires: 30\ndomains: [Example.COM]\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := Registrar{MinExpires: 30, MaxExpires: 3600, DefaultExpires: 3600, MaxContacts: 10, Queue: 4096, ResponseCacheRate: 4000}
	if diff := cmp.Diff(want, cfg.Registrar); diff != "" {
		t.Errorf("registrar (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"example.com"}, cfg.Domains); diff != "" {
		t.Errorf("domains are lowercased (-want +got):\n%s", diff)
	}
}

func TestInvalidConfigurations(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // fragments the error must contain
	}{
		{"unknown key", "registrar:\n  min_expire: 3\n", []string{"line 2", "min_expire"}},
		{"bad yaml", "listen: [\n", []string{"t.yaml"}},
		{"bad address", "listen:\n  udp: [\"localhost:5060\"]\n", []string{"line 2", "listen.udp", "localhost:5060"}},
		{"no port", "listen:\n  udp: [\"127.0.0.1:0\"]\n", []string{"line 2", "needs a port"}},
		{"duplicate tcp family", "listen:\n  tcp: [\"127.0.0.1:7000\"]\n  ws: [\"127.0.0.1:7000\"]\n", []string{"line 3", "listen.ws", "already used"}},
		{"nothing to listen on", "listen:\n  udp: []\n  tcp: []\n  tls: []\n  ws: []\n  wss: []\n", []string{"line 1", "no listening address"}},
		{"min above max", "registrar:\n  min_expires: 100\n  max_expires: 50\n", []string{"line 3", "registrar.max_expires"}},
		{"default outside", "registrar:\n  default_expires: 10\n", []string{"line 2", "registrar.default_expires"}},
		{"zero contacts", "registrar:\n  max_contacts: 0\n", []string{"line 2", "max_contacts"}},
		{"forking", "proxy:\n  forking: random\n", []string{"line 2", "proxy.forking", "random"}},
		{"outbound scheme", "proxy:\n  outbound: \"http://x\"\n", []string{"line 2", "proxy.outbound"}},
		{"nonce ttl", "auth:\n  nonce_ttl: 10ms\n", []string{"line 2", "auth.nonce_ttl"}},
		{"nonce ttl not a duration", "auth:\n  nonce_ttl: soon\n", []string{"line 2"}},
		{"realm quote", "auth:\n  realm: 'a\"b'\n", []string{"line 2", "auth.realm"}},
		{"flush interval", "location:\n  flush_interval: 2m\n", []string{"line 2", "location.flush_interval"}},
		{"location backend", "location:\n  backend: etcd\n", []string{"line 2", "location.backend", "etcd"}},
		{"redis no addresses", "location:\n  backend: redis\n", []string{"line 1", "location.redis.addresses"}},
		{"redis address", "location:\n  backend: redis\n  redis:\n    addresses: [\"redis1\"]\n", []string{"line 4", "location.redis.addresses", "redis1"}},
		{"redis port", "location:\n  backend: redis\n  redis:\n    addresses: [\"10.0.0.1:0\"]\n", []string{"line 4", "location.redis.addresses"}},
		{"redis wait replicas", "location:\n  backend: redis\n  redis:\n    addresses: [\"10.0.0.1:6379\"]\n    wait_replicas: -1\n", []string{"line 5", "location.redis.wait_replicas"}},
		{"redis wait timeout", "location:\n  backend: redis\n  redis:\n    addresses: [\"10.0.0.1:6379\"]\n    wait_timeout: 0s\n", []string{"line 5", "location.redis.wait_timeout"}},
		{"redis dial timeout", "location:\n  backend: redis\n  redis:\n    addresses: [\"10.0.0.1:6379\"]\n    dial_timeout: 1m\n", []string{"line 5", "location.redis.dial_timeout"}},
		{"redis key prefix brace", "location:\n  backend: redis\n  redis:\n    addresses: [\"10.0.0.1:6379\"]\n    key_prefix: \"a{b\"\n", []string{"line 5", "location.redis.key_prefix"}},
		{"redis key prefix empty", "location:\n  backend: redis\n  redis:\n    addresses: [\"10.0.0.1:6379\"]\n    key_prefix: \"\"\n", []string{"line 5", "location.redis.key_prefix"}},
		{"redis unknown key", "location:\n  redis:\n    adresses: []\n", []string{"line 3", "adresses"}},
		{"message size", "limits:\n  max_message_bytes: 100000\n", []string{"line 2", "limits.max_message_bytes"}},
		{"headers", "limits:\n  max_headers: 2\n", []string{"line 2", "limits.max_headers"}},
		{"log level", "log:\n  level: loud\n", []string{"line 2", "log.level"}},
		{"tls half", "tls:\n  cert: /a.pem\n", []string{"line 2", "tls.cert", "tls.key"}},
		{"tls cert and certificates", "tls:\n  cert: /a.pem\n  key: /a.key\n  certificates: [{cert: /b.pem, key: /b.key}]\n", []string{"line 4", "tls.certificates", "not both"}},
		{"tls certificate without key", "tls:\n  certificates: [{cert: /b.pem}]\n", []string{"line 2", "tls.certificates", "entry 0"}},
		{"tls version unknown", "tls:\n  min_version: \"1.4\"\n", []string{"line 2", "tls.min_version", "1.4"}},
		{"tls version old", "tls:\n  min_version: \"1.1\"\n", []string{"line 2", "tls.min_version", "allow_insecure"}},
		{"tls suite unknown", "tls:\n  cipher_suites: [AES128-SHA]\n", []string{"line 2", "tls.cipher_suites", "AES128-SHA"}},
		{"tls suite insecure", "tls:\n  cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]\n", []string{"line 2", "tls.cipher_suites", "allow_insecure"}},
		{"tls 1.3 suite", "tls:\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", []string{"tls.cipher_suites", "TLS 1.3"}},
		{"tls suites with 1.3 only", "tls:\n  min_version: \"1.3\"\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n", []string{"tls.cipher_suites", "1.3"}},
		{"advertise port only", "advertise:\n  port: 5060\n", []string{"line 1", "advertise.host"}},
		{"domain with port", "domains: [\"a.com:5060\"]\n", []string{"line 1", "domains"}},
		{"metrics", "metrics:\n  listen: nowhere\n", []string{"line 2", "metrics.listen"}},
		{"wildcard udp", "listen:\n  udp: [\"0.0.0.0:5060\"]\n", []string{"line 2", "listen.udp", "wildcard"}},
		{"algorithm", "auth:\n  algorithms: [SHA-512]\n", []string{"line 2", "auth.algorithms"}},
		{"no algorithm", "auth:\n  algorithms: []\n", []string{"line 2", "auth.algorithms"}},
		{"empty data dir", "data_dir: \"\"\n", []string{"line 1", "data_dir"}},
		{"midreg mode", "midregistrar:\n  mode: throttle\n", []string{"line 2", "midregistrar.mode", "throttle"}},
		{"midreg insertion", "midregistrar:\n  insertion: via\n", []string{"line 2", "midregistrar.insertion"}},
		{"midreg aor with path", "midregistrar:\n  upstreams: [{addr: \"127.0.0.1:5070\", transport: udp}]\n  mode: aor\n  insertion: path\n", []string{"line 4", "midregistrar.insertion", "aor"}},
		{"midreg outgoing expires", "midregistrar:\n  upstreams: [{addr: \"127.0.0.1:5070\", transport: udp}]\n  outgoing_expires: 0\n", []string{"line 3", "midregistrar.outgoing_expires"}},
		{"midreg margin too long", "midregistrar:\n  upstreams: [{addr: \"127.0.0.1:5070\", transport: udp}]\n  outgoing_expires: 60\n  renewal_margin: 60\n", []string{"line 4", "midregistrar.renewal_margin"}},
		{"midreg timeout", "midregistrar:\n  upstreams: [{addr: \"127.0.0.1:5070\", transport: udp}]\n  timeout: 10ms\n", []string{"line 3", "midregistrar.timeout"}},
		{"midreg timeouts beyond timer F", "midregistrar:\n  upstreams: [{addr: \"127.0.0.1:5070\", transport: udp}, {addr: \"127.0.0.2:5070\", transport: udp}]\n  timeout: 20s\n", []string{"line 3", "midregistrar.timeout", "2 upstreams"}},
		{"midreg retry after", "midregistrar:\n  upstreams: [{addr: \"127.0.0.1:5070\", transport: udp}]\n  retry_after: 0\n", []string{"line 3", "midregistrar.retry_after"}},
		{"midreg upstream addr", "midregistrar:\n  upstreams: [{addr: \"kama_ilio:5060\", transport: udp}]\n", []string{"line 2", "midregistrar.upstreams", "kama_ilio:5060"}},
		{"midreg upstream port 0", "midregistrar:\n  upstreams: [{addr: \"10.0.0.1:0\", transport: udp}]\n", []string{"line 2", "midregistrar.upstreams"}},
		{"midreg upstream bare IP", "midregistrar:\n  upstreams: [{addr: \"10.0.0.1\", transport: udp}]\n", []string{"line 2", "midregistrar.upstreams"}},
		{"midreg upstream transport", "midregistrar:\n  upstreams: [{addr: \"127.0.0.1:5070\", transport: sctp}]\n", []string{"line 2", "midregistrar.upstreams", "sctp"}},
		{"midreg no listener for upstream", "listen:\n  tcp: [\"127.0.0.1:7000\"]\nmidregistrar:\n  upstreams: [{addr: \"127.0.0.1:5070\", transport: udp}]\n", []string{"line 4", "midregistrar.upstreams", "no udp listener"}},
		{"midreg with local auth", "auth:\n  credentials: /etc/users\nmidregistrar:\n  upstreams: [{addr: \"127.0.0.1:5070\", transport: udp}]\n", []string{"line 2", "auth.credentials", "main registrar"}},
		{"midreg unknown key", "midregistrar:\n  outgoing_expire: 3\n", []string{"line 2", "outgoing_expire"}},
		{"xdp mode", "xdp:\n  mode: turbo\n", []string{"line 2", "xdp.mode", "turbo"}},
		{"xdp interface name", "xdp:\n  interfaces: [\"eth0/1\"]\n", []string{"line 2", "xdp.interfaces"}},
		{"xdp interface too long", "xdp:\n  interfaces: [\"abcdefghijklmnop\"]\n", []string{"line 2", "xdp.interfaces"}},
		{"xdp interface twice", "xdp:\n  interfaces: [eth0, eth0]\n", []string{"line 2", "twice"}},
		{"xdp rate without burst", "xdp:\n  rate: 20\n", []string{"line 1", "xdp.burst"}},
		{"xdp rate too high", "xdp:\n  rate: 2000000000\n  burst: 1\n", []string{"line 2", "xdp.rate"}},
		{"xdp negative rate", "xdp:\n  rate: -1\n", []string{"line 2"}},
		{"xdp blocklist", "xdp:\n  blocklist: [\"10.0.0.1\"]\n", []string{"line 2", "xdp.blocklist", "CIDR"}},
		{"xdp blocklist mapped", "xdp:\n  blocklist: [\"::ffff:10.0.0.0/104\"]\n", []string{"line 2", "IPv4 form"}},
		{"xdp signature empty", "xdp:\n  signatures: [\"\"]\n", []string{"line 2", "xdp.signatures"}},
		{"xdp signature long", "xdp:\n  signatures: [\"" + strings.Repeat("x", 33) + "\"]\n", []string{"line 2", "xdp.signatures"}},
		{"xdp signatures many", "xdp:\n  signatures: [a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q]\n", []string{"line 2", "at most 16"}},
		{"ban window", "xdp:\n  ban:\n    window: 10ms\n", []string{"line 3", "xdp.ban.window"}},
		{"ban duration", "xdp:\n  ban:\n    duration: 0s\n", []string{"line 3", "xdp.ban.duration"}},
		{"ban failures", "xdp:\n  ban:\n    auth_failures: -1\n", []string{"line 3", "xdp.ban.auth_failures"}},
		{"ban ratelimited_for", "xdp:\n  ban:\n    ratelimited_for: 100ms\n", []string{"line 3", "xdp.ban.ratelimited_for"}},
		{"ban duration for ratelimit", "xdp:\n  ban:\n    auth_failures: 0\n    duration: 0s\n", []string{"line 4", "xdp.ban.duration"}},
		{"natping interval", "natping:\n  interval: 100ms\n", []string{"line 2", "natping.interval"}},
		{"natping interval long", "natping:\n  interval: 1h\n", []string{"line 2", "natping.interval"}},
		{"natping method", "natping:\n  method: stun\n", []string{"line 2", "natping.method", "stun"}},
		{"natping missed", "natping:\n  max_missed: -2\n", []string{"line 2", "natping.max_missed"}},
		{"fastpath loops", "fastpath:\n  loops: -1\n", []string{"line 2", "fastpath.loops"}},
		{"fastpath cache", "fastpath:\n  cache_size: 0\n", []string{"line 2", "fastpath.cache_size"}},
		{"fastpath queue", "fastpath:\n  queue_size: 2\n", []string{"line 2", "fastpath.queue_size"}},
		{"dispatch algorithm", "dispatch:\n  sets: [{name: fs, algorithm: random, destinations: [{uri: \"sip:10.0.0.1\"}]}]\n", []string{"line 2", "dispatch.sets", "random"}},
		{"dispatch no destinations", "dispatch:\n  sets: [{name: fs, algorithm: weighted}]\n", []string{"line 2", "dispatch.sets", "no destinations"}},
		{"dispatch sips name", "dispatch:\n  sets: [{name: fs, algorithm: weighted, destinations: [{uri: \"sips:fs1.example:5080\"}]}]\n", []string{"line 2", "fs1.example", "sip:NAME"}},
		{"dispatch bad name", "dispatch:\n  sets: [{name: fs, algorithm: weighted, destinations: [{uri: \"sip:fs_1.example\"}]}]\n", []string{"line 2", "fs_1.example"}},
		{"dns min_ttl", "dns:\n  min_ttl: 100ms\n", []string{"dns.min_ttl"}},
		{"dns max below min", "dns:\n  min_ttl: 10s\n  max_ttl: 5s\n", []string{"dns.max_ttl"}},
		{"dns server", "dns:\n  servers: [\"ns.example\"]\n", []string{"dns.servers"}},
		{"dispatch transport", "dispatch:\n  sets: [{name: fs, algorithm: weighted, destinations: [{uri: \"sip:10.0.0.1;transport=sctp\"}]}]\n", []string{"line 2", "dispatch.sets"}},
		{"dispatch weight", "dispatch:\n  sets: [{name: fs, algorithm: weighted, destinations: [{uri: \"sip:10.0.0.1\", weight: -3}]}]\n", []string{"line 2", "weight -3"}},
		{"dispatch set twice", "dispatch:\n  sets: [{name: fs, algorithm: weighted, destinations: [{uri: \"sip:10.0.0.1\"}]}, {name: fs, algorithm: weighted, destinations: [{uri: \"sip:10.0.0.2\"}]}]\n", []string{"line 2", "used twice"}},
		{"dispatch rule set", "dispatch:\n  sets: [{name: fs, algorithm: round_robin, destinations: [{uri: \"sip:10.0.0.1:5080\"}]}]\n  rules: [{set: other}]\n", []string{"line 3", "dispatch.rules", "other"}},
		{"dispatch rule register", "dispatch:\n  sets: [{name: fs, algorithm: round_robin, destinations: [{uri: \"sip:10.0.0.1:5080\"}]}]\n  rules: [{set: fs, methods: [REGISTER]}]\n", []string{"line 3", "dispatch.register"}},
		{"dispatch rule method case", "dispatch:\n  sets: [{name: fs, algorithm: round_robin, destinations: [{uri: \"sip:10.0.0.1:5080\"}]}]\n  rules: [{set: fs, methods: [invite]}]\n", []string{"line 3", "invite"}},
		{"dispatch rule source", "dispatch:\n  sets: [{name: fs, algorithm: round_robin, destinations: [{uri: \"sip:10.0.0.1:5080\"}]}]\n  rules: [{set: fs, sources: [\"10.0.0.1\"]}]\n", []string{"line 3", "CIDR"}},
		{"dispatch register set", "dispatch:\n  sets: [{name: fs, algorithm: round_robin, destinations: [{uri: \"sip:10.0.0.1:5080\"}]}]\n  register: other\n", []string{"line 3", "dispatch.register", "other"}},
		{"dispatch register with midregistrar", "dispatch:\n  sets: [{name: fs, algorithm: round_robin, destinations: [{uri: \"sip:10.0.0.1:5080\"}]}]\n  register: fs\nmidregistrar:\n  upstreams: [{addr: \"127.0.0.1:5070\", transport: udp}]\n", []string{"line 3", "dispatch.register", "mid-registrar"}},
		{"dispatch register with local auth", "auth:\n  credentials: /etc/users\ndispatch:\n  sets: [{name: fs, algorithm: round_robin, destinations: [{uri: \"sip:10.0.0.1:5080\"}]}]\n  register: fs\n", []string{"line 2", "auth.credentials", "farm"}},
		{"dispatch probe interval", "dispatch:\n  probe:\n    interval: 10ms\n", []string{"line 3", "dispatch.probe.interval"}},
		{"dispatch probe timeout", "dispatch:\n  probe:\n    interval: 1s\n    timeout: 5s\n", []string{"line 4", "dispatch.probe.timeout"}},
		{"dispatch down after", "dispatch:\n  probe:\n    down_after: 0\n", []string{"line 3", "dispatch.probe.down_after"}},
		{"dispatch up after", "dispatch:\n  probe:\n    up_after: 0\n", []string{"line 3", "dispatch.probe.up_after"}},
		{"dispatch failover code", "dispatch:\n  failover:\n    codes: [200]\n", []string{"line 3", "dispatch.failover.codes"}},
		{"dispatch failover timeout", "dispatch:\n  failover:\n    timeout: 40s\n", []string{"line 3", "dispatch.failover.timeout"}},
		{"dispatch max tries", "dispatch:\n  failover:\n    max_tries: -1\n", []string{"line 3", "dispatch.failover.max_tries"}},
		{"dispatch mtu", "dispatch:\n  oversize:\n    mtu: 100\n", []string{"line 3", "dispatch.oversize.mtu"}},
		{"dispatch headroom", "dispatch:\n  oversize:\n    headroom: 1200\n", []string{"line 3", "dispatch.oversize.headroom"}},
		{"dispatch strip via", "dispatch:\n  oversize:\n    strip_headers: [Via]\n", []string{"line 3", "strip_headers", "Via"}},
		{"dispatch unknown key", "dispatch:\n  topology: true\n", []string{"line 2", "topology"}},
		{"api listen", "api:\n  listen: \"localhost:9061\"\n", []string{"line 2", "api.listen", "IP:port"}},
		{"api off loopback without token", "api:\n  listen: \"0.0.0.0:9061\"\n", []string{"line 2", "api.listen", "token"}},
		{"api off loopback without tls", "api:\n  listen: \"10.0.0.1:9061\"\n  token: 0123456789abcdef0\n", []string{"api.tls_cert", "in clear"}},
		{"api tls cert without key", "api:\n  listen: \"127.0.0.1:9061\"\n  tls_cert: /etc/pinhole/api.crt\n", []string{"line 3", "api.tls_cert", "api.tls_key"}},
		{"api token short", "api:\n  listen: \"10.0.0.1:9061\"\n  token: abc\n", []string{"line 3", "api.token", "16"}},
		{"api token and file", "api:\n  token: 0123456789abcdef0\n  token_file: /etc/pinhole/token\n", []string{"line 2", "api.token", "not both"}},
		{"api same port as metrics", "metrics:\n  listen: \"127.0.0.1:9100\"\napi:\n  listen: \"127.0.0.1:9100\"\n", []string{"line 4", "api.listen", "metrics.listen"}},
		{"log level", "log:\n  level: verbose\n", []string{"line 2", "log.level", "verbose"}},
		{"log component name", "log:\n  components: {registar: debug}\n", []string{"line 2", "log.components", "registar"}},
		{"log component level", "log:\n  components: {sipgo: loud}\n", []string{"line 2", "log.components", "loud"}},
		{"log format", "log:\n  format: xml\n", []string{"line 2", "log.format", "xml"}},
		{"log rate", "log:\n  rate: -1\n", []string{"line 2", "log.rate"}},
		{"memory headroom", "memory:\n  gc_headroom: 5\n", []string{"line 2", "memory.gc_headroom"}},
		{"memory headroom min", "memory:\n  gc_headroom_min_mb: -1\n", []string{"line 2", "memory.gc_headroom_min_mb"}},
		{"memory release too soon", "memory:\n  release_after: 1s\n", []string{"line 2", "memory.release_after"}},
		{"memory release too late", "memory:\n  release_after: 2h\n", []string{"line 2", "memory.release_after"}},
		{"cluster vip", "cluster:\n  edge_id: a\n  vip: \"nope\"\n", []string{"line 3", "cluster.vip", "nope"}},
		{"cluster vip without id", "cluster:\n  vip: 10.0.0.9\n", []string{"cluster.vip", "edge_id"}},
		{"cluster edges without id", "cluster:\n  edges: [{id: a, address: \"10.0.0.1:5070\"}]\n", []string{"cluster.edge_id"}},
		{"cluster edge twice", "cluster:\n  edge_id: a\n  edges: [{id: a, address: \"10.0.0.1:5070\"}, {id: a, address: \"10.0.0.2:5070\"}]\n", []string{"cluster.edges", "twice"}},
		{"cluster edge address", "cluster:\n  edge_id: a\n  edges: [{id: a, address: \"edge-a\"}]\n", []string{"cluster.edges", "edge-a"}},
		{"cluster self missing", "cluster:\n  edge_id: c\n  edges: [{id: a, address: \"10.0.0.1:5070\"}]\n", []string{"cluster.edge_id", "\"c\""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "t.yaml")
			if err == nil {
				t.Fatal("accepted an invalid configuration")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %q does not wrap ErrInvalid", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestMidRegistrar(t *testing.T) {
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MidRegistrar.Enabled() {
		t.Error("embedded default must run as a standalone registrar")
	}
	cfg, err = Parse([]byte("midregistrar:\n  upstreams: [{addr: \"10.0.0.3:5060\", transport: udp}, {addr: \"10.0.0.4:5060\", transport: tcp}]\n  mode: aor\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := MidRegistrar{
		Upstreams:       []Upstream{{Addr: "10.0.0.3:5060", Transport: "udp"}, {Addr: "10.0.0.4:5060", Transport: "tcp"}},
		Mode:            "aor",
		Insertion:       "contact",
		OutgoingExpires: 3600,
		RenewalMargin:   10,
		Timeout:         4 * time.Second,
		RetryAfter:      30,
	}
	if diff := cmp.Diff(want, cfg.MidRegistrar); diff != "" {
		t.Errorf("midregistrar (-want +got):\n%s", diff)
	}
}

func TestDispatch(t *testing.T) {
	def, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if def.Dispatch.Enabled() || def.Dispatch.Register != "" {
		t.Error("embedded default must not dispatch")
	}
	cfg, err := Parse([]byte(`dispatch:
  sets:
    - name: fs
      algorithm: hash_user
      destinations:
        - {uri: "sip:10.0.0.11:5080", weight: 2, attrs: {zone: a}}
        - {uri: "sip:10.0.0.12:5080;transport=tcp", priority: 1}
  rules: [{set: fs, methods: [INVITE], prefix: "conf-", sources: ["10.1.0.0/16"]}]
  register: fs
  topology_hiding: true
  failover: {codes: [503], timeout: 1s}
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := Dispatch{
		Sets: []DispatchSet{{Name: "fs", Algorithm: "hash_user", Destinations: []DispatchDestination{
			{URI: "sip:10.0.0.11:5080", Weight: 2, Attrs: map[string]string{"zone": "a"}},
			{URI: "sip:10.0.0.12:5080;transport=tcp", Priority: 1},
		}}},
		Rules:          []DispatchRule{{Set: "fs", Methods: []string{"INVITE"}, Prefix: "conf-", Sources: []string{"10.1.0.0/16"}}},
		Register:       "fs",
		Probe:          DispatchProbe{Interval: 10 * time.Second, Timeout: 2 * time.Second, DownAfter: 3, UpAfter: 2},
		Failover:       DispatchFailover{Codes: []int{503}, DownOn503: true, Timeout: time.Second},
		TopologyHiding: true,
		Oversize:       DispatchOversize{MTU: 1500, Headroom: 200, StripHeaders: []string{}},
	}
	if diff := cmp.Diff(want, cfg.Dispatch); diff != "" {
		t.Errorf("dispatch (-want +got):\n%s", diff)
	}
}

func TestListenInFileReplacesDefault(t *testing.T) {
	cfg, err := Parse([]byte("listen:\n  tcp: [\"127.0.0.1:7000\"]\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Listen.Listeners()
	if len(got) != 1 || got[0].Transport != "TCP" {
		t.Errorf("listeners = %v, want only the file's TCP socket", got)
	}
}

func TestXDPAndNATPing(t *testing.T) {
	def, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	// The embedded default must run without root: nothing to attach to.
	if len(def.XDP.Interfaces) != 0 {
		t.Errorf("default xdp.interfaces = %v, want none", def.XDP.Interfaces)
	}
	if diff := cmp.Diff(NATPing{Interval: 30 * time.Second, Method: "options", MaxMissed: 3}, def.NATPing); diff != "" {
		t.Errorf("default natping (-want +got):\n%s", diff)
	}
	cfg, err := Parse([]byte("xdp:\n  interfaces: [eth0, eth1]\n  mode: generic\n  rate: 20\n  burst: 40\n"+
		"  blocklist: [\"192.0.2.0/24\", \"2001:db8::/32\"]\n  signatures: []\n"+
		"natping:\n  interval: 15s\n  method: crlf\n  max_missed: 0\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := XDP{
		Interfaces: []string{"eth0", "eth1"}, Mode: "generic", Rate: 20, Burst: 40,
		Blocklist: []string{"192.0.2.0/24", "2001:db8::/32"}, Signatures: []string{},
		Ban: Ban{AuthFailures: 10, Window: time.Minute, Duration: 15 * time.Minute, RateLimitedFor: time.Minute},
	}
	if diff := cmp.Diff(want, cfg.XDP); diff != "" {
		t.Errorf("xdp (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(NATPing{Interval: 15 * time.Second, Method: "crlf"}, cfg.NATPing); diff != "" {
		t.Errorf("natping (-want +got):\n%s", diff)
	}
}

func TestLoadMissingFile(t *testing.T) {
	if _, err := Load(t.TempDir() + "/none.yaml"); err == nil || !strings.Contains(err.Error(), "read configuration") {
		t.Fatalf("err = %v", err)
	}
}

func TestOpsSections(t *testing.T) {
	dir := t.TempDir()
	tokenFile := dir + "/token"
	if err := os.WriteFile(tokenFile, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse([]byte("api:\n  listen: \"10.0.0.1:9061\"\n  token_file: "+tokenFile+"\n  tls_cert: /etc/pinhole/api.crt\n  tls_key: /etc/pinhole/api.key\nlog:\n  level: warn\n  components: {sipgo: error, proxy: debug}\n  format: json\n  rate: 50\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cfg.API.ResolveToken()
	if err != nil || tok != "0123456789abcdef0123" {
		t.Errorf("ResolveToken = %q, %v; want the file's line", tok, err)
	}
	for comp, want := range map[string]string{"sipgo": "error", "proxy": "debug", "registrar": "warn"} {
		if got := cfg.Log.LevelOf(comp); got != want {
			t.Errorf("LevelOf(%s) = %s, want %s", comp, got, want)
		}
	}
	if cfg.Log.Format != "json" || cfg.Log.Rate != 50 {
		t.Errorf("log = %+v", cfg.Log)
	}
	def, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if def.API.Listen != "127.0.0.1:9061" || def.Log.Rate != 200 || def.Log.Format != "text" {
		t.Errorf("defaults: api %+v log %+v", def.API, def.Log)
	}
	if err := os.WriteFile(tokenFile, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.API.ResolveToken(); err == nil || !strings.Contains(err.Error(), "api.token_file") {
		t.Errorf("short token file: err = %v, want one naming api.token_file", err)
	}
}

func TestFastPathDefault(t *testing.T) {
	def, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(FastPath{Enabled: true, Loops: 0, CacheSize: 1_000_000, QueueSize: 4096, Batch: 64}, def.FastPath); diff != "" {
		t.Errorf("default fastpath (-want +got):\n%s", diff)
	}
	// On by default; off is one key, the rest staying the default's.
	off, err := Parse([]byte("fastpath:\n  enabled: false\n"), "off.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(FastPath{Enabled: false, Loops: 0, CacheSize: 1_000_000, QueueSize: 4096, Batch: 64}, off.FastPath); diff != "" {
		t.Errorf("fastpath.enabled: false (-want +got):\n%s", diff)
	}
	cfg, err := Parse([]byte("fastpath:\n  enabled: true\n  loops: 2\n  cache_size: 10\n  queue_size: 64\n  batch: 1\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(FastPath{Enabled: true, Loops: 2, CacheSize: 10, QueueSize: 64, Batch: 1}, cfg.FastPath); diff != "" {
		t.Errorf("fastpath (-want +got):\n%s", diff)
	}
	if _, err := Parse([]byte("fastpath:\n  batch: 0\n"), "t.yaml"); err == nil {
		t.Error("fastpath.batch 0 accepted")
	}
}

// TestEveryErrorReported: -check-config names every mistake of a file, each
// with its line, not only the first, and says nothing of what is right.
func TestEveryErrorReported(t *testing.T) {
	yaml := "domains: []\nregistrar:\n  min_expires: -5\ntls:\n  min_version: \"1.1\"\n  cipher_suites: [NOPE]\n"
	_, err := Parse([]byte(yaml), "t.yaml")
	if err == nil {
		t.Fatal("accepted an invalid configuration")
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("error %q does not wrap ErrInvalid", err)
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{"line 1", "line 5", "line 6", "line 3"} // in validate's order of sections
	if len(lines) != len(want) {
		t.Fatalf("got %d errors, want %d (domains, tls.min_version, tls.cipher_suites, registrar.min_expires):\n%s", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], "t.yaml: "+w+":") {
			t.Errorf("error %d = %q, want it at %s", i, lines[i], w)
		}
	}
}

// TestTLSSettings: the old single pair is the default certificate, the
// version and suites become crypto/tls's values, and insecure choices pass
// only with allow_insecure.
func TestTLSSettings(t *testing.T) {
	cfg, err := Parse([]byte("tls:\n  cert: /a.pem\n  key: /a.key\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Certificate{{Cert: "/a.pem", Key: "/a.key"}}, cfg.TLS.Pairs()); diff != "" {
		t.Errorf("tls.cert as pairs (-want +got):\n%s", diff)
	}
	if cfg.TLS.Version() != tls.VersionTLS12 || cfg.TLS.Suites() != nil {
		t.Errorf("defaults: version %x suites %v, want TLS 1.2 and Go's suites", cfg.TLS.Version(), cfg.TLS.Suites())
	}
	cfg, err = Parse([]byte("tls:\n  min_version: \"1.0\"\n  allow_insecure: true\n  cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
	if diff := cmp.Diff(want, cfg.TLS.Suites()); diff != "" || cfg.TLS.Version() != tls.VersionTLS10 {
		t.Errorf("insecure allowed: version %x, suites (-want +got):\n%s", cfg.TLS.Version(), diff)
	}
}

// TestDNSNamesAccepted: farm destinations and mid-registrar upstreams may
// be DNS names (docs/dns.md), in every form RFC 3263 gives meaning to.
func TestDNSNamesAccepted(t *testing.T) {
	for _, text := range []string{
		"dispatch:\n  sets: [{name: fs, algorithm: weighted, destinations: [{uri: \"sip:fs.example.net\"}, {uri: \"sip:fs2.example.net:5080;transport=tcp\"}, {uri: \"sip:10.0.0.1\"}]}]\n",
		"midregistrar:\n  upstreams: [{addr: \"registrar.example.net\", transport: udp}, {addr: \"registrar.example.net:5070\", transport: tcp}]\n",
		"dns:\n  servers: [\"10.0.0.53\", \"10.0.0.54:5353\"]\n  min_ttl: 1s\n  max_ttl: 10m\n  negative_ttl: 5s\n  ipv6: true\n",
	} {
		if _, err := Parse([]byte(text), "t.yaml"); err != nil {
			t.Errorf("%s: %v", text, err)
		}
	}
}
