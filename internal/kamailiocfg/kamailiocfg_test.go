package kamailiocfg

import (
	"net/netip"
	"strings"
	"testing"
)

func registrar(a Auth) Registrar {
	r := Registrar{
		Listen: netip.MustParseAddrPort("127.0.0.1:25060"), Domain: "localhost",
		Modules: "/opt/kamailio/modules", Children: 2, MinExpires: 60, MaxExpires: 7200, Auth: a,
	}
	if a == Subscribers {
		r.DB, r.Trusted = "/tmp/db", netip.MustParseAddrPort("127.0.0.1:5070")
	}
	return r
}

// Each authentication loads its modules, and only its own: auth_db
// without a db_url would not start.
func TestWriteAuth(t *testing.T) {
	for _, tc := range []struct {
		auth      Auth
		want, not []string
	}{
		{None, nil, []string{"auth.so", "auth_db.so", "pv_auth_check", "auth_check("}},
		{Derived, []string{`loadmodule "auth.so"`, `pv_auth_check("$td"`, `proxy_challenge("$fd", "1")`}, []string{"auth_db.so"}},
		{Subscribers, []string{`loadmodule "auth_db.so"`, `"text:///tmp/db"`, `$si == "127.0.0.1" && $sp == 5070`}, []string{"pv_auth_check"}},
	} {
		var b strings.Builder
		if err := registrar(tc.auth).Write(&b); err != nil {
			t.Fatalf("%s: %v", tc.auth, err)
		}
		cfg := b.String()
		for _, s := range append(tc.want, `listen=udp:127.0.0.1:25060`, `mpath="/opt/kamailio/modules"`, `alias="localhost"`) {
			if !strings.Contains(cfg, s) {
				t.Errorf("%s: no %q in\n%s", tc.auth, s, cfg)
			}
		}
		for _, s := range append(tc.not, "<no value>", "ctl.so", "hash_size") {
			if strings.Contains(cfg, s) {
				t.Errorf("%s: %q in\n%s", tc.auth, s, cfg)
			}
		}
	}
}

func TestWriteRefusesIncomplete(t *testing.T) {
	for name, r := range map[string]Registrar{
		"no listen":          {Modules: "/m", Children: 1, Auth: None},
		"no modules":         {Listen: netip.MustParseAddrPort("127.0.0.1:1"), Children: 1, Auth: None},
		"unknown auth":       {Listen: netip.MustParseAddrPort("127.0.0.1:1"), Modules: "/m", Children: 1, Auth: "basic"},
		"subscribers, no db": {Listen: netip.MustParseAddrPort("127.0.0.1:1"), Modules: "/m", Children: 1, Auth: Subscribers},
	} {
		if err := r.Write(&strings.Builder{}); err == nil {
			t.Errorf("%s: written", name)
		}
	}
}
