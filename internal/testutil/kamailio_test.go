//go:build integration

package testutil

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// sendRegister sends one REGISTER from conn to k with the given extra Via
// lines and Expires, and returns the status line of the answer.
func sendRegister(t *testing.T, conn *net.UDPConn, k *Kamailio, extraVia, expires string) string {
	t.Helper()
	local := conn.LocalAddr().String()
	msg := "REGISTER sip:localhost SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-" + time.Now().Format("150405.000000000") + "\r\n" +
		extraVia +
		"From: <sip:alice@localhost>;tag=1\r\nTo: <sip:alice@localhost>\r\n" +
		"Call-ID: kt-" + time.Now().Format("150405.000000000") + "\r\nCSeq: 1 REGISTER\r\n" +
		"Contact: <sip:alice~c00000000@" + local + ">;expires=" + expires + "\r\n" +
		"Expires: " + expires + "\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	if _, err := conn.WriteToUDP([]byte(msg), net.UDPAddrFromAddrPort(k.Addr)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no answer from kamailio: %v", err)
	}
	line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
	return line
}

// The helper's Kamailio challenges REGISTER, counts it, and accepts a
// credential-less de-registration only as the mid-registrar sends one:
// from the trusted address, with a single Via, Expires 0. It survives a
// stop and a start on the same port.
func TestKamailio(t *testing.T) {
	trusted, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(Loopback, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer trusted.Close()
	other, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(Loopback, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	k := StartKamailio(t, KamailioConfig{
		Domain:  "localhost",
		Users:   map[string]string{"alice": "secret"},
		Trusted: trusted.LocalAddr().(*net.UDPAddr).AddrPort(),
	})

	relayedVia := "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-dev\r\n"
	for _, tt := range []struct {
		name     string
		conn     *net.UDPConn
		extraVia string
		expires  string
		want     string
	}{
		{"registration is challenged", other, "", "60", "SIP/2.0 401"},
		{"de-registration from elsewhere is challenged", other, "", "0", "SIP/2.0 401"},
		{"relayed de-registration from the trusted address is challenged", trusted, relayedVia, "0", "SIP/2.0 401"},
		{"registration from the trusted address is challenged", trusted, "", "60", "SIP/2.0 401"},
		{"own de-registration from the trusted address passes", trusted, "", "0", "SIP/2.0 200"},
	} {
		if got := sendRegister(t, tt.conn, k, tt.extraVia, tt.expires); !strings.HasPrefix(got, tt.want) {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
	if got, want := k.Registers(), 5; got != want {
		t.Errorf("Registers() = %d, want %d", got, want)
	}
	if got := k.Location(); len(got) != 0 {
		t.Errorf("Location() = %v, want empty", got)
	}

	k.Stop()
	k.Start()
	if got := k.Registers(); got != 0 {
		t.Errorf("after restart Registers() = %d, want 0", got)
	}
}

func TestParseULDump(t *testing.T) {
	out := `{
	Domains: {
		Domain: {
			Domain: location
			AoRs: {
				AoR: alice
				Contacts: {
					Contact: {
						Address: sip:alice~c1a2b3c4d@127.0.0.1:5060
						Expires: 58
						Path: [not set]
					}
					Contact: {
						Address: sip:alice@10.0.0.2:5060
						Expires: 3500
						Path: <sip:alice~p00112233@127.0.0.1:5060;lr>
					}
				}
				AoR: bob
				Contacts: {
					Contact: {
						Address: sip:bob@10.0.0.3
						Expires: 7
						Path: [not set]
					}
				}
			}
		}
	}
}`
	want := map[string][]KamailioContact{
		"alice": {
			{Address: "sip:alice~c1a2b3c4d@127.0.0.1:5060", Expires: 58},
			{Address: "sip:alice@10.0.0.2:5060", Expires: 3500, Path: "<sip:alice~p00112233@127.0.0.1:5060;lr>"},
		},
		"bob": {{Address: "sip:bob@10.0.0.3", Expires: 7}},
	}
	if diff := cmp.Diff(want, parseULDump(out)); diff != "" {
		t.Errorf("parseULDump (-want +got):\n%s", diff)
	}
}
