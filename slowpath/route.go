package slowpath

import (
	"fmt"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/slowpath/auth"
	"github.com/pinhole-sip/pinhole/slowpath/location"
	"github.com/pinhole-sip/pinhole/slowpath/proxy"
)

// routeRequests hands every method but REGISTER to the proxy.
func (s *Server) routeRequests() error {
	forking, err := proxy.ParseForking(s.cfg.Proxy.Forking)
	if err != nil {
		return fmt.Errorf("proxy.forking: %w", err)
	}
	var ls []proxy.Listener
	for _, l := range s.cfg.Listen.Listeners() {
		tr, err := location.ParseTransport(l.Transport)
		if err != nil {
			return err
		}
		ls = append(ls, proxy.Listener{Transport: tr, Local: l.Addr, Host: s.cfg.Advertise.Host, Port: s.cfg.Advertise.Port})
	}
	var authz proxy.Authorizer
	if s.authn != nil {
		a := s.authn
		authz = proxy.AuthorizerFunc(func(r *sip.Request) proxy.Verdict { return proxy.Verdict(a.Check(r, false)) })
	}
	p, err := proxy.New(proxy.Config{
		Domains:   s.cfg.Domains,
		Listeners: ls,
		Forking:   forking,
		Outbound:  s.cfg.Proxy.Outbound,
	}, s.cli, locator{store: s.store, creds: s.creds, realm: s.cfg.Auth.Realm}, authz, s.log)
	if err != nil {
		return fmt.Errorf("set up proxy: %w", err)
	}
	for _, m := range proxy.Methods {
		s.srv.OnRequest(m, p.Handle)
	}
	return nil
}

// locator answers the proxy's look-ups from the store, and tells an
// unknown user (404) from a known one without contacts (480) by the
// credentials file; without one, only a user with bindings is known.
type locator struct {
	store location.Store
	creds *auth.Credentials
	realm string
}

func (l locator) Lookup(aor string) []location.Binding { return l.store.Lookup(aor) }

func (l locator) Known(aor string) bool {
	if l.creds == nil {
		return len(l.store.Lookup(aor)) > 0
	}
	user, _, _ := strings.Cut(aor, "@")
	_, ok := l.creds.HA1(user, l.realm, auth.MD5)
	if !ok {
		_, ok = l.creds.HA1(user, l.realm, auth.SHA256)
	}
	return ok
}
