package mgmt

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/testutil"
)

// With api.tls_cert the API speaks HTTPS only: a client pinned to that
// certificate gets through (whatever names it holds), a plain HTTP client
// gets no answer, and a client pinned to another certificate refuses the
// connection before sending its token.
func TestServeTLS(t *testing.T) {
	cert, key := testutil.SelfSignedCert(t, "api.pinhole.test")
	tc, err := ServerTLS(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	stop, bound, err := Serve("127.0.0.1:0", tc, h, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)

	get := func(base string, pinned string) (string, error) {
		hc := &http.Client{Timeout: 5 * time.Second}
		if pinned != "" {
			ctc, err := PinnedTLS(pinned)
			if err != nil {
				t.Fatal(err)
			}
			hc.Transport = &http.Transport{TLSClientConfig: ctc}
		}
		res, err := hc.Get(base + "/api/v1/stats")
		if err != nil {
			return "", err
		}
		defer res.Body.Close()
		return res.Status, nil
	}
	if status, err := get("https://"+bound, cert); err != nil || status != "200 OK" {
		t.Errorf("HTTPS pinned to api.tls_cert: %q, %v; want 200 OK", status, err)
	}
	if status, err := get("http://"+bound, ""); err == nil && status == "200 OK" {
		t.Errorf("plain HTTP answered %q: the token would cross in clear", status)
	}
	other, _ := testutil.SelfSignedCert(t, "other.pinhole.test")
	if _, err := get("https://"+bound, other); err == nil || !strings.Contains(err.Error(), "api.tls_cert") {
		t.Errorf("HTTPS pinned to another certificate: %v, want a refusal naming api.tls_cert", err)
	}
	if _, err := ServerTLS(cert, cert); err == nil || !strings.Contains(err.Error(), "api.tls_key") {
		t.Errorf("ServerTLS with no key in the key file: %v, want an error naming api.tls_key", err)
	}
}
