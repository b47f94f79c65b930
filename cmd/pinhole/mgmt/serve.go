package mgmt

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"
)

// Serve listens on addr and serves h until stop is called; stop waits up
// to a few seconds for calls in progress (a reload) to finish. It returns
// the address it is bound to, for a port 0. With tc it speaks HTTPS only.
func Serve(addr string, tc *tls.Config, h http.Handler, log *slog.Logger) (stop func(), bound string, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("api.listen %s: %w", addr, err)
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		// A page of bindings or a reload may take a while; the client
		// waits 30 s.
		WriteTimeout: 60 * time.Second,
		IdleTimeout:  2 * time.Minute,
		// Failed handshakes (a scanner, a plain HTTP client) are logged
		// through pinhole's rate-limited logger, at debug.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("management API stopped", "error", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
	}, ln.Addr().String(), nil
}

// ServerTLS loads the API's certificate and key (config api.tls_cert,
// api.tls_key) for Serve. TLS 1.2 at least: the API carries a bearer token.
func ServerTLS(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("api.tls_cert %s, api.tls_key %s: %w", certFile, keyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// PinnedTLS is a client configuration that trusts exactly the certificate
// in certFile, whatever its names or issuer: `pinhole ctl -config` reads
// the file the daemon serves, so it needs no CA and no name that matches
// api.listen.
func PinnedTLS(certFile string) (*tls.Config, error) {
	raw, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("api.tls_cert: %w", err)
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("api.tls_cert %s: no PEM certificate", certFile)
	}
	want := block.Bytes
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The chain is checked below against the pinned leaf instead.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			if len(rawCerts) == 0 || !bytes.Equal(rawCerts[0], want) {
				return errors.New("the API's certificate is not the one in api.tls_cert")
			}
			return nil
		},
	}, nil
}
