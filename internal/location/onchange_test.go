package location

import (
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The fast path's cache forgets an AOR on every change the store sees:
// an Update (even one that fails to change anything is not reported) and
// a lapse; its own Touch is not reported back to it.
func TestOnChange(t *testing.T) {
	clk := newClock()
	var mu sync.Mutex
	var got []string
	m := openTest(t, Options{Now: clk.Now, OnChange: func(aor string) {
		mu.Lock()
		got = append(got, aor)
		mu.Unlock()
	}})
	b := typical(1, clk.Now().Add(60*time.Second))
	if _, err := m.Update(b.AOR, func([]Binding) ([]Binding, error) { return []Binding{b}, nil }); err != nil {
		t.Fatal(err)
	}
	if !m.Touch(refresh(b, b.CSeq+1, clk.Now().Add(90*time.Second))) {
		t.Fatal("Touch refused")
	}
	if _, err := m.Update(b.AOR, func([]Binding) ([]Binding, error) { return nil, ErrInvalidBinding }); err == nil {
		t.Fatal("Update with a failing fn succeeded")
	}
	clk.Advance(120 * time.Second)
	m.expire(clk.Now())
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]string{b.AOR, b.AOR}, got); diff != "" {
		t.Errorf("OnChange calls (-want +got):\n%s", diff)
	}
}
