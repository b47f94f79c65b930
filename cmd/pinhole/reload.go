package main

import (
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/pinhole-sip/pinhole/cmd/pinhole/mgmt"
	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/logging"
	"github.com/pinhole-sip/pinhole/slowpath"
)

// reloader applies the configuration file again, on SIGHUP or the API's
// reload: the keys config.Reloadable names take effect at once, without
// dropping bindings or transactions; the others are reported as waiting
// for a restart.
type reloader struct {
	mu      sync.Mutex
	path    string
	started *config.Config // what the process started with
	xdp     config.XDP     // last applied
	logCfg  config.Log     // last applied
	srv     *slowpath.Server
	edge    *edge
	logs    *logging.Logging
	log     *slog.Logger
}

func (r *reloader) reload(by string) (mgmt.ReloadResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := mgmt.ReloadResult{Applied: []string{}, Restart: []string{}}
	next, err := config.Load(r.path)
	if err != nil {
		r.log.Error("reload refused; the running configuration stays", "by", by, "error", err)
		return res, err
	}
	for _, k := range config.Diff(r.started, next) {
		if !config.Reloadable(k) || (k == "auth.credentials" && r.started.Auth.Enabled() != next.Auth.Enabled()) ||
			(strings.HasPrefix(k, "xdp.") && r.edge.xdp == nil) {
			res.Restart = append(res.Restart, k)
		}
	}
	applied, err := r.srv.Reload(next)
	if err != nil {
		r.log.Error("reload refused; the running configuration stays", "by", by, "error", err)
		return res, err
	}
	res.Applied = append(res.Applied, applied...)
	xa, err := r.edge.reloadXDP(r.xdp, next.XDP)
	res.Applied = append(res.Applied, xa...)
	if err != nil {
		// The slow path's part is applied; say which kernel map failed.
		r.log.Error("reload: XDP maps not fully updated", "by", by, "error", err)
		return res, err
	}
	r.xdp = next.XDP
	if !reflect.DeepEqual(r.logCfg, next.Log) {
		if err := r.logs.Apply(next.Log); err != nil {
			return res, err
		}
		r.logCfg = next.Log
		res.Applied = append(res.Applied, "log")
	}
	slices.Sort(res.Applied)
	r.log.Info("configuration reloaded", "by", by, "applied", res.Applied, "restart_needed", res.Restart)
	return res, nil
}
