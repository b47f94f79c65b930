package config

import (
	"errors"
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
}

func TestPartialFileKeepsDefaults(t *testing.T) {
	cfg, err := Parse([]byte("registrar:\n  min_expires: 30\ndomains: [Example.COM]\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := Registrar{MinExpires: 30, MaxExpires: 3600, DefaultExpires: 3600, MaxContacts: 10}
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
		{"message size", "limits:\n  max_message_bytes: 100000\n", []string{"line 2", "limits.max_message_bytes"}},
		{"headers", "limits:\n  max_headers: 2\n", []string{"line 2", "limits.max_headers"}},
		{"log level", "log:\n  level: loud\n", []string{"line 2", "log.level"}},
		{"tls half", "tls:\n  cert: /a.pem\n", []string{"line 1", "tls"}},
		{"advertise port only", "advertise:\n  port: 5060\n", []string{"line 1", "advertise.host"}},
		{"domain with port", "domains: [\"a.com:5060\"]\n", []string{"line 1", "domains"}},
		{"metrics", "metrics:\n  listen: nowhere\n", []string{"line 2", "metrics.listen"}},
		{"wildcard udp", "listen:\n  udp: [\"0.0.0.0:5060\"]\n", []string{"line 2", "listen.udp", "wildcard"}},
		{"algorithm", "auth:\n  algorithms: [SHA-512]\n", []string{"line 2", "auth.algorithms"}},
		{"no algorithm", "auth:\n  algorithms: []\n", []string{"line 2", "auth.algorithms"}},
		{"empty data dir", "data_dir: \"\"\n", []string{"line 1", "data_dir"}},
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

func TestLoadMissingFile(t *testing.T) {
	if _, err := Load(t.TempDir() + "/none.yaml"); err == nil || !strings.Contains(err.Error(), "read configuration") {
		t.Fatalf("err = %v", err)
	}
}
