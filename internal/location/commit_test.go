package location

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestGroupCommit: changes applied while a transaction is being synced
// share the next one, every Commit completes, and each completion comes
// after its own change is on disk (a reopened store has it).
func TestGroupCommit(t *testing.T) {
	path := tempDB(t)
	m, err := Open(Options{Path: path, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	exp := time.Now().Add(time.Hour)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := map[int]int{}
	// From 16 goroutines, as the stateless workers apply them: each
	// Commit completes exactly once.
	var appliers sync.WaitGroup
	for g := range 16 {
		appliers.Go(func() {
			for i := g; i < n; i += 16 {
				b := typical(i, exp)
				_, c, err := m.Apply(b.AOR, func([]Binding) ([]Binding, error) { return []Binding{b}, nil })
				if err != nil || c == nil {
					t.Errorf("Apply of a new binding: Commit %v, err %v", c, err)
					return
				}
				wg.Add(1)
				c.Then(func(err error) {
					defer wg.Done()
					if err != nil {
						t.Errorf("commit %d: %v", i, err)
					}
					mu.Lock()
					done[i]++
					mu.Unlock()
				})
			}
		})
	}
	appliers.Wait()
	wg.Wait()
	for i := range n {
		if done[i] != 1 {
			t.Fatalf("commit %d completed %d times", i, done[i])
		}
	}
	st := m.Stats()
	if st.Writes != n || st.Commits == 0 || st.Commits >= n {
		t.Errorf("Writes %d Commits %d: want %d writes in fewer transactions", st.Writes, st.Commits, n)
	}
	t.Logf("%d write-throughs in %d transactions", st.Writes, st.Commits)

	// A refresh needs no write-through: no Commit, Then runs at once.
	b := typical(1, exp.Add(time.Minute))
	b.CSeq++
	_, c, err := m.Apply(b.AOR, func([]Binding) ([]Binding, error) { return []Binding{b}, nil })
	if err != nil || c != nil {
		t.Fatalf("refresh: Commit %v, err %v; want none", c, err)
	}
	ran := false
	c.Then(func(error) { ran = true })
	if !ran {
		t.Fatal("Then on a nil Commit did not run at once")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m2 := openTest(t, Options{Path: path})
	if _, got := m2.Len(); got != n {
		t.Fatalf("%d bindings after reopen, want %d", got, n)
	}
}

const groupHelperEnv = "PINHOLE_LOCATION_GROUP_HELPER"

// TestGroupCommitHelper is the child of TestGroupCommitKill: it applies
// new registrations from 64 goroutines without end and prints "ACK i" when
// registration i is durable, as the registrar sends its 200.
func TestGroupCommitHelper(t *testing.T) {
	path := os.Getenv(groupHelperEnv)
	if path == "" {
		t.Skip("helper process for TestGroupCommitKill")
	}
	m, err := Open(Options{Path: path, FlushInterval: time.Hour})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(2)
	}
	var out sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	next := make(chan int)
	for range 64 {
		go func() {
			for i := range next {
				b := typical(i, time.Now().Add(time.Hour))
				_, c, err := m.Apply(b.AOR, func([]Binding) ([]Binding, error) { return []Binding{b}, nil })
				if err != nil {
					fmt.Println("ERROR", err)
					os.Exit(2)
				}
				c.Then(func(err error) {
					if err != nil {
						return // not acknowledged
					}
					out.Lock()
					fmt.Fprintf(w, "ACK %d\n", i)
					w.Flush()
					out.Unlock()
				})
			}
		}()
	}
	for i := 0; i < 1_000_000; i++ { // bounded; the parent kills long before
		next <- i
	}
	select {}
}

// TestGroupCommitKill: a registration whose completion was seen (the 200
// sent) survives a SIGKILL that lands while other registrations are still
// being committed.
func TestGroupCommitKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	path := tempDB(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestGroupCommitHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), groupHelperEnv+"="+path)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	acked := map[int]bool{}
	sc := bufio.NewScanner(stdout)
	deadline := time.Now().Add(30 * time.Second)
	for len(acked) < 3000 && sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "ERROR") {
			t.Fatalf("helper: %s", l)
		}
		if i, err := strconv.Atoi(strings.TrimPrefix(l, "ACK ")); err == nil {
			acked[i] = true
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d acknowledged in 30 s", len(acked))
		}
	}
	// Kill the moment the last acknowledgement was read: the committer is
	// in the middle of later batches.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// Acknowledgements already in the pipe were sent before the kill too.
	for sc.Scan() {
		if i, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "ACK ")); err == nil {
			acked[i] = true
		}
	}
	cmd.Wait()

	m := openTest(t, Options{Path: path})
	var lost []int
	for i := range acked {
		want := typical(i, time.Time{})
		if got := m.Lookup(want.AOR); len(got) != 1 || got[0].Contact != want.Contact {
			lost = append(lost, i)
		}
	}
	_, held := m.Len()
	t.Logf("%d acknowledged before the kill, %d bindings on disk", len(acked), held)
	if len(lost) > 0 {
		t.Fatalf("%d acknowledged registrations lost after kill -9: %v", len(lost), lost[:min(len(lost), 20)])
	}
}

// TestWriteThroughNotFlushedAgain: a change the committer wrote is not
// left dirty for the flusher to write a second time; a refresh is; and a
// change whose transaction failed is handed to the flusher to retry.
func TestWriteThroughNotFlushedAgain(t *testing.T) {
	m, err := Open(Options{Path: tempDB(t), FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	b := typical(1, exp)
	if _, err := m.Update(b.AOR, func([]Binding) ([]Binding, error) { return []Binding{b}, nil }); err != nil {
		t.Fatal(err)
	}
	if m.anyDirty() {
		t.Fatal("a written-through registration is dirty: the flusher would write it again")
	}
	if !m.Touch(refresh(b, b.CSeq+1, exp.Add(time.Minute))) {
		t.Fatal("Touch refused the binding's own refresh")
	}
	if !m.anyDirty() {
		t.Fatal("a refresh is not dirty: it would never reach the disk")
	}
	if err := m.flush(false); err != nil {
		t.Fatal(err)
	}

	// Close the file under the committer: its next transaction fails.
	if err := m.back.close(); err != nil {
		t.Fatal(err)
	}
	b2 := typical(2, exp)
	_, c, err := m.Apply(b2.AOR, func([]Binding) ([]Binding, error) { return []Binding{b2}, nil })
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(); err == nil {
		t.Fatal("a write-through to a closed file succeeded")
	}
	if !m.anyDirty() {
		t.Fatal("a failed write-through is not dirty: the flusher would never retry it")
	}
}

// TestDeferAndAfterCommits: a Commit still waiting for its fsync takes
// Defer's function, which runs on the committer before that batch's
// AfterCommits hook, on the same goroutine (the hook sends what the
// functions gathered, so none may be left for a later batch); a Commit
// already durable, or none (a change written behind), runs nothing.
func TestDeferAndAfterCommits(t *testing.T) {
	m := openTest(t, Options{Path: tempDB(t), FlushInterval: time.Hour})
	var mu sync.Mutex // the committer writes these, the test reads them
	var completed, flushedAt []int
	hooks := make(chan struct{}, 1000)
	m.AfterCommits(func() {
		mu.Lock()
		flushedAt = append(flushedAt, len(completed))
		mu.Unlock()
		hooks <- struct{}{}
	})
	const n = 500
	exp := time.Now().Add(time.Hour)
	deferred := 0
	var commits []*Commit
	for i := range n {
		b := typical(i, exp)
		_, c, err := m.Apply(b.AOR, func([]Binding) ([]Binding, error) { return []Binding{b}, nil })
		if err != nil || c == nil {
			t.Fatalf("Apply of a new binding: Commit %v, err %v", c, err)
		}
		commits = append(commits, c)
		if c.Defer(func(err error) {
			if err != nil {
				t.Errorf("commit %d: %v", i, err)
			}
			mu.Lock()
			completed = append(completed, i)
			mu.Unlock()
		}) {
			deferred++
		} else if durable, _ := c.Durable(); !durable {
			t.Fatalf("Defer of commit %d declined although it is not durable", i)
		}
	}
	// Every batch's hook runs once its completions have: the last hook
	// follows the last completion. (Wait would replace the deferred
	// functions: a Commit takes one.)
	deadline := time.After(10 * time.Second)
	for done := false; !done; {
		select {
		case <-hooks:
			mu.Lock()
			done = flushedAt[len(flushedAt)-1] == deferred
			mu.Unlock()
		case <-deadline:
			t.Fatalf("the hooks ran after %v completions, %d deferred", flushedAt, deferred)
		}
	}
	for i, c := range commits {
		if durable, err := c.Durable(); !durable || err != nil {
			t.Fatalf("commit %d: durable %v, err %v after the last hook", i, durable, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(completed) != deferred {
		t.Fatalf("%d Defer functions ran, %d were deferred", len(completed), deferred)
	}
	if deferred == 0 {
		t.Fatal("no Commit was still waiting: the test proved nothing")
	}
	var none *Commit
	if none.Defer(func(error) { t.Error("Defer on a nil Commit ran its function") }) {
		t.Error("Defer on a nil Commit (written behind) deferred")
	}
	if commits[0].Defer(func(error) { t.Error("Defer on a durable Commit ran its function") }) {
		t.Error("Defer on a durable Commit deferred")
	}
}
