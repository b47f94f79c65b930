package routesig

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testRing(t *testing.T, grace time.Duration) (*Keyring, *time.Time) {
	t.Helper()
	now := time.Unix(1_800_000_000, 0)
	r := &Keyring{path: filepath.Join(t.TempDir(), "keys"), grace: grace, now: func() time.Time { return now }}
	if err := r.write([]key{r.newKey()}); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	return r, &now
}

func TestSignVerify(t *testing.T) {
	r, _ := testRing(t, time.Hour)
	sig := r.Sign("call-1@x", "ftag", "nr", "")
	if len(sig) != Len || strings.ToLower(sig) != sig {
		t.Fatalf("Sign = %q: want %d lower-case characters", sig, Len)
	}
	if !r.Verify(sig, "call-1@x", "ftag", "nr", "") {
		t.Fatal("Verify refused its own signature")
	}
	for _, parts := range [][]string{
		{"call-2@x", "ftag", "nr", ""},   // another dialog
		{"call-1@x", "ftagnr", "", ""},   // boundaries moved
		{"call-1@x", "ftag", "nr", "nc"}, // a parameter added
		{"call-1@x", "ftag", "nr"},       // one dropped
		{"call-1@x", "ftag", "NR", ""},   // altered
	} {
		if r.Verify(sig, parts...) {
			t.Errorf("Verify accepted the signature for %q", parts)
		}
	}
	for _, bad := range []string{"", sig[:Len-1], sig + "a", strings.Repeat("1", Len), "AAAAAAAAAAAAAAAA"} {
		if r.Verify(bad, "call-1@x", "ftag", "nr", "") {
			t.Errorf("Verify accepted %q", bad)
		}
	}
}

func TestOtherDeploymentRefused(t *testing.T) {
	a, _ := testRing(t, time.Hour)
	b, _ := testRing(t, time.Hour)
	if b.Verify(a.Sign("x"), "x") {
		t.Fatal("a signature made with another deployment's key verified")
	}
}

func TestRotationGrace(t *testing.T) {
	r, now := testRing(t, time.Hour)
	before := r.Sign("dialog")
	*now = now.Add(10 * time.Minute)
	if err := r.Rotate(); err != nil {
		t.Fatal(err)
	}
	after := r.Sign("dialog")
	if after == before {
		t.Fatal("Rotate did not change the signing key")
	}
	if !r.Verify(before, "dialog") || r.Keys() != 2 {
		t.Fatalf("within the grace period the old key must verify (keys %d)", r.Keys())
	}
	// A restart within the grace period reads both keys from the file.
	again := &Keyring{path: r.path, grace: time.Hour, now: r.now}
	if err := again.Reload(); err != nil || !again.Verify(before, "dialog") || !again.Verify(after, "dialog") {
		t.Fatalf("reloaded ring: err %v, old ok %v, new ok %v", err, again.Verify(before, "dialog"), again.Verify(after, "dialog"))
	}
	*now = now.Add(time.Hour)
	if r.Verify(before, "dialog") || r.Keys() != 1 {
		t.Fatal("the old key still verifies past the grace period")
	}
	if !r.Verify(after, "dialog") {
		t.Fatal("the current key stopped verifying")
	}
	// The next rotation drops the expired key from the file.
	if err := r.Rotate(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(r.path)
	if n := strings.Count(string(data), "\n") - 1; n != 2 {
		t.Fatalf("key file holds %d keys after the second rotation, want 2:\n%s", n, data)
	}
}

func TestOpenCreatesSecretFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "route.key")
	r, err := Open(path, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", st.Mode().Perm())
	}
	sig := r.Sign("x")
	// A restart (or a reload) keeps the key: dialogs signed before it
	// still route.
	r2, err := Open(path, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !r2.Verify(sig, "x") {
		t.Fatal("a restart lost the key")
	}
}

func TestKeyFileErrors(t *testing.T) {
	good := "1800000000 " + strings.Repeat("ab", KeySize)
	older := "1700000000 " + strings.Repeat("cd", KeySize)
	for name, text := range map[string]string{
		"empty":        "# nothing\n",
		"short key":    "1800000000 abcd\n",
		"not hex":      "1800000000 " + strings.Repeat("zz", KeySize) + "\n",
		"no time":      strings.Repeat("ab", KeySize) + "\n",
		"oldest first": older + "\n" + good + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "k")
			if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(path, time.Hour); !errors.Is(err, ErrKeyFile) {
				t.Fatalf("Open = %v, want ErrKeyFile", err)
			}
		})
	}
	path := filepath.Join(t.TempDir(), "k")
	if err := os.WriteFile(path, []byte(good+"\n"+older+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := Open(path, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// A bad file on reload keeps the ring in use.
	sig := r.Sign("x")
	if err := os.WriteFile(path, []byte("junk\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err == nil || !r.Verify(sig, "x") {
		t.Fatalf("Reload of a bad file: err %v, old key kept %v", err, r.Verify(sig, "x"))
	}
}
