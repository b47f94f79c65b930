package resolve

import (
	"errors"
	"testing"
)

func TestParseURI(t *testing.T) {
	good := []struct {
		in   string
		want Dest
		str  string
	}{
		{"sip:farm.example.net", Dest{Host: "farm.example.net"}, "sip:farm.example.net"},
		{"sip:Farm.Example.NET.:5070;transport=TCP;lr", Dest{Host: "farm.example.net", Port: 5070, Transport: TCP}, "sip:farm.example.net:5070;transport=tcp"},
		{"sips:reg.example.net", Dest{Host: "reg.example.net", Secure: true}, "sips:reg.example.net"},
		{"sip:10.0.0.1:5060", Dest{Host: "10.0.0.1", Port: 5060}, "sip:10.0.0.1:5060"},
		{"sip:[2001:db8::1]:5061;transport=tls", Dest{Host: "2001:db8::1", Port: 5061, Transport: TLS}, "sip:[2001:db8::1]:5061;transport=tls"},
		{"sip:[::ffff:10.0.0.1]", Dest{Host: "10.0.0.1"}, "sip:10.0.0.1"},
		{"sip:localhost", Dest{Host: "localhost"}, "sip:localhost"},
	}
	for _, tc := range good {
		got, err := ParseURI(tc.in)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%q: %+v, want %+v", tc.in, got, tc.want)
		}
		if got.String() != tc.str {
			t.Errorf("%q: String %q, want %q", tc.in, got.String(), tc.str)
		}
	}
	bad := []string{
		"", "farm.example.net", "tel:+4930", "sip:", "sip:user@farm.test", "sip:farm.test:0", "sip:farm.test:65536",
		"sip:farm.test:", "sip:farm.test:+50", "sip:farm.test;transport=sctp", "sip:farm.test;maddr=1.2.3.4",
		"sips:farm.test;transport=udp", "sip:0.0.0.0", "sip:[::]:5060", "sip:2001:db8::1", "sip:[2001:db8::1",
		"sip:[10.0.0.1]", "sip:[fe80::1%eth0]", "sip:-farm.test", "sip:farm..test", "sip:farm_test", "sip:10.0.0.256",
		"sip:1.2.3", "sip:farm.test:50x", "sip:[::1]x",
	}
	for _, in := range bad {
		if d, err := ParseURI(in); !errors.Is(err, ErrDest) {
			t.Errorf("%q: got %+v, %v; want ErrDest", in, d, err)
		}
	}
}

// FuzzParseURI: no input makes the parser panic, and what it accepts
// prints as a URI that parses back to the same destination.
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{"sip:farm.example.net", "sips:r.test:5061", "sip:[2001:db8::1]:5061;transport=tls", "sip:10.0.0.1;lr", "sip:a.b.c.:1;transport=TCP"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseURI(s)
		if err != nil {
			return
		}
		again, err := ParseURI(d.String())
		if err != nil {
			t.Fatalf("%q parsed to %+v whose String %q does not parse: %v", s, d, d.String(), err)
		}
		if again != d {
			t.Fatalf("%q: %+v, again %+v", s, d, again)
		}
	})
}
