package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDiff(t *testing.T) {
	base := "dispatch:\n  sets: [{name: fs, algorithm: round_robin, destinations: [{uri: \"sip:10.0.0.1:5080\"}]}]\n"
	a, err := Parse([]byte(base), "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse([]byte(base+"limits:\n  max_headers: 64\nxdp:\n  blocklist: [192.0.2.0/24]\nregistrar:\n  min_expires: 30\ndomains: [example.com]\nlog:\n  components: {proxy: debug}\n"), "b")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"domains", "limits.max_headers", "log.components", "registrar.min_expires", "xdp.blocklist"}
	if diff := cmp.Diff(want, Diff(a, b)); diff != "" {
		t.Errorf("Diff (-want +got):\n%s", diff)
	}
	if got := Diff(a, a); len(got) != 0 {
		t.Errorf("Diff of a config with itself = %v", got)
	}
	for key, want := range map[string]bool{
		"dispatch.sets": true, "dispatch.register": false, "limits.max_headers": true, "log.components": true, "log.format": false,
		"xdp.blocklist": true, "xdp.interfaces": false, "registrar.min_expires": false, "domains": false,
		"auth.credentials": true, "auth.realm": false, "api.listen": false, "metrics.listen": false,
		"tls.certificates": true, "tls.min_version": true, "tls.verify_peers": true,
	} {
		if got := Reloadable(key); got != want {
			t.Errorf("Reloadable(%s) = %v, want %v", key, got, want)
		}
	}
}
