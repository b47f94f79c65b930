//go:build integration

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/testutil"
)

// TestAPIOverTLS: the management API's bearer token never crosses a network
// in clear. pinhole refuses to start with api.listen off loopback and no
// TLS, naming api.tls_cert; with api.tls_cert and api.tls_key it serves
// HTTPS, which `pinhole ctl -config` reaches by pinning that certificate,
// and a plain HTTP call gets nothing.
func TestAPIOverTLS(t *testing.T) {
	cfg := testutil.DefaultConfig(t)
	cfg.API = config.API{Listen: "192.0.2.1:9061", Token: opsToken}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(t.TempDir(), "pinhole.yaml")
	if err := os.WriteFile(plain, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := testutil.RunPinhole(t, nil, "-config", plain); code == 0 || !strings.Contains(errOut, "api.tls_cert") {
		t.Errorf("start with the API off loopback over plain HTTP: exit %d, stderr %q; want a refusal naming api.tls_cert", code, errOut)
	}

	cert, key := testutil.SelfSignedCert(t, "pinhole-api")
	cfg = testutil.DefaultConfig(t)
	cfg.API = config.API{
		Listen: fmt.Sprintf("%s:%d", testutil.Loopback, testutil.FreePort(t, testutil.Loopback)),
		Token:  opsToken, TLSCert: cert, TLSKey: key,
	}
	ph := testutil.StartPinhole(t, nil, cfg)
	out, errOut, code := testutil.RunPinhole(t, nil, "ctl", "-config", ph.ConfigPath(), "stats", "pinhole_location_")
	if code != 0 || !strings.Contains(out, "uptime") {
		t.Errorf("pinhole ctl -config over HTTPS: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if _, _, code := testutil.Ctl(t, nil, "http://"+cfg.API.Listen, opsToken, "stats"); code == 0 {
		t.Error("a plain HTTP call to the HTTPS API succeeded")
	}
}
