package slowpath

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

func freeTCPPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestRegisterOnEveryTransport registers over UDP, TCP, TLS, WS and WSS
// with sipgo as the device, and checks each binding's flow names the
// transport and the connection it came on. TLS and WSS use the
// self-signed certificate generated at start.
func TestRegisterOnEveryTransport(t *testing.T) {
	ports := map[string]int{}
	for _, tr := range []string{"udp", "tcp", "tls", "ws", "wss"} {
		if tr == "udp" {
			ports[tr] = freeUDPPort(t)
		} else {
			ports[tr] = freeTCPPort(t)
		}
	}
	yaml := "listen:\n"
	for _, tr := range []string{"udp", "tcp", "tls", "ws", "wss"} {
		yaml += fmt.Sprintf("  %s: [\"127.0.0.1:%d\"]\n", tr, ports[tr])
	}
	s := startServerWith(t, yaml)

	for _, tr := range []string{"UDP", "TCP", "TLS", "WS", "WSS"} {
		t.Run(tr, func(t *testing.T) {
			ua, err := sipgo.NewUA(sipgo.WithUserAgenTLSConfig(&tls.Config{InsecureSkipVerify: true}))
			if err != nil {
				t.Fatal(err)
			}
			defer ua.Close()
			cli, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
			if err != nil {
				t.Fatal(err)
			}
			user := "dev-" + tr
			req := sip.NewRequest(sip.REGISTER, sip.Uri{Host: "example.com"})
			req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: "example.com"}})
			req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: "example.com"}, Params: sip.HeaderParams{{K: "tag", V: "t1"}}})
			req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: "198.51.100.9", Port: 5060}})
			req.AppendHeader(sip.NewHeader("Expires", "300"))
			req.SetTransport(tr)
			lower := map[string]string{"UDP": "udp", "TCP": "tcp", "TLS": "tls", "WS": "ws", "WSS": "wss"}[tr]
			req.SetDestination("127.0.0.1:" + strconv.Itoa(ports[lower]))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			res, err := cli.Do(ctx, req)
			if err != nil {
				t.Fatalf("REGISTER over %s: %v", tr, err)
			}
			if res.StatusCode != 200 {
				t.Fatalf("REGISTER over %s: %s", tr, res.Short())
			}
			got := s.Store().Lookup(user + "@example.com")
			if len(got) != 1 {
				t.Fatalf("bindings: %+v", got)
			}
			f := got[0].Flow
			if f.Transport.String() != tr || f.Local.Port() != uint16(ports[lower]) || !f.Remote.IsValid() {
				t.Errorf("flow = %+v, want %s to local port %d", f, tr, ports[lower])
			}
			// A device on a connection is reached only through it (RFC 5626
			// §5.3); over UDP its Contact (198.51.100.9) is not where its
			// packets came from. Either way pinhole must use the flow.
			if !got[0].NAT {
				t.Errorf("NAT = false: pinhole would send to the Contact host")
			}
		})
	}
}
