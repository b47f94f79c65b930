package sanity

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// FuzzCheck checks that Check never panics, never passes a datagram without
// a SIP start line and an end of headers, and that every reply it builds is
// a response sipgo parses, unless a header copied from the request is
// itself one sipgo cannot parse. The seed corpus is testdata/fuzz/FuzzCheck,
// built from the messages in testdata/, and testdata/rfc4475.
func FuzzCheck(f *testing.F) {
	// The RFC 4475 messages seed the fuzzer too.
	for _, data := range rfc4475Seeds(f) {
		f.Add(data, uint16(1500), uint8(40))
	}
	f.Fuzz(func(t *testing.T, data []byte, maxBytes uint16, maxHeaders uint8) {
		lim := Limits{MaxMessageBytes: int(maxBytes), MaxHeaders: int(maxHeaders)}
		in := bytes.Clone(data)
		v := Check(nil, data, lim)
		if !bytes.Equal(in, data) {
			t.Fatal("Check modified its input")
		}
		switch v.Action {
		case Pass:
			if v.Reason != ReasonOK || v.Reply != nil {
				t.Fatalf("Pass with reason %v and reply %q", v.Reason, v.Reply)
			}
			if !hasStartLine(data) {
				t.Fatalf("Pass without a SIP start line: %q", data)
			}
			if !bytes.Contains(data, []byte("\r\n\r\n")) {
				t.Fatalf("Pass without an end of headers: %q", data)
			}
		case Drop:
			if v.Reason == ReasonOK || v.Reply != nil {
				t.Fatalf("Drop with reason %v and reply %q", v.Reason, v.Reply)
			}
		case Reply:
			if v.Reason == ReasonOK {
				t.Fatal("Reply with reason ok")
			}
			checkFuzzReply(t, data, v.Reply)
		default:
			t.Fatalf("unknown action %d", v.Action)
		}
	})
}

// hasStartLine is an independent, coarse reading of RFC 3261 §7.1/§7.2:
// the first line is terminated by CRLF and starts with SIP/2.0 or ends with
// it.
func hasStartLine(data []byte) bool {
	line, _, ok := strings.Cut(string(data), "\r\n")
	if !ok {
		return false
	}
	l := strings.ToUpper(line)
	return strings.HasPrefix(l, "SIP/2.0 ") || (strings.HasSuffix(l, " SIP/2.0") && !strings.HasPrefix(l, " "))
}

func checkFuzzReply(t *testing.T, req, reply []byte) {
	t.Helper()
	if !bytes.HasSuffix(reply, []byte("\r\nServer: pinhole\r\nContent-Length: 0\r\n\r\n")) {
		t.Fatalf("reply does not end as built: %q", reply)
	}
	msg, err := sip.ParseMessage(reply)
	if err == nil {
		res, ok := msg.(*sip.Response)
		if !ok {
			t.Fatalf("reply parsed as %T", msg)
		}
		switch res.StatusCode {
		case 400, 416, 420, 505, 513:
		default:
			t.Fatalf("reply status %d", res.StatusCode)
		}
		return
	}
	// The reply echoes header fields of the request (RFC 3261 §8.2.6.2):
	// when sipgo cannot parse one of those alone, the failure is the
	// request's. The To tag Check adds must never be the cause.
	for p := bytes.Index(reply, []byte("\r\n")) + 2; p < len(reply); {
		f, next, st := nextField(reply, p)
		if st != fieldOK {
			break
		}
		if !parsesAlone(reply[f.whole.off:f.whole.end]) {
			if f.name == hdrTo && hasRequestTo(req, reply[f.whole.off:f.whole.end]) {
				t.Fatalf("the To tag added breaks the reply: %v\n%q", err, reply)
			}
			return
		}
		p = next
	}
	t.Fatalf("sipgo cannot parse the reply: %v\n%q", err, reply)
}

// parsesAlone reports whether sipgo parses one header field in a response.
func parsesAlone(field []byte) bool {
	_, err := sip.ParseMessage([]byte("SIP/2.0 200 OK\r\n" + string(field) + "\r\n\r\n"))
	return err == nil
}

// hasRequestTo reports whether the reply's To field is the request's To
// with a tag appended and the request's To alone parses.
func hasRequestTo(req, to []byte) bool {
	i := len(to) - len(";tag=") - tagLen
	if i < 0 || string(to[i:i+len(";tag=")]) != ";tag=" || bytes.Contains(req, to) || !bytes.Contains(req, to[:i]) {
		return false // the tag is the request's own
	}
	return parsesAlone(to[:i])
}

func rfc4475Seeds(f *testing.F) [][]byte {
	f.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "rfc4475", "*.sip"))
	if err != nil {
		f.Fatal(err)
	}
	var out [][]byte
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, data)
	}
	return out
}

// FuzzFrame splits a stream into messages as a TCP connection does and
// checks what a stream reader relies on: Frame never panics, always moves
// forward or asks for more, never frames past the data or over the limit,
// and a message it frames is one Check judges with its exact length, so
// that one peer cannot make pinhole read another message's bytes as its
// body. The seed corpus is testdata/fuzz/FuzzFrame: the RFC 4475 messages,
// pipelined, with keepalives and junk between them.
func FuzzFrame(f *testing.F) {
	seeds := rfc4475Seeds(f)
	for i, data := range seeds {
		next := seeds[(i+1)%len(seeds)]
		f.Add(append(append(bytes.Clone(data), "\r\n\r\n"...), next...), uint16(4096))
		f.Add(append([]byte("junk\r\n"), data...), uint16(600))
	}
	f.Fuzz(func(t *testing.T, stream []byte, maxBytes uint16) {
		max := int(maxBytes)
		lim := Limits{MaxMessageBytes: max, MaxHeaders: 64}
		in := bytes.Clone(stream)
		for off := 0; off < len(stream); {
			data := stream[off:]
			fr := Frame(data, max)
			switch fr.Status {
			case FrameMore:
				if max > 0 && len(data) > max {
					t.Fatalf("asks for more with %d bytes, over the limit %d", len(data), max)
				}
				off = len(stream)
				continue
			case FrameCRLF, FrameJunk:
			case FrameBroken:
				v := CheckBroken(nil, data[:fr.Len], fr, lim)
				if v.Action == Reply {
					checkFuzzReply(t, data[:fr.Len], v.Reply)
				}
				off = len(stream) // the connection is closed
				continue
			case FrameMessage, FrameNoLength:
				if fr.Body < 4 || fr.Body > fr.Len || string(data[fr.Body-4:fr.Body]) != "\r\n\r\n" {
					t.Fatalf("body at %d of a %d-byte frame: %q", fr.Body, fr.Len, data[:fr.Len])
				}
				msg := data[:fr.Len]
				if fr.Status == FrameNoLength {
					msg = AppendContentLength(nil, msg, fr.Body)
				} else if max > 0 && fr.Len > max {
					t.Fatalf("framed %d bytes over the limit %d", fr.Len, max)
				}
				if v := Check(nil, msg, lim); v.Reason == ReasonBadContentLength && fr.Status == FrameMessage {
					t.Fatalf("framed a message Check finds a bad Content-Length in: %q", msg)
				}
			default:
				t.Fatalf("unknown status %d", fr.Status)
			}
			if fr.Len <= 0 || fr.Len > len(data) {
				t.Fatalf("status %d covers %d of %d bytes", fr.Status, fr.Len, len(data))
			}
			off += fr.Len
		}
		if !bytes.Equal(in, stream) {
			t.Fatal("Frame modified its input")
		}
	})
}
