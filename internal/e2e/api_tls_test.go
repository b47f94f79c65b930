//go:build integration

package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/testutil"
)

// selfSigned writes a self-signed certificate and key as PEM files.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pinhole-api"}, DNSNames: []string{"pinhole-api"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "api.crt"), filepath.Join(dir, "api.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// runBinary runs the pinhole binary with args and returns its output and
// exit status.
func runBinary(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testutil.PinholeBinary(t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run pinhole %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

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
	if _, errOut, code := runBinary(t, "-config", plain); code == 0 || !strings.Contains(errOut, "api.tls_cert") {
		t.Errorf("start with the API off loopback over plain HTTP: exit %d, stderr %q; want a refusal naming api.tls_cert", code, errOut)
	}

	cert, key := selfSigned(t)
	cfg = testutil.DefaultConfig(t)
	cfg.API = config.API{
		Listen: fmt.Sprintf("%s:%d", testutil.Loopback, testutil.FreePort(t, testutil.Loopback)),
		Token:  opsToken, TLSCert: cert, TLSKey: key,
	}
	ph := testutil.StartPinhole(t, nil, cfg)
	out, errOut, code := runBinary(t, "ctl", "-config", ph.ConfigPath(), "stats", "pinhole_location_")
	if code != 0 || !strings.Contains(out, "uptime") {
		t.Errorf("pinhole ctl -config over HTTPS: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if _, _, code := testutil.Ctl(t, nil, "http://"+cfg.API.Listen, opsToken, "stats"); code == 0 {
		t.Error("a plain HTTP call to the HTTPS API succeeded")
	}
}
