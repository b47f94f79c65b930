package digest

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The worked examples of RFC 2617 §3.5 and RFC 7616 §3.9.1.
func TestRFCVectors(t *testing.T) {
	tests := []struct {
		name              string
		alg               Algorithm
		user, realm, pass string
		nonce, cnonce     string
		want              string
	}{
		{"RFC 2617 3.5 MD5", MD5, "Mufasa", "testrealm@host.com", "Circle Of Life",
			"dcd98b7102dd2f0e8b11d0f600bfb0c093", "0a4f113b", "6629fae49393a05397450978507c4ef1"},
		{"RFC 7616 3.9.1 MD5", MD5, "Mufasa", "http-auth@example.org", "Circle of Life",
			"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", "8ca523f5e9506fed4657c9700eebdbec"},
		{"RFC 7616 3.9.1 SHA-256", SHA256, "Mufasa", "http-auth@example.org", "Circle of Life",
			"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
			"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Challenge{Realm: tc.realm, Nonce: tc.nonce, Algorithm: tc.alg, QOPAuth: true}
			got := Response(c, HA1(tc.alg, tc.user, tc.realm, tc.pass), "GET", "/dir/index.html", 1, tc.cnonce)
			if got != tc.want {
				t.Errorf("response = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestResponseWithoutQOP(t *testing.T) {
	// RFC 2069 style, as RFC 2617 §3.2.2.1 keeps it: H(HA1:nonce:HA2).
	c := Challenge{Realm: "r", Nonce: "n", Algorithm: MD5}
	ha1 := HA1(MD5, "u", "r", "p")
	want := md5hex(ha1 + ":n:" + md5hex("REGISTER:sip:x"))
	if got := Response(c, ha1, "REGISTER", "sip:x", 7, "ignored"); got != want {
		t.Errorf("response = %s, want %s", got, want)
	}
}

func md5hex(s string) string {
	h := MD5.new()
	h.Write([]byte(s))
	const digits = "0123456789abcdef"
	var out []byte
	for _, b := range h.Sum(nil) {
		out = append(out, digits[b>>4], digits[b&15])
	}
	return string(out)
}

func TestParseChallenge(t *testing.T) {
	tests := []struct {
		in      string
		want    Challenge
		wantErr error
	}{
		{`Digest realm="pinhole", nonce="abc", algorithm=MD5, qop="auth"`,
			Challenge{Realm: "pinhole", Nonce: "abc", QOPAuth: true}, nil},
		{`Digest realm="a\"b",nonce="n",algorithm=SHA-256,qop="auth,auth-int",stale=TRUE,opaque="o"`,
			Challenge{Realm: `a"b`, Nonce: "n", Algorithm: SHA256, QOPAuth: true, Stale: true, Opaque: "o"}, nil},
		{`digest nonce="n"`, Challenge{Nonce: "n"}, nil},
		{`Digest realm="r", nonce="n", qop="auth-int"`, Challenge{Realm: "r", Nonce: "n"}, nil},
		{`Basic realm="r"`, Challenge{}, ErrNotDigest},
		{`Digest realm="r"`, Challenge{}, ErrNoNonce},
		{`Digest realm="r, nonce=n`, Challenge{}, ErrSyntax},
		{`Digest nonce="n", algorithm=SHA-512-256`, Challenge{}, ErrUnsupported},
		{`Digest =x`, Challenge{}, ErrSyntax},
	}
	for _, tc := range tests {
		got, err := ParseChallenge(tc.in)
		if tc.wantErr != nil {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr.Error()) {
				t.Errorf("ParseChallenge(%q) error = %v, want %v", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseChallenge(%q): %v", tc.in, err)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("ParseChallenge(%q) (-want +got):\n%s", tc.in, d)
		}
	}
}

func TestAppendAuthorization(t *testing.T) {
	c := Challenge{Realm: "pinhole", Nonce: "N", Opaque: "O", Algorithm: MD5, QOPAuth: true}
	ha1 := HA1(MD5, "alice", "pinhole", "pw")
	got := string(AppendAuthorization(nil, c, "alice", ha1, "REGISTER", "sip:127.0.0.1", 0x1a, "c1"))
	want := `Digest username="alice", realm="pinhole", nonce="N", uri="sip:127.0.0.1", response="` +
		Response(c, ha1, "REGISTER", "sip:127.0.0.1", 0x1a, "c1") +
		`", algorithm=MD5, qop=auth, nc=0000001a, cnonce="c1", opaque="O"`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// What we write, a server's parser of the same grammar reads back.
	back, err := ParseChallenge(strings.Replace(got, "qop=auth", `qop="auth"`, 1))
	if err != nil || back.Nonce != "N" || back.Realm != "pinhole" {
		t.Errorf("round trip: %+v, %v", back, err)
	}
}

func BenchmarkAppendAuthorization(b *testing.B) {
	b.ReportAllocs()
	c := Challenge{Realm: "pinhole", Nonce: "0123456789abcdef0123456789abcdef0123456789a", Algorithm: MD5, QOPAuth: true}
	ha1 := HA1(MD5, "u0000001", "pinhole", "pw-u0000001")
	buf := make([]byte, 0, 512)
	for i := range b.N {
		buf = AppendAuthorization(buf[:0], c, "u0000001", ha1, "REGISTER", "sip:127.0.0.1", uint32(i), "cn")
	}
}
