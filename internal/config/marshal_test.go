package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"gopkg.in/yaml.v3"
)

// fullMidRegistrar sets every key of every section away from its default,
// with the mid-registrar on (which excludes credentials and dispatch.register).
const fullMidRegistrar = `
listen:
  udp: ["192.0.2.1:5070", "[2001:db8::1]:5070"]
  tcp: ["192.0.2.1:5070"]
  tls: ["192.0.2.1:5071"]
  ws: ["192.0.2.1:8080"]
  wss: ["192.0.2.1:8443"]
advertise: {host: "sip.example.net", port: 5090}
domains: ["example.net", "192.0.2.1"]
data_dir: "/var/lib/pinhole"
tls: {cert: "/etc/pinhole/cert.pem", key: "/etc/pinhole/key.pem"}
registrar: {min_expires: 30, max_expires: 7200, default_expires: 600, max_contacts: 3, workers: 3, queue: 1000, response_cache_rate: 500}
auth:
  realm: "example.net"
  credentials: ""
  nonce_ttl: "1m30s"
  algorithms: ["MD5"]
location: {flush_interval: "250ms"}
proxy: {forking: "serial", outbound: "sip:192.0.2.9:5060"}
midregistrar:
  upstreams: [{addr: "192.0.2.3:5060", transport: "udp"}, {addr: "192.0.2.4:5060", transport: "tcp"}]
  mode: "aor"
  insertion: "contact"
  outgoing_expires: 1800
  renewal_margin: 20
  timeout: "2500ms"
  retry_after: 60
dispatch:
  sets:
    - name: fs
      algorithm: weighted
      destinations:
        - {uri: "sip:192.0.2.11:5080", weight: 5, priority: 1, attrs: {zone: "a", "0": "yes"}}
        - {uri: "sip:[2001:db8::11]:5080;transport=tcp", weight: 0, priority: 0}
    - {name: media, algorithm: hash_callid, destinations: [{uri: "sip:192.0.2.12"}]}
  rules:
    - {set: fs, methods: [INVITE, MESSAGE], domains: ["farm.example"], prefix: "+33", sources: ["10.0.0.0/8"]}
    - {set: media}
  register: ""
  probe: {interval: "0s", timeout: "1s", down_after: 5, up_after: 4}
  failover: {codes: [500, 503], down_on_503: false, timeout: "0s", max_tries: 2}
  topology_hiding: true
  oversize: {mtu: 1400, headroom: 100, strip_headers: ["X-FS-Support"], tcp: true}
limits: {max_message_bytes: 8192, max_headers: 64}
metrics: {listen: "127.0.0.1:9160"}
api: {listen: "192.0.2.1:9161", token: "", token_file: "/etc/pinhole/token", tls_cert: "/etc/pinhole/api.crt", tls_key: "/etc/pinhole/api.key"}
log:
  level: "warn"
  components: {sipgo: "error", proxy: "debug"}
  format: "json"
  rate: 0
xdp:
  interfaces: ["eth0", "eth1"]
  mode: "native"
  rate: 1000000000
  burst: 500
  blocklist: ["198.51.100.0/24", "2001:db8:bad::/48"]
  signatures: ["friendly-scanner", "true", "123"]
  ban: {auth_failures: 0, window: "10s", duration: "720h", ratelimited_for: "0s"}
natping: {interval: "0s", method: "crlf", max_missed: 0}
fastpath: {enabled: true, loops: 4, cache_size: 1000, queue_size: 16}
`

// fullAuth has credentials; the sections it leaves out take the defaults.
const fullAuth = `
auth: {realm: "r", credentials: "/etc/pinhole/users", nonce_ttl: "1h", algorithms: ["SHA-256", "MD5"]}
xdp: {ban: {auth_failures: 3, window: "1h", duration: "1s", ratelimited_for: "1h"}}
natping: {interval: "10m", method: "options", max_missed: 100}
api: {listen: "127.0.0.1:9161", token: "0123456789abcdef0123"}
`

// relay relays REGISTER to a farm (dispatch.register).
const relay = `
dispatch:
  sets: [{name: reg, algorithm: least_calls, destinations: [{uri: "sip:192.0.2.20:5060;lr"}]}]
  register: reg
`

// TestMarshalRoundTrip checks that every section marshals with yaml.v3 to
// text that Parse reads back to the same configuration: the integration
// tests write pinhole's file by marshalling Config, so a type that does not
// survive the trip would hand the daemon another configuration than the
// test meant.
func TestMarshalRoundTrip(t *testing.T) {
	for name, text := range map[string]string{
		"embedded default": string(Default()),
		"mid-registrar":    fullMidRegistrar,
		"credentials":      fullAuth,
		"register relay":   relay,
	} {
		t.Run(name, func(t *testing.T) {
			want, err := Parse([]byte(text), "in.yaml")
			if err != nil {
				t.Fatal(err)
			}
			out, err := yaml.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Parse(out, "out.yaml")
			if err != nil {
				t.Fatalf("marshalled configuration refused: %v\n%s", err, out)
			}
			if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(Config{}, "Source")); diff != "" {
				t.Errorf("Parse(Marshal(cfg)) differs (-want +got):\n%s\n%s", diff, out)
			}
			again, err := yaml.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			if string(again) != string(out) {
				t.Errorf("second marshal differs:\n%s\nfirst:\n%s", again, out)
			}
		})
	}
}

// TestMarshalZeroValues checks what a configuration built in Go (rather
// than parsed) marshals to: nil lists and maps are written empty, which
// Parse reads as empty, not as "keep the default".
func TestMarshalZeroValues(t *testing.T) {
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = Listen{UDP: []string{"127.0.0.1:5070"}}
	cfg.XDP.Signatures = nil
	cfg.Log.Components = nil
	cfg.Dispatch.Sets = []DispatchSet{{Name: "fs", Algorithm: "round_robin", Destinations: []DispatchDestination{{URI: "sip:127.0.0.1:9"}}}}
	cfg.Dispatch.Failover.Codes = nil
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(out, "out.yaml")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if diff := cmp.Diff(cfg, got, cmpopts.IgnoreFields(Config{}, "Source"), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Parse(Marshal(cfg)) differs (-want +got):\n%s\n%s", diff, out)
	}
	if n := len(got.Listen.Listeners()); n != 1 {
		t.Errorf("listeners = %d, want only the UDP one", n)
	}
}
