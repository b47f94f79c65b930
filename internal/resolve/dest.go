package resolve

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Transports, named as sipgo names networks.
const (
	UDP = "UDP"
	TCP = "TCP"
	TLS = "TLS"
)

// Dest is a destination as configured: a host (a name or an IP address),
// an optional port and an optional transport.
type Dest struct {
	// Host is a lower-case DNS name without its trailing dot, or an IP
	// address (without brackets).
	Host string
	// Port is 0 when none was given: then DNS (SRV) or the default port
	// of the transport decides.
	Port uint16
	// Transport is UDP, TCP, TLS, or "" when none was given: then DNS
	// (NAPTR, SRV) or the default (UDP; TLS for sips) decides.
	Transport string
	// Secure is set for a sips: URI (RFC 3263 §4.1: only TLS will do).
	Secure bool
}

// maxName is the longest DNS name in its text form (RFC 1035 §2.3.4:
// 255 octets on the wire, less the length octets).
const maxName = 253

// ErrDest is wrapped by every parse error of a destination.
var ErrDest = errors.New("bad destination")

func badDest(s, format string, args ...any) error {
	return fmt.Errorf("%w %q: %s", ErrDest, s, fmt.Sprintf(format, args...))
}

// ParseURI reads a destination written as a SIP URI without a user part:
// sip:HOST[:PORT][;transport=udp|tcp|tls][;lr] or sips:HOST[:PORT][;lr].
// HOST is a DNS name, an IPv4 address or a bracketed IPv6 address.
func ParseURI(s string) (Dest, error) {
	var d Dest
	rest, ok := strings.CutPrefix(s, "sip:")
	if !ok {
		if rest, ok = strings.CutPrefix(s, "sips:"); !ok {
			return Dest{}, badDest(s, "want a sip: or sips: URI")
		}
		d.Secure = true
	}
	hostport, params, _ := strings.Cut(rest, ";")
	if strings.Contains(hostport, "@") {
		return Dest{}, badDest(s, "no user part: the request keeps its own")
	}
	for p := range strings.SplitSeq(params, ";") {
		if p == "" {
			continue
		}
		k, v, _ := strings.Cut(p, "=")
		switch strings.ToLower(k) {
		case "transport":
			t, err := ParseTransport(v)
			if err != nil {
				return Dest{}, badDest(s, "%v", err)
			}
			d.Transport = t
		case "lr":
		default:
			return Dest{}, badDest(s, "unknown parameter %q", k)
		}
	}
	if d.Secure && d.Transport != "" && d.Transport != TLS {
		return Dest{}, badDest(s, "a sips: URI goes over TLS only")
	}
	h, err := ParseHostPort(hostport)
	if err != nil {
		return Dest{}, badDest(s, "%v", err)
	}
	d.Host, d.Port = h.Host, h.Port
	return d, nil
}

// ParseTransport reads udp, tcp or tls, in any case.
func ParseTransport(s string) (string, error) {
	switch strings.ToUpper(s) {
	case UDP:
		return UDP, nil
	case TCP:
		return TCP, nil
	case TLS:
		return TLS, nil
	}
	return "", fmt.Errorf("transport %q: want udp, tcp or tls", s)
}

// ParseHostPort reads HOST[:PORT]: a DNS name, an IPv4 address or a
// bracketed IPv6 address, with an optional port from 1 to 65535.
func ParseHostPort(s string) (Dest, error) {
	var d Dest
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return Dest{}, fmt.Errorf("%q: no closing bracket", s)
		}
		host, port = s[1:end], s[end+1:]
		if port != "" {
			var ok bool
			if port, ok = strings.CutPrefix(port, ":"); !ok {
				return Dest{}, fmt.Errorf("%q: text after the bracket", s)
			}
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return Dest{}, fmt.Errorf("%q: not an IPv6 address", s)
		}
	} else if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i+1:]
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 && port == "" && i == len(s)-1 {
		return Dest{}, fmt.Errorf("%q: empty port", s)
	}
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 || port[0] == '+' {
			return Dest{}, fmt.Errorf("%q: port %q: want 1..65535", s, port)
		}
		d.Port = uint16(n)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" || a.IsUnspecified() || (a.Is6() && !strings.HasPrefix(s, "[")) {
			return Dest{}, fmt.Errorf("%q: want a concrete address (IPv6 in brackets, no zone)", s)
		}
		d.Host = a.Unmap().String()
		return d, nil
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if !validName(name) {
		return Dest{}, fmt.Errorf("%q: %q is neither an IP address nor a DNS name", s, host)
	}
	d.Host = name
	return d, nil
}

// validName checks the host name rule of RFC 3261 §25.1 (labels of
// letters, digits and inner hyphens; the last label does not start with a
// digit, so that a mistyped IPv4 address is not taken for a name) and the
// lengths of RFC 1035 §2.3.4.
func validName(name string) bool {
	if name == "" || len(name) > maxName {
		return false
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	last := labels[len(labels)-1]
	return last[0] < '0' || last[0] > '9'
}

// Addr reports the address of a destination whose host is an IP address.
func (d Dest) Addr() (netip.Addr, bool) {
	// A name's last label starts with a letter (validName) and a name has
	// no ':'; telling it apart before ParseAddr spares the request path the
	// allocation of ParseAddr's error.
	last := d.Host[strings.LastIndexByte(d.Host, '.')+1:]
	if last == "" || !strings.Contains(d.Host, ":") && (last[0] < '0' || last[0] > '9') {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(d.Host)
	return a, err == nil
}

// IsName reports whether the host must be looked up in DNS.
func (d Dest) IsName() bool {
	_, ok := d.Addr()
	return !ok
}

// String is the canonical URI form of d, the cache key of its answer.
func (d Dest) String() string {
	var b strings.Builder
	if d.Secure {
		b.WriteString("sips:")
	} else {
		b.WriteString("sip:")
	}
	if a, ok := d.Addr(); ok && a.Is6() {
		b.WriteString("[" + d.Host + "]")
	} else {
		b.WriteString(d.Host)
	}
	if d.Port != 0 {
		b.WriteString(":" + strconv.Itoa(int(d.Port)))
	}
	if d.Transport != "" {
		b.WriteString(";transport=" + strings.ToLower(d.Transport))
	}
	return b.String()
}

// defaultTransport is RFC 3263 §4.1's choice when neither the URI nor DNS
// names a transport: UDP, or TLS for sips.
func (d Dest) defaultTransport() string {
	if d.Transport != "" {
		return d.Transport
	}
	if d.Secure {
		return TLS
	}
	return UDP
}

// defaultPort is RFC 3261 §19.1.2's: 5061 for TLS, 5060 otherwise.
func defaultPort(transport string) uint16 {
	if transport == TLS {
		return 5061
	}
	return 5060
}
