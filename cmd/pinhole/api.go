package main

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/pinhole-sip/pinhole/cmd/pinhole/mgmt"
	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/slowpath"
)

// serveAPI starts the management API (cmd/pinhole/mgmt) on addr; "" is off.
func serveAPI(addr, token string, srv *slowpath.Server, ed *edge, rl *reloader, log *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
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
	stop, bound, err := mgmt.Serve(addr, mgmt.New(mc), log)
	if err != nil {
		return nil, err
	}
	log.Info("management API", "url", "http://"+bound+"/api/v1/", "token", token != "")
	return stop, nil
}
