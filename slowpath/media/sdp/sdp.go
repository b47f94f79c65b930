package sdp

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ErrMalformed is wrapped by every parsing error.
var ErrMalformed = errors.New("sdp: malformed")

// Line is one "<type>=<value>" line; Value has no line end.
type Line struct {
	Type  byte
	Value string
}

// Session is one SDP body: the session-level lines from v= on, then the
// media sections.
type Session struct {
	Lines []Line
	Media []*Media
}

// Media is one media section: its m= line, split into fields, and the
// lines after it up to the next m= line.
type Media struct {
	Type      string // audio, video, application, …
	Port      int
	PortCount int // the "/<number of ports>" of m=, 0 when absent
	Proto     string
	Formats   []string
	Lines     []Line
}

// Origin is the o= line (RFC 8866 §5.2).
type Origin struct {
	Username, SessionID, SessionVersion, NetType, AddrType, Address string
}

// Connection is a c= line (RFC 8866 §5.7). Addr is the zero value when the
// address is a host name.
type Connection struct {
	NetType, AddrType, Address string
	Addr                       netip.Addr
}

// Parse reads an SDP body.
func Parse(body []byte) (*Session, error) {
	text := string(body)
	// One final line end is normal; a body without one is accepted too.
	text = strings.TrimSuffix(text, "\n")
	text = strings.TrimSuffix(text, "\r")
	if text == "" {
		return nil, fmt.Errorf("%w: empty body", ErrMalformed)
	}
	s := &Session{}
	var cur *Media
	for i, raw := range strings.Split(text, "\n") {
		n := i + 1
		raw = strings.TrimSuffix(raw, "\r")
		l, err := parseLine(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrMalformed, n, err)
		}
		if err := checkOrder(s, cur, n, l.Type); err != nil {
			return nil, err
		}
		switch l.Type {
		case 'm':
			m, err := parseMediaLine(l.Value)
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: m=: %v", ErrMalformed, n, err)
			}
			s.Media = append(s.Media, m)
			cur = m
			continue
		case 'v':
			if l.Value != "0" {
				return nil, fmt.Errorf("%w: line %d: version %q, want 0", ErrMalformed, n, l.Value)
			}
		case 'o':
			if _, err := parseOrigin(l.Value); err != nil {
				return nil, fmt.Errorf("%w: line %d: o=: %v", ErrMalformed, n, err)
			}
		case 'c':
			if _, err := parseConnection(l.Value); err != nil {
				return nil, fmt.Errorf("%w: line %d: c=: %v", ErrMalformed, n, err)
			}
		}
		if cur != nil {
			cur.Lines = append(cur.Lines, l)
		} else {
			s.Lines = append(s.Lines, l)
		}
	}
	if len(s.Lines) < 3 {
		return nil, fmt.Errorf("%w: no v=, o= and s= lines", ErrMalformed)
	}
	// RFC 8866 §5.7: every media section needs a c=, its own or the
	// session's. A rejected section (port 0) is exempt, as real offers
	// leave it out there.
	if _, ok := s.Connection(); !ok {
		for i, m := range s.Media {
			if _, ok := m.Connection(); !ok && m.Port != 0 {
				return nil, fmt.Errorf("%w: media section %d has no c= and the session none either", ErrMalformed, i+1)
			}
		}
	}
	return s, nil
}

func parseLine(raw string) (Line, error) {
	if len(raw) < 2 || raw[1] != '=' {
		return Line{}, fmt.Errorf("%q is not <type>=<value>", clip(raw))
	}
	if raw[0] < 'a' || raw[0] > 'z' {
		return Line{}, fmt.Errorf("type %q is not a lower-case letter", raw[0])
	}
	v := raw[2:]
	// RFC 8866 §9 byte-string: no NUL, CR or LF inside a value.
	if strings.ContainsAny(v, "\x00\r") {
		return Line{}, fmt.Errorf("%c= value holds a NUL or CR", raw[0])
	}
	return Line{Type: raw[0], Value: v}, nil
}

// checkOrder enforces the three lines every body starts with (RFC 8866
// §5: v=, o=, s=, each once) and nothing else: devices put the other
// lines in many orders, and a relay has no business refusing them.
func checkOrder(s *Session, cur *Media, n int, t byte) error {
	head := "vos"
	switch {
	case n <= 3 && t != head[n-1]:
		return fmt.Errorf("%w: line %d: %c= where %c= must be", ErrMalformed, n, t, head[n-1])
	case n > 3 && (t == 'v' || t == 'o' || t == 's') && cur == nil:
		return fmt.Errorf("%w: line %d: a second %c= line", ErrMalformed, n, t)
	case cur != nil && (t == 'v' || t == 'o' || t == 's' || t == 't' || t == 'r' || t == 'z' || t == 'u' || t == 'e' || t == 'p'):
		return fmt.Errorf("%w: line %d: session-level %c= inside a media section", ErrMalformed, n, t)
	}
	return nil
}

func parseMediaLine(v string) (*Media, error) {
	f := strings.Fields(v)
	if len(f) < 4 {
		return nil, fmt.Errorf("%q: want <media> <port> <proto> <fmt> ...", clip(v))
	}
	m := &Media{Type: f[0], Proto: f[2], Formats: f[3:]}
	port, count, hasCount := strings.Cut(f[1], "/")
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("port %q", port)
	}
	m.Port = int(p)
	if hasCount {
		c, err := strconv.ParseUint(count, 10, 16)
		if err != nil || c == 0 {
			return nil, fmt.Errorf("port count %q", count)
		}
		m.PortCount = int(c)
	}
	return m, nil
}

func parseOrigin(v string) (Origin, error) {
	f := strings.Fields(v)
	if len(f) != 6 {
		return Origin{}, fmt.Errorf("%q: want 6 fields", clip(v))
	}
	return Origin{Username: f[0], SessionID: f[1], SessionVersion: f[2], NetType: f[3], AddrType: f[4], Address: f[5]}, nil
}

func parseConnection(v string) (Connection, error) {
	f := strings.Fields(v)
	if len(f) != 3 {
		return Connection{}, fmt.Errorf("%q: want <nettype> <addrtype> <address>", clip(v))
	}
	c := Connection{NetType: f[0], AddrType: f[1], Address: f[2]}
	// A multicast address may carry /ttl and /count (§5.7); the address
	// is what precedes them.
	host, _, _ := strings.Cut(c.Address, "/")
	if host == "" {
		return Connection{}, fmt.Errorf("%q: empty address", clip(v))
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if (c.AddrType == "IP4") != a.Is4() {
			return Connection{}, fmt.Errorf("address %s is not of type %s", host, c.AddrType)
		}
		c.Addr = a
	}
	return c, nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// Marshal prints the session with CRLF line ends.
func (s *Session) Marshal() []byte {
	var b bytes.Buffer
	for _, l := range s.Lines {
		writeLine(&b, l)
	}
	for _, m := range s.Media {
		b.WriteString("m=")
		b.WriteString(m.Type)
		b.WriteByte(' ')
		b.WriteString(strconv.Itoa(m.Port))
		if m.PortCount > 0 {
			b.WriteByte('/')
			b.WriteString(strconv.Itoa(m.PortCount))
		}
		b.WriteByte(' ')
		b.WriteString(m.Proto)
		for _, f := range m.Formats {
			b.WriteByte(' ')
			b.WriteString(f)
		}
		b.WriteString("\r\n")
		for _, l := range m.Lines {
			writeLine(&b, l)
		}
	}
	return b.Bytes()
}

func writeLine(b *bytes.Buffer, l Line) {
	b.WriteByte(l.Type)
	b.WriteByte('=')
	b.WriteString(l.Value)
	b.WriteString("\r\n")
}

func first(lines []Line, t byte) (string, bool) {
	for _, l := range lines {
		if l.Type == t {
			return l.Value, true
		}
	}
	return "", false
}

// Origin returns the o= line.
func (s *Session) Origin() Origin {
	v, _ := first(s.Lines, 'o')
	o, _ := parseOrigin(v)
	return o
}

// Connection returns the session-level c= line, if there is one.
func (s *Session) Connection() (Connection, bool) {
	return connection(s.Lines)
}

// Connection returns the media section's own c= line, if it has one.
func (m *Media) Connection() (Connection, bool) {
	return connection(m.Lines)
}

func connection(lines []Line) (Connection, bool) {
	v, ok := first(lines, 'c')
	if !ok {
		return Connection{}, false
	}
	c, err := parseConnection(v)
	return c, err == nil
}

// ConnectionOf returns the c= that applies to m: its own, else the session's.
func (s *Session) ConnectionOf(m *Media) (Connection, bool) {
	if c, ok := m.Connection(); ok {
		return c, true
	}
	return s.Connection()
}

// Attribute returns the value of the first a=name or a=name:value line of
// the section ("" for a flag such as a=sendrecv) and whether there is one.
func (m *Media) Attribute(name string) (string, bool) {
	return attribute(m.Lines, name)
}

// Attribute is Media.Attribute for the session-level lines.
func (s *Session) Attribute(name string) (string, bool) {
	return attribute(s.Lines, name)
}

func attribute(lines []Line, name string) (string, bool) {
	for _, l := range lines {
		if l.Type != 'a' {
			continue
		}
		n, v, _ := strings.Cut(l.Value, ":")
		if n == name {
			return v, true
		}
	}
	return "", false
}

// Active reports whether the section carries media: a port of 0 rejects
// or disables it (RFC 3264 §6).
func (m *Media) Active() bool { return m.Port != 0 }

// Profile sums up what the active media sections ask of a relay.
type Profile struct {
	// Secure: an SRTP profile (RTP/SAVP, RTP/SAVPF, UDP/TLS/RTP/SAVP[F]).
	Secure bool
	// Feedback: an AVPF profile (RFC 4585), which WebRTC requires.
	Feedback bool
	// DTLS: DTLS-SRTP keying (a UDP/TLS/… or UDP/DTLS/… protocol, or an
	// a=fingerprint).
	DTLS bool
	// ICE: a=ice-ufrag or a=candidate lines.
	ICE bool
	// Addrs are the connection addresses of the active sections, one per
	// section, host names left out.
	Addrs []netip.Addr
}

// WebRTC reports whether the body looks like a browser's: SAVPF, DTLS or
// ICE, which a plain SIP phone on RTP/AVP cannot talk to directly.
func (p Profile) WebRTC() bool {
	return (p.Secure && p.Feedback) || p.DTLS || p.ICE
}

// Profile reads the session's Profile.
func (s *Session) Profile() Profile {
	var p Profile
	_, sessICE := s.Attribute("ice-ufrag")
	_, sessFP := s.Attribute("fingerprint")
	for _, m := range s.Media {
		if !m.Active() {
			continue
		}
		proto := m.Proto
		if strings.Contains(proto, "SAVP") {
			p.Secure = true
		}
		if strings.HasSuffix(proto, "AVPF") {
			p.Feedback = true
		}
		if strings.HasPrefix(proto, "UDP/TLS/") || strings.HasPrefix(proto, "UDP/DTLS/") || strings.HasPrefix(proto, "TCP/DTLS/") {
			p.DTLS = true
		}
		if _, ok := m.Attribute("fingerprint"); ok || sessFP {
			p.DTLS = true
		}
		_, ufrag := m.Attribute("ice-ufrag")
		_, cand := m.Attribute("candidate")
		if ufrag || cand || sessICE {
			p.ICE = true
		}
		if c, ok := s.ConnectionOf(m); ok && c.Addr.IsValid() {
			p.Addrs = append(p.Addrs, c.Addr)
		}
	}
	return p
}
