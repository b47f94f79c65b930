package testutil

import (
	"net/netip"
	"os/exec"
	"testing"
)

// NAT is a device behind a masquerading router:
//
//	Device ns (192.168.s.2/24) ── Router ns (192.168.s.1 | 10.x.y.2/24) ── upstream (10.x.y.1/24)
//
// The upstream end is the host (or the namespace given to NATDevice); pinhole
// listens on UpstreamAddr there. Everything the device sends leaves the router
// with RouterAddr as its source and a randomised source port, as a carrier
// NAT does, so pinhole never sees the device's own address or port.
type NAT struct {
	Device, Router *NetNS
	// DeviceAddr is the device's private address: what it puts in Via and
	// Contact, and what pinhole must not send to.
	DeviceAddr netip.Addr
	// RouterAddr is the translated source address pinhole sees.
	RouterAddr netip.Addr
	// UpstreamAddr is the upstream end of the router's link, where pinhole
	// should listen so the device can reach it.
	UpstreamAddr netip.Addr
	// Uplink is the router's link upstream: NameA is the upstream end
	// (where pinhole's XDP goes), NameB the router's.
	Uplink *Link
}

// NATDevice builds the topology above. upstream nil puts the upstream end of
// the link on the host. The router masquerades with fully random ports, so
// even a device bound to 5060 arrives upstream from another port.
func NATDevice(t testing.TB, upstream *NetNS) *NAT {
	t.Helper()
	router := NewNetNS(t)
	device := NewNetNS(t)

	var wan netip.Prefix
	if upstream == nil {
		wan = HostSubnet(t)
	} else {
		// Inside our own namespaces nothing else uses 10.x.
		wan = netip.MustParsePrefix("10.200.0.0/24")
	}
	lan := netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, randomBytes(t, 1)[0], 0}), 24)

	n := &NAT{
		Device: device, Router: router,
		DeviceAddr:   HostAddr(lan, 2).Addr(),
		RouterAddr:   HostAddr(wan, 2).Addr(),
		UpstreamAddr: HostAddr(wan, 1).Addr(),
	}
	wanLink := Veth(t, upstream, router, HostAddr(wan, 1), HostAddr(wan, 2))
	n.Uplink = wanLink
	Veth(t, router, device, HostAddr(lan, 1), HostAddr(lan, 2))
	device.AddRoute(t, netip.Prefix{}, HostAddr(lan, 1).Addr())
	router.EnableForwarding(t)
	masquerade(t, router, wanLink.NameB)
	return n
}

// masquerade rewrites the source of everything leaving dev. fully-random
// (NF_NAT_RANGE_PROTO_RANDOM_FULLY) makes the kernel pick a random port even
// when the original one is free; without it Linux keeps the device's port and
// a test on translated ports would prove nothing.
func masquerade(t testing.TB, router *NetNS, dev string) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err == nil {
		router.MustRun(t, "nft", "add", "table", "ip", "pinhole_nat")
		router.MustRun(t, "nft", "add", "chain", "ip", "pinhole_nat", "postrouting",
			"{ type nat hook postrouting priority srcnat ; policy accept ; }")
		router.MustRun(t, "nft", "add", "rule", "ip", "pinhole_nat", "postrouting",
			"oifname", dev, "masquerade", "fully-random")
		return
	}
	if _, err := exec.LookPath("iptables"); err == nil {
		router.MustRun(t, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", dev,
			"-j", "MASQUERADE", "--random-fully")
		return
	}
	t.Fatal("neither nft nor iptables found: run scripts/install-deps.sh test")
}
