package proxy

import (
	"net/netip"
	"time"
)

// The types below mirror slowpath/location until that package lands; they
// carry the same names and fields so that switching is a rename.

// Transport is the transport of a flow.
type Transport uint8

// Transports, numbered as in slowpath/location.
const (
	TransportUDP Transport = iota + 1
	TransportTCP
	TransportTLS
	TransportWS
	TransportWSS
)

func (t Transport) String() string {
	switch t {
	case TransportUDP:
		return "UDP"
	case TransportTCP:
		return "TCP"
	case TransportTLS:
		return "TLS"
	case TransportWS:
		return "WS"
	case TransportWSS:
		return "WSS"
	}
	return "unknown"
}

// Flow is where a device's packets really come from and the socket of
// pinhole they arrive on.
type Flow struct {
	Transport Transport
	Remote    netip.AddrPort
	Local     netip.AddrPort
}

// Binding is one registered contact of an AOR.
type Binding struct {
	AOR, Contact, Instance string
	RegID                  uint32
	CallID                 string
	CSeq                   uint32
	Q                      uint16
	Expires, Updated       time.Time
	Flow                   Flow
	NAT                    bool
	Path                   string
	UserAgent              string
}
