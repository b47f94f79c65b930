package media

import (
	"fmt"
	"net/netip"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/slowpath/media/ng"
)

// ClientConfig turns the validated media section into the ng client's
// configuration.
func ClientConfig(m config.Media) (ng.Config, error) {
	c := ng.Config{Timeout: m.Timeout, Retries: m.Retries, PingInterval: m.PingInterval}
	for i, in := range m.Instances {
		ap, err := netip.ParseAddrPort(in.Address)
		if err != nil {
			return ng.Config{}, fmt.Errorf("media.instances entry %d: %w", i, err)
		}
		c.Instances = append(c.Instances, ng.Instance{Addr: ap, Weight: in.Weight})
	}
	return c, nil
}
