package slowpath

import (
	"fmt"

	"github.com/pinhole-sip/pinhole/slowpath/media"
	"github.com/pinhole-sip/pinhole/slowpath/media/ng"
	"github.com/pinhole-sip/pinhole/slowpath/proxy"
)

// startMedia starts the rtpengine control client when media.enabled is
// set. It lives as long as the server: a reload builds a new proxy around
// the same client, so calls keep their relay instance (docs/media.md).
func (s *Server) startMedia() error {
	if !s.cfg.Media.Enabled {
		return nil
	}
	cc, err := media.ClientConfig(s.cfg.Media)
	if err != nil {
		return err
	}
	c, err := ng.New(cc)
	if err != nil {
		return fmt.Errorf("start media relay client: %w", err)
	}
	s.media = c
	return nil
}

// proxyMedia is the proxy's view of the relay; nil when media is off.
func (s *Server) proxyMedia() *proxy.Media {
	if s.media == nil {
		return nil
	}
	return &proxy.Media{
		Relay:   s.media,
		Rules:   s.cfg.Media.Rules,
		Proceed: s.cfg.Media.OnDown == "proceed",
	}
}
