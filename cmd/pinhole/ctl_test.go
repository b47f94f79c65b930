package main

import (
	"bytes"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/cmd/pinhole/mgmt"
	"github.com/pinhole-sip/pinhole/internal/location"
)

// ctlServer is the API over a memory store holding one binding of alice.
func ctlServer(t *testing.T) string {
	t.Helper()
	st, err := location.Open(location.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Update("alice@example.com", func([]location.Binding) ([]location.Binding, error) {
		return []location.Binding{{
			Contact: "sip:alice@10.0.0.1:5060", Expires: time.Now().Add(time.Hour), NAT: true, UserAgent: "phone/1.0",
			Flow: location.Flow{Transport: location.TransportUDP, Remote: netip.MustParseAddrPort("192.0.2.1:4000")},
		}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mgmt.New(mgmt.Config{Token: "ctl-test-token-0123", Store: st}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestCtl(t *testing.T) {
	api := ctlServer(t)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("ctl-test-token-0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	offCfg := filepath.Join(dir, "off.yaml")
	if err := os.WriteFile(offCfg, []byte("api:\n  listen: \"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr string
	}{
		{"no command", []string{"-api", api}, 2, nil, "usage: pinhole ctl"},
		{"help", []string{"-h"}, 0, nil, "bindings list"},
		{"unknown command", []string{"-api", api, "frobnicate"}, 2, nil, `unknown command "frobnicate"`},
		{"show usage", []string{"-api", api, "bindings", "show"}, 2, nil, "bindings show takes one AOR"},
		{"list extra args", []string{"-api", api, "bindings", "list", "x"}, 2, nil, "takes flags only"},
		{"no token", []string{"-api", api, "bindings", "list"}, 1, nil, "401 Unauthorized"},
		{"token file", []string{"-api", api, "-token-file", tokenFile, "bindings", "list"}, 0,
			[]string{"AOR", "alice@example.com", "sip:alice@10.0.0.1:5060", "192.0.2.1:4000", "yes", "phone/1.0", "1 binding(s) shown; 1 AOR(s), 1 binding(s) held"}, ""},
		{"json", []string{"-api", api, "-token", "ctl-test-token-0123", "-json", "bindings", "show", "alice@example.com"}, 0, []string{`"contact": "sip:alice@10.0.0.1:5060"`}, ""},
		{"not found", []string{"-api", api, "-token", "ctl-test-token-0123", "bindings", "show", "bob@example.com"}, 1, nil, "404 Not Found: no bindings for bob@example.com"},
		{"no dispatch", []string{"-api", api, "-token", "ctl-test-token-0123", "dispatch", "list"}, 1, nil, "409 Conflict: dispatch is not configured"},
		{"api off in config", []string{"-config", offCfg, "stats"}, 2, nil, "api.listen is empty"},
		{"unreachable", []string{"-api", "http://127.0.0.1:1", "stats"}, 1, nil, "connection refused"},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := ctl(tt.args, &out, &errb)
		ok := code == tt.code && strings.Contains(errb.String(), tt.stderr)
		for _, f := range tt.stdout {
			ok = ok && strings.Contains(out.String(), f)
		}
		if !ok {
			t.Errorf("%s: ctl %v = %d\nstdout:\n%s\nstderr:\n%s\nwant %d, stdout with %q, stderr with %q", tt.name, tt.args, code, out.String(), errb.String(), tt.code, tt.stdout, tt.stderr)
		}
	}
}
