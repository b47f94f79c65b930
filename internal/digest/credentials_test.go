package digest

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// manyUsers writes a credentials file of n users, every third without a
// SHA-256 HA1, with HA1 values derived from the user's number.
func manyUsers(n int) string {
	var b strings.Builder
	for i := range n {
		md5 := fmt.Sprintf("%032x", i)
		if i%3 == 0 {
			fmt.Fprintf(&b, "u%07d pinhole %s\n", i, md5)
			continue
		}
		fmt.Fprintf(&b, "u%07d pinhole %s %064x\n", i, md5, i)
	}
	return b.String()
}

// TestCredentialsManyUsers crosses several growths of the table: every user
// is found with its own HA1s, and no one else is.
func TestCredentialsManyUsers(t *testing.T) {
	const n = 5000
	c, err := ParseCredentials(strings.NewReader(manyUsers(n)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		user := fmt.Sprintf("u%07d", i)
		if got, ok := c.HA1(user, "pinhole", MD5); !ok || got != fmt.Sprintf("%032x", i) {
			t.Fatalf("%s MD5 = %q, %v", user, got, ok)
		}
		got, ok := c.HA1(user, "pinhole", SHA256)
		if i%3 == 0 {
			if ok {
				t.Fatalf("%s has a SHA-256 HA1 it was not given: %q", user, got)
			}
		} else if !ok || got != fmt.Sprintf("%064x", i) {
			t.Fatalf("%s SHA-256 = %q, %v", user, got, ok)
		}
		if _, ok := c.HA1(user, "other", MD5); ok {
			t.Fatalf("%s found in another realm", user)
		}
	}
	if _, ok := c.HA1(fmt.Sprintf("u%07d", n), "pinhole", MD5); ok {
		t.Fatal("a user past the file found")
	}
	if u, ok := c.Missing("pinhole", SHA256); !ok || u != "u0000000" {
		t.Fatalf("Missing = %q, %v; want u0000000", u, ok)
	}
	if u, ok := c.Missing("pinhole", MD5); ok {
		t.Fatalf("Missing MD5 = %q: every user has one", u)
	}
}

// TestCredentialsDuplicateAfterGrowth names the first definition's line
// even when the table was rebuilt between the two.
func TestCredentialsDuplicateAfterGrowth(t *testing.T) {
	in := manyUsers(3000) + fmt.Sprintf("u%07d pinhole %032x\n", 7, 1)
	_, err := ParseCredentials(strings.NewReader(in))
	if err == nil || !strings.Contains(err.Error(), "line 3001") || !strings.Contains(err.Error(), "already defined on line 8") {
		t.Fatalf("err = %v; want the duplicate on line 3001 of line 8", err)
	}
}

func TestCredentialsLookupDoesNotAllocate(t *testing.T) {
	c, err := ParseCredentials(strings.NewReader(manyUsers(100)))
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, ok := c.HA1("u0000043", "pinhole", SHA256); !ok {
			t.Fatal("not found")
		}
	}); n != 0 {
		t.Fatalf("HA1 allocates %.1f times", n)
	}
}

// maxBytesPerUser is what a user with both HA1s may cost in memory for the
// whole of pinhole's life: its record (~113 bytes) and its share of the
// table, which is between a quarter and a half full.
const maxBytesPerUser = 160

// TestCredentialsMemoryPerUser asserts a size, not a timing. make
// test-memory runs it without the race detector, which changes heap sizes.
func TestCredentialsMemoryPerUser(t *testing.T) {
	if raceEnabled {
		t.Skip("heap sizes differ under the race detector")
	}
	const n = 200_000
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "u%07d pinhole %032x %064x\n", i, i, i)
	}
	in := b.String()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c, err := ParseCredentials(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(c)
	runtime.KeepAlive(in) // else its freeing would offset what c holds
	got := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
	t.Logf("%d users with MD5 and SHA-256 HA1s: %.1f bytes of heap per user", n, got)
	if got > maxBytesPerUser {
		t.Errorf("%.1f bytes per user, budget %d", got, maxBytesPerUser)
	}
}

// FuzzParseCredentials checks the arena and its table against a plain map
// built from the same lines: whatever parses must answer every user's
// look-up exactly as the map does, and Missing must agree with it.
func FuzzParseCredentials(f *testing.F) {
	f.Add("alice pinhole " + strings.Repeat("a", 32) + " " + strings.Repeat("B", 64) + "\nbob pinhole " + strings.Repeat("1", 32) + "\n")
	f.Add("# c\n\n a\tr " + strings.Repeat("f", 32) + " # t\n")
	f.Add("a r " + strings.Repeat("0", 32) + "\na r " + strings.Repeat("0", 32) + "\n")
	f.Add(manyUsers(40))
	f.Fuzz(func(t *testing.T, in string) {
		c, err := ParseCredentials(strings.NewReader(in))
		if err != nil {
			return
		}
		type ha1s struct{ md5, sha string }
		want := map[[2]string]ha1s{}
		for line := range strings.Lines(in) {
			line = strings.TrimRight(line, "\n")
			if i := strings.IndexByte(line, '#'); i >= 0 {
				line = line[:i]
			}
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			h := ha1s{md5: strings.ToLower(f[2])}
			if len(f) == 4 {
				h.sha = strings.ToLower(f[3])
			}
			want[[2]string{f[0], f[1]}] = h
		}
		for k, h := range want {
			if got, ok := c.HA1(k[0], k[1], MD5); !ok || got != h.md5 {
				t.Fatalf("%q in %q: MD5 %q %v, want %q", k[0], k[1], got, ok, h.md5)
			}
			if got, ok := c.HA1(k[0], k[1], SHA256); ok != (h.sha != "") || got != h.sha {
				t.Fatalf("%q in %q: SHA-256 %q %v, want %q", k[0], k[1], got, ok, h.sha)
			}
			if _, ok := c.HA1(k[0]+"x", k[1], MD5); ok {
				if _, listed := want[[2]string{k[0] + "x", k[1]}]; !listed {
					t.Fatalf("%qx in %q found but not in the file", k[0], k[1])
				}
			}
			u, found := c.Missing(k[1], SHA256)
			var wu string
			var wfound bool
			for k2, h2 := range want {
				if k2[1] == k[1] && h2.sha == "" && (!wfound || k2[0] < wu) {
					wu, wfound = k2[0], true
				}
			}
			if u != wu || found != wfound {
				t.Fatalf("Missing(%q) = %q %v, want %q %v", k[1], u, found, wu, wfound)
			}
		}
	})
}
