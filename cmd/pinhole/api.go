package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"

	"github.com/pinhole-sip/pinhole/cmd/pinhole/mgmt"
	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/slowpath"
)

// serveAPI starts the management API (cmd/pinhole/mgmt) as api says;
// api.Listen "" is off.
func serveAPI(api config.API, token string, srv *slowpath.Server, ed *edge, rl *reloader, log *slog.Logger) (stop func(), err error) {
	if api.Listen == "" {
		return func() {}, nil
	}
	var tc *tls.Config
	scheme := "http"
	if api.TLS() {
		if tc, err = mgmt.ServerTLS(api.TLSCert, api.TLSKey); err != nil {
			return nil, err
		}
		scheme = "https"
	}
	mc := mgmt.Config{
		Token: token,
		Store: srv.Store(),
		Remove: func(aor, contact string) ([]location.Binding, error) {
			bs, err := srv.RemoveBindings(aor, contact)
			if errors.Is(err, slowpath.ErrNoBinding) {
				return nil, fmt.Errorf("%w: %w", mgmt.ErrNotFound, err)
			}
			return bs, err
		},
		Dispatcher: func() mgmt.Dispatcher {
			if d := srv.Dispatcher(); d != nil {
				return d
			}
			return nil
		},
		Reload:    func() (mgmt.ReloadResult, error) { return rl.reload("api") },
		RotateKey: srv.RotateRouteKey,
		Log:       log,
	}
	if ed.xdp != nil {
		mc.Blocklist = ed.xdp.Blocklist
	}
	stop, bound, err := mgmt.Serve(api.Listen, tc, mgmt.New(mc), log)
	if err != nil {
		return nil, err
	}
	log.Info("management API", "url", scheme+"://"+bound+"/api/v1/", "token", token != "")
	return stop, nil
}
