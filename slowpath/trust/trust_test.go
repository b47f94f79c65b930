package trust

import (
	"net/netip"
	"testing"
)

func TestContains(t *testing.T) {
	l, err := Parse([]string{"10.0.0.0/24", "192.0.2.7", "10.0.0.128/25", "2001:db8::/48", "::ffff:198.51.100.0/120", "172.16.0.0/12"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		addr string
		want bool
	}{
		{"10.0.0.1", true},
		{"10.0.0.255", true},
		{"10.0.1.0", false},
		{"9.255.255.255", false},
		{"192.0.2.7", true},
		{"192.0.2.8", false},
		{"192.0.2.6", false},
		{"::ffff:10.0.0.9", true}, // an IPv4 peer on a dual-stack socket
		{"2001:db8:0:ffff::1", true},
		{"2001:db8:1::1", false},
		{"198.51.100.200", true}, // from the mapped prefix
		{"172.31.255.255", true},
		{"172.32.0.0", false},
		{"fe80::1%eth0", false},
		{"0.0.0.0", false},
	} {
		if got := l.Contains(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("Contains(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	if l.Len() != 5 {
		t.Errorf("Len = %d, want 5 (10.0.0.128/25 lies inside 10.0.0.0/24): %s", l.Len(), l)
	}
}

func TestNobodyByDefault(t *testing.T) {
	var l *List
	if l.Contains(netip.MustParseAddr("127.0.0.1")) || New().Contains(netip.MustParseAddr("::1")) {
		t.Fatal("an empty list trusts someone")
	}
	w := l.With(netip.MustParsePrefix("127.0.0.1/32"))
	if !w.Contains(netip.MustParseAddr("127.0.0.1")) || w.Contains(netip.MustParseAddr("127.0.0.2")) {
		t.Fatal("With did not add exactly the prefix")
	}
}

func TestParseErrors(t *testing.T) {
	for _, bad := range []string{"", "example.com", "10.0.0.0/33", "10.0.0.1:5060", "fe80::1%eth0"} {
		if _, err := Parse([]string{bad}); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}
