package sipheader

import "testing"

func TestLookup(t *testing.T) {
	for _, tc := range []struct {
		name string
		want Name
	}{
		{"Via", Via}, {"via", Via}, {"VIA", Via}, {"v", Via}, {"V", Via},
		{"From", From}, {"f", From}, {"F", From},
		{"To", To}, {"tO", To}, {"t", To}, {"T", To},
		{"Call-ID", CallID}, {"call-id", CallID}, {"CALL-ID", CallID}, {"i", CallID}, {"I", CallID},
		{"CSeq", CSeq}, {"cseq", CSeq},
		{"Contact", Contact}, {"m", Contact}, {"M", Contact},
		{"Content-Length", ContentLength}, {"l", ContentLength}, {"L", ContentLength},
		{"Expires", Expires},
		{"Max-Forwards", MaxForwards},
		{"User-Agent", UserAgent},
		{"Supported", Supported},
		{"Require", Require},
		{"Proxy-Require", ProxyRequire},
		{"Path", Path},
		{"Route", Route},
		{"Record-Route", RecordRoute},
		{"Authorization", Authorization},
		{"WWW-Authenticate", WWWAuthenticate},
		{"Proxy-Authenticate", ProxyAuthenticate},

		// "k" (Supported) stays a field of its own, as sipgo keeps it.
		{"k", Other}, {"K", Other},
		// Compact forms of fields pinhole does not read.
		{"c", Other}, {"s", Other}, {"e", Other},
		{"", Other},
		{"Vias", Other}, {"Vi", Other}, {"Call-I", Other}, {"Call_ID", Other}, {"CallID", Other},
		{"To ", Other}, {" To", Other}, {"Via:", Other},
		// Bytes that equal a letter or '-' once bit 5 is set are not that
		// letter: CR is 0x0d, '-' 0x2d; 'V'|0x20 is 'v' but 0x16 is not.
		{"call\rid", Other}, {"\x16ia", Other}, {"\x16", Other}, {"\x14o", Other},
		{"Proxy-Authenticate-X", Other},
	} {
		if got := Lookup([]byte(tc.name)); got != tc.want {
			t.Errorf("Lookup(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// Every Name has a long form, and Lookup finds each from it.
func TestEveryNameRoundTrips(t *testing.T) {
	for n := Name(1); n < numNames; n++ {
		if n.String() == "" {
			t.Fatalf("Name %d has no long form", n)
		}
		if got := Lookup([]byte(n.String())); got != n {
			t.Errorf("Lookup(%q) = %q", n.String(), got)
		}
	}
	if Other.String() != "" || numNames.String() != "" {
		t.Error("Other and out-of-range Names have a long form")
	}
}

func TestEqualFold(t *testing.T) {
	for _, tc := range []struct {
		b, lower string
		want     bool
	}{
		{"SIP/", "sip/", true},
		{"sip/", "sip/", true},
		{"Tag", "tag", true},
		{"ta", "tag", false},
		{"tagx", "tag", false},
		{"", "", true},
		{"@", "`", false}, // 0x40|0x20 is 0x60: not letters, not equal
		{"[", "{", false},
	} {
		if got := EqualFold([]byte(tc.b), tc.lower); got != tc.want {
			t.Errorf("EqualFold(%q, %q) = %v", tc.b, tc.lower, got)
		}
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	names := [][]byte{[]byte("Call-ID"), []byte("m"), []byte("X-Custom"), []byte("PROXY-AUTHENTICATE")}
	if n := testing.AllocsPerRun(100, func() {
		for _, b := range names {
			Lookup(b)
		}
	}); n != 0 {
		t.Errorf("Lookup allocates %v times per run", n)
	}
}

func BenchmarkLookup(b *testing.B) {
	names := [][]byte{
		[]byte("Via"), []byte("From"), []byte("To"), []byte("Call-ID"), []byte("CSeq"),
		[]byte("Contact"), []byte("Expires"), []byte("User-Agent"), []byte("Content-Length"), []byte("X-Custom"),
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, n := range names {
			Lookup(n)
		}
	}
}
