package slowpath

import (
	"bytes"
	"net/netip"
	"strconv"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/location"
)

// BenchmarkFirstChallenge is the first half of a first registration, a
// REGISTER without credentials answered with a 401, in-process and without
// sockets: "sipgo" as the stateless workers answered it before (parse,
// registrar, response object, StringWrite), "raw" as the read filter
// answers it now (rawChallenge).
func BenchmarkFirstChallenge(b *testing.B) {
	s := newRawServer(b)
	const users = 4096
	msgs := make([][]byte, users)
	for i := range msgs {
		u := "u" + strconv.Itoa(i)
		msgs[i] = register(u, "fc-"+u, 1, "10.0.0.5:5060")
	}
	flow := location.Flow{Transport: location.TransportUDP, Remote: rawDevice, Local: netip.MustParseAddrPort("127.0.0.1:5060")}
	b.Run("sipgo", func(b *testing.B) {
		var out bytes.Buffer
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			msg, err := s.sl.parser.ParseSIP(msgs[i%users])
			if err != nil {
				b.Fatal(err)
			}
			req := msg.(*sip.Request)
			req.SetTransport("UDP")
			req.SetSource(rawDevice.String())
			s.reg.Respond(req, flow, func(res *sip.Response) {
				out.Reset()
				res.StringWrite(&out)
			})
			if !bytes.HasPrefix(out.Bytes(), []byte("SIP/2.0 401")) {
				b.Fatalf("answer %q", out.String())
			}
		}
	})
	b.Run("raw", func(b *testing.B) {
		sc := &rawScratch{}
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			reply, ok := s.sl.rawChallenge(sc, msgs[i%users], rawDevice)
			if !ok || !bytes.HasPrefix(reply, []byte("SIP/2.0 401")) {
				b.Fatalf("answer %q", reply)
			}
		}
	})
}
