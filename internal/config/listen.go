package config

import (
	"net/netip"
)

// Listen lists the host:port pairs served per transport. A transport left
// out is not served.
type Listen struct {
	UDP []string `yaml:"udp"`
	TCP []string `yaml:"tcp"`
	TLS []string `yaml:"tls"`
	WS  []string `yaml:"ws"`
	WSS []string `yaml:"wss"`
}

// Listener is one validated socket to serve.
type Listener struct {
	Transport string // "UDP", "TCP", "TLS", "WS", "WSS" (sipgo's network names)
	Addr      netip.AddrPort
}

// Listeners returns every configured socket, UDP first. Only valid after Load.
func (l Listen) Listeners() []Listener {
	var out []Listener
	add := func(transport string, addrs []string) {
		for _, a := range addrs {
			out = append(out, Listener{Transport: transport, Addr: netip.MustParseAddrPort(a)})
		}
	}
	add("UDP", l.UDP)
	add("TCP", l.TCP)
	add("TLS", l.TLS)
	add("WS", l.WS)
	add("WSS", l.WSS)
	return out
}

// Advertise is the address pinhole puts in Via, Record-Route, Path and
// Contact when it runs behind NAT or a virtual IP, so that devices always
// see one stable address. Empty host: the listening address.
type Advertise struct {
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
}

// validate checks every address of every transport: an IP and a port,
// no wildcard for UDP, and no socket named twice.
func (l Listen) validate() error {
	lists := []struct {
		key   string
		addrs []string
	}{
		{"listen.udp", l.UDP}, {"listen.tcp", l.TCP}, {"listen.tls", l.TLS},
		{"listen.ws", l.WS}, {"listen.wss", l.WSS},
	}
	total := 0
	seen := map[string]string{}
	for _, list := range lists {
		for _, a := range list.addrs {
			ap, err := netip.ParseAddrPort(a)
			if err != nil {
				return bad(list.key, "%q is not an IP:port (use [::1]:5060 for IPv6): %v", a, err)
			}
			if ap.Port() == 0 {
				return bad(list.key, "%q needs a port", a)
			}
			if list.key == "listen.udp" && ap.Addr().IsUnspecified() {
				// A wildcard UDP socket answers from whatever address the
				// kernel picks, and NAT pinholes open only for the address
				// a device sent to: a device must see one address and one port.
				return bad(list.key, "%q: name the address to serve; a wildcard UDP socket may answer from another address than the device sent to", a)
			}
			// TCP-based transports share the kernel's TCP port space.
			family := "udp"
			if list.key != "listen.udp" {
				family = "tcp"
			}
			k := family + "/" + ap.String()
			if prev, dup := seen[k]; dup {
				return bad(list.key, "%q is already used by %s", a, prev)
			}
			seen[k] = list.key
			total++
		}
	}
	if total == 0 {
		return bad("listen", "no listening address: give at least one of udp, tcp, tls, ws, wss")
	}
	return nil
}

func (a Advertise) validate() error {
	if a.Port < 0 || a.Port > 65535 {
		return bad("advertise.port", "%d is not a port", a.Port)
	}
	if a.Port != 0 && a.Host == "" {
		return bad("advertise.host", "a port without a host: set advertise.host too")
	}
	return nil
}
