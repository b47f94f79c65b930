package digest

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseDigest(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Params
		wantErr string // "" for success; ErrNotDigest's text for another scheme
	}{
		{
			name: "RFC 3261 §22.4 style",
			in: `Digest username="bob", realm="atlanta.example.com", nonce="ea9c8e88df84f1cec4341ae6cbe5a359",` +
				` opaque="", uri="sips:ss2.biloxi.example.com", response="dfe56131d1958046689d83306477ecc"`,
			want: Params{Username: "bob", Realm: "atlanta.example.com", Nonce: "ea9c8e88df84f1cec4341ae6cbe5a359",
				URI: "sips:ss2.biloxi.example.com", Response: "dfe56131d1958046689d83306477ecc"},
		},
		{
			name: "any order, mixed-case names and scheme, tokens and quotes",
			in:   `dIGEST NC=00000001,QOP=auth , Algorithm="SHA-256",CNonce=abc , Realm = "r" ,username=u,URI="sip:x",Nonce="n",RESPONSE="00"`,
			want: Params{Username: "u", Realm: "r", Nonce: "n", URI: "sip:x", Response: "00", Algorithm: "SHA-256", CNonce: "abc", QOP: "auth", NC: "00000001"},
		},
		{
			name: "escapes in quoted strings",
			in:   `Digest username="al\"ice\\", realm="a\,b", nonce="\n"`,
			want: Params{Username: `al"ice\`, Realm: "a,b", Nonce: "n"},
		},
		{
			name: "commas and equals inside quotes",
			in:   `Digest realm="a, b=c", username="x"`,
			want: Params{Username: "x", Realm: "a, b=c"},
		},
		{
			name: "unknown parameters skipped, empty list elements",
			in:   "Digest ,, userhash=false, charset=\"UTF-8\",\tusername=\"u\",",
			want: Params{Username: "u"},
		},
		{
			name: "UTF-8 in quoted string",
			in:   "Digest username=\"J\u00e4s\u00f8n\", realm=\"r\"",
			want: Params{Username: "J\u00e4s\u00f8n", Realm: "r"},
		},
		{name: "tab after scheme", in: "Digest\tusername=\"u\"", want: Params{Username: "u"}},
		{name: "empty quoted value", in: `Digest username="", realm="r"`, want: Params{Realm: "r"}},
		{name: "Basic", in: "Basic YWxhZGRpbjpvcGVuc2VzYW1l", wantErr: ErrNotDigest.Error()},
		{name: "Bearer", in: "Bearer abc", wantErr: ErrNotDigest.Error()},
		{name: "DigestX scheme", in: `DigestX username="u"`, wantErr: ErrNotDigest.Error()},
		{name: "empty", in: "", wantErr: ErrNotDigest.Error()},
		{name: "scheme only", in: "Digest", wantErr: "no parameters after Digest"},
		{name: "scheme and space", in: "Digest  ", wantErr: "no parameters after Digest"},
		{name: "no known parameters", in: "Digest foo=bar", wantErr: "no known Digest parameters"},
		{name: "unterminated quote", in: `Digest username="u`, wantErr: `parameter "username": unterminated quoted string`},
		{name: "escape at end", in: `Digest username="u\`, wantErr: `parameter "username": unterminated quoted string`},
		{name: "control character", in: "Digest username=\"u\x00\"", wantErr: `parameter "username": control character 0x0 in quoted string`},
		{name: "escaped CR", in: "Digest username=\"u\\\r\"", wantErr: `parameter "username": invalid escape in quoted string`},
		{name: "duplicate", in: `Digest realm="a", REALM="b"`, wantErr: `parameter "REALM" given twice`},
		{name: "no value", in: `Digest realm=, username="u"`, wantErr: `parameter "realm" has no value`},
		{name: "no equals", in: `Digest realm`, wantErr: `parameter "realm" has no value`},
		{name: "missing comma", in: `Digest realm="a" username="u"`, wantErr: `expected ',' after parameter "realm" at "username=\"u\""`},
		{name: "garbage name", in: `Digest ="a"`, wantErr: `expected parameter name at "=\"a\""`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.in)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if gotErr != tc.wantErr {
				t.Fatalf("Parse(%q) error = %q, want %q", tc.in, gotErr, tc.wantErr)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Parse(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestParseDigestDoesNotAllocate(t *testing.T) {
	in := `Digest username="alice", realm="pinhole", nonce="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", uri="sip:pinhole.example", response="ab7a11474ad9be9b4b284ca7ee853dbc", algorithm=MD5, cnonce="0a4f113b", qop=auth, nc=00000001`
	if n := testing.AllocsPerRun(100, func() { Parse(in) }); n != 0 {
		t.Errorf("Parse allocates %v times, want 0", n)
	}
}

// render writes d back as a header value, every field quoted, absent
// ones as "" (which parse back to absent).
func render(d Params) string {
	fields := []struct{ name, v string }{
		{"username", d.Username}, {"realm", d.Realm}, {"nonce", d.Nonce}, {"uri", d.URI},
		{"response", d.Response}, {"algorithm", d.Algorithm}, {"cnonce", d.CNonce},
		{"opaque", d.Opaque}, {"qop", d.QOP}, {"nc", d.NC},
	}
	var parts []string
	for _, f := range fields {
		parts = append(parts, f.name+"="+Quote(f.v))
	}
	return "Digest " + strings.Join(parts, ", ")
}

func BenchmarkParseDigest(b *testing.B) {
	in := `Digest username="alice", realm="pinhole", nonce="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", uri="sip:pinhole.example", response="ab7a11474ad9be9b4b284ca7ee853dbc", algorithm=MD5, cnonce="0a4f113b", qop=auth, nc=00000001`
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(in); err != nil {
			b.Fatal(err)
		}
	}
}
