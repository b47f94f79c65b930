package sipsyntax

import "testing"

func TestValidAddress(t *testing.T) {
	for _, tt := range []struct {
		v    string
		want bool
	}{
		{`<sip:alice@example.com>;tag=1`, true},
		{`sip:alice@example.com`, true},
		{`"Alice \"A\"" <sip:alice@example.com>`, true},
		{`"Alice <sip:alice@example.com>`, false},   // quote never closed
		{`sip:alice@example.com?Subject=x`, false},  // URI headers outside <>
		{`<sip:alice@example.com?Subject=x>`, true}, // inside: part of the URI
		{`"a?b" <sip:alice@example.com>`, true},     // '?' in a display name
		{`"\"`, false},                              // an escaped quote does not close
		{``, true},
	} {
		if got := ValidAddress([]byte(tt.v)); got != tt.want {
			t.Errorf("ValidAddress(%q) = %v, want %v", tt.v, got, tt.want)
		}
	}
}

func TestHeadersInSIPURI(t *testing.T) {
	for _, tt := range []struct {
		uri  string
		want bool
	}{
		{"sip:example.com", false},
		{"sip:?", true},
		{"sip:alice@example.com?Subject=x", true},
		{"sip:a?b@example.com", false}, // '?' in the user part
		{"sips:a?b@example.com?x=y", true},
	} {
		if got := HeadersInSIPURI([]byte(tt.uri)); got != tt.want {
			t.Errorf("HeadersInSIPURI(%q) = %v, want %v", tt.uri, got, tt.want)
		}
	}
}

func BenchmarkValidAddress(b *testing.B) {
	v := []byte(`"Alice" <sip:alice@example.com;transport=udp>;tag=a73kszlfl`)
	b.ReportAllocs()
	for b.Loop() {
		ValidAddress(v)
	}
}

func TestIsToken(t *testing.T) {
	for _, tt := range []struct {
		v    string
		want bool
	}{
		{"REGISTER", true},
		{"z9hG4bK-a.b!c%d*e_f+g`h'i~", true},
		{"", false},
		{"a b", false},
		{"a;b", false},
		{"a=b", false},
		{"\"a\"", false},
		{"a\x00", false},
	} {
		if got := IsToken([]byte(tt.v)); got != tt.want {
			t.Errorf("IsToken(%q) = %v, want %v", tt.v, got, tt.want)
		}
	}
}
