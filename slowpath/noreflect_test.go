package slowpath

import (
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// options is a request over TCP whose Via names sentBy, not the address it
// comes from.
func options(sentBy, callID string) []byte {
	return []byte("OPTIONS sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP " + sentBy + ";branch=z9hG4bK-" + callID + "\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:x@example.com>;tag=" + callID + "\r\nTo: <sip:example.com>\r\n" +
		"Call-ID: " + callID + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
}

// TestResponseNeverReflects sends requests over TCP whose connection is
// gone before the answer, with a Via naming another listening address, or
// a DNS name. sipgo (v1.7) would dial that address, or look the name up
// and dial the result, to deliver the response: a reflector for anyone
// who can open a TCP connection. The request is followed in the same
// segment by bytes sipgo cannot parse, so sipgo itself closes the
// connection right after handing the request on, before the transaction
// looks for it.
func TestResponseNeverReflects(t *testing.T) {
	port := freeTCPPort(t)
	s := startServerWith(t, fmt.Sprintf("listen:\n  tcp: [\"127.0.0.1:%d\"]\n", port))
	_ = s

	victim, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	var reached atomic.Int64
	go func() {
		for {
			c, err := victim.Accept()
			if err != nil {
				return
			}
			reached.Add(1)
			c.Close()
		}
	}()

	dials, lookups := reflectDials.Get(), reflectLookups.Get()
	for i := range 20 {
		sentBy := victim.Addr().String()
		if i%2 == 1 {
			// A name: the guarded resolver must refuse it before any
			// packet (localhost would resolve from /etc/hosts, so the dial
			// guard is tested by the address, the resolver by this name).
			sentBy = "reflect-" + strconv.Itoa(i) + ".attacker.invalid:5060"
		}
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		msg := append(options(sentBy, "reflect-"+strconv.Itoa(i)), "\x01\x02 not SIP\r\n\r\n"...)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && (reflectDials.Get() == dials || reflectLookups.Get() == lookups) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if n := reached.Load(); n != 0 {
		t.Errorf("the address written in Via got %d connections from pinhole", n)
	}
	if reflectDials.Get() == dials {
		t.Error("no dial to the Via address was refused: the test did not reach sipgo's fallback")
	}
	if reflectLookups.Get() == lookups {
		t.Error("no look-up of the Via name was refused: the test did not reach sipgo's fallback")
	}
}
