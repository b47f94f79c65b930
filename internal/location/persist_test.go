package location

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
)

// snapshot returns every live binding keyed by Contact.
func snapshot(s Store) map[string]Binding {
	out := map[string]Binding{}
	s.Range(func(b Binding) bool {
		out[b.Contact] = b
		return true
	})
	return out
}

func variedBindings(exp time.Time) []Binding {
	bs := []Binding{
		{AOR: "v6@x", Contact: "sip:v6@[2001:db8::2]:5070;transport=tcp", CallID: "x", CSeq: 4294967295, Q: 65535, RegID: 4294967295,
			Expires: exp, Updated: exp.Add(-time.Minute), NAT: true, Path: "<sip:p1;lr>,<sip:p2;lr>", UserAgent: strings.Repeat("u", 300),
			Flow: Flow{Transport: TransportTCP, Remote: netip.MustParseAddrPort("[fe80::2%eth1]:40000"), Local: netip.MustParseAddrPort("[::ffff:10.0.0.1]:5060")}},
		{AOR: "v6@x", Contact: "sip:noflow@x", Expires: exp.Add(time.Hour), Updated: exp.Add(-time.Hour)},
	}
	for i := range 300 {
		bs = append(bs, typical(i, exp.Add(time.Duration(i)*time.Second)))
	}
	return bs
}

func putAll(t testing.TB, s Store, bs []Binding) {
	t.Helper()
	byAOR := map[string][]Binding{}
	var order []string
	for _, b := range bs {
		if byAOR[b.AOR] == nil {
			order = append(order, b.AOR)
		}
		byAOR[b.AOR] = append(byAOR[b.AOR], b)
	}
	// Concurrently, as sipgo calls it: write-throughs share transactions.
	var wg sync.WaitGroup
	work := make(chan string)
	for range 32 {
		wg.Go(func() {
			for aor := range work {
				put(t, s, byAOR[aor]...)
			}
		})
	}
	for _, aor := range order {
		work <- aor
	}
	close(work)
	wg.Wait()
}

func TestPersistRoundTrip(t *testing.T) {
	c := newClock()
	path := tempDB(t)
	m, err := Open(Options{Path: path, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	putAll(t, m, variedBindings(c.Now().Add(time.Hour)))
	// Changes that go only through the write-behind path.
	if !m.Touch(refresh(typical(1, time.Time{}), 5000, c.Now().Add(3*time.Hour))) {
		t.Fatal("Touch failed")
	}
	put(t, m, Binding{AOR: "gone@x", Contact: "sip:gone@x", Expires: c.Now().Add(time.Hour)})
	if _, err := m.Update("gone@x", func([]Binding) ([]Binding, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	want := snapshot(m)
	wantA, wantB := m.Len()
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	for round := range 2 { // reopen after a reopen keeps everything too
		m2 := openTest(t, Options{Path: path, Now: c.Now})
		if diff := cmp.Diff(want, snapshot(m2), addrPortEqual); diff != "" {
			t.Fatalf("round %d: bindings after reopen (-want +got):\n%s", round, diff)
		}
		if a, b := m2.Len(); a != wantA || b != wantB {
			t.Errorf("round %d: Len = %d, %d; want %d, %d", round, a, b, wantA, wantB)
		}
		if st := m2.Stats(); st.SkippedAtLoad != 0 || st.Expired != 0 {
			t.Errorf("round %d: Stats = %+v", round, st)
		}
		if err := m2.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if n := countKeys(t, path); n != wantA {
		t.Errorf("%d keys on disk, want %d (removed AOR must be deleted)", n, wantA)
	}
}

func countKeys(t *testing.T, path string) int {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := 0
	if err := db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucket).Stats().KeyN
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestOpenDropsExpired: bindings that lapsed while pinhole was down are not
// loaded, are reported to OnExpire, and leave the disk.
func TestOpenDropsExpired(t *testing.T) {
	c := newClock()
	path := tempDB(t)
	m, err := Open(Options{Path: path, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	put(t, m, Binding{AOR: "a@x", Contact: "sip:short@x", Expires: c.Now().Add(time.Minute)},
		Binding{AOR: "a@x", Contact: "sip:long@x", Expires: c.Now().Add(time.Hour)})
	put(t, m, Binding{AOR: "b@x", Contact: "sip:b@x", Expires: c.Now().Add(time.Minute)})
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	c.Advance(2 * time.Minute)
	lapsed := make(chan string, 10)
	m2, err := Open(Options{Path: path, Now: c.Now, OnExpire: func(b Binding) { lapsed <- b.Contact }})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := m2.Len(); a != 1 || b != 1 {
		t.Errorf("Len = %d, %d; want 1, 1", a, b)
	}
	got := map[string]bool{}
	for range 2 {
		select {
		case c := <-lapsed:
			got[c] = true
		case <-time.After(5 * time.Second):
			t.Fatal("OnExpire not called for bindings lapsed while down")
		}
	}
	if diff := cmp.Diff(map[string]bool{"sip:short@x": true, "sip:b@x": true}, got); diff != "" {
		t.Errorf("OnExpire (-want +got):\n%s", diff)
	}
	if err := m2.Close(); err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, path); n != 1 {
		t.Errorf("%d keys on disk, want 1", n)
	}
}

func TestLoadSkipsCorrupt(t *testing.T) {
	c := newClock()
	path := tempDB(t)
	m, err := Open(Options{Path: path, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	good := typical(1, c.Now().Add(time.Hour))
	put(t, m, good)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	valid := encodeValue([]Binding{good})
	bad := map[string][]byte{
		"empty":         {},
		"version 3":     append([]byte{3}, valid[1:]...),
		"version only":  {formatV1},
		"torn":          valid[:len(valid)-3],
		"bad transport": func() []byte { v := append([]byte(nil), valid...); v[2+offFlags] = 7; return v }(),
		"trailing byte": append(append([]byte(nil), valid...), 0),
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		for k, v := range bad {
			if err := tx.Bucket(bucket).Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	m2 := openTest(t, Options{Path: path, Now: c.Now})
	if got := m2.Stats().SkippedAtLoad; got != uint64(len(bad)) {
		t.Errorf("SkippedAtLoad = %d, want %d", got, len(bad))
	}
	if diff := cmp.Diff([]Binding{good}, m2.Lookup(good.AOR), addrPortEqual); diff != "" {
		t.Errorf("good binding (-want +got):\n%s", diff)
	}
}

// Crash tests: a child process (this test binary) writes bindings and is
// killed with SIGKILL; the parent reopens the file.
const (
	helperEnv     = "PINHOLE_LOCATION_HELPER"
	helperPathEnv = "PINHOLE_LOCATION_HELPER_PATH"
	crashN        = 200
)

func crashExpiry(i int, refreshed bool) time.Time {
	base := time.Now().Add(time.Hour).Truncate(time.Hour)
	if refreshed {
		return base.Add(time.Hour + time.Duration(i)*time.Second)
	}
	return base.Add(time.Duration(i) * time.Second)
}

// TestHelperProcess is the child of TestCrash; it does nothing in a
// normal run.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper process for TestCrash")
	}
	interval := time.Hour // nothing is written behind
	if mode == "flushed" {
		interval = 20 * time.Millisecond
	}
	m, err := Open(Options{Path: os.Getenv(helperPathEnv), FlushInterval: interval})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(2)
	}
	// Registrations: written through before Update returns.
	var regs []Binding
	for i := range crashN {
		regs = append(regs, typical(i, crashExpiry(i, false)))
	}
	putAll(t, m, regs)
	// Refreshes: written behind.
	for i := range crashN {
		b := typical(i, crashExpiry(i, false))
		if !m.Touch(refresh(b, b.CSeq+1, crashExpiry(i, true))) {
			fmt.Println("ERROR touch", b.AOR)
			os.Exit(2)
		}
	}
	if mode == "flushed" {
		// Wait for the background flusher to take every dirty AOR, then
		// for its transaction to commit.
		for m.anyDirty() {
			time.Sleep(5 * time.Millisecond)
		}
		m.writeMu.Lock()
		m.writeMu.Unlock()
	}
	fmt.Println("READY")
	select {} // wait for SIGKILL; Close is never called
}

func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	for _, tt := range []struct {
		mode          string
		wantRefreshed bool
	}{
		// Registrations are acknowledged only once on disk; refreshes
		// made after the last flush are lost (the older expiry remains).
		{"written", false},
		// Refreshes flushed before the kill survive.
		{"flushed", true},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			path := tempDB(t)
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), helperEnv+"="+tt.mode, helperPathEnv+"="+path)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			ready := make(chan string, 1)
			go func() {
				sc := bufio.NewScanner(out)
				for sc.Scan() {
					if l := sc.Text(); l == "READY" || strings.HasPrefix(l, "ERROR") {
						ready <- l
						return
					}
				}
				ready <- "EOF"
			}()
			select {
			case l := <-ready:
				if l != "READY" {
					t.Fatalf("helper: %s", l)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("helper did not get ready")
			}
			if err := cmd.Process.Kill(); err != nil { // SIGKILL
				t.Fatal(err)
			}
			cmd.Wait()

			m := openTest(t, Options{Path: path})
			if _, n := m.Len(); n != crashN {
				t.Fatalf("%d bindings after kill -9, want %d", n, crashN)
			}
			for i := range crashN {
				want := typical(i, crashExpiry(i, tt.wantRefreshed))
				got := m.Lookup(want.AOR)
				if len(got) != 1 || got[0].Contact != want.Contact || !got[0].Expires.Equal(want.Expires) {
					t.Fatalf("binding %d after kill -9: %+v; want contact %s expires %v", i, got, want.Contact, want.Expires)
				}
				wantCSeq := want.CSeq
				if tt.wantRefreshed {
					wantCSeq++
				}
				if got[0].CSeq != wantCSeq {
					t.Fatalf("binding %d: CSeq %d, want %d", i, got[0].CSeq, wantCSeq)
				}
			}
		})
	}
}

// TestFlushInChunks: a write-behind flush of more AORs than one chunk
// carries writes them all (the flush yields between chunks, so that a
// flush of tens of thousands of refreshes does not hold the one P of a
// pinned process).
func TestFlushInChunks(t *testing.T) {
	c := newClock()
	path := tempDB(t)
	m, err := Open(Options{Path: path, Now: c.Now, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	const n = 3*flushChunkAORs + 7
	for i := range n {
		put(t, m, typical(i, c.Now().Add(time.Hour)))
	}
	later := c.Now().Add(2 * time.Hour)
	for i := range n {
		if !m.Touch(refresh(typical(i, time.Time{}), 5000, later)) {
			t.Fatalf("Touch %d failed", i)
		}
	}
	if err := m.flush(false); err != nil {
		t.Fatal(err)
	}
	if m.anyDirty() {
		t.Fatal("AORs still dirty after the flush")
	}
	// Nothing is dirty, so Close writes nothing more: the reopened store
	// reads what the chunks wrote.
	want := snapshot(m)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m2 := openTest(t, Options{Path: path, Now: c.Now})
	if diff := cmp.Diff(want, snapshot(m2), addrPortEqual); diff != "" {
		t.Fatalf("bindings after reopen (-want +got):\n%s", diff)
	}
	for _, b := range m2.Lookup(typical(n-1, time.Time{}).AOR) {
		if !b.Expires.Equal(later) {
			t.Errorf("last AOR expires %v, want the refreshed %v", b.Expires, later)
		}
	}
}
