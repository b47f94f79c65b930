package auth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	md5A = "ab7a11474ad9be9b4b284ca7ee853dbc"
	shaA = "b9147927f65065e400c8356f54d826b0ca1322d9a975ad7ef1682fa6887acdde"
)

func TestParseCredentials(t *testing.T) {
	type lookup struct {
		user, realm string
		alg         Algorithm
		ha1         string
		ok          bool
	}
	tests := []struct {
		name string
		in   string
		want []lookup
	}{
		{
			name: "both columns, comments, blank lines, tabs",
			in:   "# users\n\nalice\tpinhole  " + md5A + " " + shaA + "  # trailing\n   \n",
			want: []lookup{
				{"alice", "pinhole", MD5, md5A, true},
				{"alice", "pinhole", SHA256, shaA, true},
				{"alice", "other", MD5, "", false},
				{"Alice", "pinhole", MD5, "", false},
				{"bob", "pinhole", MD5, "", false},
			},
		},
		{
			name: "MD5 only",
			in:   "alice pinhole " + md5A,
			want: []lookup{
				{"alice", "pinhole", MD5, md5A, true},
				{"alice", "pinhole", SHA256, "", false},
			},
		},
		{
			name: "upper-case hex is stored lower-case",
			in:   "alice pinhole " + strings.ToUpper(md5A) + " " + strings.ToUpper(shaA) + "\r\n",
			want: []lookup{
				{"alice", "pinhole", MD5, md5A, true},
				{"alice", "pinhole", SHA256, shaA, true},
			},
		},
		{
			name: "same user in two realms",
			in:   "alice pinhole " + md5A + "\nalice other " + strings.Repeat("1", 32),
			want: []lookup{
				{"alice", "pinhole", MD5, md5A, true},
				{"alice", "other", MD5, strings.Repeat("1", 32), true},
			},
		},
		{name: "empty", in: "", want: []lookup{{"alice", "pinhole", MD5, "", false}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseCredentials(strings.NewReader(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			var got []lookup
			for _, l := range tc.want {
				ha1, ok := c.HA1(l.user, l.realm, l.alg)
				got = append(got, lookup{l.user, l.realm, l.alg, ha1, ok})
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(lookup{})); diff != "" {
				t.Errorf("HA1 lookups (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseCredentialsErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"too few fields", "# c\nalice pinhole\n", "line 2: want `username realm md5-ha1 [sha256-ha1]`, got 2 fields"},
		{"too many fields", "alice pinhole " + md5A + " " + shaA + " extra", "line 1: want"},
		{"short MD5", "alice pinhole abc", "line 1: MD5 HA1 \"abc\": want 32 hex digits, got 3"},
		{"SHA-256 in MD5 column", "alice pinhole " + shaA, "line 1: MD5 HA1"},
		{"not hex", "\n\nalice pinhole " + strings.Repeat("g", 32), "line 3: MD5 HA1 \"" + strings.Repeat("g", 32) + "\": not hex at position 1"},
		{"bad SHA-256", "alice pinhole " + md5A + " " + md5A, "line 1: SHA-256 HA1"},
		{"duplicate", "alice pinhole " + md5A + "\n#\nalice pinhole " + md5A, `line 3: user "alice" in realm "pinhole" already defined on line 1`},
		{"line too long", strings.Repeat("a", 70000), "read credentials after line 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCredentials(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseCredentials error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestLoadCredentials(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "users.conf")
	if err := os.WriteFile(good, []byte("alice pinhole "+md5A+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadCredentials(good)
	if err != nil {
		t.Fatal(err)
	}
	if ha1, ok := c.HA1("alice", "pinhole", MD5); !ok || ha1 != md5A {
		t.Errorf("HA1 = %q, %v; want %q, true", ha1, ok, md5A)
	}

	bad := filepath.Join(dir, "bad.conf")
	if err := os.WriteFile(bad, []byte("alice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCredentials(bad); err == nil || !strings.Contains(err.Error(), bad+": line 1") {
		t.Errorf("LoadCredentials(bad) error = %v, want the path and line", err)
	}
	if _, err := LoadCredentials(filepath.Join(dir, "missing")); err == nil {
		t.Error("LoadCredentials(missing file) succeeded")
	}
}

func TestNewErrors(t *testing.T) {
	creds := func(t *testing.T, text string) *Credentials {
		t.Helper()
		c, err := ParseCredentials(strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	full := "alice pinhole " + md5A + " " + shaA + "\n"
	tests := []struct {
		name string
		cfg  func(t *testing.T) Config
		want string // "" means New must succeed
	}{
		{"defaults", func(t *testing.T) Config { return Config{Creds: creds(t, full)} }, ""},
		{"no credentials", func(t *testing.T) Config { return Config{} }, "auth: no credentials"},
		{"MD5-only user with SHA-256 offered", func(t *testing.T) Config {
			return Config{Creds: creds(t, full+"zed pinhole "+md5A+"\nbob pinhole "+md5A)}
		}, `auth: user "bob" in realm "pinhole" has no SHA-256 HA1, but SHA-256 is offered`},
		{"MD5-only user, MD5 only", func(t *testing.T) Config {
			return Config{Creds: creds(t, "bob pinhole "+md5A), Algorithms: []Algorithm{MD5}}
		}, ""},
		{"MD5-only user in another realm", func(t *testing.T) Config {
			return Config{Creds: creds(t, full+"bob other "+md5A)}
		}, ""},
		{"unknown algorithm", func(t *testing.T) Config {
			return Config{Creds: creds(t, full), Algorithms: []Algorithm{SHA256, 9}}
		}, "auth: algorithms[1]: unsupported Algorithm(9)"},
		{"algorithm twice", func(t *testing.T) Config {
			return Config{Creds: creds(t, full), Algorithms: []Algorithm{MD5, MD5}}
		}, "auth: algorithms[1]: MD5 listed twice"},
		{"short secret", func(t *testing.T) Config {
			return Config{Creds: creds(t, full), Secret: []byte("short")}
		}, "auth: secret of 5 bytes: want at least 16"},
		{"negative TTL", func(t *testing.T) Config {
			return Config{Creds: creds(t, full), NonceTTL: -1}
		}, "auth: nonce TTL -1ns: must be positive"},
		{"control character in realm", func(t *testing.T) Config {
			return Config{Creds: creds(t, full), Realm: "a\nb"}
		}, `auth: realm "a\nb": control character at position 2`},
		{"negative replay entries", func(t *testing.T) Config {
			return Config{Creds: creds(t, full), ReplayEntries: -1}
		}, "auth: replay entries -1: must be positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg(t))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("New error = %q, want %q", got, tc.want)
			}
		})
	}
}
