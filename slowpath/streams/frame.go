package streams

import (
	"bytes"

	"github.com/pinhole-sip/pinhole/internal/sipheader"
)

// progress is what one chunk of bytes did to the framing of a stream.
type progress struct {
	began bool // a message's first byte was in it
	ended bool // a message, or a keepalive, ended in it
	over  bool // the message in progress passed the byte bound
	// closing: the peer began to close (a WebSocket Close frame's header
	// was in it); the reader above stops at that frame.
	closing bool
}

// framer follows message boundaries in the bytes a peer sends, only to
// time them and bound them: the parser that builds messages is sipgo's,
// above. A framer is used by the connection's one reading goroutine.
type framer interface {
	feed(p []byte, maxBytes int) progress
	// busy: a message has begun and not ended.
	busy() bool
}

// sipFramer frames SIP over TCP or TLS (RFC 3261 §18.3: a message ends
// Content-Length bytes after the empty line that ends its headers). Only
// the start of each header line is kept, enough for the name and a
// Content-Length value, so a peer cannot make it hold more than that.
type sipFramer struct {
	state   uint8 // sipBetween, sipHead, sipBody
	n       int   // bytes of the current message so far
	left    int   // body bytes still to come
	clen    int   // the Content-Length read so far
	line    [96]byte
	ll      int // bytes of line kept
	visible int // bytes of the current line other than CR
}

const (
	sipBetween = iota
	sipHead
	sipBody
)

func (f *sipFramer) busy() bool { return f.state != sipBetween }

func (f *sipFramer) feed(p []byte, maxBytes int) (pr progress) {
	for i := 0; i < len(p); i++ {
		b := p[i]
		switch f.state {
		case sipBetween:
			// RFC 5626 §3.5.1: CRLF pings and pongs between messages are
			// keepalives, and activity.
			if b == '\r' || b == '\n' {
				pr.ended = true
				continue
			}
			f.state, f.n, f.clen, f.ll, f.visible = sipHead, 0, 0, 0, 0
			pr.began = true
			fallthrough
		case sipHead:
			f.n++
			if b != '\n' {
				if f.ll < len(f.line) {
					f.line[f.ll] = b
					f.ll++
				}
				if b != '\r' {
					f.visible++
				}
				break
			}
			if f.visible > 0 {
				f.headerLine(f.line[:f.ll])
				f.ll, f.visible = 0, 0
				break
			}
			// The empty line: the body follows.
			if f.n+f.clen > maxBytes {
				pr.over = true
				return pr
			}
			if f.clen == 0 {
				f.state = sipBetween
				pr.ended = true
				continue
			}
			f.state, f.left = sipBody, f.clen
			continue
		case sipBody:
			k := min(f.left, len(p)-i)
			f.n += k
			f.left -= k
			i += k - 1
			if f.left == 0 {
				f.state = sipBetween
				pr.ended = true
			}
			continue
		}
		if f.n > maxBytes {
			pr.over = true
			return pr
		}
	}
	return pr
}

// headerLine notes a Content-Length (or its compact form l). Values that
// are not a plain number are left to sipgo's parser to refuse.
func (f *sipFramer) headerLine(line []byte) {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return
	}
	if sipheader.Lookup(bytes.TrimRight(line[:colon], " \t")) != sipheader.ContentLength {
		return
	}
	v := bytes.TrimLeft(line[colon+1:], " \t")
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
		if n > 1<<30 { // far past any bound; stop before it could overflow
			break
		}
	}
	f.clen = n
}

// wsFramer frames SIP over WebSocket (RFC 7118): first the HTTP upgrade
// request, then frames (RFC 6455 §5.2). A SIP message is one WebSocket
// message: data frames up to one with FIN set. Control frames (ping, pong)
// are keepalives and count as activity.
type wsFramer struct {
	upgraded bool
	upgrade  int // bytes of the upgrade request so far
	tail     uint32

	hdr     [14]byte // the frame header being read
	hl      int
	payload uint64 // payload bytes of the current frame still to come
	control bool   // the current frame is a control frame
	fin     bool
	inMsg   bool // a data frame without FIN has been seen, or one is being read
	n       int  // payload bytes of the current message
}

func (f *wsFramer) busy() bool { return f.inMsg }

func (f *wsFramer) feed(p []byte, maxBytes int) (pr progress) {
	for len(p) > 0 {
		if !f.upgraded {
			// The upgrade request ends with an empty line; its bytes are part
			// of the handshake, which handshake_timeout bounds.
			b := p[0]
			p = p[1:]
			f.upgrade++
			f.tail = f.tail<<8 | uint32(b)
			if f.tail == 0x0d0a0d0a {
				f.upgraded = true
			} else if f.upgrade > maxBytes {
				pr.over = true
				return pr
			}
			continue
		}
		if f.payload > 0 {
			k := uint64(len(p))
			if k > f.payload {
				k = f.payload
			}
			f.payload -= k
			p = p[k:]
			if f.payload == 0 {
				f.frameDone(&pr)
			}
			continue
		}
		// A frame header: 2 bytes, 2 or 8 of extended length, 4 of mask.
		if f.hl == 0 && p[0]&0x08 == 0 && !f.inMsg {
			// The first byte of a data frame starts a message, however
			// slowly the rest of its header comes.
			f.inMsg = true
			pr.began = true
		}
		f.hdr[f.hl] = p[0]
		f.hl++
		p = p[1:]
		need := 2
		if f.hl >= 2 {
			switch f.hdr[1] & 0x7f {
			case 126:
				need += 2
			case 127:
				need += 8
			}
			if f.hdr[1]&0x80 != 0 {
				need += 4
			}
		}
		if f.hl < need {
			continue
		}
		var length uint64
		switch l := f.hdr[1] & 0x7f; l {
		case 126:
			length = uint64(f.hdr[2])<<8 | uint64(f.hdr[3])
		case 127:
			for _, c := range f.hdr[2:10] {
				length = length<<8 | uint64(c)
			}
		default:
			length = uint64(l)
		}
		f.hl = 0
		f.fin = f.hdr[0]&0x80 != 0
		f.control = f.hdr[0]&0x08 != 0
		if f.hdr[0]&0x0f == 0x8 { // RFC 6455 §5.5.1
			pr.closing = true
		}
		if !f.control {
			if length > uint64(maxBytes-f.n) {
				pr.over = true
				return pr
			}
			f.n += int(length)
		}
		f.payload = length
		if length == 0 {
			f.frameDone(&pr)
		}
	}
	return pr
}

func (f *wsFramer) frameDone(pr *progress) {
	if f.control {
		pr.ended = true
		return
	}
	if f.fin {
		f.inMsg, f.n = false, 0
		pr.ended = true
	}
}
